"""What the worker says: its start-up summary and periodic progress (each alert: :mod:`stream.alerting.announce`).

Everything goes to the ``glassbox.worker`` logger (text or JSON, as the command line configured it); the
JSON form carries the same facts as fields (``extra={"fields": ...}``).

>>> Progress().tick(events=0, messages=0, alerts=0, lag=None, now=0.0)[0]
'progress: 0 events (0/s), 0 messages (0 dead-lettered), 0 alerts, lag unknown'
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("glassbox.worker")


def startup_lines(settings: Any, bootstrap: str, *, embedded: bool, run: Any = None,
                  progress_s: float = 0.0) -> list[tuple[str, dict[str, Any]]]:
    """The start-up summary: (line, fields) for the broker, topics, models, web endpoints and MLflow run."""
    w = settings.worker
    topics = {k: settings.topic(k) for k in ("predictions", "labels", "alerts", "deadletter")}
    lines: list[tuple[str, dict[str, Any]]] = [
        (f"glassbox worker {w.app_id}: broker {bootstrap}{' (embedded)' if embedded else ''}",
         {"app_id": w.app_id, "broker": bootstrap, "embedded": embedded}),
        (f"topics: reads {topics['predictions']}, {topics['labels']}; writes {topics['alerts']}, "
         f"{topics['deadletter']}", {"topics": topics}),
    ]
    for model, ref in w.models.items():
        lines.append((f"model {model}: reference {ref}", {"model": model, "reference": str(ref)}))
    if not w.models:
        lines.append((f"models: none configured; monitors up to {w.max_discovered_models} model(s) found in the "
                      "stream", {"models": {}}))
    base = f"http://{w.web_host}:{w.web_port}"
    lines.append((f"stats at {base}/stats, metrics at {base}/metrics", {"stats": f"{base}/stats",
                                                                          "metrics": f"{base}/metrics"}))
    if run is not None and getattr(run, "run_id", None):
        lines.append((f"MLflow run {run.run_id} ({run.link}) on {settings.mlflow.tracking_uri}",
                      {"mlflow_run_id": run.run_id, "mlflow_run": run.link}))
    else:
        lines.append(("MLflow: off (no run recorded)", {"mlflow_run_id": None}))
    if progress_s > 0:
        lines.append((f"progress every {progress_s:g} s", {"progress_s": progress_s}))
    return lines


def log_startup(settings: Any, bootstrap: str, **kw: Any) -> None:
    for line, fields in startup_lines(settings, bootstrap, **kw):
        log.info("%s", line, extra={"fields": fields})


class Progress:
    """Events per second between two ticks."""

    def __init__(self) -> None:
        self.events = 0
        self.at: float | None = None

    def tick(self, *, events: int, messages: int, alerts: int, lag: int | None, deadlettered: int = 0,
             now: float | None = None) -> tuple[str, dict[str, Any]]:
        now = time.monotonic() if now is None else now
        rate = 0.0 if self.at is None or now <= self.at else (events - self.events) / (now - self.at)
        self.events, self.at = events, now
        fields = {"events": events, "events_per_s": round(rate, 1), "messages": messages,
                  "deadlettered": deadlettered, "alerts": alerts, "lag": lag}
        lag_text = "unknown" if lag is None else f"{lag:,} messages"
        return (f"progress: {events:,} events ({rate:,.0f}/s), {messages:,} messages ({deadlettered:,} dead-lettered), "
                f"{alerts:,} alerts, lag {lag_text}", fields)


def register_progress(app: Any, settings: Any, pipeline: Any, health: Any, every_s: float) -> None:
    """Log progress every ``every_s`` seconds, and the input partitions the worker is given at each rebalance."""
    progress = Progress()
    inputs = {settings.topic("predictions"), settings.topic("labels")}

    @app.timer(every_s, name="glassbox.progress")
    async def report_progress() -> None:
        c = pipeline.counters
        line, fields = progress.tick(events=c.events, messages=c.messages, alerts=c.alerts,
                                     deadlettered=c.deadlettered, lag=health.lag)
        log.info("%s", line, extra={"fields": fields})

    @app.on_partitions_assigned.connect
    async def assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        parts: dict[str, list[int]] = {}
        for tp in assigned:
            if tp.topic in inputs:
                parts.setdefault(tp.topic, []).append(tp.partition)
        text = "; ".join(f"{t} {','.join(map(str, sorted(p)))}" for t, p in sorted(parts.items()))
        log.info("assigned partitions: %s", text or "none", extra={"fields": {"assigned": parts}})

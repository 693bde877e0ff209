"""``glassbox demo``: the whole product on one machine, nothing installed or running beforehand.

It starts the embedded broker, trains and registers the reference model (:mod:`stream.demo.training`, seeded),
starts the monitoring worker and the notifier as child processes (``python -m stream.cli worker`` and
``alerts notify``), publishes a realistic stream (:mod:`stream.demo.stream_data`: clean, then data drift, then
concept drift, then a data-quality problem, with late labels), shows the alerts live as they fire and resolve,
and ends with a summary: alerts per monitor, where the reports are, and the commands that open the MLflow and
Evidently UIs on them.

Everything lives under ``--home`` (default ``.glassbox/demo``), which the demo wipes at start (only when it
holds the demo's marker file), so a second run needs no cleaning. ``<home>/alerts.jsonl`` holds every alert seen
(with the stream row and phase it fell in), ``<home>/summary.json`` the outcome, ``<home>/logs/`` the children's
logs.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from stream.demo.display import Display, alert_line, print_summary
from stream.demo.feed import AlertFeed, AlertLog
from stream.demo.home import EXPECTED, MODEL, PREFIX, DemoError, DemoOptions, prepare_home
from stream.demo.processes import Child, Children, child_env, http_json, start_uis, tail, wait_worker_ready
from stream.demo.reports import collect_reports, train_model


def run_demo(opts: DemoOptions, console: Any = None) -> dict[str, Any]:
    """Run the demo; returns the summary (also written to ``<home>/summary.json``)."""
    from rich.console import Console

    console = console or Console(file=sys.stdout, highlight=False,
                                 width=None if sys.stdout.isatty() else 160)
    t_start = time.monotonic()
    home = prepare_home(opts.home)
    children = Children()
    broker = None
    feed: AlertFeed | None = None
    summary: dict[str, Any] = {"home": str(home), "pids": {}}

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell that started the demo in the background may have left Ctrl-C ignored
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        from stream.kafka.broker import EmbeddedBroker, free_port
        from stream.kafka.topics import ensure_topics
        from stream.settings import load_settings

        console.print(f"[bold]glassbox demo[/]: everything under {home}")
        broker = EmbeddedBroker(log_path=home / "logs" / "broker.log").start()
        summary["pids"]["broker"] = broker.pid
        children.guard("broker-guard", broker.pid, home / "logs" / "broker.log")
        tracking_uri = f"sqlite:///{home.as_posix()}/mlflow.db"
        web_port = free_port()
        env = child_env(home, broker.bootstrap, web_port, tracking_uri)
        settings = load_settings(home=home, kafka={"bootstrap": broker.bootstrap, "topic_prefix": PREFIX,
                                                   "partitions": 4})
        ensure_topics(settings, broker.bootstrap)
        console.print(f"  embedded broker at {broker.bootstrap} (pid {broker.pid})")
        notifier = children.module("notifier", "stream.cli", ["alerts", "notify"], env, home / "logs" / "notifier.log")
        receivers = ["log", "desktop"] + [r for r, key in (("slack", "slack_token"), ("slack", "slack_webhook_url"),
                                                           ("pagerduty", "pagerduty_routing_key"))
                                          if settings.alerting.secret(key)]
        receivers = list(dict.fromkeys(receivers))
        console.print(f"  notifier started (pid {notifier.proc.pid}): {', '.join(receivers)}")

        t = time.monotonic()
        console.print("  training the reference model (stream.demo.training, seed 42) ...")
        result, reference, model = train_model(home, tracking_uri)
        auc = result.metrics.get("roc_auc", float("nan"))
        console.print(f"  registered {result.model_uri} as {MODEL}@champion (ROC AUC {auc:.3f}) with its reference "
                      f"({reference.info.rows} rows, digest {reference.info.digest}) in {time.monotonic() - t:.1f}s")

        worker = children.module("worker", "stream.cli", ["worker"], env, home / "logs" / "worker.log")
        summary["pids"].update(children.pids)
        (home / "pids.json").write_text(json.dumps(summary["pids"]))

        from stream.demo.stream_data import make_stream

        speed = opts.speed if opts.speed > 0 else 1500.0
        start_ms = int(time.time() * 1000)
        stream = make_stream(model.predict_proba, rows=opts.rows, seed=opts.seed, label_delay=opts.label_delay,
                             start_ms=start_ms, events_per_second=speed, model=MODEL)
        for p in stream.phases:
            console.print(f"  phase {p.name!r}: rows {p.start:,}-{p.end - 1:,}: {p.description}")

        stats_url = f"http://127.0.0.1:{web_port}/stats"
        wait_worker_ready(worker, stats_url, timeout_s=90)
        console.print(f"  worker ready (pid {worker.proc.pid}, stats at {stats_url}) after "
                      f"{time.monotonic() - t_start:.1f}s")

        feed = AlertFeed(settings, broker.bootstrap, settings.topic("alerts"))
        feed.start()
        log = AlertLog(home / "alerts.jsonl")
        log.path.write_text("")
        summary.update(publish_and_watch(opts, stream, broker.bootstrap, settings, feed, log, worker, stats_url,
                                         console, speed))
        streamed_at = time.monotonic()

        urls: dict[str, str] = {}
        if opts.keep_running:
            urls = start_uis(children, home, tracking_uri, env)
            summary["pids"].update(children.pids)
            (home / "pids.json").write_text(json.dumps(summary["pids"]))
        else:
            console.print("  stopping the worker (it closes its MLflow run and finishes its reports) ...")
            children.stop(worker, timeout_s=30)
            children.stop(notifier, timeout_s=10)
        reports = collect_reports(home, stream, reference, log.alerts)
        summary.update(finish_summary(opts, home, stream, log, reports, tracking_uri, receivers,
                                      time.monotonic() - t_start, streamed_at - t_start))
        (home / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        print_summary(console, summary, urls)
        if opts.keep_running:
            console.print("[bold]broker, worker, notifier and UIs are running: press Ctrl-C to stop them[/]")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    for a in feed.drain():
                        console.print(alert_line(log.add(a, stream)), markup=False, highlight=False)
                    time.sleep(0.5)
        if summary["missing"]:
            raise DemoError(f"the demo saw no {', '.join(summary['missing'])} alert (logs in {home / 'logs'})")
        return summary
    finally:
        t = time.monotonic()
        for s in old:  # a second Ctrl-C must not cut the cleanup short (each stop is bounded)
            signal.signal(s, signal.SIG_IGN)
        if feed is not None:
            feed.stop()
        children.stop_all()
        if broker is not None:
            broker.stop()
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        names = [c.name for c in children.children if c.name != "broker-guard"] + ["broker"] * (broker is not None)
        console.print(f"stopped {', '.join(names)} and their subprocesses ({time.monotonic() - t:.1f}s)")


def publish_and_watch(opts: DemoOptions, stream: Any, bootstrap: str, settings: Any, feed: AlertFeed,
                      log: AlertLog, worker: Child, stats_url: str, console: Any, speed: float) -> dict[str, Any]:
    """Publish the stream (paced), show alerts as they come, wait until the worker processed everything."""
    from stream.producer import Producer

    n = len(stream)
    pace = opts.speed > 0
    display = Display(console, n, stream.phases)
    last_stats = 0.0
    labels_sent = 0

    def pump() -> None:
        nonlocal last_stats
        for a in feed.drain():
            display.alert(log.add(a, stream))
        if time.monotonic() - last_stats > 0.5:
            last_stats = time.monotonic()
            s = http_json(stats_url)
            if s:
                display.progress.processed = int(s.get("events", 0))
                display.progress.joined = int(s.get("labels", 0))
        display.refresh()

    t0 = time.monotonic()
    with Producer(bootstrap, topic_prefix=PREFIX, kafka=settings.kafka) as producer, display:
        phase_idx = -1
        for start in range(0, n, opts.batch):
            end = min(n, start + opts.batch)
            k = int(stream.frame["phase"].iat[start])
            if k != phase_idx:
                phase_idx = k
                p = stream.phases[k]
                display.phase(f"phase {k + 1}/4: {p.name} ({p.description})")
            producer.send_prediction_batch(**stream.prediction_batch(start, end))
            labels_sent, due = stream.labels_due(end, labels_sent)
            for label in due:
                producer.send_label(**label)
            display.progress.published, display.progress.labels = end, labels_sent
            if worker.proc.poll() is not None:
                raise DemoError(f"the worker exited (code {worker.proc.returncode}):\n{tail(worker.log)}")
            if pace:
                while (wait := t0 + end / speed - time.monotonic()) > 0:
                    pump()
                    time.sleep(min(wait, 0.1))
            else:
                pump()
        labels_sent, due = stream.labels_due(n, labels_sent)
        for label in due:
            producer.send_label(**label)
        producer.flush()
        display.progress.labels = labels_sent
        display.phase("all events published; waiting for the worker to finish")
        deadline = time.monotonic() + 60
        done_at = None
        while time.monotonic() < deadline:
            pump()
            if display.progress.processed >= n and display.progress.joined >= labels_sent:
                done_at = done_at or time.monotonic()
                quiet = time.monotonic() - done_at
                if quiet > 3.0:
                    break
            if worker.proc.poll() is not None:
                raise DemoError(f"the worker exited (code {worker.proc.returncode}):\n{tail(worker.log)}")
            time.sleep(0.2)
        else:
            display.progress.note = "(timed out waiting for the worker)"
        pump()
        display.phase("done")
    return {"published": n, "labels": labels_sent, "processed": display.progress.processed,
            "labels_joined": display.progress.joined, "stream_seconds": round(time.monotonic() - t0, 1)}


def finish_summary(opts: DemoOptions, home: Path, stream: Any, log: AlertLog, reports: dict[str, str],
                   tracking_uri: str, receivers: list[str], seconds: float, streamed: float) -> dict[str, Any]:
    """The outcome as data: counts per monitor, first firing row per monitor, early alerts, paths, commands."""
    counts: dict[str, dict[str, int]] = {}
    for (monitor, status), c in sorted(log.counts().items()):
        counts.setdefault(monitor, {})[status] = c
    first: dict[str, int] = {}
    for a in log.alerts:
        if a["status"] == "firing":
            first.setdefault(a["monitor"], a["demo"]["row"])
    change = stream.first_change_row
    early = [a["alert_id"] for a in log.alerts if a["demo"]["row"] < change]
    return {
        "rows": len(stream), "phases": [p.__dict__ for p in stream.phases], "first_change_row": change,
        "first_change_time_ms": int(stream.frame["timestamp"].iat[change]),
        "alerts": len(log.alerts), "counts": counts, "first_firing_row": first, "early_alerts": early,
        "missing": [m for m in EXPECTED if m not in first], "reports": reports, "receivers": receivers,
        "alerts_file": str(log.path), "logs": str(home / "logs"), "tracking_uri": tracking_uri,
        "evidently_workspace": str(home / "evidently"),
        "commands": {
            "mlflow": f"uv run mlflow ui --backend-store-uri {tracking_uri} --port 5000",
            "evidently": f"uv run evidently ui --workspace {home / 'evidently'} --port 8000",
        },
        "seconds": round(seconds, 1), "seconds_to_end_of_stream": round(streamed, 1),
    }


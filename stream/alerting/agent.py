"""The notifier as a Faust agent on the alerts topic, in an app of its own (own consumer group).

It takes what arrived within ``alerting.group_wait`` (at most ``alerting.max_group`` alerts), hands the
batch to the :class:`~stream.alerting.dispatch.Dispatcher`, and acknowledges the messages (so their offsets
can be committed) only after every receiver delivered or gave up (given-up deliveries go to the dead-letter
topic first). A crash or SIGKILL before that redelivers the batch; the journal and PagerDuty's dedup_key
keep the redelivery from notifying twice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faust
import orjson
from prometheus_client import CollectorRegistry, Counter, ProcessCollector, start_http_server

from stream.alerting.announce import log_alert
from stream.alerting.dispatch import Dispatcher

log = logging.getLogger("glassbox.alerting")


def notifier_app_id(settings: Any) -> str:
    """The notifier's app id (= consumer group), distinct from the monitoring worker's."""
    return f"{settings.worker.app_id}-notifier"


def _decode(events: list[Any]) -> tuple[list[Any], list[dict[str, Any]]]:
    alerts, sources = [], []
    for e in events:
        m = e.message
        sources.append({"topic": m.topic, "partition": m.partition, "offset": m.offset})
        value = e.value
        if isinstance(value, bytes | bytearray | memoryview):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                value = bytes(value)
        alerts.append(value)
    return alerts, sources


class NotifierMetrics:
    """The notifier's series (``glassbox_notifier_*``), served on ``alerting.metrics_port``."""

    def __init__(self) -> None:
        self.registry = reg = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=reg)
        self.alerts = Counter("glassbox_notifier_alerts", "alert records read", registry=reg)
        self.decisions = Counter("glassbox_notifier_decisions", "lifecycle decisions (notify kind or reason)",
                                 ["decision"], registry=reg)
        self.notified = Counter("glassbox_notifier_notifications", "alerts per receiver and delivery outcome",
                                ["receiver", "outcome"], registry=reg)

    def observe(self, n: int, report: Any) -> None:
        self.alerts.inc(n)
        for d, k in report.decisions.items():
            self.decisions.labels(d).inc(k)
        for outcome, counts in (("delivered", report.delivered), ("gave_up", report.gave_up)):
            for receiver, k in counts.items():
                self.notified.labels(receiver, outcome).inc(k)


def register_notifier(app: faust.App, settings: Any, bootstrap: str, *, dispatcher: Dispatcher | None = None) -> Any:
    """Attach the notifier agent to ``app`` (make it with ``app_id=notifier_app_id(settings)``).

    Before each batch it reads the shared silences and the lifecycle of newly owned partitions; after it, it
    publishes the batch's lifecycle states, then acknowledges (see :mod:`stream.alerting.shared`)."""
    from stream.alerting.shared import SharedState
    from stream.kafka.faust_app import Topics

    topics = Topics(app, settings)
    cfg = settings.alerting

    async def dead_letter(record: dict[str, Any]) -> None:
        await topics.deadletter.send(key=record["reason"].encode(), value=orjson.dumps(record))

    if dispatcher is None:
        dispatcher = Dispatcher.from_settings(settings, dead_letter=dead_letter)
    else:
        dispatcher.dead_letter = dispatcher.dead_letter or dead_letter
    metrics = NotifierMetrics()
    shared = SharedState(settings, bootstrap, dispatcher.store)
    shared.ensure_topics()
    alerts_topic = settings.topic("alerts")

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == alerts_topic)
        log.info("notifier owns partitions %s of %s", mine, alerts_topic)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        shared.forget({tp.partition for tp in revoked if tp.topic == alerts_topic})

    @app.on_before_shutdown.connect
    async def on_shutdown(sender: Any, **kwargs: Any) -> None:
        await shared.close()

    @app.agent(topics.alerts, name="glassbox.notifier")
    async def notifier(stream: Any) -> None:
        async for events in stream.noack_take(cfg.max_group, within=cfg.group_wait):
            alerts, sources = _decode(events)
            parts = {src["partition"] for src in sources}
            await shared.until_done(f"reading {shared.silences_topic}", shared.sync_silences)
            await shared.until_done(f"reading {shared.state_topic} {sorted(parts)}", shared.load, parts)
            for a in alerts:
                if isinstance(a, dict):
                    log_alert(a, log)
            report = await dispatcher.process(alerts, sources)
            metrics.observe(len(events), report)
            owned = [(p, st) for p, st in report.states if p is not None]
            await shared.until_done(f"writing {shared.state_topic}", shared.save, owned)
            for event in events:
                await stream.ack(event)
            log.info("notifier batch: %d alert(s), decisions %s, delivered %s, gave up %s",
                     len(events), report.decisions, report.delivered, report.gave_up)

    notifier.dispatcher = dispatcher  # type: ignore[attr-defined]
    notifier.metrics = metrics  # type: ignore[attr-defined]
    notifier.shared = shared  # type: ignore[attr-defined]
    return notifier


def run_notifier(settings: Any, bootstrap: str, *, embedded: bool = False) -> None:
    """Run the notifier worker until stopped (``glassbox alerts notify``); logging is the caller's."""
    from stream.alerting.store import state_path
    from stream.kafka.faust_app import faust_worker, make_app

    app_id = notifier_app_id(settings)
    datadir = Path(settings.home) / "faust" / app_id  # not ./<app_id>-data in the current directory
    datadir.mkdir(parents=True, exist_ok=True)
    fapp = make_app(settings, bootstrap=bootstrap, app_id=app_id, web_enabled=False, datadir=str(datadir))
    notifier = register_notifier(fapp, settings, bootstrap)
    cfg = settings.alerting
    routed = sorted({r for route in cfg.routes for r in route.receivers} | ({"desktop"} if cfg.desktop else set()))
    ready = sorted(notifier.dispatcher.notifiers)
    for line in (f"glassbox notifier {app_id}: broker {bootstrap}{' (embedded)' if embedded else ''}",
                 f"reads {settings.topic('alerts')}; gives up to {settings.topic('deadletter')}",
                 f"receivers routed to: {', '.join(routed)}; ready: {', '.join(ready)}",
                 f"shared state: {settings.topic('silences')}, {settings.topic('alert-state')} (compacted); "
                 f"local cache and journal: {state_path(settings)}",
                 f"runbooks: {cfg.runbook_url('<monitor>')}"):
        log.info("%s", line)
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port, addr=settings.worker.web_host, registry=notifier.metrics.registry)
        log.info("metrics at http://%s:%d/metrics", settings.worker.web_host, cfg.metrics_port)
    faust_worker(fapp).execute_from_commandline()

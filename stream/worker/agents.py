"""The monitoring worker: Faust agents that feed predictions and labels to :class:`Pipeline`.

Each agent takes up to ``worker.batch_max`` messages (or what arrived within ``worker.batch_wait_s``),
runs one pipeline step on them and publishes the step's alerts (key: fingerprint) and dead letters before
the messages are acknowledged, so a crash redelivers rather than loses. With a state topic, the state of the
models the steps touched is published every ``worker.state_interval_s`` (not every step), and the messages are
acknowledged (so Faust may commit their offsets) only once a state that covers them is published: a crash
between two saves redoes the steps since the last one from that state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import faust
import orjson

from stream.alerting.announce import log_alert
from stream.kafka.faust_app import Topics
from stream.kafka.state_topic import TopicState
from stream.pipeline.monitors import MonitorRegistry
from stream.pipeline.pipeline import Pipeline, RawMessage, StepOutput
from stream.pipeline.shards import ShardedMonitors
from stream.settings import Settings
from stream.worker.report import register_progress

log = logging.getLogger("glassbox.worker")

_SORTED = orjson.OPT_SORT_KEYS


def tune_gc() -> None:
    """Call once everything is imported and built, before consuming: move the long-lived objects (Faust,
    MLflow, references, monitors) out of the collector's sight and collect young objects less often. The
    hot path allocates a few dicts and lists per message; with a full-size heap, collections otherwise cost
    more than the parsing (measured: 7.6k -> 11.3k single-event messages/s)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def alert_bytes(alert: dict[str, Any]) -> bytes:
    """Canonical JSON of an alert (sorted keys), the same bytes live and in replay."""
    return orjson.dumps(alert, option=_SORTED)


def build_pipeline(settings: Settings, state: TopicState | None = None) -> Pipeline:
    """The pipeline of a worker; with ``state``, model state survives crashes and rebalances."""
    from stream.evidence.reference import load_reference_for

    sharded = {"sharded": settings.worker.sharded_models} if settings.worker.sharded_models else {}
    monitors = (ShardedMonitors if sharded else MonitorRegistry)(  # sharded models: a monitor per partition
        settings.worker.models, settings.detection, lambda ref: load_reference_for(ref, settings),
        max_discovered=settings.worker.max_discovered_models, **sharded,
    )
    return Pipeline(
        monitors,
        links=settings.alerting.with_links,
        label_ttl_ms=int(settings.worker.label_ttl_s * 1000),
        max_message_bytes=settings.kafka.max_message_bytes,
        audit=settings.worker.audit,
        state=state,
        dedup_horizon=settings.worker.dedup_horizon,
    )


def _raw(events: list[Any]) -> list[RawMessage]:
    return [
        RawMessage(
            topic=e.message.topic, partition=e.message.partition, offset=e.message.offset,
            value=e.message.value, timestamp=int(e.message.timestamp * 1000) if e.message.timestamp else None,
            key=e.message.key,
        )
        for e in events
    ]


def register_monitor(app: faust.App, settings: Settings, pipeline: Pipeline, evidence: Any = None,
                     attribution: Any = None, *, progress_s: float = 0.0) -> Topics:
    """Attach the prediction and label agents (and a ``/stats`` page) to ``app``. Published alerts carry their
    runbook link and each one is logged. With ``evidence`` (:class:`stream.evidence.recorder.Evidence`), steps
    are recorded in MLflow and alerts carry their links; with ``attribution``
    (:class:`stream.evidence.shap_service.AttributionService`), windows are explained with SHAP off the hot path
    and alerts carry their window's top SHAP movers; with both, the SHAP plots and tables of chosen windows go
    into the monitoring run. With ``progress_s``, progress is logged that often."""
    topics = Topics(app, settings)
    if attribution is not None and evidence is not None and getattr(attribution, "run", None) is None:
        attribution.attach_run(evidence.run)
    batch_max, within = settings.worker.batch_max, settings.worker.batch_wait_s
    from stream.worker.health import register_health

    health = register_health(app, settings, pipeline, topics)  # /metrics and the pipeline checks
    if progress_s > 0:
        register_progress(app, settings, pipeline, health, progress_s)

    state = pipeline.state if isinstance(pipeline.state, TopicState) else None
    held: list[Any] = []  # input messages of the steps since the last save: acknowledged once their state is out
    saving = asyncio.Lock()

    async def restore(events: list[Any]) -> None:
        if state is not None:
            await state.load({e.message.partition for e in events})

    async def publish(out: StepOutput, partition_hint: str) -> None:
        alerts = out.alerts
        if attribution is not None:
            alerts = attribution.observe(out, alerts)
            alerts += attribution.poll()
        if evidence is not None:
            out.alerts = alerts
            alerts = evidence.observe(out)
        for alert in alerts:
            alert = settings.alerting.with_links(alert)  # also those added by the attribution and evidence
            await topics.alerts.send(key=alert["fingerprint"].encode(), value=alert_bytes(alert))
            log_alert(alert)
        for dead in out.deadletters:
            await topics.deadletter.send(key=dead["reason"].encode(), value=orjson.dumps(dead))
        if pipeline.audit and (out.processed_ids or out.deadletters):
            await topics.audit.send(
                key=partition_hint.encode(),
                value=orjson.dumps({"ids": out.processed_ids, "deadlettered": len(out.deadletters)}),
            )
        pipeline.counters.alerts += len(alerts)
        if sharding is not None:  # sharded models: partials after the state records that hold them
            await sharding.send_partials(save_state if state is not None else None)

    async def save_state() -> None:
        """Publish the state of every model the steps since the last save touched, then acknowledge their input.
        The label join's journal goes first and is acknowledged by the broker, so a state record never refers to
        join calls that a crash could lose (a journal beyond the state is ignored at restore). The state records
        only need to be in the producer: Faust flushes it before it commits any offset. Alerts were published by
        their steps: a crash before the save repeats them (same alert_id), never loses them."""
        assert state is not None
        async with saving:
            done, held[:] = list(held), []
            pipeline.save()  # at once after the snapshot: the state covers exactly the steps of ``done``
            records = state.take_journal()
            try:
                await asyncio.gather(*[await topics.joinlog.send(key=key, value=value, partition=partition)
                                       for partition, key, value in records])
            except Exception:  # no state and no acknowledgement until the journal is written: retried next time
                log.exception("joinlog write failed; retrying at the next save")
                state.requeue_journal(records)
                held[:0] = done
                return
            for partition, key, value in state.take_dirty():
                await topics.state.send(key=key, value=value, partition=partition)
            for message in done:
                message.ack(app.consumer)

    sharding = None
    if settings.worker.sharded_models:  # the summaries topic and the combiner agent (stream/worker/combiner.py)
        from stream.worker.combiner import register_sharding

        async def combined(alerts: list[dict[str, Any]]) -> None:
            """The combiner's alerts, then its state at once: its input (partials) is acknowledged with the step,
            so the state must cover the step before it is."""
            await publish(StepOutput(alerts=alerts), "combiner")
            if state is not None:
                await save_state()

        sharding = register_sharding(app, settings, pipeline, combined,
                                     lambda parts: state.load(parts) if state is not None else asyncio.sleep(0), _raw)
    serial = sharding.serial if sharding is not None else contextlib.nullcontext()

    async def consume(stream: Any, kind: str, step: Any) -> None:
        async for events in stream.take_events(batch_max, within=within):
            async with serial:
                await restore(events)
                t0, raw = time.perf_counter(), _raw(events)
                out = step(raw)
                if state is not None:  # not acknowledged with the step: held until a state covers it
                    for e in events:
                        e.message.incref()
                        held.append(e.message)
                await publish(out, kind)
            health.step(kind, raw, out, time.perf_counter() - t0)

    @app.agent(topics.predictions, name="glassbox.predictions")
    async def predictions(stream: Any) -> None:
        await consume(stream, "predictions", pipeline.on_predictions)

    @app.agent(topics.labels, name="glassbox.labels")
    async def labels(stream: Any) -> None:
        await consume(stream, "labels", pipeline.on_labels)

    if state is not None:

        @app.task
        async def save_every_interval() -> None:
            """Save while input flows and once it stops. A plain loop, not an ``app.timer``: it must keep running
            while Faust stops or rebalances, which waits for every message taken to be acknowledged."""
            while True:
                await asyncio.sleep(settings.worker.state_interval_s)
                if held:
                    await save_state()

        @app.on_partitions_revoked.connect
        async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            mine = {settings.topic("predictions"), settings.topic("labels")}
            parts = {tp.partition for tp in revoked if tp.topic in mine}
            pipeline.forget(state.forget(parts))

    if attribution is not None:

        @app.timer(1.0)
        async def attribution_results() -> None:  # publish SHAP decisions that finish while input is idle
            alerts = attribution.poll()
            if alerts:
                await publish(StepOutput(alerts=alerts), "attribution")

    @app.page("/stats")
    async def stats(web: Any, request: Any) -> Any:
        body = pipeline.counters.as_dict()
        body["joins"] = {m: j.counters() for m, j in pipeline.joins.items()}
        if attribution is not None:
            body["attribution"] = attribution.stats()
        if evidence is not None:
            body |= evidence.stats()  # "windows" (MLflow logging) and "snapshots"
        body["assignment"] = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
        return web.json(body)

    return topics

"""Sharded models in the worker: partial windows out to the summaries topic, and the combiner agent that closes them.

Topology (registered by :func:`register_sharding` from :func:`stream.worker.agents.register_monitor` when
``worker.sharded_models`` is set):

- after each prediction or label step, :meth:`Sharding.send_partials` publishes the shards' new partial windows
  to ``<prefix>summaries`` (key: the model, so one partition, in order, holds a model's partials). It first makes
  the state records that hold them durable (they sit in each shard's outbox inside its state record), then sends
  and waits for the acknowledgement, then drops them from the outbox: a crash anywhere sends a partial again with
  the same number, never loses one, and the combiner applies each number once;
- ``glassbox.combiner``, a Faust agent on the summaries topic (so it moves with rebalances like the others),
  merges the partials of each window and closes it (:class:`stream.pipeline.shards.Combiners`), publishing alerts
  exactly as the monitoring agents do (same topic, key fingerprint, links); a 1-s timer closes windows whose
  allowed lateness passed. Its state goes to the state topic through the worker's own state store.

Steps of the prediction, label and combiner agents run one at a time (``Sharding.serial``), so a state record
taken by one agent never misses a partial another agent just made.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import orjson

from stream.pipeline.pipeline import Pipeline
from stream.pipeline.shards import Combiners, ShardedMonitors
from stream.settings import Settings

log = logging.getLogger("glassbox.combiner")


class Sharding:
    """The worker's side of sharded models: the summaries topic, the partial sender and the combiners."""

    def __init__(self, app: faust.App, settings: Settings, pipeline: Pipeline):
        assert isinstance(pipeline.monitors, ShardedMonitors)
        self.app = app
        self.monitors = pipeline.monitors
        self.summaries = app.topic(settings.topic("summaries"), value_type=bytes, key_type=bytes,
                                   value_serializer="raw", key_serializer="raw", partitions=settings.kafka.partitions)
        self.combiners = Combiners(pipeline.monitors, settings.kafka.partitions, settings.worker.allowed_lateness_s,
                                   pipeline.state)
        self.serial = asyncio.Lock()
        self.partials_sent = 0

    async def send_partials(self, save_state: Callable[[], Awaitable[None]] | None) -> None:
        """Publish the shards' unacknowledged partials, after the state records that hold them are durable."""
        pending = self.monitors.outboxes()
        if not pending:
            return
        if save_state is not None:
            await save_state()
            await self.app.producer.flush()
        for key, partials in pending:
            futs = [await self.summaries.send(key=p["model"].encode(), value=orjson.dumps(p)) for p in partials]
            await asyncio.gather(*futs)
            self.monitors.ack(key, partials[-1]["seq"])
            self.partials_sent += len(partials)


def register_sharding(app: faust.App, settings: Settings, pipeline: Pipeline, publish: Callable[..., Awaitable[None]],
                      load: Callable[[set[int]], Awaitable[Any]], raw: Callable[[list[Any]], list[Any]]) -> Sharding:
    """The combiner agent and its lateness timer. ``publish(alerts)`` sends alerts (and saves state) as the
    monitoring agents do; ``load(partitions)`` restores those partitions' state first; ``raw(events)`` turns Faust
    events into :class:`stream.pipeline.pipeline.RawMessage`."""
    sharding = Sharding(app, settings, pipeline)
    combiners = sharding.combiners
    batch_max, within = settings.worker.batch_max, settings.worker.batch_wait_s

    @app.agent(sharding.summaries, name="glassbox.combiner")
    async def combine(stream: Any) -> None:
        async for events in stream.take_events(batch_max, within=within):
            async with sharding.serial:
                await load({e.message.partition for e in events})
                await publish(combiners.step(raw(events), time.time()))

    @app.timer(1.0)
    async def lateness() -> None:  # windows held open by an idle partition close after the allowed lateness
        async with sharding.serial:
            closed = combiners.closed
            alerts = combiners.tick(time.time())
            if combiners.closed != closed:
                await publish(alerts)  # and the state of the combiners that closed windows

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        combiners.forget({tp.partition for tp in revoked if tp.topic == settings.topic("summaries")})

    @app.page("/combiner")
    async def stats(web: Any, request: Any) -> Any:
        return web.json({"partials_sent": sharding.partials_sent, "invalid": combiners.invalid, "models": {
            m: {"closed": c.closed, "partials": c.partials, "duplicates": c.duplicates, "open": c.open_windows,
                "late_partials": c.late_partials, "late_outcomes": c.late_outcomes, "by_lateness": c.by_lateness,
                "watermarks": c.wm, "events": c.monitor.events, "recent": c.recent}
            for m, c in combiners.combiners.items()}})

    return sharding

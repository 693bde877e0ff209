"""Sharded models in the pipeline: one fold per (model, partition), partials out, and their combiners.

A sharded model (``worker.sharded_models``) is keyed by ``prediction_id`` on Kafka, so its predictions and labels
spread over every partition and a label lands on its prediction's partition. The pipeline then treats each
(model, partition) as its own key (``shard_key``): its own :class:`detectors.partials.ShardMonitor`, label join,
offsets, duplicate horizon and state record, placed on that partition. The shard monitors' partial windows wait
in their ``outbox`` (inside the state record) until :class:`ShardedMonitors.ack`, so a crash between the state and
the summaries topic sends them again with the same numbers and the combiner skips them.

:class:`Combiners` is the combiner side (no Faust): partial messages from the summaries topic in, alerts out, one
:class:`detectors.partials.Combiner` per model whose state (key ``COMBINER_PREFIX + model``) goes to the same state
store, with the summaries offsets it covers so that a redelivered partial is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson

from detectors.config import DetectionConfig
from detectors.monitor import ModelMonitor
from detectors.partials import PARTIAL_SCHEMA, Combiner, ShardMonitor
from stream.pipeline.monitors import MonitorRegistry
from stream.pipeline.parse_step import RawMessage

log = logging.getLogger("glassbox.shards")

COMBINER_PREFIX = "\x00combiner/"  # state keys of combiners (never a model name: names are printable)


def shard_key(model: str, partition: int) -> str:
    """The pipeline key of one shard of a sharded model."""
    return f"{model}#{partition}"


class ShardedMonitors(MonitorRegistry):
    """A :class:`MonitorRegistry` where the models in ``sharded`` get one :class:`ShardMonitor` per partition."""

    def __init__(self, references: dict[str, str], config: DetectionConfig, reference_loader: Callable[[str], Any],
                 max_discovered: int = 1000, *, sharded: Sequence[str] = ()):
        super().__init__(references, config, reference_loader, max_discovered=max_discovered)
        self.sharded = frozenset(sharded)
        self._shards: dict[str, tuple[str, int]] = {}  # shard key -> (model, partition)

    def key(self, model: str, partition: int) -> str:
        """The key a message of ``model`` on ``partition`` is processed under."""
        if model not in self.sharded:
            return model
        k = shard_key(model, partition)
        self._shards[k] = (model, partition)
        return k

    def get(self, model: str, model_version: str | None = None) -> Any | None:
        shard = self._shards.get(model)
        if shard is None:
            return super().get(model, model_version)
        mon = self._monitors.get(model)
        if mon is None and self.references.get(shard[0]) is not None:
            mon = self._add(model, ShardMonitor(self.reference(shard[0]).profile, self.config, model=shard[0],
                                                model_version=model_version, shard=shard[1]))
        return mon

    def restore(self, model: str, state: dict[str, Any], model_version: str | None = None) -> None:
        shard = self._shards.get(model)
        if shard is None:
            return super().restore(model, state, model_version)
        self._add(model, ShardMonitor.from_state(self.reference(shard[0]).profile, self.config, shard[0], model_version,
                                                 state))

    def outboxes(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """``(shard key, partials)`` of every shard with partials not acknowledged yet."""
        return [(k, m.take_outbox()) for k, m in self._monitors.items() if isinstance(m, ShardMonitor) and m.outbox]

    def ack(self, key: str, seq: int) -> None:
        mon = self._monitors.get(key)
        if isinstance(mon, ShardMonitor):
            mon.ack(seq)


def split_shards(monitors: MonitorRegistry, model: str, partitions: np.ndarray) -> list[tuple[str, np.ndarray | None]]:
    """``(key, mask of the messages under it)`` for a step's messages of ``model`` (one key, mask None, unless the
    model is sharded)."""
    if not isinstance(monitors, ShardedMonitors) or model not in monitors.sharded:
        return [(model, None)]
    return [(monitors.key(model, p), partitions == p) for p in np.unique(partitions).tolist()]


class Combiners:
    """The combiners of the sharded models whose summaries partitions this worker owns."""

    def __init__(self, monitors: MonitorRegistry, shards: int, allowed_lateness_s: float, state: Any = None):
        self.monitors = monitors
        self.shards = shards
        self.lateness = allowed_lateness_s
        self.state = state  # a StateStore (get/set/place), or None
        self.combiners: dict[str, Combiner] = {}
        self._offsets: dict[str, dict[str, int]] = {}  # model -> summaries partition -> last offset applied
        self._partition: dict[str, int] = {}  # model -> its summaries partition
        self.invalid = 0

    @property
    def closed(self) -> int:
        """Windows closed by every combiner here."""
        return sum(c.closed for c in self.combiners.values())

    def combiner(self, model: str) -> Combiner | None:
        """The combiner of ``model`` (restored from the state, if any), or None for an unknown model."""
        comb = self.combiners.get(model)
        if comb is not None:
            return comb
        ref = self.monitors.reference(model)
        if ref is None:
            return None
        mon = ModelMonitor(ref.profile, self.monitors.config, model=model)
        raw = self.state.get(COMBINER_PREFIX + model) if self.state is not None else None
        comb = None
        if raw is not None:
            try:
                rec = orjson.loads(raw)
                comb = Combiner.from_state(ModelMonitor.from_state(ref.profile, self.monitors.config, model, None,
                                                                   rec["combiner"]["monitor"]),
                                           self.shards, self.lateness, rec["combiner"])
                self._offsets[model] = {k: int(v) for k, v in rec["offsets"].items()}
            except Exception:  # another reference or version: start afresh, say so
                log.exception("could not restore the combiner of model %r; starting afresh", model)
                comb = None
        if comb is None:
            comb = Combiner(mon, self.shards, self.lateness)
        self.combiners[model] = comb
        return comb

    def step(self, messages: Sequence[RawMessage], now: float) -> list[dict[str, Any]]:
        """Apply partial messages (redelivered ones skipped); returns the alerts of the windows they closed."""
        alerts: list[dict[str, Any]] = []
        touched: dict[str, int] = {}
        for msg in messages:
            try:
                partial = orjson.loads(msg.value or b"")
                assert partial.get("schema") == PARTIAL_SCHEMA
                model = str(partial["model"])
            except Exception:  # noqa: BLE001 - not a partial: counted and logged, the topic is ours
                self.invalid += 1
                log.warning("summaries %s:%d@%d is not a partial window", msg.topic, msg.partition, msg.offset)
                continue
            comb = self.combiner(model)
            if comb is None:
                continue
            offs = self._offsets.setdefault(model, {})
            done = offs.get(str(msg.partition))
            if done is not None and msg.offset <= done:
                continue
            alerts.extend(comb.add(partial, now))
            offs[str(msg.partition)] = msg.offset
            touched[model] = msg.partition
        self._save(touched)
        return alerts

    def tick(self, now: float) -> list[dict[str, Any]]:
        """Close the windows whose allowed lateness passed."""
        alerts: list[dict[str, Any]] = []
        touched: dict[str, int] = {}
        for model, comb in self.combiners.items():
            before = comb.closed
            alerts.extend(comb.tick(now))
            if comb.closed != before:
                touched[model] = self._partition.get(model, -1)
        self._save(touched)
        return alerts

    def _save(self, touched: dict[str, int]) -> None:
        for model, partition in touched.items():
            comb = self.combiners[model]
            comb.drain_windows()  # the window records stay with the combiner's recent (key, events)
            self._partition[model] = partition
            if self.state is not None:
                key = COMBINER_PREFIX + model
                if partition >= 0 and hasattr(self.state, "place"):
                    self.state.place(key, partition)
                self.state.set(key, orjson.dumps({"combiner": comb.to_state(),
                                                  "offsets": self._offsets.get(model, {})}))

    def forget(self, partitions: set[int]) -> None:
        """Drop the combiners whose summaries partitions moved to another worker (their state is on the topic)."""
        for model in [m for m, p in self._partition.items() if p in partitions]:
            self.combiners.pop(model, None)
            self._offsets.pop(model, None)
            self._partition.pop(model, None)

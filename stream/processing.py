"""One step of the monitor, independent of how messages arrive: the live Faust agents and the Kafka replay
both hand lists of raw messages to :class:`Pipeline`, so they cannot diverge.

A step parses and validates every message once, dead-letters the bad ones with their reason and offsets,
groups the good events per model in partition order, feeds them to the model's monitor in one columnar
batch and returns the alerts to publish. Nothing in a message can raise out of a step.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson

from detectors.batch import EventBatch, as_column
from stream.events import InvalidEvent, PredictionChunk, deadletter_record, parse_label, parse_prediction
from stream.label_join import LabelJoin, outcome_batch
from stream.monitors import MonitorRegistry

log = logging.getLogger("glassbox.processing")


@dataclass(slots=True)
class RawMessage:
    """A Kafka record as the step sees it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: int | None = None  # broker/producer timestamp, ms
    key: bytes | None = None


@dataclass
class StepOutput:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    deadletters: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0  # valid events processed
    windows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (model, closed-window record)
    batches: list[tuple[str, EventBatch]] = field(default_factory=list)  # what each model was fed
    processed_ids: list[str] = field(default_factory=list)  # filled when auditing
    duplicate_offsets: list[int] = field(default_factory=list)  # messages of events dropped as duplicates


@dataclass
class Counters:
    """What the worker has seen, per model: exposed on /stats and to Prometheus."""

    messages: int = 0
    events: int = 0
    deadlettered: int = 0
    labels: int = 0
    alerts: int = 0
    redelivered: int = 0  # messages skipped: already counted before a restart
    duplicates: int = 0  # events skipped: their prediction_id was counted within the dedup horizon
    per_model: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    reasons: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "events": self.events, "deadlettered": self.deadlettered,
            "labels": self.labels, "alerts": self.alerts, "redelivered": self.redelivered,
            "duplicates": self.duplicates,
            "reasons": dict(self.reasons),
            "per_model": {m: dict(c) for m, c in self.per_model.items()},
        }


class RecentIds:
    """The last ``horizon`` prediction ids of a model: an id seen again within it (a producer retry, a
    replayed message) is a duplicate and is not counted twice.

    >>> r = RecentIds(3)
    >>> r.admit(["a", "b", "a"]).tolist(), r.admit(["b", "c", "d", "a"]).tolist()
    ([True, True, False], [False, True, True, False])
    """

    def __init__(self, horizon: int, ids: Sequence[str] = ()):
        self.horizon = horizon
        self._ids: OrderedDict[str, None] = OrderedDict.fromkeys(ids)

    def admit(self, ids: Sequence[str]) -> np.ndarray:
        seen = self._ids
        keep = np.ones(len(ids), dtype=bool)
        for i, pid in enumerate(ids):
            if pid in seen:
                keep[i] = False
            else:
                seen[pid] = None
        while len(seen) > self.horizon:
            seen.popitem(last=False)
        return keep

    def to_state(self) -> list[str]:
        return list(self._ids)


class StateStore(Protocol):
    """Where a model's detector state survives a restart (a changelogged Faust table in the worker)."""

    def get(self, model: str) -> bytes | None: ...

    def set(self, model: str, value: bytes) -> None: ...


class Pipeline:
    """Validation, label join and detection for every model of one worker.

    With a ``state`` store, each step saves the state of every model it touched together with the last
    input offsets it covers; after a restart the state is restored and messages at or below those offsets
    (redelivered because their commit was lost) are skipped, so nothing is counted twice.
    """

    def __init__(self, monitors: MonitorRegistry, *, label_ttl_ms: int, max_message_bytes: int,
                 audit: bool = False, state: StateStore | None = None, dedup_horizon: int = 2000):
        self.monitors = monitors
        self.label_ttl_ms = label_ttl_ms
        self.max_message_bytes = max_message_bytes
        self.audit = audit
        self.state = state
        self.joins: dict[str, LabelJoin] = {}
        self.counters = Counters()
        self._offsets: dict[str, dict[str, int]] = {}  # model -> "topic:partition" -> last offset done
        self.dedup_horizon = dedup_horizon
        self._recent: dict[str, RecentIds] = {}
        self._restored: set[str] = set()

    def _restore(self, model: str, model_version: str | None) -> None:
        """Load a model's saved state once, before its first message is processed."""
        if model in self._restored:
            return
        self._restored.add(model)
        raw = self.state.get(model) if self.state is not None else None
        if raw is None:
            return
        try:
            rec = orjson.loads(raw)
            if rec.get("monitor") is not None:
                self.monitors.restore(model, rec["monitor"], model_version)
            self._offsets[model] = {k: int(v) for k, v in rec.get("offsets", {}).items()}
            self._recent[model] = RecentIds(self.dedup_horizon, [str(i) for i in rec.get("recent_ids", [])])
        except Exception:  # a state from another reference or version: start afresh, say so
            log.exception("could not restore state of model %r; starting from an empty window", model)

    def _redelivered(self, model: str, msg: RawMessage) -> bool:
        done = self._offsets.get(model, {}).get(f"{msg.topic}:{msg.partition}")
        return done is not None and msg.offset <= done

    def forget(self, models: Sequence[str]) -> None:
        """Drop the in-memory state of models whose partitions moved to another worker."""
        for m in models:
            self._offsets.pop(m, None)
            self._recent.pop(m, None)
            self._restored.discard(m)
            self.joins.pop(m, None)
            self.monitors.forget(m)

    def _advance(self, model: str, msgs: Sequence[RawMessage]) -> None:
        if self.state is not None and msgs and hasattr(self.state, "place"):
            self.state.place(model, msgs[-1].partition)
        offs = self._offsets.setdefault(model, {})
        for m in msgs:
            k = f"{m.topic}:{m.partition}"
            if m.offset > offs.get(k, -1):
                offs[k] = m.offset

    def _save(self, model: str) -> None:
        if self.state is None:
            return
        mon = self.monitors.get(model)
        recent = self._recent.get(model)
        rec = {"monitor": mon.to_state() if mon is not None else None, "offsets": self._offsets.get(model, {}),
               "recent_ids": recent.to_state() if recent is not None else []}
        self.state.set(model, orjson.dumps(rec))

    def _join(self, model: str) -> LabelJoin:
        j = self.joins.get(model)
        if j is None:
            j = self.joins[model] = LabelJoin(self.label_ttl_ms)
        return j

    def _dead(self, out: StepOutput, msg: RawMessage, err: InvalidEvent | Exception) -> None:
        rec = deadletter_record(msg.value, topic=msg.topic, partition=msg.partition, offset=msg.offset, error=err)
        out.deadletters.append(rec)
        self.counters.deadlettered += 1
        self.counters.reasons[rec["reason"]] += 1

    def on_predictions(self, messages: Sequence[RawMessage]) -> StepOutput:
        """Validate, group per model (keeping partition order) and detect."""
        out = StepOutput()
        groups: dict[str, list[tuple[RawMessage, PredictionChunk]]] = {}
        self.counters.messages += len(messages)
        for msg in messages:
            try:
                chunk = parse_prediction(msg.value, self.max_message_bytes)
                if not self.monitors.accepts(chunk.model):
                    raise InvalidEvent("unknown_model", "model", f"model {chunk.model[:80]!r} is not monitored here")
            except InvalidEvent as err:
                self._dead(out, msg, err)
                continue
            self._restore(chunk.model, chunk.model_version)
            if self._redelivered(chunk.model, msg):
                self.counters.redelivered += 1
                continue
            groups.setdefault(chunk.model, []).append((msg, chunk))
        for model, items in groups.items():
            self._model_step(model, items, out)
            self._advance(model, [m for m, _ in items])
            self._save(model)
        return out

    def _model_step(self, model: str, items: list[tuple[RawMessage, PredictionChunk]], out: StepOutput) -> None:
        monitor = self.monitors.get(model, items[0][1].model_version)
        known = set(monitor.profile.features) if monitor is not None else None
        good: list[tuple[RawMessage, PredictionChunk]] = []
        for msg, chunk in items:
            if known is not None:
                unknown = chunk.feature_names() - known
                if unknown:
                    name = sorted(unknown)[0]
                    self._dead(out, msg, InvalidEvent("unknown_feature", f"features.{name[:64]}",
                                                      f"feature {name[:64]!r} is not in {model!r}'s reference"))
                    continue
            good.append((msg, chunk))
        if not good:
            return
        batch = _event_batch(good, known)
        recent = self._recent.get(model)
        if recent is None:
            recent = self._recent[model] = RecentIds(self.dedup_horizon)
        keep = recent.admit(batch.ids.tolist())
        if not keep.all():
            dups = int((~keep).sum())
            out.duplicate_offsets.extend(batch.offsets[~keep].tolist())
            self.counters.duplicates += dups
            self.counters.per_model[model]["duplicates"] += dups
            batch = batch.take(keep)
        n = len(batch)
        if n == 0:
            return
        try:
            if monitor is not None:
                out.alerts.extend(monitor.observe(batch))
                out.windows.extend((model, w) for w in monitor.drain_windows())
                out.batches.append((model, batch))
            for o in self._join(model).add_predictions(
                batch.ids, batch.timestamps, batch.prediction.tolist(),
                batch.scores, batch.partitions, batch.offsets,
            ):
                self._outcomes(model, [o], out)
        except Exception as err:  # a defect in detection must not stop consumption: dead-letter and go on
            log.exception("detection failed for model %r", model)
            for msg, _ in good:
                self._dead(out, msg, err)
            return
        out.events += n
        self.counters.events += n
        self.counters.per_model[model]["events"] += n
        if self.audit:
            out.processed_ids.extend(batch.ids.tolist())

    def on_labels(self, messages: Sequence[RawMessage]) -> StepOutput:
        """Validate labels, join them to their predictions and feed the outcomes to the monitors."""
        out = StepOutput()
        per_model: dict[str, list[Any]] = {}
        for msg in messages:
            try:
                lab = parse_label(msg.value, self.max_message_bytes)
                if not self.monitors.accepts(lab.model):
                    raise InvalidEvent("unknown_model", "model", f"model {lab.model[:80]!r} is not monitored here")
            except InvalidEvent as err:
                self._dead(out, msg, err)
                continue
            self._restore(lab.model, None)
            if self._redelivered(lab.model, msg):
                self.counters.redelivered += 1
                continue
            self.counters.labels += 1
            per_model.setdefault(lab.model, []).extend(
                self._join(lab.model).add_label(lab.prediction_id, lab.label, lab.timestamp, msg.partition,
                                                msg.offset)
            )
            self._advance(lab.model, [msg])
        for model, outcomes in per_model.items():
            if outcomes:
                self._outcomes(model, outcomes, out)
            self._save(model)
        return out

    def _outcomes(self, model: str, outcomes: list[Any], out: StepOutput) -> None:
        monitor = self.monitors.get(model)
        self.counters.per_model[model]["outcomes"] += len(outcomes)
        if monitor is None:
            return
        try:
            out.alerts.extend(monitor.observe_outcomes(outcome_batch(outcomes)))
            out.windows.extend((model, w) for w in monitor.drain_windows())
        except Exception:
            log.exception("outcome detection failed for model %r", model)


def _event_batch(items: list[tuple[RawMessage, PredictionChunk]], known: set[str] | None) -> EventBatch:
    """Concatenate chunks into one columnar batch; features missing from an event are missing values."""
    names = sorted(known) if known is not None else sorted({k for _, c in items for k in c.feature_names()})
    ids: list[str] = []
    ts: list[int] = []
    parts: list[int] = []
    offs: list[int] = []
    for msg, ch in items:
        n = len(ch.ids)
        ids.extend(ch.ids)
        ts.extend(ch.timestamps)
        parts.extend([msg.partition] * n)
        offs.extend([msg.offset] * n)
    chunks = [ch for _, ch in items]
    classes = list(chunks[0].scores) if chunks[0].scores else []
    if all(ch.row is not None for ch in chunks):  # single-event messages: one pass per column
        features = {k: as_column([ch.row.get(k) for ch in chunks]) for k in names}  # type: ignore[union-attr]
    else:
        sizes = [len(ch) for ch in chunks]
        features = {k: _concat([_part(ch, k) for ch in chunks], sizes) for k in names}
    return EventBatch(
        ids=np.array(ids, dtype=object),
        timestamps=np.array(ts, np.int64),
        features=features,
        prediction=_concat([ch.prediction for ch in chunks], [len(ch) for ch in chunks]),
        scores={c: np.array([x for ch in chunks for x in ((ch.scores or {}).get(c) or [np.nan] * len(ch))],
                            np.float64) for c in classes} or None,
        partitions=np.array(parts, np.int64),
        offsets=np.array(offs, np.int64),
    )


def _part(chunk: PredictionChunk, name: str) -> Any:
    """A chunk's values of one feature: a typed array (batch), a one-item list (single event) or None."""
    if chunk.row is not None:
        return [chunk.row[name]] if name in chunk.row else None
    return chunk.features.get(name)


def _concat(parts: list[Any], sizes: list[int]) -> np.ndarray:
    """One column from per-message parts (typed arrays from batches, lists from single events, None = absent)."""
    if all(isinstance(p, np.ndarray) and p.dtype.kind == "f" for p in parts):
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
    values: list[Any] = []
    for p, n in zip(parts, sizes, strict=True):
        if p is None:
            values.extend([None] * n)
        elif isinstance(p, np.ndarray) and p.dtype.kind == "f":
            values.extend(None if v != v else v for v in p.tolist())
        else:
            values.extend(p.tolist() if isinstance(p, np.ndarray) else p)
    return as_column(values)

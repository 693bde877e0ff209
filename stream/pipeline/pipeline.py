"""One step of the monitor, independent of how messages arrive: the live Faust agents and the Kafka replay
both hand lists of raw messages to :class:`Pipeline`, so they cannot diverge.

A step parses and validates every message once, dead-letters the bad ones with their reason and offsets,
groups the good events per model in partition order, feeds them to the model's monitor in one columnar
batch and returns the alerts to publish. Nothing in a message can raise out of a step.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

import numpy as np
import orjson

from detectors.batch import EventBatch
from stream.events import InvalidEvent, deadletter_record
from stream.pipeline.label_join import LabelJoin, fitted, label_record, outcome_batch, prediction_record, replay
from stream.pipeline.monitors import MonitorRegistry
from stream.pipeline.parse_events import parse_labels
from stream.pipeline.parse_step import ModelPart, ParsedStep, RawMessage, parse_step
from stream.pipeline.shards import ShardedMonitors, split_shards

log = logging.getLogger("glassbox.processing")


@dataclass
class StepOutput:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    deadletters: list[dict[str, Any]] = field(default_factory=list)
    events: int = 0  # valid events processed
    windows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (model, closed-window record)
    batches: list[tuple[str, EventBatch]] = field(default_factory=list)  # what each model was fed
    processed_ids: list[str] = field(default_factory=list)  # filled when auditing
    duplicate_offsets: list[int] = field(default_factory=list)  # messages of events dropped as duplicates
    label_messages: list[tuple[str, int, int]] = field(default_factory=list)  # (topic, partition, offset) joined


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
        self._ids: dict[str, None] = dict.fromkeys(ids)  # insertion-ordered: oldest first

    def admit(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Which of ``ids`` are new (True) and not repeats of recent or earlier ones in ``ids``."""
        ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
        seen, h = self._ids, self.horizon
        keep = np.ones(len(ids), dtype=bool)
        if len(set(ids)) == len(ids) and seen.keys().isdisjoint(ids):  # the common case, at C speed
            if len(ids) >= h:  # the last ``h`` of them are all that is kept
                self._ids = dict.fromkeys(ids[len(ids) - h:])
                return keep
            seen.update(dict.fromkeys(ids))
        else:
            for i, pid in enumerate(ids):
                if pid in seen:
                    keep[i] = False
                else:
                    seen[pid] = None
        extra = len(seen) - h
        if extra > len(seen) // 2:  # most of them go: keep the rest in a new dict
            self._ids = dict.fromkeys(islice(seen, extra, None))
        elif extra > 0:
            for pid in list(islice(seen, extra)):
                del seen[pid]
        return keep

    def to_state(self) -> list[str]:
        return list(self._ids)


class StateStore(Protocol):
    """Where a model's detector state survives a restart (the state topic in the worker). A store whose
    ``journals`` is true also keeps the label join's calls (``journal``), replayed at restore (``journal_of``)."""

    def get(self, model: str) -> bytes | None: ...

    def set(self, model: str, value: bytes) -> None: ...


class Pipeline:
    """Validation, label join and detection for every model of one worker.

    With a ``state`` store, :meth:`save` hands the state of every model touched since its last call to the store,
    together with the last input offsets it covers (the worker calls it every ``worker.state_interval_s`` and
    acknowledges its input only once that state is published); after a restart the state is restored and messages
    at or below those offsets (redelivered because they were not acknowledged) are skipped, so nothing is counted
    twice and nothing after the state is lost. ``links`` adds
    each alert's links (runbook, dashboard) as it is raised, so that live and replayed alerts hold the same bytes.
    """

    def __init__(self, monitors: MonitorRegistry, *, label_ttl_ms: int, max_message_bytes: int,
                 audit: bool = False, state: StateStore | None = None, dedup_horizon: int = 2000,
                 links: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
        self.monitors = monitors
        self.links = links
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
        self._unsaved: set[str] = set()  # models whose state changed since the last save
        self._journals = bool(getattr(state, "journals", False))  # the store keeps the label join's calls
        self._journal_bytes = max_message_bytes // 2  # a journal record fits in a Kafka message, with room to spare

    def _linked(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return alerts if self.links is None else [self.links(a) for a in alerts]

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
            journal = self.state.journal_of(model) if self._journals else []  # type: ignore[union-attr]
            if journal:  # pending predictions (and early labels) of the previous owner
                self.joins[model] = replay(LabelJoin(self.label_ttl_ms), journal, self._offsets[model])
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
            self._unsaved.discard(m)
            self.joins.pop(m, None)
            self.monitors.forget(m)

    def _save(self, model: str) -> None:
        """Note that ``model``'s state changed: the next :meth:`save` writes it."""
        if self.state is not None:
            self._unsaved.add(model)

    def save(self) -> int:
        """Write the state of every model changed since the last call to the store; returns how many. Everything
        the steps so far did is in it (with the offsets it covers), so the input they read may be acknowledged
        once the store has published it."""
        if self.state is None:
            return 0
        for model in self._unsaved:
            mon = self.monitors.get(model)
            recent = self._recent.get(model)
            rec = {"monitor": mon.to_state() if mon is not None else None, "offsets": self._offsets.get(model, {}),
                   "recent_ids": recent.to_state() if recent is not None else []}
            self.state.set(model, orjson.dumps(rec))
        n, self._unsaved = len(self._unsaved), set()
        return n

    def _join(self, model: str) -> LabelJoin:
        j = self.joins.get(model)
        if j is None:
            j = self.joins[model] = LabelJoin(self.label_ttl_ms)
        return j

    def _dead(self, out: StepOutput, msg: RawMessage, err: InvalidEvent | Exception) -> None:
        self._dead_record(out, deadletter_record(msg.value, topic=msg.topic, partition=msg.partition,
                                                 offset=msg.offset, error=err, max_bytes=self.max_message_bytes))

    def _dead_record(self, out: StepOutput, rec: dict[str, Any]) -> None:
        out.deadletters.append(rec)
        self.counters.deadlettered += 1
        self.counters.reasons[rec["reason"]] += 1

    def on_predictions(self, messages: Sequence[RawMessage]) -> StepOutput:
        """Validate, group per model (keeping partition order) and detect."""
        return self.on_parsed(parse_step(messages, self.max_message_bytes))

    def on_parsed(self, step: ParsedStep) -> StepOutput:
        """The rest of :meth:`on_predictions` once the messages are parsed (wherever that happened)."""
        out = StepOutput()
        self.counters.messages += step.messages
        for rec in step.deadletters:
            self._dead_record(out, rec)
        for model, part in step.parts.items():
            if not self.monitors.accepts(model):
                err = InvalidEvent("unknown_model", "model", f"model {model[:80]!r} is not monitored here")
                for i in range(len(part)):
                    self._dead(out, part.message(i), err)
                continue
            for key, only in split_shards(self.monitors, model, part.partitions):  # sharded: a key per partition
                self._restore(key, part.version)
                keep = self._not_redelivered(key, part)
                keep = only if keep is None else keep if only is None else keep & only
                if keep is not None and not keep.any():
                    continue
                self._model_step(key, part, keep, out)
                self._advance_part(key, part, keep)
                self._save(key)
        return out

    def _not_redelivered(self, model: str, part: ModelPart) -> np.ndarray | None:
        """Which messages are new (None: all); redelivered ones are counted and skipped."""
        done = self._offsets.get(model)
        if not done:
            return None
        keep = np.ones(len(part), bool)
        topics = set(part.topics)
        for topic in topics:
            on_topic = np.array([t == topic for t in part.topics]) if len(topics) > 1 else True
            for p in np.unique(part.partitions).tolist():
                last = done.get(f"{topic}:{p}")
                if last is not None:
                    keep &= ~(on_topic & (part.partitions == p) & (part.offsets <= last))
        skipped = int((~keep).sum())
        if not skipped:
            return None
        self.counters.redelivered += skipped
        return keep

    def _advance(self, model: str, topic: str, partition: int, offset: int) -> None:
        """Record that ``model``'s input is done up to ``offset`` on ``topic:partition``."""
        offs = self._offsets.setdefault(model, {})
        k = f"{topic}:{partition}"
        if offset > offs.get(k, -1):
            offs[k] = offset

    def _place(self, model: str, partition: int) -> None:
        """The model's state lives with the partition of its latest message."""
        if self.state is not None and hasattr(self.state, "place"):
            self.state.place(model, partition)

    def _advance_part(self, model: str, part: ModelPart, keep: np.ndarray | None) -> None:
        idx = np.arange(len(part)) if keep is None else np.flatnonzero(keep)
        topics = set(part.topics)
        for t in topics:
            sel = idx if len(topics) == 1 else idx[[part.topics[i] == t for i in idx.tolist()]]
            ps, offsets = part.partitions[sel], part.offsets[sel]
            for p in np.unique(ps).tolist():
                self._advance(model, t, p, int(offsets[ps == p].max()))
        if len(idx):
            self._place(model, int(part.partitions[idx[-1]]))

    def _model_step(self, model: str, part: ModelPart, keep: np.ndarray | None, out: StepOutput) -> None:
        monitor = self.monitors.get(model, part.version)
        known = set(monitor.profile.features) if monitor is not None else None
        if known is not None:
            bad = [(i, name) for i, name in part.unknown_features(known) if keep is None or keep[i]]
            if bad:
                keep = np.ones(len(part), bool) if keep is None else keep.copy()  # the caller's mask stays
                for i, name in bad:
                    keep[i] = False
                    self._dead(out, part.message(i), InvalidEvent(
                        "unknown_feature", f"features.{name[:64]}",
                        f"feature {name[:64]!r} is not in {model!r}'s reference"))
                if not keep.any():
                    return
        batch = part.batch(keep, known)
        recent = self._recent.get(model)
        if recent is None:
            recent = self._recent[model] = RecentIds(self.dedup_horizon)
        fresh = recent.admit(batch.ids)
        if not fresh.all():
            dups = int((~fresh).sum())
            out.duplicate_offsets.extend(batch.offsets[~fresh].tolist())
            self.counters.duplicates += dups
            self.counters.per_model[model]["duplicates"] += dups
            batch = batch.take(fresh)
        n = len(batch)
        if n == 0:
            return
        try:
            if monitor is not None:
                out.alerts.extend(self._linked(monitor.observe(batch)))
                out.windows.extend((model, w) for w in monitor.drain_windows())
                out.batches.append((model, batch))
            outcomes = self._join(model).add_predictions(
                batch.ids, batch.timestamps, batch.prediction, batch.scores, batch.partitions, batch.offsets)
            if self._journals:
                b = batch
                for rec in fitted(lambda lo, hi: prediction_record(
                        part.topics[0], b.ids[lo:hi], b.timestamps[lo:hi], b.prediction[lo:hi],
                        {c: v[lo:hi] for c, v in b.scores.items()} if b.scores else None, b.partitions[lo:hi],
                        b.offsets[lo:hi]), b.partitions.tolist(), b.offsets.tolist(), self._journal_bytes):
                    self.state.journal(model, rec)  # type: ignore[union-attr]
            if outcomes:
                self._outcomes(model, outcomes, out)
        except Exception as err:  # a defect in detection must not stop consumption: dead-letter and go on
            log.exception("detection failed for model %r", model)
            for i in (range(len(part)) if keep is None else np.flatnonzero(keep).tolist()):
                self._dead(out, part.message(i), err)
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
        calls: dict[str, list[tuple[str, Any, int, int, int]]] = defaultdict(list)  # journalled add_label calls
        for msg in messages:
            try:
                labs = parse_labels(msg.value, self.max_message_bytes)  # one label, or a label batch
                model = labs[0].model
                if not self.monitors.accepts(model):
                    raise InvalidEvent("unknown_model", "model", f"model {model[:80]!r} is not monitored here")
            except InvalidEvent as err:
                self._dead(out, msg, err)
                continue
            if isinstance(self.monitors, ShardedMonitors):  # a sharded model's labels join per partition
                model = self.monitors.key(model, msg.partition)
            self._restore(model, None)
            if self._redelivered(model, msg):
                self.counters.redelivered += 1
                continue
            self.counters.labels += len(labs)
            out.label_messages.append((msg.topic, msg.partition, msg.offset))
            join, outcomes = self._join(model), per_model.setdefault(model, [])
            for lab in labs:
                outcomes.extend(join.add_label(lab.prediction_id, lab.label, lab.timestamp, msg.partition, msg.offset))
                if self._journals:
                    calls[model].append((lab.prediction_id, lab.label, lab.timestamp, msg.partition, msg.offset))
            self._advance(model, msg.topic, msg.partition, msg.offset)
            self._place(model, msg.partition)
        for model, outcomes in per_model.items():
            if c := calls.get(model):
                for rec in fitted(lambda lo, hi, c=c: label_record(messages[0].topic, c[lo:hi]),
                                  [x[3] for x in c], [x[4] for x in c], self._journal_bytes):
                    self.state.journal(model, rec)  # type: ignore[union-attr]
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
            out.alerts.extend(self._linked(monitor.observe_outcomes(outcome_batch(outcomes))))
            out.windows.extend((model, w) for w in monitor.drain_windows())
        except Exception:
            log.exception("outcome detection failed for model %r", model)


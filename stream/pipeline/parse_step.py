"""A step's prediction messages, parsed: per model, the valid messages and their events as columns; the
messages that break the contract as dead letters.

Parsing needs nothing but the messages (no model, no state), so it is the part of a step that can run
anywhere: the live worker parses in its agent, the Kafka replay in its reader process while the previous
step is being detected. Single-event messages are validated together, column by column
(:func:`stream.pipeline.parse_events.parse_single_events`); a step with any doubtful message falls back to parsing
message by message, which names the offending message and field.

>>> import orjson
>>> ev = {"schema": "glassbox.prediction/v1", "prediction_id": "a", "model": "m",
...       "timestamp": 1700000000000, "features": {"x": 1.5}, "prediction": 1}
>>> step = parse_step([RawMessage("t", 0, 7, orjson.dumps(ev)), RawMessage("t", 0, 8, b"{")], 1 << 20)
>>> step.parts["m"].ids, [d["reason"] for d in step.deadletters]
(['a'], ['bad_json'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.batch import EventBatch, as_column
from stream.events import PREDICTION_SCHEMA, InvalidEvent, deadletter_record
from stream.pipeline.parse_events import (
    PredictionChunk,
    SingleEventBlock,
    decode,
    parse_prediction_doc,
    parse_single_events,
)


@dataclass(slots=True)
class RawMessage:
    """A Kafka record as the step sees it."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: int | None = None  # broker/producer timestamp, ms
    key: bytes | None = None


@dataclass(slots=True)
class ModelPart:
    """The valid messages of one model in a step (in step order) and their events as columns."""

    model: str
    version: str | None  # of its first message
    topics: list[str]  # per message
    partitions: np.ndarray  # per message, int64
    offsets: np.ndarray  # per message, int64
    values: list[bytes | None] | None  # per message, for dead letters (None: not kept, see ``without_raw``)
    names: list[frozenset[str]] | None  # feature names per message; None: each sent every name in ``features``
    event_msg: np.ndarray  # per event: index of its message
    ids: list[str]
    timestamps: np.ndarray
    features: dict[str, np.ndarray]
    prediction: np.ndarray
    scores: dict[str, np.ndarray] | None

    def __len__(self) -> int:
        return len(self.topics)

    def message(self, i: int) -> RawMessage:
        value = self.values[i] if self.values is not None else None
        return RawMessage(self.topics[i], int(self.partitions[i]), int(self.offsets[i]), value)

    def unknown_features(self, known: set[str]) -> list[tuple[int, str]]:
        """``(message index, first unknown name)`` of the messages that sent a feature outside ``known``."""
        if self.names is None:
            extra = set(self.features) - known
            return [(i, min(extra)) for i in range(len(self))] if extra else []
        return [(i, min(names - known)) for i, names in enumerate(self.names) if not names <= known]

    def batch(self, keep: np.ndarray | None, known: set[str] | None) -> EventBatch:
        """The events of the kept messages (all when ``keep`` is None). With ``known`` (the reference's
        features) the batch has exactly those columns, absent ones missing."""
        n = len(self.ids)
        names = sorted(known) if known is not None else sorted(self.features)
        feats = {k: self.features[k] if k in self.features else np.full(n, np.nan) for k in names}
        batch = EventBatch(
            ids=np.array(self.ids, dtype=object), timestamps=self.timestamps, features=feats,
            prediction=self.prediction, scores=self.scores, partitions=self.partitions[self.event_msg],
            offsets=self.offsets[self.event_msg],
        )
        if keep is None or keep.all():
            return batch
        batch = batch.take(keep[self.event_msg])
        # a dropped message may have been the only one making a column strings: type what is left
        batch.features = {k: as_column(v) if v.dtype == object else v for k, v in batch.features.items()}
        if batch.prediction.dtype == object:
            batch.prediction = as_column(batch.prediction)
        return batch


@dataclass(slots=True)
class ParsedStep:
    """What :func:`parse_step` found in a step's messages."""

    messages: int
    deadletters: list[dict[str, Any]] = field(default_factory=list)
    parts: dict[str, ModelPart] = field(default_factory=dict)  # in order of each model's first message

    def without_raw(self) -> ParsedStep:
        """The step without the raw bytes of its valid messages (cheap to hand to another process; a
        message dead-lettered later, for an unknown model or feature, then has an empty ``raw``)."""
        for part in self.parts.values():
            part.values = None
        return self


def parse_step(messages: Sequence[RawMessage], max_bytes: int) -> ParsedStep:
    """Decode and validate a step of prediction messages; never raises on what a message holds."""
    step = ParsedStep(messages=len(messages))
    docs: list[dict[str, Any]] = []
    good: list[RawMessage] = []
    for m in messages:
        try:
            docs.append(decode(m.value, max_bytes))
        except InvalidEvent as err:
            step.deadletters.append(_dead(m, err, max_bytes))
            continue
        good.append(m)
    if not docs:
        return step
    block = parse_single_events(docs) if all(d.get("schema") == PREDICTION_SCHEMA for d in docs) else None
    if block is not None:
        for model, idx in _by_model(block.models).items():
            step.parts[model] = _part_of_block(model, block, good if idx is None else [good[i] for i in idx], idx)
        return step
    chunks: dict[str, tuple[list[RawMessage], list[PredictionChunk]]] = {}
    for m, doc in zip(good, docs, strict=True):
        try:
            chunk = parse_prediction_doc(doc)
        except InvalidEvent as err:
            step.deadletters.append(_dead(m, err, max_bytes))
            continue
        msgs, cs = chunks.setdefault(chunk.model, ([], []))
        msgs.append(m)
        cs.append(chunk)
    for model, (msgs, cs) in chunks.items():
        step.parts[model] = _part_of_chunks(model, msgs, cs)
    return step


def _dead(m: RawMessage, err: InvalidEvent, max_bytes: int) -> dict[str, Any]:
    return deadletter_record(m.value, topic=m.topic, partition=m.partition, offset=m.offset, error=err,
                             max_bytes=max_bytes)


def _by_model(models: list[str]) -> dict[str, list[int] | None]:
    """Message indices per model, in order of first appearance (None: every message is that model's)."""
    if len(set(models)) == 1:
        return {models[0]: None}
    out: dict[str, list[int] | None] = {}
    for i, m in enumerate(models):
        out.setdefault(m, []).append(i)  # type: ignore[union-attr]
    return out


def _msg_columns(msgs: list[RawMessage]) -> tuple[list[str], np.ndarray, np.ndarray, list[bytes | None]]:
    return ([m.topic for m in msgs], np.array([m.partition for m in msgs], np.int64),
            np.array([m.offset for m in msgs], np.int64), [m.value for m in msgs])


def _part_of_block(model: str, b: SingleEventBlock, msgs: list[RawMessage], idx: list[int] | None) -> ModelPart:
    """One model's share of a block of single events (one event per message)."""
    topics, parts, offs, values = _msg_columns(msgs)
    if idx is None:
        ids, ts, version, names = b.ids, b.timestamps, b.versions[0], b.names
        feats, pred, scores = b.features, b.prediction, b.scores
    else:
        take = np.array(idx, np.int64)
        ids, ts, version = [b.ids[i] for i in idx], [b.timestamps[i] for i in idx], b.versions[idx[0]]
        names = None if b.names is None else [b.names[i] for i in idx]
        sent = set(b.features) if names is None else frozenset().union(*names)
        # typed as this model's events alone would be (another model's strings do not make a column objects)
        feats = {k: _retype(v[take]) for k, v in b.features.items() if k in sent}
        pred = _retype(b.prediction[take])
        scores = None if b.scores is None else {k: v[take] for k, v in b.scores.items()}
        if names is not None and all(n == sent for n in names):
            names = None
    return ModelPart(
        model=model, version=version, topics=topics, partitions=parts, offsets=offs, values=values, names=names,
        event_msg=np.arange(len(msgs), dtype=np.int64), ids=ids, timestamps=np.array(ts, np.int64),
        features=feats, prediction=pred, scores=scores,
    )


def _retype(col: np.ndarray) -> np.ndarray:
    return as_column(col) if col.dtype == object else col


def _part_of_chunks(model: str, msgs: list[RawMessage], chunks: list[PredictionChunk]) -> ModelPart:
    """One model's messages parsed one by one, concatenated into columns."""
    topics, parts, offs, values = _msg_columns(msgs)
    sizes = [len(c) for c in chunks]
    names_each = [frozenset(c.feature_names()) for c in chunks]
    union = frozenset().union(*names_each)
    ids: list[str] = []
    ts: list[int] = []
    for c in chunks:
        ids.extend(c.ids)
        ts.extend(c.timestamps)
    if all(c.row is not None for c in chunks):  # single events: one pass per column
        features = {k: as_column([c.row.get(k) for c in chunks]) for k in union}  # type: ignore[union-attr]
    else:
        features = {k: _concat([_values_of(c, k) for c in chunks], sizes) for k in union}
    classes = list(chunks[0].scores) if chunks[0].scores else []
    scores = {c: np.array([x for ch in chunks for x in ((ch.scores or {}).get(c) or [np.nan] * len(ch))],
                          np.float64) for c in classes} or None
    return ModelPart(
        model=model, version=chunks[0].model_version, topics=topics, partitions=parts, offsets=offs,
        values=values, names=None if all(n == union for n in names_each) else names_each,
        event_msg=np.repeat(np.arange(len(chunks), dtype=np.int64), sizes), ids=ids,
        timestamps=np.array(ts, np.int64), features=features,
        prediction=_concat([c.prediction for c in chunks], sizes), scores=scores,
    )


def _values_of(chunk: PredictionChunk, name: str) -> Any:
    """A chunk's values of one feature: a typed array (batch), a one-item list (single event) or None."""
    if chunk.row is not None:
        return [chunk.row[name]] if name in chunk.row else None
    return chunk.features.get(name)


def _concat(parts: list[Any], sizes: list[int]) -> np.ndarray:
    """One column from per-message parts (typed arrays from batches, lists from single events, None = absent)."""
    kinds = {p.dtype.kind if isinstance(p, np.ndarray) else None for p in parts}
    if kinds == {"f"} or kinds == {"O"}:  # all numbers, or all with strings: already typed alike
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

"""The producer SDK's per-model buffers: events in, columnar messages out (no Kafka, no threads), and its helpers.

A :class:`PredictionBuffer` holds one model's predictions that share a model version, tags and score classes;
its events' feature names are the first event's or a subset of them (an absent feature is sent as null, which
the contract reads as missing, as it reads an absent one). :meth:`~PredictionBuffer.messages` turns it into
one ``prediction-batch/v1`` message, or, when a column would make the worker dead-letter the whole batch,
into one ``prediction/v1`` message per event, so a bad event is dead-lettered alone with its reason and the
others are monitored. :class:`LabelBuffer` does the same for labels (``label-batch/v1``).

>>> b = PredictionBuffer("m", None, None, {"x": 1.0, "c": "a"}, None)
>>> b.add("p1", 1700000000000, {"x": 1.0, "c": "a"}, 0, None)
>>> b.fits("p2", {"x": 2.0}, None, None, None), b.fits("p1", {"x": 2.0}, None, None, None)
(True, False)
>>> b.add("p2", 1700000000001, {"x": 2.0}, 1, None)
>>> [(doc["schema"], doc["features"], ts) for doc, ts in b.messages()]
[('glassbox.prediction-batch/v1', {'x': [1.0, 2.0], 'c': ['a', None]}, 1700000000001)]
>>> b.add("p3", 1700000000002, {"x": [1]}, 1, None)  # not a scalar: each event goes alone
>>> [doc["schema"] for doc, _ in b.messages()]
['glassbox.prediction/v1', 'glassbox.prediction/v1', 'glassbox.prediction/v1']
"""

from __future__ import annotations

import time
from collections.abc import KeysView
from operator import itemgetter
from typing import Any

import orjson

from stream.events import (
    LABEL_BATCH_SCHEMA,
    MAX_ID_LEN,
    MAX_NAME_LEN,
    MAX_STRING_VALUE,
    MAX_TS_MS,
    MIN_TS_MS,
    PREDICTION_BATCH_SCHEMA,
    label_event,
    parse_timestamp,
    prediction_event,
)

_VALUES = frozenset({int, float, bool, str})
_SCALARS = _VALUES | {type(None)}
_PROBABILITIES = frozenset({int, float})
#: numpy scalar types sent as JSON numbers (``orjson.OPT_SERIALIZE_NUMPY``), named so numpy need not be imported
_NUMPY_NUMBERS = frozenset({"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32",
                            "uint16", "uint8", "bool", "bool_"})
Message = tuple[dict[str, Any], int]  # a message's value and its Kafka timestamp (the latest event time)
#: Bytes a buffered event is assumed to add beyond its features (ids, timestamp, prediction, JSON syntax).
EVENT_OVERHEAD = 80


def _now_ms() -> int:
    return int(time.time() * 1000)


def timestamp_ms(v: int | str | None) -> int:
    """Event time in epoch ms (now when None); raises :class:`~stream.events.InvalidEvent` when invalid."""
    if type(v) is int and MIN_TS_MS <= v < MAX_TS_MS:  # the common case, without parse_timestamp's checks
        return v
    return _now_ms() if v is None else parse_timestamp(v)


def dumps(doc: dict[str, Any]) -> bytes:
    """A message's bytes."""
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)  # numpy scalars are numbers


def event_size(features: dict[str, Any]) -> int:
    """The bytes an event like this one is assumed to take in a batch (the memory bound)."""
    try:
        return len(orjson.dumps(features, option=orjson.OPT_SERIALIZE_NUMPY, default=repr)) + EVENT_OVERHEAD
    except orjson.JSONEncodeError:  # reported when it is published
        return 1024


class PredictionBuffer:
    """One model's buffered predictions (see the module docstring)."""

    __slots__ = ("model", "version", "tags", "names", "score_names", "ids", "ts", "rows", "preds", "scores",
                 "sparse", "deadline", "est", "partition")

    def __init__(self, model: str, version: str | None, tags: dict[str, str] | None, first: dict[str, Any],
                 scores: dict[str, float] | None, deadline: float = 0.0):
        self.model, self.version, self.tags, self.deadline = model, version, tags, deadline
        self.names: KeysView[str] = first.keys()
        self.score_names = None if scores is None else scores.keys()
        self.ids: dict[str, None] = {}  # insertion-ordered: the ids and their membership test in one
        self.ts: list[int] = []
        self.rows: list[dict[str, Any]] = []
        self.preds: list[Any] = []
        self.scores: list[dict[str, float]] = []
        self.sparse = False
        self.est = 0  # the bytes an event is assumed to take (the producer's memory bound)
        self.partition: int | None = None  # a sharded model's buffer: the partition its events hash to

    def __len__(self) -> int:
        return len(self.ts)

    def fits(self, pid: str, features: dict[str, Any], version: str | None, tags: dict[str, str] | None,
             scores: dict[str, float] | None) -> bool:
        """Whether the event can join this batch (else the batch is published first, keeping the order)."""
        return (pid not in self.ids and version == self.version and tags == self.tags
                and features.keys() <= self.names
                and (scores is None if self.score_names is None else scores is not None
                     and scores.keys() == self.score_names))

    def add(self, pid: str, ts: int, features: dict[str, Any], prediction: Any, scores: dict[str, float] | None
            ) -> None:
        """Append an event that :meth:`fits` (the buffer keeps ``features`` and ``scores``: pass copies)."""
        self.ids[pid] = None
        self.ts.append(ts)
        self.rows.append(features)
        if len(features) != len(self.names):
            self.sparse = True
        self.preds.append(prediction)
        if scores is not None:
            self.scores.append(scores)

    def messages(self, singles: bool = False) -> list[Message]:
        """The buffer as one batch message, or one message per event if a column is not valid as a whole (or
        ``singles``)."""
        if len(self.ts) > 1 and not singles:
            doc = self._batch()
            if doc is not None:
                return [(doc, max(self.ts))]
        return [(prediction_event(prediction_id=pid, model=self.model, timestamp=ts, features=row, prediction=pred,
                                  scores=self.scores[i] if self.scores else None, model_version=self.version,
                                  tags=self.tags), ts)
                for i, (pid, ts, row, pred) in enumerate(zip(self.ids, self.ts, self.rows, self.preds, strict=True))]

    def _batch(self) -> dict[str, Any] | None:
        ids = list(self.ids)
        if not (_names_ok([self.model]) and _names_ok(ids, MAX_ID_LEN) and _names_ok(self.names)
                and _values_ok(self.preds, null=False)
                and (self.version is None or type(self.version) in (str, int))
                and (self.tags is None or all(type(k) is str and type(v) is str for k, v in self.tags.items()))):
            return None
        rows = self.rows
        if self.sparse:
            feats = {k: [r.get(k) for r in rows] for k in self.names}
        else:
            feats = {k: list(map(itemgetter(k), rows)) for k in self.names}
        if not all(_values_ok(col) for col in feats.values()):
            return None
        doc: dict[str, Any] = {"schema": PREDICTION_BATCH_SCHEMA, "model": self.model, "prediction_id": ids,
                               "timestamp": self.ts, "features": feats, "prediction": self.preds}
        if self.score_names is not None:
            scores = {k: list(map(itemgetter(k), self.scores)) for k in self.score_names}
            if not all(_probabilities_ok(col) for col in scores.values()):
                return None
            doc["scores"] = scores
        if self.version is not None:
            doc["model_version"] = self.version
        if self.tags:
            doc["tags"] = self.tags
        return doc


class LabelBuffer:
    """One model's buffered labels."""

    __slots__ = ("model", "ids", "ts", "labels", "deadline", "partition")

    def __init__(self, model: str, deadline: float = 0.0):
        self.model, self.deadline = model, deadline
        self.partition: int | None = None
        self.ids: dict[str, None] = {}
        self.ts: list[int] = []
        self.labels: list[Any] = []

    def __len__(self) -> int:
        return len(self.ts)

    def fits(self, pid: str) -> bool:
        return pid not in self.ids

    def add(self, pid: str, ts: int, label: Any) -> None:
        self.ids[pid] = None
        self.ts.append(ts)
        self.labels.append(label)

    def messages(self, singles: bool = False) -> list[Message]:
        """One ``label-batch/v1`` message, or one ``label/v1`` message per label if the batch is not valid (or
        ``singles``)."""
        ids = list(self.ids)
        if (len(ids) > 1 and not singles and _names_ok([self.model]) and _names_ok(ids, MAX_ID_LEN)
                and _values_ok(self.labels, null=False)):
            return [({"schema": LABEL_BATCH_SCHEMA, "model": self.model, "prediction_id": ids, "timestamp": self.ts,
                      "label": self.labels}, max(self.ts))]
        return [(label_event(prediction_id=pid, model=self.model, timestamp=ts, label=lab), ts)
                for pid, ts, lab in zip(ids, self.ts, self.labels, strict=True)]


def _names_ok(names: Any, limit: int = MAX_NAME_LEN) -> bool:
    """Non-empty strings of at most ``limit`` characters (model name, ids, feature names)."""
    names = list(names)
    return not names or set(map(type, names)) == {str} and min(map(len, names)) > 0 and max(map(len, names)) <= limit


def _values_ok(col: list[Any], *, null: bool = True) -> bool:
    """A column the worker accepts as a whole: numbers (numpy's too), bools, short strings (and nulls where
    allowed)."""
    types = set(map(type, col))
    if not types <= (_SCALARS if null else _VALUES) and not all(
            t.__module__ == "numpy" and t.__name__ in _NUMPY_NUMBERS for t in types - _SCALARS):
        return False
    if not null and not types <= {int, bool, str} and any(x != x for x in col):  # NaN is sent as null
        return False
    return str not in types or max(len(x) for x in set(col) if type(x) is str) <= MAX_STRING_VALUE


def _probabilities_ok(col: list[Any]) -> bool:
    return set(map(type, col)) <= _PROBABILITIES and all(0.0 <= x <= 1.0 for x in col)  # False for NaN

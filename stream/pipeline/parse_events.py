"""Parse and validate raw prediction, prediction-batch, label and label-batch messages against :mod:`stream.events`.

Parsing is strict and validated once per message (orjson rejects NaN and infinities outright); a batch
message is validated column by column, never event by event. Anything wrong raises
:class:`~stream.events.InvalidEvent` whose ``reason`` is a short code and whose message names the field,
ready for the dead-letter topic.

>>> p = parse_prediction(b'{"schema": "glassbox.prediction/v1", "prediction_id": "p1", "model": "m",'
...                      b' "timestamp": 1700000000000, "features": {"x": 1.5, "c": "a"}, "prediction": 1}')
>>> p.model, p.ids, p.timestamps, p.row["x"]
('m', ['p1'], [1700000000000], 1.5)
>>> try:
...     parse_prediction(b'{"schema": "glassbox.prediction/v1"}')
... except InvalidEvent as e:
...     print(e.reason, e.field)
missing_field prediction_id
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from stream.events import (
    LABEL_BATCH_SCHEMA,
    LABEL_SCHEMA,
    MAX_ID_LEN,
    MAX_NAME_LEN,
    MAX_STRING_VALUE,
    MAX_TS_MS,
    MIN_TS_MS,
    PREDICTION_BATCH_SCHEMA,
    PREDICTION_SCHEMA,
    InvalidEvent,
    parse_timestamp,
)

_PREDICTION_FIELDS = frozenset(
    {"schema", "prediction_id", "model", "model_version", "timestamp", "features", "prediction", "scores", "tags"}
)
_LABEL_FIELDS = frozenset({"schema", "prediction_id", "model", "timestamp", "label", "tags"})


@dataclass(slots=True)
class PredictionChunk:
    """The valid events of one message, columnar (one event for ``prediction/v1``)."""

    model: str
    model_version: str | None
    ids: list[str]
    timestamps: list[int]
    features: dict[str, np.ndarray]  # typed columns of a batch message (empty for a single event)
    prediction: list[Any] | np.ndarray
    scores: dict[str, list[float]] | None = None
    row: dict[str, Any] | None = None  # the features of a single-event message, as sent

    def feature_names(self) -> set[str]:
        return set(self.row) if self.row is not None else set(self.features)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(slots=True)
class LabelEvent:
    prediction_id: str
    model: str
    timestamp: int
    label: Any
    tags: dict[str, str] = field(default_factory=dict)


def _fail(reason: str, fld: str | None, detail: str) -> InvalidEvent:
    return InvalidEvent(reason, fld, detail)


def decode(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    """A message's JSON object; raises :class:`InvalidEvent` (empty, oversize, bad_json)."""
    if raw is None:
        raise _fail("empty", None, "message has no value")
    if len(raw) > max_bytes:
        raise _fail("oversize", None, f"message is {len(raw)} bytes, limit {max_bytes}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise _fail("bad_json", None, f"not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise _fail("bad_json", None, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _name(doc: dict[str, Any], key: str, *, required: bool = True, max_len: int = MAX_NAME_LEN) -> str | None:
    v = doc.get(key)
    if v is None:
        if required:
            raise _fail("missing_field", key, f"{key} is required")
        return None
    if not isinstance(v, str) or not v or len(v) > max_len:
        raise _fail("bad_type", key, f"{key} must be a non-empty string of at most {max_len} characters")
    return v


def _value(v: Any, fld: str) -> Any:
    """A feature value or prediction: number, bool, short string or null."""
    if v is None or isinstance(v, (int, float, bool)):
        return v
    if isinstance(v, str):
        if len(v) > MAX_STRING_VALUE:
            raise _fail("bad_value", fld, f"{fld} string longer than {MAX_STRING_VALUE} characters")
        return v
    raise _fail("bad_type", fld, f"{fld} must be a number, string, bool or null, got {type(v).__name__}")


def _required(doc: dict[str, Any], key: str) -> Any:
    if key not in doc:
        raise _fail("missing_field", key, f"{key} is required")
    return doc[key]


def _given_value(doc: dict[str, Any], key: str) -> Any:
    """A required value that must not be null (the prediction, the label)."""
    v = _value(_required(doc, key), key)
    if v is None:
        raise _fail("bad_value", key, f"{key} must not be null")
    return v


def _scores(v: Any, n: int | None) -> dict[str, list[float]] | None:
    if v is None:
        return None
    if not isinstance(v, dict) or not v:
        raise _fail("bad_type", "scores", "scores must be an object class -> probability")
    out: dict[str, list[float]] = {}
    for cls, p in v.items():
        vals = [p] if n is None else p
        if n is not None and (not isinstance(p, list) or len(p) != n):
            raise _fail("bad_length", f"scores.{cls}", f"scores.{cls} must be an array of {n} numbers")
        for x in vals:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x <= 1.0:
                raise _fail("bad_value", f"scores.{cls}", f"scores.{cls} must be probabilities in [0, 1]")
        out[str(cls)] = [float(x) for x in vals]
    return out


def _check_fields(doc: dict[str, Any], allowed: frozenset[str]) -> None:
    extra = doc.keys() - allowed
    if extra:
        name = sorted(extra)[0]
        raise _fail("unknown_field", name[:64], f"unknown field {name[:64]!r}")


def parse_prediction(raw: bytes, max_bytes: int = 8 * 1024 * 1024) -> PredictionChunk:
    """Parse a ``prediction/v1`` or ``prediction-batch/v1`` message into a columnar chunk."""
    return parse_prediction_doc(decode(raw, max_bytes))


def parse_prediction_doc(doc: dict[str, Any]) -> PredictionChunk:
    """:func:`parse_prediction` of an already decoded message."""
    schema = doc.get("schema")
    if schema == PREDICTION_SCHEMA:
        return _single(doc)
    if schema == PREDICTION_BATCH_SCHEMA:
        return _batch(doc)
    if schema is None:
        raise _fail("missing_field", "schema", "schema is required")
    raise _fail(
        "unknown_schema", "schema",
        f"schema {str(schema)[:60]!r} is not {PREDICTION_SCHEMA} or {PREDICTION_BATCH_SCHEMA}",
    )


def _single(doc: dict[str, Any]) -> PredictionChunk:
    _check_fields(doc, _PREDICTION_FIELDS)
    pid = _name(doc, "prediction_id", max_len=MAX_ID_LEN)
    model = _name(doc, "model")
    version = doc.get("model_version")
    if version is not None and not isinstance(version, (str, int)):
        raise _fail("bad_type", "model_version", "model_version must be a string")
    ts = parse_timestamp(_required(doc, "timestamp"))
    feats = doc.get("features")
    if not isinstance(feats, dict):
        raise _fail("missing_field" if feats is None else "bad_type", "features", "features must be an object")
    if feats and (max(map(len, feats)) > MAX_NAME_LEN or "" in feats):
        raise _fail("bad_value", "features", "feature names must be 1-256 characters")
    types = set(map(type, feats.values()))
    if not types <= _SCALARS or (str in types and max(
            (len(v) for v in feats.values() if type(v) is str), default=0) > MAX_STRING_VALUE):
        for k, v in feats.items():
            _value(v, f"features.{k}")  # raises naming the offending feature
    pred = _given_value(doc, "prediction")
    _tags(doc.get("tags"))
    return PredictionChunk(
        model=model, model_version=None if version is None else str(version), ids=[pid], timestamps=[ts],
        features={}, prediction=[pred], scores=_scores(doc.get("scores"), None), row=feats,
    )


@dataclass(slots=True)
class SingleEventBlock:
    """Many ``prediction/v1`` messages validated together, as columns (event ``i`` is message ``i``)."""

    models: list[str]
    versions: list[str | None]
    ids: list[str]
    timestamps: list[int]
    features: dict[str, np.ndarray]  # every feature name sent by any of the events; absent -> missing
    prediction: np.ndarray
    scores: dict[str, np.ndarray] | None
    names: list[frozenset[str]] | None = None  # per event; None when every event sent all of ``features``


def parse_single_events(docs: list[dict[str, Any]]) -> SingleEventBlock | None:
    """Validate decoded ``prediction/v1`` documents column by column, in a few C-level passes.

    Accepts exactly what :func:`parse_prediction` accepts one by one, or returns ``None`` when any document
    is not plainly valid (or uses a rarer form, such as RFC 3339 timestamps): the caller then parses them one
    by one, which names the offending message and field.

    >>> docs = [{"schema": PREDICTION_SCHEMA, "prediction_id": f"p{i}", "model": "m",
    ...          "timestamp": 1_700_000_000_000 + i, "features": {"x": i}, "prediction": 0} for i in range(3)]
    >>> b = parse_single_events(docs)
    >>> b.ids, b.features["x"].tolist(), b.names
    (['p0', 'p1', 'p2'], [0.0, 1.0, 2.0], None)
    >>> parse_single_events(docs + [{**docs[0], "timestamp": "soon"}]) is None
    True
    """
    if not docs or not set().union(*docs) <= _PREDICTION_FIELDS:
        return None
    get = dict.get
    ids = [get(d, "prediction_id") for d in docs]
    models = [get(d, "model") for d in docs]
    for col, limit in ((ids, MAX_ID_LEN), (models, MAX_NAME_LEN)):
        if set(map(type, col)) != {str} or not (min(map(len, col)) > 0 and max(map(len, col)) <= limit):
            return None
    versions = [get(d, "model_version") for d in docs]
    vtypes = set(map(type, versions))
    if not vtypes <= _VERSION_TYPES:
        return None
    if vtypes != {type(None)}:
        versions = [None if v is None else str(v) for v in versions]
    ts = [get(d, "timestamp") for d in docs]
    if set(map(type, ts)) != {int} or min(ts) < MIN_TS_MS or max(ts) >= MAX_TS_MS:
        return None
    feats = [get(d, "features") for d in docs]
    if set(map(type, feats)) != {dict}:
        return None
    names = set().union(*feats)
    if names and (max(map(len, names)) > MAX_NAME_LEN or "" in names):
        return None
    try:
        features = {k: _typed_column([get(f, k) for f in feats], k) for k in names}
        pred = [get(d, "prediction") for d in docs]
        if None in pred:
            return None
        prediction = _typed_column(pred, "prediction")
        scores = _score_columns([get(d, "scores") for d in docs])
        for d in docs:
            if "tags" in d:
                _tags(d["tags"])
    except InvalidEvent:
        return None
    uniform = set(map(len, feats)) == {len(names)}
    return SingleEventBlock(models=models, versions=versions, ids=ids, timestamps=ts, features=features,
                            prediction=prediction, scores=scores,
                            names=None if uniform else [frozenset(f) for f in feats])


_VERSION_TYPES = frozenset({str, int, bool, type(None)})


def _score_columns(docs: list[Any]) -> dict[str, np.ndarray] | None:
    """``scores`` of single events as columns; raises :class:`InvalidEvent` (-> one-by-one parsing) unless
    every event sends probabilities for the same classes, or none does."""
    if all(s is None for s in docs):
        return None
    first = docs[0]
    if type(first) is not dict or not first or any(type(s) is not dict or s.keys() != first.keys() for s in docs):
        raise _fail("bad_type", "scores", "scores differ between events")
    out: dict[str, np.ndarray] = {}
    for cls in first:
        col = [s[cls] for s in docs]
        if not set(map(type, col)) <= {int, float}:
            raise _fail("bad_value", f"scores.{cls}", "not a probability")
        arr = np.array(col, np.float64)
        if not ((arr >= 0.0) & (arr <= 1.0)).all():
            raise _fail("bad_value", f"scores.{cls}", "not a probability")
        out[str(cls)] = arr
    return out


def _column(v: Any, n: int, fld: str) -> list[Any]:
    if not isinstance(v, list) or len(v) != n:
        raise _fail("bad_length", fld, f"{fld} must be an array of {n} values (one per prediction_id)")
    return v


def _batch_ids(doc: dict[str, Any]) -> list[str]:
    """A batch's ``prediction_id`` column: non-empty, distinct, non-empty strings of bounded length."""
    ids = doc.get("prediction_id")
    if not isinstance(ids, list) or not ids:
        raise _fail("missing_field" if ids is None else "bad_type", "prediction_id",
                    "prediction_id must be a non-empty array of strings")
    try:
        "".join(ids)  # one C pass that refuses anything but strings
        distinct = set(ids)
    except TypeError:
        distinct = None
    if distinct is None or "" in distinct or max(map(len, ids)) > MAX_ID_LEN:
        raise _fail("bad_type", "prediction_id", "every prediction_id must be a non-empty string")
    if len(distinct) != len(ids):
        raise _fail("duplicate_id", "prediction_id", "prediction_id values repeat within the batch")
    return ids


def _batch(doc: dict[str, Any]) -> PredictionChunk:
    _check_fields(doc, _PREDICTION_FIELDS)
    ids = _batch_ids(doc)
    n = len(ids)
    model = _name(doc, "model")
    version = doc.get("model_version")
    if version is not None and not isinstance(version, (str, int)):
        raise _fail("bad_type", "model_version", "model_version must be a string")
    ts_col = _column(doc.get("timestamp"), n, "timestamp")
    if set(map(type, ts_col)) == {int}:
        lo, hi = min(ts_col), max(ts_col)
        if lo < MIN_TS_MS or hi >= MAX_TS_MS:
            raise _fail("bad_timestamp", "timestamp", "timestamp outside 1990..2200 (milliseconds expected)")
        timestamps = ts_col
    else:
        timestamps = [parse_timestamp(t) for t in ts_col]
    feats = doc.get("features")
    if not isinstance(feats, dict):
        raise _fail("missing_field" if feats is None else "bad_type", "features", "features must be an object")
    features: dict[str, np.ndarray] = {}
    for k, col in feats.items():
        if len(k) > MAX_NAME_LEN or not k:
            raise _fail("bad_value", "features", "feature names must be 1-256 characters")
        fld = f"features.{k}"
        features[k] = _typed_column(_column(col, n, fld), fld)
    pred = _typed_column(_column(doc.get("prediction"), n, "prediction"), "prediction")
    if pred.dtype.kind == "f" and np.isnan(pred).any() or pred.dtype.kind == "O" and None in pred.tolist():
        raise _fail("bad_value", "prediction", "prediction must not be null")
    _tags(doc.get("tags"))
    return PredictionChunk(
        model=model, model_version=None if version is None else str(version), ids=ids,
        timestamps=timestamps, features=features, prediction=pred, scores=_scores(doc.get("scores"), n),
    )


_NUMBERS = frozenset({int, float, bool, type(None)})
_STRINGS = frozenset({str, type(None)})
_SCALARS = _NUMBERS | _STRINGS


def _typed_column(col: list[Any], fld: str) -> np.ndarray:
    """Validate a batch column with one C-level pass over its types and return it as numpy:
    float64 (None -> NaN) when numeric, else object (None stays None).

    A column of numbers alone (the common case) is checked and converted in the same pass: ``array('d')``
    takes ints, floats and bools as ``np.array(col, np.float64)`` does and refuses anything else.

    >>> _typed_column([1, 2.5, True], "x").tolist(), _typed_column([1, None], "x").tolist()
    ([1.0, 2.5, 1.0], [1.0, nan])
    >>> _typed_column(["a", None], "x").tolist(), _typed_column(["1.5"], "x").dtype.kind
    (['a', None], 'O')
    """
    try:
        return np.frombuffer(array("d", col), np.float64)
    except TypeError:  # a null, a string or a wrong type: typed (or refused) below
        pass
    distinct: Any = None
    if type(col[0]) is str:  # categories repeat: their types and lengths are checked once
        try:
            distinct = set(col)
        except TypeError:  # an array or object among them: refused below
            distinct = None
    types = set(map(type, col if distinct is None else distinct))  # (equal values of two types are numbers)
    if types <= _NUMBERS:
        return np.array(col, dtype=np.float64)
    if not types <= _SCALARS:
        for x in col:
            _value(x, fld)  # raises with the offending type
    distinct = set(col) if distinct is None else distinct
    if max((len(x) for x in distinct if type(x) is str), default=0) > MAX_STRING_VALUE:
        raise _fail("bad_value", fld, f"{fld} string longer than {MAX_STRING_VALUE} characters")
    return np.array(col, dtype=object)


def _tags(v: Any) -> None:
    if v is None:
        return
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise _fail("bad_type", "tags", "tags must be an object of strings")


def parse_label(raw: bytes, max_bytes: int = 1024 * 1024) -> LabelEvent:
    """Parse a ``label/v1`` message."""
    doc = decode(raw, max_bytes)
    schema = doc.get("schema")
    if schema != LABEL_SCHEMA:
        if schema is None:
            raise _fail("missing_field", "schema", "schema is required")
        raise _fail("unknown_schema", "schema", f"schema {str(schema)[:60]!r} is not {LABEL_SCHEMA}")
    return _label(doc)


def parse_labels(raw: bytes, max_bytes: int = 8 * 1024 * 1024) -> list[LabelEvent]:
    """Parse a ``label/v1`` or ``label-batch/v1`` message into its labels (one model's, in message order).

    >>> labs = parse_labels(b'{"schema": "glassbox.label-batch/v1", "model": "m", "prediction_id": ["a", "b"],'
    ...                     b' "timestamp": [1700000000000, 1700000000001], "label": [1, "no"]}')
    >>> [(lab.prediction_id, lab.label) for lab in labs]
    [('a', 1), ('b', 'no')]
    """
    doc = decode(raw, max_bytes)
    schema = doc.get("schema")
    if schema == LABEL_SCHEMA:
        return [_label(doc)]
    if schema == LABEL_BATCH_SCHEMA:
        return _label_batch(doc)
    if schema is None:
        raise _fail("missing_field", "schema", "schema is required")
    raise _fail("unknown_schema", "schema",
                f"schema {str(schema)[:60]!r} is not {LABEL_SCHEMA} or {LABEL_BATCH_SCHEMA}")


def _label_batch(doc: dict[str, Any]) -> list[LabelEvent]:
    _check_fields(doc, _LABEL_FIELDS)
    ids = _batch_ids(doc)
    n = len(ids)
    model = _name(doc, "model")
    ts_col = _column(doc.get("timestamp"), n, "timestamp")
    if set(map(type, ts_col)) == {int}:
        if min(ts_col) < MIN_TS_MS or max(ts_col) >= MAX_TS_MS:
            raise _fail("bad_timestamp", "timestamp", "timestamp outside 1990..2200 (milliseconds expected)")
    else:
        ts_col = [parse_timestamp(t) for t in ts_col]
    labels = _column(doc.get("label"), n, "label")
    types = set(map(type, labels))
    if type(None) in types:
        raise _fail("bad_value", "label", "label must not be null")
    if not types <= _SCALARS or str in types and max(len(x) for x in set(labels) if type(x) is str) > MAX_STRING_VALUE:
        for x in labels:
            _value(x, "label")  # raises naming the problem
    tags = doc.get("tags")
    _tags(tags)
    return [LabelEvent(prediction_id=i, model=model, timestamp=t, label=lab, tags=tags or {})  # type: ignore[arg-type]
            for i, t, lab in zip(ids, ts_col, labels, strict=True)]


def _label(doc: dict[str, Any]) -> LabelEvent:
    _check_fields(doc, _LABEL_FIELDS)
    pid = _name(doc, "prediction_id", max_len=MAX_ID_LEN)
    model = _name(doc, "model")
    ts = parse_timestamp(_required(doc, "timestamp"))
    label = _given_value(doc, "label")
    _tags(doc.get("tags"))
    return LabelEvent(prediction_id=pid, model=model, timestamp=ts, label=label, tags=doc.get("tags") or {})

"""The event contract: strict parsing, one clear reason per violation, columnar batches."""

from __future__ import annotations

import base64
import hashlib

import numpy as np
import orjson
import pytest

from stream.events import InvalidEvent, deadletter_record, parse_timestamp, prediction_event
from stream.pipeline.parse_events import parse_label, parse_labels, parse_prediction

T0 = 1_700_000_000_000


def ev(**kw) -> dict:
    base = prediction_event(prediction_id="p1", model="m", timestamp=T0, features={"x": 1.0, "c": "a"},
                            prediction=1, scores={"0": 0.2, "1": 0.8})
    base.update(kw)
    return base


def reason(raw: bytes) -> tuple[str, str | None]:
    with pytest.raises(InvalidEvent) as info:
        parse_prediction(raw)
    return info.value.reason, info.value.field


def test_single_event_parses() -> None:
    c = parse_prediction(orjson.dumps(ev(model_version="3", tags={"region": "eu"})))
    assert (c.model, c.model_version, c.ids, c.timestamps) == ("m", "3", ["p1"], [T0])
    assert c.row == {"x": 1.0, "c": "a"} and c.prediction == [1] and c.scores == {"0": [0.2], "1": [0.8]}


def test_rfc3339_and_epoch_timestamps_agree() -> None:
    assert parse_timestamp("2023-11-14T22:13:20Z") == parse_timestamp(T0) == T0
    assert parse_timestamp("2023-11-14T23:13:20+01:00") == T0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", ("bad_json", None)),
        (b"[1, 2]", ("bad_json", None)),
        (b'{"x": NaN}', ("bad_json", None)),
        (b'{"x": 1e999}', ("bad_json", None)),
        (orjson.dumps(ev(schema="glassbox.prediction/v2")), ("unknown_schema", "schema")),
        (orjson.dumps({k: v for k, v in ev().items() if k != "model"}), ("missing_field", "model")),
        (orjson.dumps(ev(timestamp=1_700_000_000)), ("bad_timestamp", "timestamp")),  # seconds, not ms
        (orjson.dumps(ev(timestamp="2023-11-14 22:13")), ("bad_timestamp", "timestamp")),  # no offset
        (orjson.dumps(ev(features={"x": [1]})), ("bad_type", "features.x")),
        (orjson.dumps(ev(features={"x": "y" * 5000})), ("bad_value", "features.x")),
        (orjson.dumps(ev(prediction=None)), ("bad_value", "prediction")),
        (orjson.dumps(ev(scores={"1": -0.1})), ("bad_value", "scores.1")),
        (orjson.dumps(ev(extra=1)), ("unknown_field", "extra")),
        (orjson.dumps(ev(prediction_id="")), ("bad_type", "prediction_id")),
        (orjson.dumps(ev(tags={"a": 1})), ("bad_type", "tags")),
    ],
)
def test_violations_name_reason_and_field(raw: bytes, expected: tuple[str, str | None]) -> None:
    assert reason(raw) == expected


def test_oversize_is_rejected_before_parsing() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_prediction(b" " * 2000, max_bytes=1000)
    assert info.value.reason == "oversize"


def batch(n: int = 3, **kw) -> dict:
    doc = {
        "schema": "glassbox.prediction-batch/v1", "model": "m", "prediction_id": [f"p{i}" for i in range(n)],
        "timestamp": [T0 + i for i in range(n)], "features": {"x": [0.5, None, 2], "c": ["a", "b", None]},
        "prediction": [0, 1, 1], "scores": {"1": [0.1, 0.9, 0.8]},
    }
    doc.update(kw)
    return doc


def test_batch_is_columnar() -> None:
    c = parse_prediction(orjson.dumps(batch()))
    assert len(c) == 3 and c.scores == {"1": [0.1, 0.9, 0.8]}
    np.testing.assert_array_equal(c.features["x"], [0.5, np.nan, 2.0])
    assert c.features["c"].tolist() == ["a", "b", None] and c.prediction.tolist() == [0, 1, 1]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (batch(timestamp=[T0, T0]), ("bad_length", "timestamp")),
        (batch(features={"x": [1, 2]}), ("bad_length", "features.x")),
        (batch(features={"x": [1, {}, 2]}), ("bad_type", "features.x")),
        (batch(prediction_id=["a", "a", "b"]), ("duplicate_id", "prediction_id")),
        (batch(prediction_id=["a", 2, "b"]), ("bad_type", "prediction_id")),
        (batch(timestamp=[T0, 5, T0]), ("bad_timestamp", "timestamp")),
        (batch(scores={"1": [0.1, 2.0, 0.3]}), ("bad_value", "scores.1")),
        (batch(prediction=[1, None, 0]), ("bad_value", "prediction")),
    ],
)
def test_batch_violations(doc: dict, expected: tuple[str, str | None]) -> None:
    assert reason(orjson.dumps(doc)) == expected


def test_label_parses_and_rejects() -> None:
    lab = parse_label(b'{"schema": "glassbox.label/v1", "prediction_id": "p", "model": "m", '
                      b'"timestamp": 1700000000000, "label": 1}')
    assert (lab.prediction_id, lab.label, lab.timestamp) == ("p", 1, T0)
    with pytest.raises(InvalidEvent) as info:
        parse_label(b'{"schema": "glassbox.label/v1", "prediction_id": "p", "model": "m", "timestamp": 1700000000000}')
    assert (info.value.reason, info.value.field) == ("missing_field", "label")


def test_deadletter_keeps_the_raw_bytes() -> None:
    raw = b"\xff\xfe not utf8"
    with pytest.raises(InvalidEvent) as info:
        parse_prediction(raw)
    rec = deadletter_record(raw, topic="t", partition=2, offset=9, error=info.value)
    assert base64.b64decode(rec["raw"]) == raw
    assert (rec["reason"], rec["partition"], rec["offset"]) == ("bad_json", 2, 9)
    assert orjson.loads(orjson.dumps(rec)) == rec



@pytest.mark.parametrize("max_bytes", [1024, 1500, 8192, 120_000, 8 << 20])
@pytest.mark.parametrize("size", [0, 700, 5000, 120_000, 2 << 20])
def test_deadletter_fits_the_message_limit_and_notes_what_it_cut(max_bytes: int, size: int) -> None:
    """The whole record fits ``kafka.max_message_bytes``, whatever the message and the error text (1,000
    control characters, each escaped to 6 bytes, and a 249-character topic); a record cut short keeps the
    message's head, its size and its sha256."""
    raw = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    err = InvalidEvent("bad_value", "features." + "f" * 256, "\x01" * 2000)
    rec = deadletter_record(raw, topic="t" * 249, partition=3, offset=10**15, error=err, max_bytes=max_bytes)
    assert len(orjson.dumps(rec)) <= max_bytes
    kept = base64.b64decode(rec["raw"])
    assert raw.startswith(kept)
    if rec.get("raw_truncated"):
        assert (rec["raw_bytes"], rec["raw_sha256"]) == (len(raw), hashlib.sha256(raw).hexdigest())
        assert len(kept) >= min(max_bytes // 2 - 8000, 1 << 20)  # what the other fields leave, not less
    else:
        assert kept == raw


def label_batch(**kw) -> dict:
    doc = {"schema": "glassbox.label-batch/v1", "model": "m", "prediction_id": ["a", "b", "c"],
           "timestamp": [T0, T0 + 1, "2023-11-14T22:13:20.002Z"], "label": [1, 0, "yes"]}
    doc.update(kw)
    return doc


def test_label_batch_parses_and_single_labels_stay_valid() -> None:
    labs = parse_labels(orjson.dumps(label_batch(tags={"src": "crm"})))
    assert [(x.prediction_id, x.timestamp, x.label, x.model) for x in labs] == [
        ("a", T0, 1, "m"), ("b", T0 + 1, 0, "m"), ("c", T0 + 2, "yes", "m")]
    assert labs[0].tags == {"src": "crm"}
    single = parse_labels(b'{"schema": "glassbox.label/v1", "prediction_id": "p", "model": "m", '
                          b'"timestamp": 1700000000000, "label": 1}')
    assert [(x.prediction_id, x.label) for x in single] == [("p", 1)]
    with pytest.raises(InvalidEvent) as info:  # parse_label takes single labels only, as before
        parse_label(orjson.dumps(label_batch()))
    assert info.value.reason == "unknown_schema"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (label_batch(label=[1, 0]), ("bad_length", "label")),
        (label_batch(label=[1, None, 0]), ("bad_value", "label")),
        (label_batch(label=[1, [0], 0]), ("bad_type", "label")),
        (label_batch(label=[1, "x" * 2000, 0]), ("bad_value", "label")),
        (label_batch(timestamp=[T0, 5, T0]), ("bad_timestamp", "timestamp")),
        (label_batch(prediction_id=["a", "a", "b"]), ("duplicate_id", "prediction_id")),
        (label_batch(prediction_id=[]), ("bad_type", "prediction_id")),
        (label_batch(prediction_id=None), ("missing_field", "prediction_id")),
        (label_batch(model=None), ("missing_field", "model")),
        (label_batch(extra=1), ("unknown_field", "extra")),
        (label_batch(tags={"a": 1}), ("bad_type", "tags")),
        (label_batch(schema="glassbox.label-batch/v2"), ("unknown_schema", "schema")),
    ],
)
def test_label_batch_violations(doc: dict, expected: tuple[str, str | None]) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_labels(orjson.dumps(doc))
    assert (info.value.reason, info.value.field) == expected

"""The event contract on the wire: schemas, limits, event constructors, timestamps and dead-letter records.

What a producer needs to build valid events, and nothing heavy (no numpy, no pandas): the producer SDK imports
this module. Parsing and validating raw messages is the pipeline's job (:mod:`stream.pipeline.parse_events`);
a message that breaks the contract raises :class:`InvalidEvent` there, whose ``reason`` is a short code and
whose message names the field, ready for the dead-letter topic (:func:`deadletter_record`).

>>> ev = prediction_event(prediction_id="p1", model="m", timestamp=parse_timestamp("2024-01-01T00:00:00Z"),
...                       features={"x": 1.5, "c": "a"}, prediction=1)
>>> ev["schema"], ev["timestamp"]
('glassbox.prediction/v1', 1704067200000)
>>> try:
...     parse_timestamp(1_700_000_000)
... except InvalidEvent as e:
...     print(e.reason, e.field)
bad_timestamp timestamp
>>> deadletter_record(b"{", topic="t", partition=0, offset=7, error=InvalidEvent("bad_json", None, "not JSON"))["raw"]
'ew=='
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

import orjson

PREDICTION_SCHEMA = "glassbox.prediction/v1"
PREDICTION_BATCH_SCHEMA = "glassbox.prediction-batch/v1"
LABEL_SCHEMA = "glassbox.label/v1"
LABEL_BATCH_SCHEMA = "glassbox.label-batch/v1"
DEADLETTER_SCHEMA = "glassbox.deadletter/v1"

MAX_ID_LEN = 256
MAX_NAME_LEN = 256
MAX_STRING_VALUE = 1024
#: Event times outside [1990, 2200) are rejected: they are unit mistakes (seconds or microseconds).
MIN_TS_MS = 631_152_000_000
MAX_TS_MS = 7_258_118_400_000

class InvalidEvent(ValueError):
    """A message that breaks the contract. ``reason`` is a stable code, ``field`` the offending field."""

    def __init__(self, reason: str, field: str | None, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.field = field
        self.detail = detail


def parse_timestamp(v: Any, fld: str = "timestamp") -> int:
    """Event time as epoch milliseconds from epoch ms (int or float) or an RFC 3339 string.

    >>> parse_timestamp("2024-01-01T00:00:00Z"), parse_timestamp(1704067200000)
    (1704067200000, 1704067200000)
    """
    if isinstance(v, bool) or v is None:
        raise InvalidEvent("bad_timestamp", fld, f"{fld} must be epoch milliseconds or an RFC 3339 string")
    if isinstance(v, (int, float)):
        ms = int(v)
    elif isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            raise InvalidEvent("bad_timestamp", fld, f"{fld} {v[:40]!r} is not RFC 3339") from None
        if dt.tzinfo is None:
            raise InvalidEvent("bad_timestamp", fld, f"{fld} {v[:40]!r} has no UTC offset")
        ms = int(dt.timestamp() * 1000)
    else:
        raise InvalidEvent("bad_timestamp", fld, f"{fld} must be epoch milliseconds or an RFC 3339 string")
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise InvalidEvent("bad_timestamp", fld, f"{fld} {ms} is outside 1990..2200 (milliseconds expected)")
    return ms



#: Raw bytes kept in a dead letter; a longer message keeps its head, its full size and its sha256 (the whole
#: message stays on its source topic at the recorded offset).
MAX_DEADLETTER_RAW = 1024 * 1024
#: Room kept for the truncation note (``raw_truncated``, ``raw_bytes``, ``raw_sha256``) when sizing the raw bytes.
_TRUNCATION_NOTE = 128


def deadletter_record(
    raw: bytes | None, *, topic: str, partition: int, offset: int, error: InvalidEvent | Exception,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """The dead-letter record for a message that could not be processed (schema ``glassbox.deadletter/v1``).

    With ``max_bytes`` (``kafka.max_message_bytes``) the record's JSON fits in that many bytes: the raw bytes
    kept (base64) are cut to the room the other fields leave, with the original size and digest noted.

    >>> rec = deadletter_record(b"x" * 5000, topic="t", partition=0, offset=1, error=ValueError("no"), max_bytes=1024)
    >>> rec["raw_truncated"], rec["raw_bytes"], len(orjson.dumps(rec)) <= 1024
    (True, 5000, True)
    """
    rec: dict[str, Any] = {
        "schema": DEADLETTER_SCHEMA,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "reason": error.reason if isinstance(error, InvalidEvent) else "processing_error",
        "field": error.field if isinstance(error, InvalidEvent) else None,
        "error": str(error)[:1000],
    }
    return with_raw(rec, raw or b"", max_bytes)


def with_raw(rec: dict[str, Any], raw: bytes, max_bytes: int | None = None) -> dict[str, Any]:
    """Put a message's bytes into the dead letter ``rec`` (base64, key ``raw``): at most
    :data:`MAX_DEADLETTER_RAW` of them and, with ``max_bytes``, no more than lets the record's JSON fit in that
    many bytes (its ``error`` text gives way first when even an empty ``raw`` does not fit). A message cut short
    is noted with ``raw_truncated``, its size ``raw_bytes`` and its ``raw_sha256``."""
    rec["raw"] = ""
    keep = MAX_DEADLETTER_RAW
    if max_bytes is not None:
        room = max_bytes - _TRUNCATION_NOTE - len(orjson.dumps(rec))
        while room < 0 and rec["error"]:  # a tiny limit and a long (escaped) error text: the text gives way
            rec["error"] = rec["error"][: len(rec["error"]) // 2]
            room = max_bytes - _TRUNCATION_NOTE - len(orjson.dumps(rec))
        keep = min(keep, max(0, room) // 4 * 3)  # base64 turns each 3 bytes into 4
    if len(raw) > keep:
        rec.update(raw_truncated=True, raw_bytes=len(raw), raw_sha256=hashlib.sha256(raw).hexdigest())
        raw = raw[:keep]
    rec["raw"] = base64.b64encode(raw).decode("ascii")
    return rec


def prediction_event(
    *, prediction_id: str, model: str, timestamp: int, features: dict[str, Any], prediction: Any,
    scores: dict[str, float] | None = None, model_version: str | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ``prediction/v1`` event as a dict (what producers send)."""
    ev: dict[str, Any] = {
        "schema": PREDICTION_SCHEMA, "prediction_id": prediction_id, "model": model, "timestamp": timestamp,
        "features": features, "prediction": prediction,
    }
    if model_version is not None:
        ev["model_version"] = model_version
    if scores is not None:
        ev["scores"] = scores
    if tags:
        ev["tags"] = tags
    return ev


def label_event(*, prediction_id: str, model: str, timestamp: int, label: Any) -> dict[str, Any]:
    """A ``label/v1`` event as a dict."""
    return {"schema": LABEL_SCHEMA, "prediction_id": prediction_id, "model": model, "timestamp": timestamp,
            "label": label}

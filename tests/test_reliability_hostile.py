"""Hostile input: malformed records never crash the worker, never poison detector state, and every message
is accounted for: ``produced == processed + dead-lettered`` exactly.

In process, hypothesis throws generated records at the worker's :class:`stream.pipeline.pipeline.Pipeline`
(invalid UTF-8 and JSON, wrong types, missing and extra fields, NaN and infinity tokens, huge strings,
unknown models and features, wrong schema versions, duplicate ids, timestamps far in the past or future,
extreme but valid numbers). Then a fixed batch of the same kinds, plus 5 MB messages, goes through a real
worker process on the embedded broker, with the in-process pipeline as the oracle. A 7 MB message (under the
8 MB limit, but its base64 dead letter is not) is a case of its own.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.events import LABEL_SCHEMA, PREDICTION_BATCH_SCHEMA, PREDICTION_SCHEMA
from stream.pipeline.pipeline import Pipeline, RawMessage
from stream.producer import Producer
from tests.helpers import worker_pipeline, write_reference
from tests.kafka_util import WorkerProcess

T0 = 1_700_000_000_000
FEATS = ("x", "y", "c")
TOPIC = "h.predictions"


# strategies ------------------------------------------------------------------------------------------------------
json_scalar = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_value = st.recursive(json_scalar, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                              max_size=4),
                          max_leaves=8)
extreme = st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 2**63, 2**64 - 1, -(2**63), True, False, None])
number = st.floats(allow_nan=False, allow_infinity=False) | extreme | st.integers(-(2**63), 2**64 - 1)
bad_ts = st.sampled_from([-(2**63), -1, 0, 1, 10**19, 2**64 - 1, 1.5e300, "0001-01-01T00:00:00Z",
                          "9999-12-31T23:59:59Z", "2024-01-01T00:00:00", "yesterday", "", True, None, [T0], {}])
TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"nan", b'"\\ud800"']


def single_event(draw: Any, i: int) -> dict[str, Any]:
    return {"schema": PREDICTION_SCHEMA, "prediction_id": f"p{i}", "model": "m",
            "timestamp": T0 + draw(st.integers(0, 10**7)),
            "features": {"x": draw(number), "y": draw(number), "c": draw(st.sampled_from(["a", "b", "zz", None]))},
            "prediction": draw(st.integers(0, 1))}


def batch_event(draw: Any, i: int) -> dict[str, Any]:
    n = draw(st.integers(1, 12))
    return {"schema": PREDICTION_BATCH_SCHEMA, "model": "m", "prediction_id": [f"b{i}-{k}" for k in range(n)],
            "timestamp": [T0 + draw(st.integers(0, 10**7)) for _ in range(n)],
            "features": {"x": [draw(number) for _ in range(n)], "y": [draw(number) for _ in range(n)],
                         "c": [draw(st.sampled_from(["a", "b", None])) for _ in range(n)]},
            "prediction": [draw(st.integers(0, 1)) for _ in range(n)]}


def mutate(draw: Any, ev: dict[str, Any]) -> dict[str, Any]:
    """One to three ways of breaking (or merely stressing) an event."""
    batch = ev["schema"] == PREDICTION_BATCH_SCHEMA
    n = len(ev["prediction_id"]) if batch else 1
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from([
            "drop", "extra", "retype", "schema", "model", "feature", "timestamp", "huge", "dup", "length", "none",
        ]))
        if what == "drop":
            ev.pop(draw(st.sampled_from(sorted(ev))), None)
        elif what == "extra":
            ev[draw(st.text(min_size=1, max_size=10))] = draw(json_value)
        elif what == "retype":
            ev[draw(st.sampled_from(sorted(ev) or ["x"]))] = draw(json_value)
        elif what == "schema":
            ev["schema"] = draw(st.sampled_from(["glassbox.prediction/v2", "glassbox.prediction/v0", "", LABEL_SCHEMA,
                                                 None, 1, "glassbox.prediction-batch/v9"]))
        elif what == "model":
            ev["model"] = draw(st.sampled_from(["other", "", "m" * 300, "Ω\u0000\u202e", None, 7]))
        elif what == "feature" and isinstance(ev.get("features"), dict):
            ev["features"][draw(st.sampled_from(["unknown", "", "f" * 300, "<script>", "x\u0000"]))] = (
                [1.0] * n if batch else 1.0)
        elif what == "timestamp":
            ev["timestamp"] = [draw(bad_ts) for _ in range(n)] if batch else draw(bad_ts)
        elif what == "huge" and isinstance(ev.get("features"), dict):
            s = "h" * draw(st.sampled_from([1025, 20_000, 200_000]))
            ev["features"]["c"] = [s] * n if batch else s
        elif what == "dup" and batch and isinstance(ev.get("prediction_id"), list) and n > 1:
            ev["prediction_id"][-1] = ev["prediction_id"][0]
        elif what == "length" and batch and isinstance(ev.get("features"), dict):
            ev["features"]["x"] = ev["features"]["x"][:-1] or [1.0, 2.0]
    return ev


@st.composite
def hostile_prediction(draw: Any) -> bytes:
    i = draw(st.integers(0, 10**6))
    kind = draw(st.sampled_from(["valid", "valid_batch", "mutated", "mutated_batch", "binary", "bad_utf8",
                                 "json_any", "token", "duplicate"]))
    if kind == "binary":
        return draw(st.binary(max_size=200))
    if kind == "json_any":
        return orjson.dumps(draw(json_value))
    ev = batch_event(draw, i) if "batch" in kind else single_event(draw, i)
    if kind == "duplicate":
        ev["prediction_id"] = "p0"  # the same id again and again: accepted, never a crash
    if kind.startswith("mutated"):
        ev = mutate(draw, ev)
    raw = orjson.dumps(ev)
    if kind == "bad_utf8":
        k = draw(st.integers(0, len(raw) - 1))
        raw = raw[:k] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])) + raw[k:]
    if kind == "token" and b"1.5" not in raw:
        raw = raw.replace(b'"prediction":', b'"prediction":' + draw(st.sampled_from(TOKENS)) + b",\"_\":", 1)
    return raw


@st.composite
def hostile_label(draw: Any) -> bytes:
    ev: dict[str, Any] = {"schema": LABEL_SCHEMA, "prediction_id": f"p{draw(st.integers(0, 50))}", "model": "m",
                          "timestamp": T0 + draw(st.integers(0, 10**7)), "label": draw(st.integers(0, 1))}
    kind = draw(st.sampled_from(["valid", "drop", "retype", "ts", "binary"]))
    if kind == "drop":
        ev.pop(draw(st.sampled_from(sorted(ev))))
    elif kind == "retype":
        ev[draw(st.sampled_from(sorted(ev)))] = draw(json_value)
    elif kind == "ts":
        ev["timestamp"] = draw(bad_ts)
    elif kind == "binary":
        return draw(st.binary(max_size=100))
    return orjson.dumps(ev)


# invariants -------------------------------------------------------------------------------------------------------
def assert_finite(obj: Any, path: str = "state") -> None:
    if isinstance(obj, float):
        assert math.isfinite(obj), f"{path} = {obj}"
    elif isinstance(obj, dict):
        for k, v in obj.items():
            assert_finite(v, f"{path}.{k}")
    elif isinstance(obj, list | tuple):
        for k, v in enumerate(obj):
            assert_finite(v, f"{path}[{k}]")


def keeps_raw(dead: dict[str, Any], raw: bytes) -> bool:
    """The dead letter carries the message's bytes (or, when cut short, their prefix, size and digest)."""
    kept = base64.b64decode(dead["raw"])
    if dead.get("raw_truncated"):
        return (raw.startswith(kept) and dead["raw_bytes"] == len(raw)
                and dead["raw_sha256"] == hashlib.sha256(raw).hexdigest())
    return kept == raw


def check_step(pipe: Pipeline, msgs: list[RawMessage], labels: bool) -> tuple[int, int]:
    """One step; returns (processed messages, dead-lettered messages) and checks they add up."""
    before = pipe.counters.labels
    out = pipe.on_labels(msgs) if labels else pipe.on_predictions(msgs)
    dead = [d["offset"] for d in out.deadletters]
    assert len(dead) == len(set(dead)), "a message is dead-lettered at most once"
    for d in out.deadletters:
        raw = next(m.value for m in msgs if m.offset == d["offset"])
        assert keeps_raw(d, raw or b"") and d["reason"] and len(d["error"]) <= 1000
    if labels:
        processed = pipe.counters.labels - before
    else:
        done = {int(o) for _, b in out.batches for o in b.offsets} | set(out.duplicate_offsets)
        assert not done & set(dead), "processed and dead-lettered at once"
        assert out.events == sum(len(b) for _, b in out.batches) == len(out.processed_ids)
        processed = len(done)
    # processed includes messages whose events were all duplicates of ids already counted (dropped, not lost)
    assert processed + len(dead) == len(msgs), "produced == processed + dead-lettered"
    return processed, len(dead)


class Ledger:
    """The pipeline under fire, and the running totals."""

    pipe: Pipeline | None = None
    offset = 0
    produced = processed = dead = 0


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    d = tmp_path_factory.mktemp("hostile")
    Ledger.pipe = worker_pipeline(d, {"m": str(write_reference(d / "ref.parquet"))}, window=20, audit=True)
    return Ledger()


def raw_messages(values: list[bytes], led: Ledger, topic: str = TOPIC) -> list[RawMessage]:
    out = []
    for v in values:
        out.append(RawMessage(topic, 0, led.offset, v, T0))
        led.offset += 1
    return out


@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(preds=st.lists(hostile_prediction(), min_size=1, max_size=15),
       labels=st.lists(hostile_label(), max_size=5))
def test_pipeline_survives_hostile_records(ledger: Ledger, preds: list[bytes], labels: list[bytes]) -> None:
    pipe = ledger.pipe
    for values, is_label in ((preds, False), (labels, True)):
        if not values:
            continue
        p, d = check_step(pipe, raw_messages(values, ledger, "h.labels" if is_label else TOPIC), is_label)
        ledger.produced += len(values)
        ledger.processed += p
        ledger.dead += d
    mon = pipe.monitors.get("m")
    assert_finite(mon.to_state())
    for rec in mon.drain_windows():
        for col, stats in rec.get("columns", {}).items():
            for k in ("value", "threshold"):
                v = stats.get(k)
                assert v is None or math.isfinite(v), (col, k, v)
    assert ledger.produced == ledger.processed + ledger.dead


def test_hostile_totals_add_up(ledger: Ledger) -> None:
    """Runs after the property test: the counters agree with the ledger, and detection kept working."""
    if not ledger.produced:
        pytest.skip("run together with test_pipeline_survives_hostile_records")
    c = ledger.pipe.counters
    assert c.deadlettered == ledger.dead
    mon = ledger.pipe.monitors.get("m")
    assert mon.windows > 10 and mon.events == c.events
    print(f"\nhypothesis: {ledger.produced} messages, {ledger.processed} processed, {ledger.dead} dead-lettered; "
          f"{c.events} events in {mon.windows} windows; reasons {dict(sorted(c.reasons.items()))}")


def read_dead_letters(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The dead-letter topic, read with frames large enough for dead letters of 8 MB messages."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                      auto_offset_reset="earliest", consumer_timeout_ms=1500,
                      receive_message_max_bytes=64 << 20, max_partition_fetch_bytes=32 << 20,
                      fetch_max_bytes=64 << 20)
    try:
        deadline = time.monotonic() + 30
        while not (parts := c.partitions_for_topic(topic)) and time.monotonic() < deadline:
            time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        return [orjson.loads(r.value) for r in c]
    finally:
        c.close()


# a real worker --------------------------------------------------------------------------------------------------
def fixed_hostile_batch() -> list[bytes]:
    """Every kind once or twice, deterministic, plus 5 MB messages (valid and invalid)."""
    good = {"schema": PREDICTION_SCHEMA, "prediction_id": "g", "model": "m", "timestamp": T0,
            "features": {"x": 0.5, "y": 1.0, "c": "a"}, "prediction": 1}

    def ev(**kw: Any) -> bytes:
        d = {**good, **kw}
        return orjson.dumps({k: v for k, v in d.items() if v is not ...})

    n5 = 100_000
    big_batch = {"schema": PREDICTION_BATCH_SCHEMA, "model": "m", "prediction_id": [f"big{i:07d}" for i in range(n5)],
                 "timestamp": [T0 + i for i in range(n5)],
                 "features": {"x": [0.1234567 + i for i in range(n5)], "y": [1.0] * n5, "c": ["a", "b"] * (n5 // 2)},
                 "prediction": [i % 2 for i in range(n5)]}
    msgs = [
        b"", b"\x00\x01\x02", b"\xff\xfe{", b"not json", b"[]", b"null", b'"string"', b"12",
        ev(prediction_id=...), ev(timestamp="yesterday"), ev(timestamp=-1), ev(timestamp=10**19),
        ev(timestamp="9999-12-31T23:59:59Z"), ev(schema="glassbox.prediction/v2"), ev(model="unknown-model"),
        ev(features={"x": 1.0, "nope": 2.0}), ev(features={"x": "h" * 5000}), ev(prediction_id="i" * 10_000),
        ev(extra_field=1), ev(features=[1, 2]), ev(prediction=None), ev(features={"x": {"deep": [1]}}),
        ev(prediction_id="dup"), ev(prediction_id="dup"), ev(features={"x": 1e308, "y": -1e308, "c": None}),
        ev(features={"x": 2**64 - 1, "y": True, "c": "zz"}),
        ev(prediction_id="nan").replace(b'"x":0.5', b'"x":NaN'),
        ev(prediction_id="inf").replace(b'"x":0.5', b'"x":1e999'),
        orjson.dumps({**big_batch, "prediction_id": big_batch["prediction_id"][:-1] + ["big0000000"]}),  # dup ids
        ev(prediction_id="huge", features={"x": 1.0, "c": "z" * (5 * 1024 * 1024)}),  # 5 MB, invalid value
        orjson.dumps(big_batch),  # 5 MB, valid: 100,000 events
    ]
    msgs += [ev(prediction_id=f"ok{i}", features={"x": float(i % 7), "y": 1.0 + i % 3, "c": "abc"[i % 3]})
             for i in range(200)]
    return msgs


def run_worker(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, msgs: list[bytes],
               extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Send ``msgs`` to a real worker; check it against the in-process oracle; return the figures."""
    ref = write_reference(tmp_path / "ref.parquet")
    limit = int((extra_env or {}).get("GLASSBOX_KAFKA__MAX_MESSAGE_BYTES", 8 << 20))
    oracle = worker_pipeline(tmp_path / "oracle", {"m": str(ref)}, window=20, audit=True, max_message_bytes=limit)
    out = oracle.on_predictions([RawMessage(f"{topic_prefix}predictions", 0, i, v) for i, v in enumerate(msgs)])
    expected = {"messages": len(msgs), "events": out.events, "deadlettered": len(out.deadletters),
                "reasons": dict(oracle.counters.reasons)}
    env = {"GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_EVIDENTLY__ENABLED": "false",
           "GLASSBOX_ATTRIBUTION__ENABLED": "false", "GLASSBOX_DETECTION__WINDOW": "20", **(extra_env or {})}
    after = orjson.dumps({"schema": PREDICTION_SCHEMA, "prediction_id": "after", "model": "m", "timestamp": T0,
                          "features": {"x": 0.5, "y": 1.0, "c": "a"}, "prediction": 1})
    with WorkerProcess(kafka_bootstrap, topic_prefix, app_id=f"{topic_prefix}hostile", home=tmp_path / "w",
                       models={"m": str(ref)}, extra_env=env) as worker:
        worker.wait_ready()
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for v in msgs:
                prod.send_raw(prod.predictions_topic, v, key="m")
            prod.flush()
            worker.wait_for(lambda s: s["messages"] >= len(msgs), timeout_s=60)
            prod.send_raw(prod.predictions_topic, after, key="m")  # a later step: the agent is still healthy
        t0 = time.monotonic()
        stats = worker.wait_for(lambda s: s["messages"] >= len(msgs) + 1 and s["events"] == expected["events"] + 1,
                                timeout_s=60)
        took = time.monotonic() - t0
        assert worker.proc.poll() is None, "the worker must not crash"
        got = {k: stats[k] for k in ("messages", "events", "deadlettered", "reasons")}
        assert got == {**expected, "messages": len(msgs) + 1, "events": expected["events"] + 1}
        log = worker.log()
    dead = read_dead_letters(kafka_bootstrap, f"{topic_prefix}deadletter")
    assert "Traceback" not in log, log[-3000:]
    assert len(dead) == expected["deadlettered"]
    assert sorted(d["offset"] for d in dead) == sorted(d["offset"] for d in out.deadletters)
    return {**expected, "took_s": took, "mb": sum(map(len, msgs)) / 1e6, "dead": dead}


@pytest.mark.system
@pytest.mark.timeout(180)
def test_real_worker_survives_hostile_records(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    msgs = fixed_hostile_batch()
    assert sorted(len(m) for m in msgs)[-3] > 5_000_000
    f = run_worker(kafka_bootstrap, topic_prefix, tmp_path, msgs)
    print(f"\nreal worker: produced {f['messages']} messages ({f['mb']:.1f} MB), processed "
          f"{f['messages'] - f['deadlettered']} ({f['events']} events), dead-lettered {f['deadlettered']} "
          f"in {f['took_s']:.1f} s; reasons {f['reasons']}")


@pytest.mark.system
@pytest.mark.timeout(120)
def test_real_worker_survives_a_message_whose_dead_letter_is_too_large(kafka_bootstrap: str, topic_prefix: str,
                                                                      tmp_path: Path) -> None:
    """A 7 MB message is under the 8 MB limit, but its base64 would not be: the dead letter keeps its head,
    size and digest, and the agent goes on."""
    msgs = [b'{"schema": "' + b"x" * (7 * 1024 * 1024) + b'"}']
    f = run_worker(kafka_bootstrap, topic_prefix, tmp_path, msgs)
    [dead] = f["dead"]
    assert dead["raw_truncated"] and dead["raw_bytes"] == len(msgs[0]) and keeps_raw(dead, msgs[0])


@pytest.mark.system
@pytest.mark.timeout(120)
def test_dead_letters_fit_a_small_message_limit_and_the_worker_goes_on(kafka_bootstrap: str, topic_prefix: str,
                                                                      tmp_path: Path) -> None:
    """With ``kafka.max_message_bytes`` = 8 kB, messages of 120 kB (over the limit) and of 6 kB (under it, but
    not its base64) are dead-lettered with the head of their bytes, their size and digest, each dead letter
    within 8 kB; the agent goes on and the good events after them are processed (the dead letter of a
    120 kB message used to be 160 kB, over the producer's request size, and the send error stopped the agent)."""
    good = {"schema": PREDICTION_SCHEMA, "model": "m", "timestamp": T0, "features": {"x": 0.5, "y": 1.0, "c": "a"},
            "prediction": 1}
    big = orjson.dumps({**good, "prediction_id": "big", "features": {"x": 1.0, "c": "z" * 120_000}})
    msgs = [big, b"\xff" * 120_000, orjson.dumps({**good, "prediction_id": "mid", "features": {"c": "h" * 6000}}),
            *(orjson.dumps({**good, "prediction_id": f"ok{i}"}) for i in range(20))]
    f = run_worker(kafka_bootstrap, topic_prefix, tmp_path, msgs, {"GLASSBOX_KAFKA__MAX_MESSAGE_BYTES": "8192"})
    assert f["reasons"] == {"oversize": 2, "bad_value": 1} and f["events"] == 20
    assert len(f["dead"]) == 3
    for d in f["dead"]:
        raw = msgs[d["offset"]]
        assert d["raw_truncated"] and keeps_raw(d, raw) and len(orjson.dumps(d)) <= 8192
        assert len(base64.b64decode(d["raw"])) > 4000  # the head kept is most of the room, not a token

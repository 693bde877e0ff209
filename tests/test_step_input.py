"""Parsing a step column by column gives exactly what parsing its messages one by one gives.

Single-event messages are validated together (:func:`stream.pipeline.parse_events.parse_single_events`); any doubt sends
the step back to one-by-one parsing. Hypothesis mixes valid events with every kind of near miss and checks
the step against an oracle built from :func:`stream.pipeline.parse_events.parse_prediction` message by message: the same
dead letters (reason and offset, in order), the same events and the same typed columns.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.batch import as_column
from stream.events import PREDICTION_SCHEMA, InvalidEvent
from stream.pipeline.parse_events import parse_prediction, parse_single_events
from stream.pipeline.parse_step import ParsedStep, RawMessage, parse_step

T0 = 1_700_000_000_000
MAX = 1 << 20

value = (st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats(-1e6, 1e6, allow_nan=False)
         | st.sampled_from(["a", "b", "x" * 1025]))
near_miss = st.sampled_from([
    ("prediction_id", 5), ("prediction_id", ""), ("model", None), ("model", "m2"), ("timestamp", 12),
    ("timestamp", "2024-01-01T00:00:00Z"), ("timestamp", 1.7e12), ("timestamp", True), ("features", []),
    ("prediction", None), ("prediction", [1]), ("model_version", 3), ("model_version", 1.5), ("extra", 1),
    ("scores", {"1": 0.3}), ("scores", {"1": 1.5}), ("scores", {"1": True}), ("tags", {"k": 1}),
    ("tags", {"k": "v"}), ("features", {"": 1}), ("features", {"x" * 300: 1}),
])


@st.composite
def events(draw: st.DrawFn) -> list[bytes]:
    out = []
    for i in range(draw(st.integers(1, 12))):
        ev = {"schema": PREDICTION_SCHEMA, "prediction_id": f"p{i}", "model": draw(st.sampled_from(["m", "m", "m2"])),
              "timestamp": T0 + i,
              "features": {k: draw(value) for k in draw(st.sets(st.sampled_from("xyz"), min_size=0))},
              "prediction": draw(st.integers(0, 1) | st.sampled_from(["yes", 0.5]))}
        if draw(st.booleans()) and draw(st.booleans()):
            key, v = draw(near_miss)
            ev[key] = v
        out.append(orjson.dumps(ev) if draw(st.integers(0, 20)) else b"{not json")
    return out


def one_by_one(raws: list[bytes]) -> tuple[list[tuple[str, int]], dict[str, dict[str, list]]]:
    """The oracle: dead letters (reason, offset) and, per model, the events' columns as plain values."""
    dead, models = [], {}
    for off, raw in enumerate(raws):
        try:
            c = parse_prediction(raw, MAX)
        except InvalidEvent as err:
            dead.append((err.reason, off))
            continue
        m = models.setdefault(c.model, {"ids": [], "ts": [], "rows": [], "pred": [], "offsets": []})
        m["ids"] += c.ids
        m["ts"] += c.timestamps
        m["rows"].append(c.row)
        m["pred"] += list(c.prediction)
        m["offsets"].append(off)
    return dead, models


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype != b.dtype or len(a) != len(b):
        return False
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
               for x, y in zip(a.tolist(), b.tolist(), strict=True))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(events())
def test_a_step_parses_as_its_messages_do_one_by_one(raws: list[bytes]) -> None:
    step = parse_step([RawMessage("t", 0, i, v) for i, v in enumerate(raws)], MAX)
    dead, models = one_by_one(raws)
    assert sorted((d["reason"], d["offset"]) for d in step.deadletters) == sorted(dead)
    assert list(step.parts) == list(models)
    for model, want in models.items():
        part = step.parts[model]
        assert part.offsets.tolist() == want["offsets"]
        batch = part.batch(None, None)
        assert batch.ids.tolist() == want["ids"] and batch.timestamps.tolist() == want["ts"]
        assert same(batch.prediction, as_column(want["pred"]))
        names = set().union(*want["rows"])
        assert set(batch.features) == names
        for k in names:
            assert same(batch.features[k], as_column([r.get(k) for r in want["rows"]])), k
        sent = [frozenset(r) for r in want["rows"]]
        assert [i for i, _ in part.unknown_features({"x"})] == [i for i, s in enumerate(sent) if not s <= {"x"}]


def test_clean_single_events_take_the_columnar_path() -> None:
    docs = [{"schema": PREDICTION_SCHEMA, "prediction_id": f"p{i}", "model": "m", "timestamp": T0 + i,
             "features": {"x": i, "c": "ab"[i % 2]}, "prediction": i % 2, "scores": {"1": 0.25}}
            for i in range(50)]
    block = parse_single_events(docs)
    assert block is not None and block.names is None
    assert block.features["x"].dtype.kind == "f" and block.features["c"].tolist()[:3] == ["a", "b", "a"]
    assert block.scores is not None and block.scores["1"].tolist() == [0.25] * 50
    docs[7]["features"] = {"x": 1}  # one event without "c": still columnar, but names differ
    block = parse_single_events(docs)
    assert block is not None and block.names is not None and block.names[7] == {"x"}
    docs[9]["timestamp"] = "2024-01-01T00:00:00Z"  # a rarer form: one by one
    assert parse_single_events(docs) is None


def test_a_step_without_raw_bytes_keeps_everything_but_the_raw_bytes() -> None:
    raws = [orjson.dumps({"schema": PREDICTION_SCHEMA, "prediction_id": f"p{i}", "model": "m",
                          "timestamp": T0 + i, "features": {"x": i}, "prediction": 0}) for i in range(5)]
    step = parse_step([RawMessage("t", 1, 10 + i, v) for i, v in enumerate(raws)], MAX)
    full = step.parts["m"].message(2)
    assert full.value == raws[2] and (full.partition, full.offset) == (1, 12)
    slim = step.without_raw()
    assert isinstance(slim, ParsedStep) and slim.parts["m"].message(2).value is None
    assert slim.parts["m"].batch(None, None).ids.tolist() == [f"p{i}" for i in range(5)]


def test_label_batches_join_like_single_labels(tmp_path: Path) -> None:
    """A ``label-batch/v1`` message joins each of its labels; a broken one is dead-lettered as a whole."""
    from stream.events import LABEL_BATCH_SCHEMA, PREDICTION_BATCH_SCHEMA, label_event
    from tests.helpers import worker_pipeline

    pipe = worker_pipeline(tmp_path)
    preds = orjson.dumps({"schema": PREDICTION_BATCH_SCHEMA, "model": "m", "prediction_id": [f"p{i}" for i in range(6)],
                          "timestamp": [T0 + i for i in range(6)], "features": {"x": [0.5] * 6},
                          "prediction": [1, 0, 1, 0, 1, 0]})
    assert pipe.on_predictions([RawMessage("predictions", 0, 0, preds)]).events == 6
    batch = {"schema": LABEL_BATCH_SCHEMA, "model": "m", "prediction_id": ["p0", "p1", "p2", "nope"],
             "timestamp": [T0 + 10] * 4, "label": [1, 1, 1, 0]}
    msgs = [RawMessage("labels", 0, 0, orjson.dumps(batch)),
            RawMessage("labels", 0, 1, orjson.dumps(label_event(prediction_id="p3", model="m", timestamp=T0 + 11,
                                                                label=0))),
            RawMessage("labels", 0, 2, orjson.dumps({**batch, "prediction_id": ["p4", "p4", "p5", "p6"]}))]
    out = pipe.on_labels(msgs)
    assert [(d["reason"], d["offset"]) for d in out.deadletters] == [("duplicate_id", 2)]
    assert pipe.counters.labels == 5
    assert pipe.counters.per_model["m"]["outcomes"] == 4  # p0-p3 joined; "nope" waits for its prediction
    assert pipe.joins["m"].counters()["pending_labels"] == 1

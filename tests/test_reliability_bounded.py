"""Bounded resources: the worker's state is bounded by windows and TTLs, not by the stream's length.

A long stream goes through the worker's :class:`stream.pipeline.pipeline.Pipeline` in process (the same step the
Faust agents run): prediction batches, labels for half of them (late), and labels for predictions that never
came. At checkpoints, the label join's pending predictions and labels, the size of the state a restart
would load, and the Python heap (tracemalloc) must stay flat after warm-up. RSS over millions of events in a
real worker and a replay is measured by ``bench/bench_soak.py``.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import orjson
import pytest

from stream.events import PREDICTION_BATCH_SCHEMA, label_event
from stream.pipeline.pipeline import RawMessage
from tests.helpers import worker_pipeline, write_reference

T0 = 1_700_000_000_000
TTL_S = 5
BATCH = 1000


def batch_message(lo: int, rng: np.random.Generator, offset: int) -> RawMessage:
    n = BATCH
    value = orjson.dumps({
        "schema": PREDICTION_BATCH_SCHEMA, "model": "m", "prediction_id": [f"p{i}" for i in range(lo, lo + n)],
        "timestamp": [T0 + i for i in range(lo, lo + n)],  # 1 ms apart: the TTL holds 5,000 predictions
        "features": {"x": rng.normal(size=n).tolist(), "y": rng.exponential(2.0, size=n).tolist(),
                     "c": rng.choice(["a", "b", "c"], size=n).tolist()},
        "prediction": rng.integers(0, 2, n).tolist(),
    })
    return RawMessage("predictions", 0, offset, value, T0 + lo)


def label_messages(lo: int, offset: int) -> list[RawMessage]:
    """Labels for every other prediction of the batch 2,000 events back (late), and one for a prediction that
    never existed (it waits, then expires)."""
    out = []
    for i in range(max(0, lo - 2000), max(0, lo - 1000), 2):
        ev = label_event(prediction_id=f"p{i}", model="m", timestamp=T0 + lo, label=i % 2)
        out.append(RawMessage("labels", 0, offset + len(out), orjson.dumps(ev), T0 + lo))
    ghost = label_event(prediction_id=f"ghost{lo}", model="m", timestamp=T0 + lo, label=1)
    out.append(RawMessage("labels", 0, offset + len(out), orjson.dumps(ghost), T0 + lo))
    return out


@pytest.mark.timeout(120)
def test_label_join_and_model_state_stay_bounded(tmp_path: Path) -> None:
    pipe = worker_pipeline(tmp_path, {"m": str(write_reference(tmp_path / "ref.parquet"))}, label_ttl_s=TTL_S)
    rng = np.random.default_rng(3)
    total, checkpoint = 80_000, 16_000
    rows = []
    tracemalloc.start()
    try:
        l_off = 0
        for p_off, lo in enumerate(range(0, total, BATCH)):
            out = pipe.on_predictions([batch_message(lo, rng, p_off)])
            assert out.events == BATCH and not out.deadletters
            labels = label_messages(lo, l_off)
            l_off += len(labels)
            assert not pipe.on_labels(labels).deadletters
            pipe.monitors.get("m").drain_windows()  # what the worker does with each step's windows
            done = lo + BATCH
            if done % checkpoint == 0:
                j = pipe.joins["m"].counters()
                state = orjson.dumps(pipe.monitors.get("m").to_state())
                rows.append((done, j["pending_predictions"], j["pending_labels"], len(state),
                             tracemalloc.get_traced_memory()[0]))
    finally:
        tracemalloc.stop()
    ttl_events = TTL_S * 1000  # 1 event per ms of event time
    for done, pend_p, pend_l, _, _ in rows:
        assert pend_p <= ttl_events + BATCH, (done, pend_p)  # bounded by the TTL, not the stream
        assert pend_l <= ttl_events // BATCH + 1, (done, pend_l)
    warm = rows[1:]
    sizes = [r[3] for r in warm]
    heap = [r[4] for r in warm]
    # the state is window counts, hysteresis and detectors: flat, but for ADWIN on the error stream, whose
    # buckets grow with the log of its window while the stream is stationary (River's exponential histogram)
    assert sizes[-1] <= 1.15 * sizes[0], sizes
    growth = heap[-1] - heap[0]
    assert growth < 2_000_000, f"heap grew {growth / 1e6:.1f} MB over {warm[-1][0] - warm[0][0]} events"
    c = pipe.joins["m"].counters()
    assert c["expired_predictions"] > 0.4 * total and c["unmatched_labels"] > 0.9 * (total // BATCH)
    print(f"\nbounded: {total} events; pending predictions {[r[1] for r in rows]}; pending labels "
          f"{[r[2] for r in rows]}; state bytes {sizes[0]}..{sizes[-1]}; heap {heap[0] / 1e6:.1f} -> "
          f"{heap[-1] / 1e6:.1f} MB (+{growth / 1e3:.0f} kB after warm-up)")


def test_discovery_mode_state_is_bounded_by_model_names(tmp_path: Path) -> None:
    """With no models configured every model is counted; a stream of ever-new model names (a producer that
    puts request ids in ``model``) must not grow the worker's state without bound."""
    pipe = worker_pipeline(tmp_path, label_ttl_s=TTL_S)
    msgs = [RawMessage("predictions", 0, i, orjson.dumps({
        "schema": "glassbox.prediction/v1", "prediction_id": f"p{i}", "model": f"req-{i}", "timestamp": T0 + i,
        "features": {"x": 1.0}, "prediction": 1})) for i in range(20_000)]
    for k in range(0, len(msgs), 1000):
        pipe.on_predictions(msgs[k:k + 1000])
    assert len(pipe.joins) <= 1000 and len(pipe.counters.per_model) <= 1000, (len(pipe.joins),
                                                                             len(pipe.counters.per_model))

"""The seeded per-window reservoir: bounded, uniform, deterministic, chunking-independent, restorable."""

from __future__ import annotations

import json

import numpy as np

from detectors.reservoir import Reservoir


def _feed(r: Reservoir, x: np.ndarray, cuts: list[int]) -> None:
    lo = 0
    for hi in [*cuts, len(x)]:
        r.offer({"x": x[lo:hi], "s": np.array([f"e{i}" for i in range(lo, hi)], dtype=object)})
        lo = hi


def test_sample_is_bounded_and_in_event_order() -> None:
    r = Reservoir(50, seed=3)
    _feed(r, np.arange(1000.0), [10, 500])
    s = r.sample()
    assert len(r) == 50 and r.seen == 1000
    assert np.all(np.diff(s["_position"]) > 0)
    assert s["x"].tolist() == s["_position"].astype(float).tolist()
    assert s["s"].tolist() == [f"e{p}" for p in s["_position"]]


def test_fewer_events_than_k_keeps_all() -> None:
    r = Reservoir(200, seed=1)
    _feed(r, np.arange(30.0), [7])
    assert r.sample()["x"].tolist() == list(np.arange(30.0))


def test_independent_of_chunking_and_seeded() -> None:
    x = np.random.default_rng(0).normal(size=1000)
    rng = np.random.default_rng(1)
    samples = []
    for cuts in ([], [1, 2, 3, 999], sorted(rng.choice(np.arange(1, 1000), 60, replace=False).tolist())):
        r = Reservoir(100, seed=9, index=4)
        _feed(r, x, cuts)
        samples.append(r.sample()["_position"].tolist())
    assert samples[0] == samples[1] == samples[2]
    other = Reservoir(100, seed=10, index=4)
    _feed(other, x, [])
    assert other.sample()["_position"].tolist() != samples[0]
    next_window = Reservoir(100, seed=9, index=5)
    _feed(next_window, x, [])
    assert next_window.sample()["_position"].tolist() != samples[0]


def test_uniform_inclusion() -> None:
    hits = np.zeros(100)
    for seed in range(400):
        r = Reservoir(10, seed=seed)
        _feed(r, np.arange(100.0), [33, 66])
        hits[r.sample()["_position"]] += 1
    # each position is kept with probability 0.1: 40 expected of 400, sd about 6
    assert hits.min() > 15 and hits.max() < 70
    first, last = hits[:50].sum(), hits[50:].sum()
    assert abs(first - last) < 0.1 * hits.sum()


def test_state_round_trip_continues_exactly() -> None:
    x = np.random.default_rng(5).normal(size=800)
    x[::7] = np.nan
    whole = Reservoir(64, seed=2)
    _feed(whole, x, [300])
    half = Reservoir(64, seed=2)
    _feed(half, x[:300], [])
    restored = Reservoir.from_state(json.loads(json.dumps(half.to_state())))
    lo = 300
    restored.offer({"x": x[lo:], "s": np.array([f"e{i}" for i in range(lo, 800)], dtype=object)})
    a, b = whole.sample(), restored.sample()
    assert a["_position"].tolist() == b["_position"].tolist()
    assert np.array_equal(a["x"], b["x"], equal_nan=True)
    assert a["s"].tolist() == b["s"].tolist()


def test_long_windows_compact_referenced_rows_and_keep_the_same_sample() -> None:
    """Columns are referenced, not copied, until sampled: past max(8 k, 8192) rows they are compacted to the
    kept ones, which changes nothing in the sample or the state."""
    x = np.random.default_rng(7).normal(size=30_000)
    whole = Reservoir(20, seed=4)
    _feed(whole, x, [])
    chunked = Reservoir(20, seed=4)
    _feed(chunked, x, list(range(97, 30_000, 97)))
    assert chunked._rows <= 8192 + 97  # compacted on the way
    a, b = whole.sample(), chunked.sample()
    assert a["_position"].tolist() == b["_position"].tolist() and np.array_equal(a["x"], b["x"])
    assert b["s"].tolist() == [f"e{p}" for p in b["_position"]]
    assert json.dumps(whole.to_state()) == json.dumps(chunked.to_state())

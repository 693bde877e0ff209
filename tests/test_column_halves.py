"""Columns split over two threads give the same counts and statistics as one thread."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import detectors.column_halves as halves
from detectors.config import DetectionConfig
from detectors.profile import build_profile
from detectors.window_tests import WindowTests


@pytest.fixture
def tests_and_columns() -> tuple[WindowTests, list[np.ndarray]]:
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({f"x{j}": rng.normal(size=5_000) * (j + 1) for j in range(9)})
    ref["prediction"] = rng.integers(0, 2, 5_000)
    tests = WindowTests(build_profile(ref), DetectionConfig())
    cols = [rng.normal(0.3, 1.0, 60_000) * (j + 1) for j in range(8)] + [rng.integers(-3, 3, 60_000)]
    cols[2][::17] = np.nan
    return tests, cols


def _both(monkeypatch: pytest.MonkeyPatch, compute):
    monkeypatch.setattr(halves, "MIN_WORK", 0)
    two = compute()
    monkeypatch.setattr(halves, "MIN_WORK", 10**18)
    one = compute()
    return one, two


def test_counts_split_over_threads_are_the_same(monkeypatch: pytest.MonkeyPatch, tests_and_columns) -> None:
    tests, cols = tests_and_columns
    starts, ends = np.arange(0, 60_000, 1_000), np.arange(1_000, 60_001, 1_000)
    one, two = _both(monkeypatch, lambda: tests.num.segment_counts(cols, starts, ends))
    assert halves._pool is not None  # the second thread did run
    assert all((a == b).all() for a, b in zip(one, two, strict=True))
    assert int(one[0].sum()) == 60_000 * len(cols) - int(one[1].sum())


def test_horizon_statistics_split_over_threads_are_the_same(monkeypatch: pytest.MonkeyPatch,
                                                             tests_and_columns) -> None:
    tests, cols = tests_and_columns
    counts = tests.num.segment_counts(cols, np.arange(0, 60_000, 2_000), np.arange(2_000, 60_001, 2_000))[0]
    merged = np.ascontiguousarray(counts.transpose(1, 0, 2))  # (columns, horizons, bins)
    cat = np.zeros((len(tests.cat), merged.shape[1], tests.cat.width), np.int64)
    one, two = _both(monkeypatch, lambda: tests.decision_values(merged, cat))
    assert one[0].shape == (len(tests.num), 30) and np.isfinite(one[0]).all()
    assert (one[0] == two[0]).all()


def test_a_forked_child_gets_its_own_second_thread(tests_and_columns) -> None:
    """A process forked after a replay used the pool (its thread is not in the child) still counts."""
    import os
    import signal

    tests, cols = tests_and_columns
    starts, ends = np.arange(0, 60_000, 1_000), np.arange(1_000, 60_001, 1_000)
    expected = tests.num.segment_counts(cols, starts, ends)[0]
    assert halves._pool is not None or halves._cores() == 1
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: count with the pool, report whether the counts match (killed if it hangs)
        signal.alarm(60)
        ok = (tests.num.segment_counts(cols, starts, ends)[0] == expected).all()
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1" and status == 0

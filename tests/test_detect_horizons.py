"""Issue 14: small persistent shifts gather evidence over longer horizons, under the one false-alarm budget.

Default settings, the acceptance stream of issue 3 (20 numeric + 5 categorical features, 20,000 reference rows):
a 0.15 sd mean shift, a 15% change of spread and a 5-point move of one category's share fire on that feature
within 5,000 events of the change and not before; a 0.5 sd shift still fires in the first window after it.
"""

from __future__ import annotations

import numpy as np
import pytest
import shifts
import synth

from detectors.batch import EventBatch
from detectors.config import DetectionConfig
from detectors.horizons import WindowHistory
from detectors.monitor import ModelMonitor
from detectors.profile import ReferenceProfile, build_profile
from detectors.window_tests import ClosedWindow, WindowTests
from stream.backtest.file_replay import ReplayOptions, dumps_alerts, replay_frames

AT = 40_000
WINDOW = 1000


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return build_profile(synth.frame(20_000, seed=1000), label="label", scores=["score"])


def firing(alerts: list[dict]) -> list[dict]:
    return [a for a in alerts if a["status"] == "firing"]


@pytest.mark.parametrize(("kind", "size"), [("mean", 0.15), ("spread", 0.15), ("spread", -0.15),
                                            ("category", 0.05)])
def test_small_persistent_shift_fires_on_its_feature_within_five_windows(profile, kind, size):
    events = shifts.shifted(synth.frame(60_000, seed=7), kind, size, at=AT, seed=7)
    res = replay_frames(events, profile, ReplayOptions(score_cols=["score"]))
    fired = firing(res.alerts)
    assert not [a for a in res.alerts if a["row"] < AT], "nothing fires before the change"
    assert {(a["monitor"], a["feature"]) for a in fired} == {("data_drift", shifts.feature(kind))}
    first = fired[0]
    assert AT <= first["row"] < AT + 5_000
    hz = first["evidence"]["horizon"]
    assert hz["events"] == hz["windows"] * WINDOW and first["evidence"]["effect"] > 1.0
    assert first["value"] > first["threshold"] and first["window"]["events"] == WINDOW
    if hz["windows"] > 1:
        assert f"the last {hz['windows']} windows" in first["summary"]


def test_large_shift_still_fires_in_the_first_window(profile):
    events = shifts.shifted(synth.frame(50_000, seed=8), "mean", 0.5, at=AT, seed=8)
    res = replay_frames(events, profile, ReplayOptions(score_cols=["score"]))
    first = firing(res.alerts)[0]
    assert first["feature"] == shifts.NUMERIC and AT <= first["row"] < AT + WINDOW
    assert first["evidence"]["horizon"] == {"windows": 1, "events": WINDOW}


def test_window_records_carry_effect_and_every_horizon(profile):
    events = shifts.shifted(synth.frame(25_000, seed=9), "mean", 0.3, at=20_000, seed=9)
    res = replay_frames(events, profile, ReplayOptions(score_cols=["score"]))
    last = [w for w in res.windows if w["kind"] == "predictions"][-1]
    col = last["columns"][shifts.NUMERIC]
    assert [h["windows"] for h in col["horizons"]] == [1, 2, 5, 10, 20]
    assert [h["events"] for h in col["horizons"]] == [WINDOW, 2 * WINDOW, 5 * WINDOW, 10 * WINDOW, 20 * WINDOW]
    assert col["effect"] == max(h["effect"] for h in col["horizons"]) > 1.0
    assert col["drift"] and last["drifted"][0] == shifts.NUMERIC
    quiet = last["columns"]["num_2"]
    assert 0.0 <= quiet["effect"] < 1.0 and not quiet["drift"]
    # thresholds shrink as evidence grows: longer horizons allow smaller distances
    thr = [h["threshold"] for h in col["horizons"]]
    assert thr == sorted(thr, reverse=True)


def test_merged_history_equals_one_window_over_the_same_events(profile):
    df = synth.frame(5_000, seed=3)
    batch = EventBatch.from_columns(ids=[str(i) for i in range(len(df))], timestamps=np.arange(len(df)),
                                    features={c: df[c].to_numpy() for c in synth.FEATURES},
                                    prediction=df["prediction"].to_numpy(), scores={"score": df["score"].to_numpy()})
    short = ModelMonitor(profile, DetectionConfig(window=WINDOW))
    short.observe(batch)
    long = ModelMonitor(profile, DetectionConfig(window=10 * WINDOW, horizons=[1]))
    long.observe(batch)
    state = long.to_state()  # the open window: the counts of all 5,000 events
    h, num, cat, n = short._history.merged()[-1]
    assert (h, n) == (5, 5_000) == (5, state["win"]["n"])
    assert num.tolist() == state["num_counts"] and cat.tolist() == state["cat_counts"]
    again = ModelMonitor.from_state(profile, DetectionConfig(window=WINDOW), "model", None, short.to_state())
    assert [(h, a.tolist(), b.tolist(), e) for h, a, b, e in again._history.merged()] == \
        [(h, a.tolist(), b.tolist(), e) for h, a, b, e in short._history.merged()]


@pytest.mark.parametrize(("kind", "size"), [("mean", 0.15), ("spread", -0.15), ("category", 0.05), ("mean", 0.5)])
def test_a_replay_without_window_records_raises_the_same_alerts(profile, kind, size):
    """Without window records, a quiet window's horizons are only bounded, not computed
    (:attr:`WindowTests.bounded`): the alerts are the same bytes."""
    events = shifts.shifted(synth.frame(60_000, seed=11), kind, size, at=AT, seed=11)
    kept = replay_frames(events, profile, ReplayOptions(score_cols=["score"]))
    lean = replay_frames(events, profile, ReplayOptions(score_cols=["score"], keep_windows=False))
    assert firing(kept.alerts)
    assert dumps_alerts(lean.alerts) == dumps_alerts(kept.alerts)


def test_a_model_without_numeric_columns_replays_the_same_without_window_records():
    """Nothing to bound: categorical features and a class prediction only."""
    cols = [*synth.CAT, "prediction"]
    profile = build_profile(synth.frame(20_000, seed=13)[cols])
    events = synth.frame(30_000, seed=14, scenario="cat_double", at=10_000)[cols]
    kept = replay_frames(events, profile, ReplayOptions())
    lean = replay_frames(events, profile, ReplayOptions(keep_windows=False))
    assert firing(kept.alerts)
    assert dumps_alerts(lean.alerts) == dumps_alerts(kept.alerts)


def closed_windows(tests: WindowTests, frame, size: int) -> list[ClosedWindow]:
    """The frame's consecutive windows of ``size`` rows, counted as a monitor counts them."""
    starts = np.arange(0, len(frame), size)
    ends = np.minimum(starts + size, len(frame))
    num, wrong = tests.num.segment_counts([frame[c.name].to_numpy(np.float64) for c in tests.num_cols], starts, ends)
    cat = tests.cat.segment_counts([frame[c.name].to_numpy(object) for c in tests.cat_cols], starts, ends)
    return [ClosedWindow(num[s], wrong[s], np.zeros_like(wrong[s]), cat[s], int(ends[s] - starts[s]))
            for s in range(len(starts))]


def test_horizon_bounds_hold_and_lazy_verdicts_are_the_computed_ones(profile):
    """The bound on a horizon's Wasserstein distance (the distances of the windows it merges, averaged by their
    events) is at least the distance; windows read lazily get the verdicts and results computed ones get."""
    tests = WindowTests(profile, DetectionConfig())
    assert tests.bounded
    frame = shifts.shifted(synth.frame(90_000, seed=12), "mean", 0.12, at=45_000, seed=12)
    windows = closed_windows(tests, frame, WINDOW)
    eager_h, lazy_h = WindowHistory(tests.horizons), WindowHistory(tests.horizons)
    bounded = 0
    for a in range(0, len(windows), 17):  # batches of 17 windows, the history carried between them
        part = windows[a: a + 17]
        args = ([w.num_counts for w in part], [w.cat_counts for w in part], [w.n for w in part])
        eager = tests.evaluate_windows(part, eager_h.push_many(*args))
        lazy = tests.evaluate_windows(part, lazy_h.push_many(*args), lazy=True)
        batch, exact = lazy[0].batch, eager[0].batch
        loose = ~batch._exact
        bounded += int(loose.sum())
        for k in np.flatnonzero(loose).tolist():  # a bounded window: the bound is above every horizon's value
            at = slice(batch.hcuts[k], batch.hcuts[k + 1])
            assert (batch._hnv[:, at] >= exact._hnv[:, at]).all()
            assert lazy[k].quiet() and eager[k].quiet()
        assert [e.quiet() for e in lazy] == [e.quiet() for e in eager]
        for e, lz in zip(eager, lazy, strict=True):
            assert lz.results().dicts() == e.results().dicts()
    assert 0 < bounded < len(windows) - 40, "quiet windows are bounded, drifting ones computed"

"""Evidently snapshots of a window against the reference (pure core: stream.evidence.evidently_report)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stream.evidence.evidently_report import build_snapshot, event_time, sample_frame

FEATURES = ["a", "b", "c"]


def frame(n: int, seed: int, shift: float = 0.0, cat_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(shift, 1, n), "b": rng.normal(0, 1, n),
                       "c": rng.choice(["x", "y", "z"], n)})
    df.loc[rng.random(n) < cat_shift, "c"] = "z"
    df["prediction"] = (df.a + 0.3 * df.b > 0).astype(int)
    df["label"] = (df.a + 0.3 * df.b + rng.normal(0, 0.5, n) > 0).astype(int)
    return df


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(4000, seed=1)


def test_drifted_columns_are_named_and_stable_ones_are_not(reference: pd.DataFrame) -> None:
    snap = build_snapshot(frame(2000, seed=2, shift=1.0, cat_shift=0.5), reference, features=FEATURES,
                          sample_size=1500, seed=3, window_end_ms=1_700_000_000_000)
    assert snap.drifted_columns == ["a", "c", "prediction"]
    assert not snap.column_drift["b"]["drifted"]
    assert snap.column_drift["a"]["method"].lower().startswith("wasserstein")
    assert snap.drift_share == pytest.approx(0.75)
    assert snap.rows == {"current": 1500, "reference": 1500, "labeled": 0}  # bounded samples
    assert snap.snapshot._timestamp == event_time(1_700_000_000_000)  # event time, not wall clock


def test_no_drift_on_a_window_from_the_reference_distribution(reference: pd.DataFrame) -> None:
    snap = build_snapshot(frame(2000, seed=5), reference, features=FEATURES, sample_size=2000)
    assert snap.drifted_columns == []
    assert snap.drift_share == 0.0


def test_same_window_and_seed_give_identical_json(reference: pd.DataFrame) -> None:
    cur = frame(3000, seed=6, shift=0.5)
    one = build_snapshot(cur, reference, features=FEATURES, sample_size=1000, seed=11, window_end_ms=5)
    two = build_snapshot(cur, reference, features=FEATURES, sample_size=1000, seed=11, window_end_ms=5)
    other = build_snapshot(cur, reference, features=FEATURES, sample_size=1000, seed=12, window_end_ms=5)
    assert one.to_json() == two.to_json()
    assert one.to_json() != other.to_json()


def test_classification_quality_only_with_enough_joined_labels(reference: pd.DataFrame) -> None:
    cur = frame(1000, seed=7)
    cur.loc[200:, "label"] = np.nan  # 200 joined labels
    with_labels = build_snapshot(cur, reference, features=FEATURES, label="label", task="binary")
    assert with_labels.rows["labeled"] == 200
    assert 0.7 < with_labels.quality["Accuracy"] <= 1.0
    assert "F1Score" in with_labels.quality
    cur.loc[20:, "label"] = np.nan  # 20 < MIN_LABELED_ROWS
    few = build_snapshot(cur, reference, features=FEATURES, label="label", task="binary")
    assert few.quality == {} and few.rows["labeled"] == 0


def test_regression_quality(reference: pd.DataFrame) -> None:
    ref = reference.assign(prediction=reference.a * 2.0, label=reference.a * 2.0 + 0.1)
    cur = frame(800, seed=8).pipe(lambda d: d.assign(prediction=d.a * 2.0, label=d.a * 2.0 + 0.5))
    snap = build_snapshot(cur, ref, features=FEATURES, label="label", task="regression")
    assert snap.quality["RMSE"] == pytest.approx(0.5, abs=1e-9)
    assert snap.quality["MAE"] == pytest.approx(0.5, abs=1e-9)


def test_missing_feature_is_a_clear_error(reference: pd.DataFrame) -> None:
    with pytest.raises(KeyError, match="missing from the window or the reference: \\['nope'\\]"):
        build_snapshot(frame(100, seed=9), reference, features=["a", "nope"])


def test_sample_frame_is_bounded_seeded_and_ordered() -> None:
    df = pd.DataFrame({"x": range(1000)})
    s1, s2 = sample_frame(df, 50, seed=1), sample_frame(df, 50, seed=1)
    assert len(s1) == 50 and s1.equals(s2)
    assert s1.x.is_monotonic_increasing
    assert len(sample_frame(df, 5000, seed=1)) == 1000

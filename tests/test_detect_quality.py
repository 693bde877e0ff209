"""Issue 14: data quality means broken data. A value outside its column's valid domain (declared, else the
reference range widened by its span, kept >= 0 for a positive column) is a quality problem; the tail of a
shifted distribution past the reference's extremes is drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shifts
import synth
from scipy import stats as sps

from detectors.config import DetectionConfig
from detectors.profile import build_profile
from stream.backtest.file_replay import ReplayOptions, replay_frames

AT = 20_000
N = 30_000
CAPPED, POSITIVE = "num_9", "num_15"


def frame(n: int, seed: int) -> pd.DataFrame:
    """The synthetic stream with ``num_9`` capped at +2 sd (a hard ceiling: a 0.3 sd shift pushes about 2% of
    rows past the reference maximum) and ``num_15`` positive (lognormal)."""
    df = synth.frame(n, seed=seed)
    mu, sd = synth._layout()
    rng = np.random.default_rng([seed, 9])
    z = sps.truncnorm.rvs(-np.inf, 2.0, size=n, random_state=rng)
    df[CAPPED] = mu[9] + sd[9] * z
    df[POSITIVE] = df[POSITIVE] - (mu[15] - sd[15] * np.exp(0.125) / 0.6)
    return df


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(20_000, seed=1000)


def replay(reference: pd.DataFrame, events: pd.DataFrame, config: DetectionConfig | None = None):
    prof = build_profile(reference, label="label", scores=["score"])
    return replay_frames(events, prof, ReplayOptions(score_cols=["score"], config=config))


def firing(res, monitor: str) -> list[dict]:
    return [a for a in res.alerts if a["status"] == "firing" and a["monitor"] == monitor]


def test_tail_of_a_shift_past_the_reference_maximum_is_drift_not_quality(reference):
    mu, sd = synth._layout()
    events = frame(N, seed=31)
    events.loc[AT:, CAPPED] += 0.3 * sd[9]
    res = replay(reference, events)
    past = [w["columns"][CAPPED]["out_of_range_rate"] for w in res.windows
            if w["kind"] == "predictions" and w["index"] >= AT // 1000]
    assert np.mean(past) > 0.015, "the scenario puts about 2% of rows past the reference maximum"
    assert {a["feature"] for a in firing(res, "data_drift")} == {CAPPED}
    assert firing(res, "data_quality") == []
    assert all(w["columns"][CAPPED]["domain_rate"] == 0 for w in res.windows if w["kind"] == "predictions")


@pytest.mark.parametrize(("column", "factor", "value"), [
    (CAPPED, 1000.0, None),  # a unit error
    (POSITIVE, None, -1.0),  # a sentinel below zero in a positive column
    (CAPPED, None, 999_999.0),  # a sentinel far above
    (POSITIVE, -1.0, None),  # a sign flip
])
def test_broken_values_in_one_percent_of_rows_are_data_quality(reference, column, factor, value):
    events = shifts.broken(frame(N, seed=32), column, 0.01, at=AT, factor=factor, value=value, seed=32)
    res = replay(reference, events)
    dq = firing(res, "data_quality")
    assert [a["feature"] for a in dq] == [column]
    assert dq[0]["statistic"] == "domain_rate" and AT <= dq[0]["row"] < AT + 1000
    assert 0.005 < dq[0]["value"] < 0.02
    assert not [a for a in res.alerts if a["row"] < AT]


def test_declared_domain_wins_over_the_inferred_one(reference):
    # 70 lies inside the inferred domain (the reference range 0.6..42 widened by its span), not in [0, 60]
    events = shifts.broken(frame(N, seed=33), POSITIVE, 0.01, at=AT, value=70.0, seed=33)
    quiet = replay(reference, events)
    assert firing(quiet, "data_quality") == []
    strict = replay(reference, events, DetectionConfig(domains={POSITIVE: (0.0, 60.0)}))
    dq = firing(strict, "data_quality")
    assert [a["feature"] for a in dq] == [POSITIVE] and AT <= dq[0]["row"] < AT + 1000

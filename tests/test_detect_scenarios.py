"""Acceptance scenarios of issue 3 on seeded synthetic streams: 20 numeric + 5 categorical features,
reference 20,000 rows, stream 100,000 rows, default settings (count windows of 1,000 events)."""

from __future__ import annotations

import pytest
import synth

from detectors.profile import ReferenceProfile, build_profile
from stream.backtest.file_replay import ReplayOptions, ReplayResult, replay_frames

WINDOW = 1000
AT = 50_000


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return build_profile(synth.frame(20_000, seed=1000), label="label", scores=["score"])


def run(profile: ReferenceProfile, scenario: str, seed: int = 7, **kw) -> ReplayResult:
    events = synth.frame(100_000, seed=seed, scenario=scenario, **kw)
    return replay_frames(events, profile, ReplayOptions(score_cols=["score"]))


def firing(res: ReplayResult, monitor: str | None = None) -> list[dict]:
    return [a for a in res.alerts if a["status"] == "firing" and (monitor is None or a["monitor"] == monitor)]


def test_no_change_is_quiet(profile):
    res = run(profile, "none")
    assert len(firing(res)) <= 1, firing(res)
    assert res.summary["windows"] == 100 and res.summary["outcome_windows"] == 100


def test_mean_shift_fires_on_exactly_the_shifted_features(profile):
    res = run(profile, "mean_shift")
    drift = firing(res, "data_drift")
    assert {a["feature"] for a in drift} == {"num_10", "num_11"}
    assert all(AT <= a["row"] < AT + 2 * WINDOW for a in drift)
    assert not [a for a in res.alerts if a["row"] < AT]
    others = [a for a in firing(res) if a["feature"] not in ("num_10", "num_11")]
    assert others == []
    a = drift[0]
    assert a["severity"] == "warning" and a["threshold_kind"] == "calibrated" and a["statistic"] == "wasserstein"
    assert a["value"] > a["threshold"]
    assert {t["feature"] for t in a["evidence"]["top_features"]} == {"num_10", "num_11"}
    assert a["source"] == {"row": a["row"]} and a["window"]["events"] == WINDOW


def test_category_frequency_doubling_is_data_drift(profile):
    res = run(profile, "cat_double")
    drift = firing(res, "data_drift")
    assert [a["feature"] for a in drift] == ["cat_0"]
    assert drift[0]["row"] >= AT and drift[0]["statistic"] == "jensenshannon"


def test_unseen_category_is_data_quality(profile):
    res = run(profile, "new_category")
    dq = firing(res, "data_quality")
    assert [a["feature"] for a in dq] == ["cat_1"]
    assert dq[0]["statistic"] == "unseen_rate" and AT <= dq[0]["row"] < AT + 2 * WINDOW
    assert not [a for a in res.alerts if a["row"] < AT]


def test_missing_rate_rise_is_data_quality(profile):
    res = run(profile, "missing")
    dq = firing(res, "data_quality")
    assert [a["feature"] for a in dq] == ["num_3"]
    assert dq[0]["statistic"] == "missing_rate" and dq[0]["value"] > 0.15
    assert not firing(res, "data_drift")


def test_rule_flip_is_concept_drift_and_performance_not_data_drift(profile):
    res = run(profile, "concept_flip")
    cd = firing(res, "concept_drift")
    assert len(cd) == 1 and AT <= cd[0]["row"] <= AT + 300
    assert cd[0]["direction"] == "degradation" and cd[0]["severity"] == "critical"
    perf = firing(res, "performance")
    assert perf and AT <= perf[0]["row"] < AT + 2 * WINDOW
    assert perf[0]["direction"] == "degradation" and perf[0]["value"] < 0.7
    assert not firing(res, "data_drift") and not firing(res, "prediction_drift")
    assert not [a for a in res.alerts if a["row"] < AT]


def test_two_successive_changes_give_two_concept_drift_alerts(profile):
    res = run(profile, "two_changes", at=40_000, at2=70_000)
    cd = firing(res, "concept_drift")
    assert len(cd) == 2
    assert 40_000 <= cd[0]["row"] <= 40_300 and 70_000 <= cd[1]["row"] <= 70_300
    resolved = [a for a in res.alerts if a["monitor"] == "concept_drift" and a["status"] == "resolved"]
    assert resolved and cd[0]["row"] < resolved[0]["row"] < cd[1]["row"]


def test_gradual_change_alerts_inside_the_transition(profile):
    res = run(profile, "gradual", width=5_000)
    cd = firing(res, "concept_drift")
    assert cd and AT <= cd[0]["row"] < AT + 5_000
    assert not [a for a in res.alerts if a["row"] < AT]


def test_pure_covariate_shift_is_data_drift_only(profile):
    res = run(profile, "covariate")
    assert {a["feature"] for a in firing(res, "data_drift")} == {"num_0", "num_1"}
    assert not firing(res, "concept_drift") and not firing(res, "performance")


@pytest.mark.parametrize("noise", [0.005, 0.10])
def test_stable_error_stream_has_no_concept_drift(noise):
    prof = build_profile(synth.frame(20_000, seed=1001, noise=noise), label="label", scores=["score"])
    res = replay_frames(synth.frame(100_000, seed=11, noise=noise), prof, ReplayOptions(score_cols=["score"]))
    assert not firing(res, "concept_drift") and not firing(res, "performance")


def test_replay_is_deterministic_and_independent_of_chunk_size(profile):
    events = synth.frame(100_000, seed=5, scenario="concept_flip")
    a = replay_frames(events, profile, ReplayOptions(score_cols=["score"], chunk_rows=65_536))
    b = replay_frames(events, profile, ReplayOptions(score_cols=["score"], chunk_rows=3_333))
    assert a.alerts and a.alerts == b.alerts

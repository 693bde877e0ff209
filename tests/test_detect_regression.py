"""Regression models: error level up and down are both reported, with the direction."""

from __future__ import annotations

import synth

from detectors.config import DetectionConfig
from detectors.profile import build_profile
from stream.backtest.file_replay import ReplayOptions, replay_frames


def test_regression_error_up_then_down_reports_both_directions():
    prof = build_profile(synth.regression_frame(20_000, seed=2000), label="label")
    assert prof.task == "regression" and prof.performance["mae"] > 0
    events = synth.regression_frame(100_000, seed=21, at=40_000, factor=2.0, at2=70_000, factor2=0.4)
    res = replay_frames(events, prof)
    fired = [a for a in res.alerts if a["status"] == "firing"]
    assert not [a for a in res.alerts if a["row"] < 40_000]
    perf = [a for a in fired if a["monitor"] == "performance"]
    assert [a["direction"] for a in perf] == ["degradation", "improvement"]
    up, down = perf
    assert 40_000 <= up["row"] < 42_000 and up["severity"] == "critical" and up["statistic"] == "mae"
    assert up["value"] > up["threshold"] > prof.performance["mae"]
    assert 70_000 <= down["row"] < 72_000 and down["severity"] == "info"
    assert down["value"] < down["threshold"] < prof.performance["mae"]
    cd = [a for a in fired if a["monitor"] == "concept_drift"]
    assert cd and cd[0]["direction"] == "degradation" and 40_000 <= cd[0]["row"] <= 40_500
    assert any(a["direction"] == "improvement" and a["row"] >= 70_000 for a in cd)
    assert not [a for a in fired if a["monitor"] in ("data_drift", "prediction_drift")]


def test_regression_stable_stream_is_quiet():
    prof = build_profile(synth.regression_frame(20_000, seed=2001), label="label")
    res = replay_frames(synth.regression_frame(60_000, seed=22), prof, ReplayOptions(config=DetectionConfig()))
    assert [a for a in res.alerts if a["status"] == "firing"] == []

"""Estimated MAE of a regression model (direct loss estimation, detectors/estimation_regression.py).

The model predicts ``x1``; the target is ``x1`` plus noise that is larger where ``x2 > 1`` (and, for
``x3``, nowhere different), so moving ``x2`` up moves rows into a region where the reference's errors were
larger, and moving ``x3`` does not change the error.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from detectors.batch import EventBatch, OutcomeBatch
from detectors.config import DetectionConfig
from detectors.monitor import ModelMonitor
from detectors.profile import build_profile

WINDOW = 1000
SHIFT_AT = 10_000


def _frame(x: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    noise = rng.normal(size=len(x)) * np.where(x[:, 1] > 1, 1.5, 0.4)
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "prediction": x[:, 0],
                         "label": x[:, 0] + noise})


def _stream(seed: int, shift: str = "none", n: int = 20_000,
            labels: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]], ModelMonitor]:
    rng = np.random.default_rng(seed)
    ref = _frame(rng.normal(size=(5000, 3)), rng)
    mon = ModelMonitor(build_profile(ref, label="label", task="regression"), DetectionConfig(window=WINDOW),
                       model="m")
    x = rng.normal(size=(n, 3))
    if shift == "noisy":  # x2 up by 0.6 sd: 27% of the rows in the noisy region instead of 16% (MAE +20%)
        x[SHIFT_AT:, 1] += 0.6
    elif shift == "neutral":
        x[SHIFT_AT:, 2] += 2.0
    cur = _frame(x, rng)
    ids, t = np.arange(n).astype(str).astype(object), np.arange(n)
    p = cur["prediction"].to_numpy()
    alerts = mon.observe(EventBatch.from_columns(ids=ids, timestamps=t,
                                                 features={c: cur[c].to_numpy() for c in ("x1", "x2", "x3")},
                                                 prediction=p))
    if labels:
        alerts += mon.observe_outcomes(OutcomeBatch(ids=ids, timestamps=t, label_timestamps=t, prediction=p,
                                                    label=cur["label"].to_numpy()))
    return [a for a in alerts if a["monitor"] == "estimated_performance"], mon.drain_windows(), mon


def test_shift_into_larger_errors_raises_degradation_without_labels() -> None:
    alerts, records, _ = _stream(1, "noisy", labels=False)
    assert [(a["status"], a["direction"], a["feature"], a["detector"]) for a in alerts] == [
        ("firing", "degradation", "mae", "dle")]
    assert SHIFT_AT <= alerts[0]["row"] < SHIFT_AT + 5000
    assert alerts[0]["value"] > alerts[0]["threshold"] > alerts[0]["evidence"]["reference_estimate"]
    assert len([r for r in records if r["kind"] == "estimation"]) == 20


def test_error_neutral_shift_raises_none() -> None:
    alerts, records, _ = _stream(2, "neutral")
    assert alerts == []
    assert any("x3" in r["drifted"] for r in records if r["kind"] == "predictions")  # the shift is real


@pytest.mark.parametrize("seed", range(10, 14))
def test_no_alert_on_no_change_streams(seed: int) -> None:
    alerts, _, _ = _stream(seed)
    assert alerts == []


def test_estimate_meets_realized_mae() -> None:
    _, records, mon = _stream(3, "noisy")
    real = [r for r in records if r["kind"] == "estimation_realized"]
    assert [r["index"] for r in real] == list(range(20))
    for r in real:  # the estimate's error is within its interval (3 sampling errors) before and after
        i = r["interval"]["mae"]
        assert i["lo"] <= r["realized"]["mae"] <= i["hi"], r
    after = np.mean([r["realized"]["mae"] for r in real[SHIFT_AT // WINDOW:]])
    before = np.mean([r["realized"]["mae"] for r in real[: SHIFT_AT // WINDOW]])
    assert after > 1.2 * before  # the shift did make the model worse
    assert not real[-1]["gap"]["condition"]  # the calibration holds (no concept drift)
    state = json.loads(json.dumps(mon.to_state()))  # JSON-ready, and restored exactly
    assert ModelMonitor.from_state(mon.profile, mon.config, "m", None, state).to_state() == state


def test_regression_replay_without_labels_estimates_and_the_timeline_marks_the_rise() -> None:
    from stream.backtest.event_columns import ReplayOptions
    from stream.backtest.file_replay import replay_frames
    from stream.backtest.timeline import ESTIMATED, build_timeline

    rng = np.random.default_rng(4)
    ref = _frame(rng.normal(size=(5000, 3)), rng)
    x = rng.normal(size=(12_000, 3))
    x[6000:, 1] += 0.6
    cur = _frame(x, rng).drop(columns=["label"])
    res = replay_frames(cur, ref, ReplayOptions(task="regression"))
    est = [(a["status"], a["direction"], a["feature"]) for a in res.alerts if a["monitor"] == "estimated_performance"]
    assert est == [("firing", "degradation", "mae")]
    panel = next(p for p in build_timeline(res.windows, res.alerts).panels if p.name == ESTIMATED)
    assert panel.drift == [False] * 6 + [True] * 6  # above the band's top after the shift


def test_infinite_and_huge_reference_values_are_the_trees_extremes() -> None:
    """A reference feature with infinities and values past float32 (where the error tree splits) still fits:
    they are its extremes, on the same side of every split as they fall when estimating."""
    rng = np.random.default_rng(3)
    ref = _frame(rng.normal(size=(5000, 3)), rng)
    ref.loc[::50, "x2"] = np.inf
    ref.loc[1::50, "x2"] = -1e300
    profile = build_profile(ref, label="label", task="regression")
    assert profile.estimation["kind"] == "regression"
    mon = ModelMonitor(profile, DetectionConfig(window=WINDOW), model="m")
    x = rng.normal(size=(3000, 3))
    x[::7, 1] = np.inf
    mon.observe(EventBatch.from_columns(ids=np.arange(3000).astype(str), timestamps=np.arange(3000),
                                        features={"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2]}, prediction=x[:, 0]))
    estimates = [r for r in mon.drain_windows() if r["kind"] == "estimation"]
    assert len(estimates) == 3 and all(np.isfinite(r["estimated"]["mae"]) for r in estimates)

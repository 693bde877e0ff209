"""Estimated performance in the evidence: the monitoring run's metrics (estimate, realized and its error at the
window's step) and the Evidently snapshot of a window."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from detectors.batch import EventBatch, OutcomeBatch
from detectors.config import DetectionConfig
from detectors.monitor import ModelMonitor
from detectors.profile import build_profile
from stream.evidence.window_metrics import compact_width, compact_window_metrics

WINDOW = 1000


def _rows(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = 1 / (1 + np.exp(-3 * x))
    return s, (s > 0.5).astype(int), (rng.random(len(x)) < s).astype(int)


@pytest.fixture(scope="module")
def replayed() -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Reference, stream (unsure from row 3,000) and the window records of a monitor fed both, with labels.

    Timestamps repeat (two events per millisecond), so windows share boundary timestamps."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=5000)
    s, p, y = _rows(x, rng)
    ref = pd.DataFrame({"x": x, "prediction": p, "label": y, "1": s})
    mon = ModelMonitor(build_profile(ref, label="label", scores=["1"]), DetectionConfig(window=WINDOW), model="m")
    n = 6000
    x = np.r_[rng.normal(size=3000), rng.normal(0, 0.3, size=n - 3000)]
    s, p, y = _rows(x, rng)
    cur = pd.DataFrame({"x": x, "prediction": p, "label": y, "1": s})
    ids, t = np.arange(n).astype(str).astype(object), np.arange(n) // 2
    mon.observe(EventBatch.from_columns(ids=ids, timestamps=t, features={"x": x}, prediction=p, scores={"1": s}))
    mon.observe_outcomes(OutcomeBatch(ids=ids, timestamps=t, label_timestamps=t, prediction=p.astype(float),
                                      label=y.astype(float), scores={"1": s}))
    return ref, cur, mon.drain_windows()


def test_every_window_gets_its_realized_record_when_windows_share_boundary_timestamps(replayed) -> None:
    _, _, recs = replayed
    est = [r["index"] for r in recs if r["kind"] == "estimation"]
    real = {r["index"]: r for r in recs if r["kind"] == "estimation_realized"}
    assert est == list(range(6)) and sorted(real) == est
    assert all(abs(r["labelled"] - WINDOW) <= 1 for r in real.values())


def test_compact_metrics_put_estimate_realized_and_error_at_the_window_step(replayed) -> None:
    _, _, recs = replayed
    est = next(r for r in recs if r["kind"] == "estimation" and r["index"] == 4)
    real = next(r for r in recs if r["kind"] == "estimation_realized" and r["index"] == 4)
    i, end, m = compact_window_metrics(est)
    assert (i, end) == (4, est["end"])
    assert {"estimation/scored", "estimation/tested", "estimation/estimated/accuracy", "estimation/band/accuracy/lo",
            "estimation/band/accuracy/hi", "estimation/estimated/roc_auc"} <= set(m)
    assert not any(k.startswith("estimation/band/f1") for k in m)  # bands only for the metrics that alert
    assert m["estimation/estimated/accuracy"] < m["estimation/band/accuracy/lo"]  # the unsure part
    assert len(m) <= compact_width(est)
    i, _, m = compact_window_metrics(real)
    assert i == 4
    assert m["estimation/error/accuracy"] == pytest.approx(
        est["estimated"]["accuracy"] - m["estimation/realized/accuracy"])
    assert abs(m["estimation/error/accuracy"]) < 0.05
    assert len(m) <= compact_width(real)


@pytest.mark.system  # MLflow on sqlite: about 9 s here
def test_monitoring_run_logs_estimates_next_to_realized(replayed, tmp_path) -> None:
    from stream.evidence.monitoring_run import MonitoringRun

    _, _, recs = replayed
    run = MonitoringRun(f"sqlite:///{tmp_path}/mlflow.db", artifact_root=tmp_path / "art", kind="replay",
                        system_metrics=False).start()
    run.log_windows("m", recs)
    run.finish()
    hist = {k: {h.step: h.value for h in run.client.get_metric_history(run.run_id, f"m/estimation/{k}")}
            for k in ("estimated/accuracy", "realized/accuracy", "error/accuracy")}
    assert sorted(hist["estimated/accuracy"]) == sorted(hist["realized/accuracy"]) == list(range(6))
    for step, err in hist["error/accuracy"].items():
        assert err == pytest.approx(hist["estimated/accuracy"][step] - hist["realized/accuracy"][step])


@pytest.mark.system  # Evidently: about 5 s here
def test_snapshot_carries_the_windows_estimate(replayed) -> None:
    from stream.evidence.evidently_report import build_snapshot

    ref, cur, recs = replayed
    est = next(r for r in recs if r["kind"] == "estimation" and r["index"] == 4)
    snap = build_snapshot(cur.iloc[4000:5000], ref, features=["x"], sample_size=1000, estimate=est)
    got = snap.to_dict()["glassbox"]["estimated_performance"]
    assert got["accuracy"]["value"] == pytest.approx(est["estimated"]["accuracy"])
    assert got["accuracy"]["lo"] == pytest.approx(est["band"]["accuracy"]["lo"])
    assert got["f1"]["lo"] is None
    assert "below its band" in snap.metadata["estimated_accuracy"]
    assert snap.snapshot.to_snapshot_model().metadata["estimated_accuracy"] == snap.metadata["estimated_accuracy"]

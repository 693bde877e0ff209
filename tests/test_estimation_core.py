"""Estimated performance (CBPE) in the pure core: the acceptance scenarios of issue 18 and the unit pieces.

The streams come from a logistic model on ``x1`` whose scores are calibrated on the reference: its accuracy
falls when ``x1`` moves towards the decision boundary (an unsure region) and does not move with ``x2``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from detectors.batch import EventBatch, OutcomeBatch
from detectors.config import DetectionConfig
from detectors.estimation_fit import METRICS, isotonic, metrics
from detectors.monitor import ModelMonitor
from detectors.performance_metrics import classification_metrics
from detectors.profile import build_profile
from tests import synth

WINDOW = 1000
SHIFT_AT = 10_000


def _model(x1: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = 1 / (1 + np.exp(-3 * x1))
    return s, (s > 0.5).astype(int), (rng.random(len(x1)) < s).astype(int)


def _monitor(rng: np.random.Generator, **cfg: Any) -> ModelMonitor:
    x1, x2 = rng.normal(size=5000), rng.normal(size=5000)
    s, p, y = _model(x1, rng)
    ref = pd.DataFrame({"x1": x1, "x2": x2, "prediction": p, "label": y, "0": 1 - s, "1": s})
    profile = build_profile(ref, label="label", scores=["0", "1"])
    return ModelMonitor(profile, DetectionConfig(window=WINDOW, **cfg), model="m")


def _stream(seed: int, shift: str = "none", n: int = 20_000, labels: bool = True,
            flip: float = 0.0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Alerts and window records of one stream; ``shift`` changes the inputs from row SHIFT_AT on."""
    rng = np.random.default_rng(seed)
    mon = _monitor(rng)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    if shift == "unsure":
        x1[SHIFT_AT:] = rng.normal(0, 0.3, n - SHIFT_AT)
    elif shift == "neutral":
        x2[SHIFT_AT:] += 2.0
    s, p, y = _model(x1, rng)
    if flip:  # concept drift: the labels change where the model is confident, its scores do not
        y[SHIFT_AT:] = np.where((rng.random(n - SHIFT_AT) < flip) & (x1[SHIFT_AT:] > 0.5), 0, y[SHIFT_AT:])
    ids, t = np.arange(n).astype(str).astype(object), np.arange(n)
    scores = {"0": 1 - s, "1": s}
    alerts = mon.observe(EventBatch.from_columns(ids=ids, timestamps=t, features={"x1": x1, "x2": x2},
                                                 prediction=p, scores=scores))
    if labels:
        alerts += mon.observe_outcomes(OutcomeBatch(ids=ids, timestamps=t, label_timestamps=t,
                                                    prediction=p.astype(float), label=y.astype(float),
                                                    scores=scores))
    return [a for a in alerts if a["monitor"] == "estimated_performance"], mon.drain_windows()


def test_unsure_shift_raises_degradation_without_labels() -> None:
    alerts, records = _stream(1, "unsure", labels=False)
    assert [(a["status"], a["direction"], a["severity"], a["feature"]) for a in alerts] == [
        ("firing", "degradation", "warning", "accuracy")]
    assert alerts[0]["row"] - SHIFT_AT < 5000
    assert alerts[0]["value"] < alerts[0]["threshold"] < alerts[0]["evidence"]["reference_estimate"]
    assert not [r for r in records if r["kind"] == "estimation_realized"]  # no labels, still estimated


def test_accuracy_neutral_shift_raises_none() -> None:
    alerts, records = _stream(2, "neutral")
    assert alerts == []
    drift = [r for r in records if r["kind"] == "predictions" and "x2" in r["drifted"]]
    assert drift, "the shift is real: x2 drifted"


def test_synthetic_covariate_shift_with_constant_error_raises_none() -> None:
    """tests/synth.py: labels are the rule flipped at a fixed rate, so a covariate shift keeps the accuracy."""
    ref = synth.frame(5000, seed=11)
    cur = synth.frame(20_000, seed=12, scenario="covariate", at=10_000)
    for df in (ref, cur):
        df["0"] = 1 - df["score"]
    prof = build_profile(ref.drop(columns=["score"]).rename(columns={"0": "s0"}).assign(**{"1": ref["score"]}),
                         label="label", scores=["s0", "1"])
    mon = ModelMonitor(prof, DetectionConfig(window=WINDOW), model="m")
    t = np.arange(len(cur))
    b = EventBatch.from_columns(ids=t.astype(str), timestamps=t,
                                features={f: cur[f].to_numpy() for f in synth.FEATURES},
                                prediction=cur["prediction"].to_numpy(),
                                scores={"s0": cur["0"].to_numpy(), "1": cur["score"].to_numpy()})
    alerts = mon.observe(b)
    assert any(a["monitor"] == "data_drift" for a in alerts)
    assert not [a for a in alerts if a["monitor"] == "estimated_performance"]


@pytest.mark.parametrize("seed", range(10, 16))
def test_no_alert_on_no_change_streams(seed: int) -> None:
    alerts, records = _stream(seed)
    assert alerts == []
    assert len([r for r in records if r["kind"] == "estimation"]) == 20


def test_estimate_within_band_of_realized_in_stable_part() -> None:
    _, records = _stream(3, "unsure")
    realized = [r for r in records if r["kind"] == "estimation_realized"]
    assert len(realized) == 20
    for r in realized[: SHIFT_AT // WINDOW]:
        lo, hi = r["interval"]["accuracy"]["lo"], r["interval"]["accuracy"]["hi"]
        assert lo <= r["realized"]["accuracy"] <= hi, r
        assert r["error"]["accuracy"] == pytest.approx(r["estimated"]["accuracy"] - r["realized"]["accuracy"])
    stable = [r["error"]["accuracy"] for r in realized if r["end"] < SHIFT_AT]
    shifted = [r for r in realized if r["start"] >= SHIFT_AT]
    assert abs(np.mean(stable)) < 0.02
    assert np.mean([r["realized"]["accuracy"] for r in shifted]) < 0.7  # the shift costs > 10 points


def test_concept_drift_is_reported_as_a_persistent_gap() -> None:
    alerts, records = _stream(4, flip=0.5)
    assert alerts == []  # CBPE is blind to concept drift: the estimate does not move
    realized = [r for r in records if r["kind"] == "estimation_realized"]
    gaps = [r for r in realized if r["gap"] and r["gap"]["condition"]]
    assert gaps and min(r["start"] for r in gaps) >= SHIFT_AT
    assert gaps[-1]["gap"]["mean_error"] > 0.05  # the estimate stays optimistic
    assert not any(r["gap"]["condition"] for r in realized if r["gap"] and r["end"] < SHIFT_AT)


def test_state_round_trip_continues_exactly() -> None:
    whole = _stream(5, "unsure")
    rng = np.random.default_rng(5)
    mon = _monitor(rng)
    n = 20_000
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    x1[SHIFT_AT:] = rng.normal(0, 0.3, n - SHIFT_AT)
    s, p, y = _model(x1, rng)
    ids, t = np.arange(n).astype(str).astype(object), np.arange(n)
    alerts: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for a, b in ((0, 7300), (7300, n)):
        alerts += mon.observe(EventBatch.from_columns(ids=ids[a:b], timestamps=t[a:b],
                                                      features={"x1": x1[a:b], "x2": x2[a:b]}, prediction=p[a:b],
                                                      scores={"0": 1 - s[a:b], "1": s[a:b]}))
        records += mon.drain_windows()
        state = mon.to_state()
        mon = ModelMonitor.from_state(mon.profile, mon.config, "m", None, state)
    alerts += mon.observe_outcomes(OutcomeBatch(ids=ids, timestamps=t, label_timestamps=t,
                                                prediction=p.astype(float), label=y.astype(float),
                                                scores={"0": 1 - s, "1": s}))
    records += mon.drain_windows()
    est = [a for a in alerts if a["monitor"] == "estimated_performance"]
    assert [(a["status"], a["event_time"]) for a in est] == [(a["status"], a["event_time"]) for a in whole[0]]
    def key(recs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:  # sums over two chunks differ in the last bit
        return [(r["kind"], r["index"], round(r["estimated"]["accuracy"], 9),
                 round(r.get("realized", {}).get("accuracy", 0.0), 9)) for r in recs if r["kind"].startswith("estim")]

    assert key(records) == key(whole[1])


def test_labels_in_any_order_realize_the_same_windows() -> None:
    """Labels in prediction order (a replay: the ends are searched in the times) and shuffled (a live join:
    each time searched among the ends) land in the same windows; so do labels that come before their windows
    close (they wait, up to a bound)."""
    n = 8_000
    runs = []
    for order in ("sorted", "shuffled", "early"):
        rng = np.random.default_rng(7)
        mon = _monitor(rng)
        x1 = rng.normal(size=n)
        s, p, y = _model(x1, rng)
        ids, t = np.arange(n).astype(str).astype(object), np.arange(n)
        perm = np.random.default_rng(8).permutation(n) if order == "shuffled" else np.arange(n)
        scores = {"0": 1 - s, "1": s}
        labels = [OutcomeBatch(ids=ids[rows], timestamps=t[rows], label_timestamps=t[rows],
                               prediction=p[rows].astype(float), label=y[rows].astype(float),
                               scores={k: v[rows] for k, v in scores.items()})
                  for rows in np.split(perm, [3_000 if order == "early" else 0])]
        mon.observe_outcomes(labels[0])  # "early": the first labels come before their predictions (they wait)
        mon.observe(EventBatch.from_columns(ids=ids, timestamps=t, features={"x1": x1, "x2": rng.normal(size=n)},
                                            prediction=p, scores=scores))
        mon.observe_outcomes(labels[1])
        mon.observe(EventBatch.from_columns(ids=ids[:1], timestamps=[n], features={"x1": x1[:1], "x2": x1[:1]},
                                            prediction=p[:1], scores={k: v[:1] for k, v in scores.items()}))
        runs.append([(r["index"], r["labelled"], r["realized"]) for r in mon.drain_windows()
                     if r["kind"] == "estimation_realized"])
    assert len(runs[0]) == n // WINDOW
    assert all(r[1] == WINDOW for r in runs[0])
    assert runs[1] == runs[0]
    assert runs[2] == runs[0]


def test_bands_do_not_depend_on_the_sizes_drawn_before() -> None:
    """A band is drawn from the seed afresh for each window size, so a restarted worker (or another replay in
    the process, which shares remembered bands) gets the same band whatever sizes came before."""
    from detectors.estimation import _BANDS

    _BANDS.clear()
    first = _monitor(np.random.default_rng(9)).estimation
    assert first is not None
    alone = first.limits(1000)
    _BANDS.clear()
    second = _monitor(np.random.default_rng(9)).estimation
    assert second is not None
    assert second.limits(500) != alone
    assert second.limits(1000) == alone
    assert _monitor(np.random.default_rng(9)).estimation.limits(1000) is second.limits(1000)  # remembered


def test_windows_not_kept_leave_no_record_and_decide_the_same() -> None:
    """``keep_records = False`` (a replay that keeps no windows): no record of any kind, the same alerts and the
    same state as with records."""
    out = []
    for keep in (True, False):
        rng = np.random.default_rng(12)
        mon = _monitor(rng)
        mon.keep_records = keep
        n = 12_000
        x1 = np.r_[rng.normal(size=6000), rng.normal(0, 0.3, size=6000)]
        s, p, y = _model(x1, rng)
        y[8000:] = 1 - y[8000:]  # concept drift too: performance and gap records
        ids, t = np.arange(n).astype(str).astype(object), np.arange(n)
        scores = {"0": 1 - s, "1": s}
        alerts = mon.observe(EventBatch.from_columns(ids=ids, timestamps=t, features={"x1": x1, "x2": x1},
                                                     prediction=p, scores=scores))
        alerts += mon.observe_outcomes(OutcomeBatch(ids=ids, timestamps=t, label_timestamps=t,
                                                    prediction=p.astype(float), label=y.astype(float),
                                                    scores=scores))
        out.append((alerts, mon.drain_windows(), mon.to_state()))
    (alerts, records, state), (alerts_off, records_off, state_off) = out
    assert {r["kind"] for r in records} == {"predictions", "outcomes", "estimation", "estimation_realized"}
    assert {a["monitor"] for a in alerts} >= {"estimated_performance", "performance"}
    assert records_off == []
    assert alerts_off == alerts and state_off == state


def test_multiclass_estimate_tracks_realized() -> None:
    rng = np.random.default_rng(6)

    def rows(n: int, spread: float) -> pd.DataFrame:
        z = rng.normal(size=(n, 3)) * spread
        q = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        y = (rng.random(n)[:, None] > np.cumsum(q, 1)).sum(1)
        return pd.DataFrame({"x": z[:, 0], "prediction": q.argmax(1), "label": y, "0": q[:, 0], "1": q[:, 1],
                             "2": q[:, 2]})

    prof = build_profile(rows(6000, 2.0), label="label", scores=["0", "1", "2"])
    assert prof.task == "multiclass" and prof.estimation
    mon = ModelMonitor(prof, DetectionConfig(window=WINDOW), model="m")
    cur = pd.concat([rows(5000, 2.0), rows(5000, 0.7)], ignore_index=True)
    t = np.arange(len(cur))
    sc = {c: cur[c].to_numpy() for c in "012"}
    alerts = mon.observe(EventBatch.from_columns(ids=t.astype(str), timestamps=t, features={"x": cur["x"]},
                                                 prediction=cur["prediction"].to_numpy(), scores=sc))
    alerts += mon.observe_outcomes(OutcomeBatch(ids=t.astype(str).astype(object), timestamps=t,
                                                label_timestamps=t, prediction=cur["prediction"].to_numpy(float),
                                                label=cur["label"].to_numpy(float), scores=sc))
    real = [r for r in mon.drain_windows() if r["kind"] == "estimation_realized"]
    inside = [r["interval"]["accuracy"]["lo"] <= r["realized"]["accuracy"] <= r["interval"]["accuracy"]["hi"]
              for r in real[:5]]
    assert len(real) == 10 and all(inside)
    assert abs(np.mean([r["error"]["accuracy"] for r in real])) < 0.03
    assert all(r["estimated"]["roc_auc"] is not None for r in real)
    est = [a for a in alerts if a["monitor"] == "estimated_performance"]
    assert est and est[0]["direction"] == "degradation" and est[0]["row"] < 10_000


def test_regression_estimates_mae_and_estimation_can_be_turned_off() -> None:
    from detectors.estimation_regression import RegressionEstimationMonitor

    prof = build_profile(synth.regression_frame(2000, seed=1), label="label")
    assert isinstance(ModelMonitor(prof, DetectionConfig(window=WINDOW)).estimation, RegressionEstimationMonitor)
    assert ModelMonitor(prof, DetectionConfig(window=WINDOW, estimation_metrics=[])).estimation is None


def test_metrics_on_a_realized_confusion_match_the_performance_metrics() -> None:
    rng = np.random.default_rng(7)
    pred, lab = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    score = np.where(pred == 1, rng.random(500) * 0.5 + 0.5, rng.random(500) * 0.5)
    conf = np.bincount(pred * 2 + lab, minlength=4).reshape(2, 2).astype(float)
    edges = np.unique(score)
    b = np.searchsorted(edges, score)
    hist = np.stack([np.bincount(b, weights=lab, minlength=len(edges)),
                     np.bincount(b, weights=1 - lab, minlength=len(edges))], -1)
    mine = metrics(conf, hist, positive=1)
    ref = classification_metrics(pred, lab, n_classes=2, positive=1, scores=score)
    assert float(mine["accuracy"]) == pytest.approx(ref["accuracy"])
    assert float(mine["f1"]) == pytest.approx(ref["f1"])
    assert float(mine["roc_auc"]) == pytest.approx(ref["auc"])
    assert set(mine) == set(METRICS)


def test_isotonic_is_monotone_and_keeps_the_weighted_mean() -> None:
    rng = np.random.default_rng(8)
    rate, w = rng.random(40), rng.integers(1, 50, 40).astype(float)
    fit = isotonic(rate, w)
    assert np.all(np.diff(fit) >= -1e-12)
    assert np.average(fit, weights=w) == pytest.approx(np.average(rate, weights=w))


def test_windows_without_scores_are_not_estimated() -> None:
    mon = _monitor(np.random.default_rng(9))
    n = 3000
    mon.observe(EventBatch.from_columns(ids=np.arange(n).astype(str), timestamps=np.arange(n),
                                        features={"x1": np.zeros(n), "x2": np.zeros(n)}, prediction=np.zeros(n)))
    assert {r["kind"] for r in mon.drain_windows()} == {"predictions"}



def _realized_records(labels_in: str) -> list[dict[str, Any]]:
    """The realized estimation records of a binary stream whose labels come after each 3,000-event batch as
    ``labels_in``: the batch's own prediction and score arrays, copies, or copies in another order."""
    ref, ev = synth.frame(20_000, seed=31), synth.frame(12_000, seed=32)
    mon = ModelMonitor(build_profile(ref, label="label", scores=["score"]), DetectionConfig(window=WINDOW))
    records = []
    for a in range(0, len(ev), 3000):
        part = ev.iloc[a: a + 3000]
        pred, score = part["prediction"].to_numpy(np.float64), part["score"].to_numpy()
        ids, t = np.arange(a, a + len(part)).astype(str).astype(object), np.arange(a, a + len(part))
        feats = {c: part[c].to_numpy() for c in synth.FEATURES}
        mon.observe(EventBatch.from_columns(ids=ids, timestamps=t, features=feats, prediction=pred,
                                            scores={"score": score}))
        order = np.arange(len(part)) if labels_in != "shuffled" else np.random.default_rng(a).permutation(len(part))
        if labels_in != "same":
            pred, score = pred[order], score[order]
        mon.observe_outcomes(OutcomeBatch(ids=ids[order], timestamps=t[order], label_timestamps=t[order],
                                          prediction=pred, label=part["label"].to_numpy(np.float64)[order],
                                          scores={"score": score}))
        records += [r for r in mon.drain_windows() if r["kind"] == "estimation_realized"]
    return records


def test_outcomes_joined_to_the_last_batch_realize_the_same_windows() -> None:
    """A replay joins labels at once: the outcomes carry the prediction batch's own arrays, whose class codes
    and score bins the monitor looked up already; copies, or the outcomes in another order, realize the same."""
    same = _realized_records("same")
    assert len(same) >= 10 and all(r["realized"]["roc_auc"] is not None for r in same)
    assert _realized_records("copies") == same
    assert _realized_records("shuffled") == same

"""Units of the detection core: profile, statistics, calibration, hysteresis, River state, metrics."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import orjson
import pandas as pd
import pytest
import synth
from river import drift
from river.drift import binary
from scipy import stats as sps
from scipy.spatial import distance

from detectors import river_state
from detectors.calibration import tail_quantile
from detectors.config import DetectionConfig
from detectors.hysteresis import Hysteresis
from detectors.performance_metrics import auc_score, classification_metrics
from detectors.profile import ReferenceProfile, build_profile, infer_task
from detectors.stats import jensenshannon, ks, ks_pvalue, psi, wasserstein, wasserstein_weights


def test_profile_infers_types_task_and_round_trips_exactly():
    df = synth.frame(5_000, seed=1)
    df["flag"] = df["num_0"] > 0
    df["code"] = (df["num_1"] > 0).astype(int) + 1
    p = build_profile(df, label="label", scores=["score"], categorical=["code"])
    assert p.task == "binary" and p.classes == ["0", "1"] and p.positive_class == "1"
    types = p.column_types
    assert types["num_0"] == "numeric" and types["cat_0"] == "categorical"
    assert types["flag"] == "categorical" and types["code"] == "categorical" and types["score"] == "numeric"
    assert p.features == synth.FEATURES + ["flag", "code"]
    assert p.monitored[-2:] == ["prediction", "score"]
    assert 0.9 < p.performance["accuracy"] < 1.0 and p.performance["auc"] > 0.9
    col = p.columns["num_3"]
    assert col.missing == pytest.approx(50, abs=30) and col.lo < col.hi <= len(col.cuts)
    assert sum(col.counts) == col.count
    s = p.to_json()
    q = ReferenceProfile.from_json(s)
    assert q == p and q.to_json() == s and q.digest == p.digest
    # the digest is the sha256 of the profile's JSON with keys sorted at every level, as it has always been
    # (stored states, alerts and MLflow tags carry it)
    canonical = orjson.dumps(dataclasses.asdict(p), option=orjson.OPT_SORT_KEYS)
    assert p.digest == hashlib.sha256(canonical).hexdigest()[:16]


def test_profile_overrides_and_errors():
    df = synth.regression_frame(2_000, seed=3)
    assert build_profile(df, label="label").task == "regression"
    assert build_profile(df, label="label", features=["num_0", "num_1"]).features == ["num_0", "num_1"]
    with pytest.raises(ValueError, match="label column 'nope'"):
        build_profile(df, label="nope")
    with pytest.raises(ValueError, match="unknown task"):
        build_profile(df, task="ranking")
    assert infer_task(pd.Series(["a", "b", "c"]), None) == "multiclass"
    assert infer_task(pd.Series([1, 2, 3, 2]), None) == "multiclass"
    assert infer_task(pd.Series([0.1, 2.5]), None) == "regression"


def test_statistics_agree_with_scipy():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(8))
    counts = rng.multinomial(1000, rng.dirichlet(np.ones(8)))
    q = counts / counts.sum()
    assert jensenshannon(p, counts) == pytest.approx(distance.jensenshannon(p, q), rel=1e-9)
    assert psi(p, counts) == pytest.approx(np.sum((q - p) * np.log(q / p)), rel=1e-9)
    # binned KS / Wasserstein against scipy on raw samples binned finely
    ref, cur = rng.normal(size=20_000), rng.normal(0.3, 1.2, size=2_000)
    cuts = np.r_[np.quantile(ref, np.linspace(0, 1, 201)[1:-1]), np.finfo(float).max]
    pr = np.bincount(np.searchsorted(cuts, ref, "right"), minlength=len(cuts))[: len(cuts)] / len(ref)
    cc = np.bincount(np.searchsorted(cuts, cur, "right"), minlength=len(cuts))[: len(cuts)]
    d = ks(pr, cc)
    assert d == pytest.approx(sps.ks_2samp(ref, cur).statistic, abs=0.01)
    assert ks_pvalue(d, 2_000, 20_000) < 1e-10
    w = wasserstein(pr, cc, wasserstein_weights(cuts), ref.std())
    assert w == pytest.approx(sps.wasserstein_distance(ref, cur) / ref.std(), rel=0.1)


def test_tail_quantile_extrapolates_conservatively():
    rng = np.random.default_rng(1)
    chi = rng.chisquare(4, 1_000)
    q = tail_quantile(chi, 1e-6)
    true = sps.chi2.isf(1e-6, 4)
    assert true <= q < 1.25 * true
    g = np.abs(rng.normal(size=1_000))
    assert tail_quantile(g, 1e-6) >= sps.halfnorm.isf(1e-6)
    assert tail_quantile(np.ones(100), 1e-6) >= 1.0


def test_calibrated_thresholds_control_false_alarms_on_null_windows():
    """Null windows resampled from a fresh sample of the same population rarely cross the thresholds."""
    prof = build_profile(synth.frame(20_000, seed=5), label="label", scores=["score"])
    from detectors.window_tests import WindowTests

    wt = WindowTests(prof, DetectionConfig())
    lim = wt.limits(1000)
    assert wt.alpha == pytest.approx(0.05 / (1000 * wt.n_tests))
    assert np.all(lim.num_score > lim.num_null_mean) and np.all(np.isfinite(lim.cat_score))
    assert np.all(lim.num_missing >= 0.01)


def test_hysteresis_fire_after_and_direction_changes():
    h = Hysteresis(fire_after=2, resolve_after=1)
    assert [h.update(c) for c in (True, False, True, True, False)] == [None, None, None, "firing", "resolved"]
    h = Hysteresis(1, 3)
    assert h.update(True, "degradation") == "firing"
    assert h.update(True, "improvement") == "firing" and h.direction == "improvement"
    state = orjson.loads(orjson.dumps(h.to_state()))
    g = Hysteresis(1, 3)
    g.load_state(state)
    assert g.to_state() == h.to_state()


@pytest.mark.parametrize("make", [drift.ADWIN, binary.DDM, binary.HDDMW, binary.HDDMA, drift.PageHinkley,
                                  binary.EDDM, binary.FHDDM])
def test_river_detectors_round_trip_through_json(make):
    rng = np.random.default_rng(0)
    xs = (rng.random(6_000) < np.where(np.arange(6_000) < 3_000, 0.05, 0.3)).astype(float).tolist()

    def run(restore_every: int | None) -> list[int]:
        det, hits = make(), []
        for i, x in enumerate(xs):
            if restore_every and i % restore_every == 0:
                det = river_state.loads(orjson.loads(orjson.dumps(river_state.dumps(det))))
            det.update(x)
            if det.drift_detected:
                hits.append(i)
        return hits

    assert run(None) == run(499)


def test_river_state_refuses_foreign_classes():
    with pytest.raises(ValueError, match="not a River class"):
        river_state.loads({"__obj__": "os:system", "attrs": {}})
    with pytest.raises(TypeError):
        river_state.dumps(object())


def test_classification_metrics():
    pred = np.array([0, 1, 1, 2, 2, 0])
    lab = np.array([0, 1, 2, 2, 1, 0])
    m = classification_metrics(pred, lab, n_classes=3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    from sklearn.metrics import f1_score, roc_auc_score

    assert m["f1"] == pytest.approx(f1_score(lab, pred, average="macro"))
    rng = np.random.default_rng(0)
    s = rng.random(500)
    y = rng.random(500) < s
    s[:50] = 0.5  # ties
    assert auc_score(s, y) == pytest.approx(roc_auc_score(y, s))


def test_binomial_quantiles_match_scipy_stats() -> None:
    """The calibration's binomial quantiles (SciPy's ufuncs, imported without scipy.stats) agree with scipy.stats."""
    from scipy.stats import binom

    from detectors.calibration import binomial_floor, binomial_limit

    rng = np.random.default_rng(3)
    n = rng.integers(1, 20_000, 500)
    p = rng.uniform(1e-6, 0.999, 500)
    for alpha in (1e-7, 1e-3, 0.05):
        np.testing.assert_array_equal(binomial_limit(n, p, alpha), binom.isf(alpha, n, p))
        np.testing.assert_array_equal(binomial_floor(n, p, alpha), binom.ppf(alpha, n, p))

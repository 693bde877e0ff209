"""Per-window drift and data-quality tests of every monitored column against the reference profile.

For each closed window, :meth:`WindowTests.evaluate` takes the window's bin counts and returns, per column,
all drift statistics (PSI, normed Wasserstein, Jensen-Shannon, KS and chi-square p-values), the decision
statistic with its threshold and verdict, and the data-quality checks (missing rate, out-of-range values,
unseen categories, wrong types). Thresholds are static, calibrated (see :mod:`detectors.calibration`) or
dynamic (River PageHinkley or ADWIN over each column's series of standardised window statistics);
calibrated limits are computed once per window size and cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors import river_state
from detectors.calibration import binomial_limit, null_counts, tail_quantile
from detectors.config import DetectionConfig
from detectors.encoding import CategoricalBins, NumericBins
from detectors.profile import CategoricalColumn, NumericColumn, ReferenceProfile
from detectors.stats import chisquare, jensenshannon, ks, ks_pvalue, psi, wasserstein

PVALUE_STATS = {"ks", "chisquare"}
SMALL_REFERENCE = 1000  # Evidently: up to this many reference rows, p-value tests; above, distances


def choose_stattest(kind: str, n_ref: int, requested: str = "auto") -> str:
    """The decision statistic for a column, Evidently's way: distances for large references
    (Wasserstein numeric, Jensen-Shannon categorical), KS / chi-square p-values for small ones.

    >>> choose_stattest("numeric", 20000), choose_stattest("categorical", 500)
    ('wasserstein', 'chisquare')
    >>> choose_stattest("categorical", 5000, "ks")
    'chisquare'
    """
    big = n_ref > SMALL_REFERENCE
    if requested == "auto":
        if kind == "numeric":
            return "wasserstein" if big else "ks"
        return "jensenshannon" if big else "chisquare"
    if kind == "categorical" and requested in ("wasserstein", "ks"):
        return "jensenshannon" if requested == "wasserstein" else "chisquare"
    return requested


SQUARED_STATS = {"wasserstein", "jensenshannon"}


def _score(stat: str, value: np.ndarray) -> np.ndarray:
    """The statistic on a scale where the null tail is about exponential (higher = more drift):
    squared distances (chi-square-like), PSI as it is, p-values as ``-ln p``."""
    if stat in PVALUE_STATS:
        return -np.log(np.maximum(value, 1e-300))
    if stat in SQUARED_STATS:
        return np.square(value)
    return value


def _unscore(stat: str, score: float) -> float:
    if stat in PVALUE_STATS:
        return math.exp(-score)
    if stat in SQUARED_STATS:
        return math.sqrt(max(score, 0.0))
    return score


def numeric_stat(stat: str, bins: NumericBins, counts: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """One statistic of numeric columns; ``counts`` is ``(columns, bins)`` or ``(columns, resamples, bins)``."""
    sel = slice(None) if rows is None else rows
    extra = counts.ndim - 2
    p = bins.ref[sel]
    exp = (slice(None),) + (None,) * extra
    if stat == "wasserstein":
        return wasserstein(p[exp], counts, bins.weights[sel][exp], bins.norm[sel][exp])
    if stat == "ks":
        n = counts.sum(axis=-1)
        return ks_pvalue(ks(p[exp], counts), n, bins.n_ref[sel][exp].astype(np.float64))
    coarse = np.einsum("...b,...bg->...g", counts, bins.groups[sel][exp]) if extra else np.einsum(
        "cb,cbg->cg", counts, bins.groups[sel])
    pc = bins.ref_coarse[sel][exp]
    if stat == "psi":
        return psi(pc, coarse)
    if stat == "jensenshannon":
        return jensenshannon(pc, coarse)
    if stat == "chisquare":
        return chisquare(pc, coarse)[1]
    raise ValueError(f"unknown statistic {stat!r}")


def categorical_stat(stat: str, bins: CategoricalBins, counts: np.ndarray,
                     rows: np.ndarray | None = None) -> np.ndarray:
    sel = slice(None) if rows is None else rows
    extra = counts.ndim - 2
    exp = (slice(None),) + (None,) * extra
    p = bins.ref[sel][exp]
    if stat == "psi":
        return psi(p, counts)
    if stat == "jensenshannon":
        return jensenshannon(p, counts)
    if stat == "chisquare":
        return chisquare(p, counts)[1]
    raise ValueError(f"unknown statistic {stat!r}")


@dataclass
class Limits:
    """Thresholds for windows of one size: decision scores and data-quality rate limits per column."""

    num_score: np.ndarray
    cat_score: np.ndarray
    num_null_mean: np.ndarray
    cat_null_mean: np.ndarray
    num_null_sd: np.ndarray
    cat_null_sd: np.ndarray
    num_missing: np.ndarray
    cat_missing: np.ndarray
    num_oor: np.ndarray
    num_type: np.ndarray
    cat_unseen: np.ndarray
    kind: str = "calibrated"
    extra: dict[str, Any] = field(default_factory=dict)


class WindowTests:
    """Everything needed to test one closed window of a model's prediction stream."""

    def __init__(self, profile: ReferenceProfile, config: DetectionConfig):
        self.profile = profile
        self.config = config
        cols = [profile.columns[c] for c in profile.monitored]
        self.num_cols = [c for c in cols if isinstance(c, NumericColumn)]
        self.cat_cols = [c for c in cols if isinstance(c, CategoricalColumn)]
        self.num = NumericBins(self.num_cols)
        self.cat = CategoricalBins(self.cat_cols)
        self.num_stat = [choose_stattest("numeric", c.count, config.stattest) for c in self.num_cols]
        self.cat_stat = [choose_stattest("categorical", c.count, config.stattest) for c in self.cat_cols]
        n_tests = (
            len(cols)  # drift
            + len(cols)  # missing rate
            + 2 * len(self.num_cols)  # out of range, wrong type
            + int(np.sum(~self.cat.truncated))  # unseen categories
            + 1  # performance
        )
        self.n_tests = n_tests
        self.alpha = config.false_alarm_rate / (config.horizon_windows * n_tests)
        self._limits: dict[int, Limits] = {}
        self.dynamic: dict[str, dict[str, Any]] = {}
        if config.threshold == "dynamic":
            for c in cols:
                self.dynamic[c.name] = self._new_dynamic()

    # thresholds -------------------------------------------------------------------------------------------
    def _new_dynamic(self) -> dict[str, Any]:
        from river import drift  # here, not at import: river.drift imports scikit-learn (~1.4 s)

        cfg = self.config
        if cfg.dynamic_detector == "adwin":
            det: Any = drift.ADWIN(delta=cfg.dynamic_adwin_delta, clock=1, grace_period=5, min_window_length=3)
        else:
            det = drift.PageHinkley(min_instances=5, delta=cfg.dynamic_ph_delta, threshold=cfg.dynamic_ph_threshold,
                                    mode="up")
        return {"detector": det, "sum": 0.0, "n": 0, "level": None}

    def size_bucket(self, n: int) -> int:
        """Windows are calibrated for sizes on a grid (4 per doubling), rounded down: conservative."""
        if self.config.window_ms is None:
            return n
        k = math.floor(4 * math.log2(max(n, 1)))
        return max(1, math.floor(2 ** (k / 4)))

    def limits(self, n: int) -> Limits:
        b = self.size_bucket(n)
        lim = self._limits.get(b)
        if lim is None:
            lim = self._limits[b] = self._calibrate(b)
        return lim

    def _calibrate(self, n: int) -> Limits:
        cfg, a = self.config, self.alpha
        rng = np.random.default_rng([cfg.seed, n])
        num, cat = self.num, self.cat

        def present_n(n_ref: np.ndarray, missing_ref: np.ndarray) -> np.ndarray:
            return np.maximum(np.round(n * n_ref / np.maximum(n_ref + missing_ref, 1)), 1).astype(np.int64)

        num_score = np.zeros(len(num))
        cat_score = np.zeros(len(cat))
        num_mean, num_sd = np.zeros(len(num)), np.ones(len(num))
        cat_mean, cat_sd = np.zeros(len(cat)), np.ones(len(cat))
        if len(num):
            counts = null_counts(num.ref, present_n(num.n_ref, num.missing_ref), num.n_ref,
                                 cfg.calibration_resamples, rng)
            for stat in sorted(set(self.num_stat)):
                rows = np.array([i for i, s in enumerate(self.num_stat) if s == stat])
                scores = _score(stat, numeric_stat(stat, num, counts[rows], rows))
                for r, sc in zip(rows, scores, strict=True):
                    num_score[r] = tail_quantile(sc, a)
                    num_mean[r], num_sd[r] = float(np.mean(sc)), max(float(np.std(sc)), 1e-12)
        if len(cat):
            counts = null_counts(cat.ref, present_n(cat.n_ref, cat.missing_ref), cat.n_ref,
                                 cfg.calibration_resamples, rng)
            for stat in sorted(set(self.cat_stat)):
                rows = np.array([i for i, s in enumerate(self.cat_stat) if s == stat])
                scores = _score(stat, categorical_stat(stat, cat, counts[rows], rows))
                for r, sc in zip(rows, scores, strict=True):
                    cat_score[r] = tail_quantile(sc, a)
                    cat_mean[r], cat_sd[r] = float(np.mean(sc)), max(float(np.std(sc)), 1e-12)
        if cfg.threshold == "static":
            st = cfg.static_thresholds
            num_score = np.array([_score(s, np.array(st[s]))[()] for s in self.num_stat], np.float64)
            cat_score = np.array([_score(s, np.array(st[s]))[()] for s in self.cat_stat], np.float64)

        d = cfg.quality_min_delta

        def rate_limit(p0: np.ndarray) -> np.ndarray:
            k = binomial_limit(n, p0, a) / n
            return np.maximum(k, p0 + d)

        def miss_p0(n_ref: np.ndarray, missing_ref: np.ndarray) -> np.ndarray:
            return (missing_ref + 1) / (n_ref + missing_ref + 2)

        tiny = 1.0 / (num.n_ref + 1) if len(num) else np.zeros(0)
        return Limits(
            num_score=num_score,
            cat_score=cat_score,
            num_null_mean=num_mean,
            cat_null_mean=cat_mean,
            num_null_sd=num_sd,
            cat_null_sd=cat_sd,
            num_missing=rate_limit(miss_p0(num.n_ref, num.missing_ref)) if len(num) else np.zeros(0),
            cat_missing=rate_limit(miss_p0(cat.n_ref, cat.missing_ref)) if len(cat) else np.zeros(0),
            num_oor=rate_limit(2 * tiny) if len(num) else np.zeros(0),
            num_type=rate_limit(tiny) if len(num) else np.zeros(0),
            cat_unseen=np.where(cat.truncated, np.inf, rate_limit(cat.unseen_ref)) if len(cat) else np.zeros(0),
            kind=cfg.threshold,
        )

    # evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, num_counts: np.ndarray, num_type: np.ndarray, cat_counts: np.ndarray,
                 n: int, firing: dict[str, bool] | None = None) -> list[dict[str, Any]]:
        """Test one closed window of ``n`` events; one result dict per monitored column, in profile order.

        ``firing`` (column -> currently firing) is only needed by dynamic thresholds.
        """
        lim = self.limits(n)
        out: dict[str, dict[str, Any]] = {}
        num, cat = self.num, self.cat
        if len(num):
            pres = num.present(num_counts)
            npres = pres.sum(axis=-1)
            w = numeric_stat("wasserstein", num, pres)
            pv = numeric_stat("ks", num, pres)
            d = ks(num.ref, pres)
            ps = numeric_stat("psi", num, pres)
            js = numeric_stat("jensenshannon", num, pres)
            values = {"wasserstein": w, "ks": pv, "psi": ps, "jensenshannon": js,
                      "chisquare": None}
            miss = num.missing(num_counts) / max(n, 1)
            oor = num.out_of_range(pres) / np.maximum(npres, 1)
            typ = num_type / max(n, 1)
            for j, c in enumerate(self.num_cols):
                stat = self.num_stat[j]
                v = values[stat]
                value = float((v if v is not None else numeric_stat(stat, num, pres))[j])
                stats = {"wasserstein": float(w[j]), "ks": float(d[j]), "ks_pvalue": float(pv[j]),
                         "psi": float(ps[j]), "jensenshannon": float(js[j]), "missing_rate": float(miss[j]),
                         "out_of_range_rate": float(oor[j]), "type_error_rate": float(typ[j]),
                         "events": int(npres[j])}
                checks = [("missing_rate", float(miss[j]), float(lim.num_missing[j])),
                          ("out_of_range_rate", float(oor[j]), float(lim.num_oor[j])),
                          ("type_error_rate", float(typ[j]), float(lim.num_type[j]))]
                out[c.name] = self._result(c, stat, value, float(lim.num_score[j]),
                                           (float(lim.num_null_mean[j]), float(lim.num_null_sd[j])),
                                           stats, checks, int(npres[j]), firing)
        if len(cat):
            pres = cat.present(cat_counts)
            npres = pres.sum(axis=-1)
            ps = categorical_stat("psi", cat, pres)
            js = categorical_stat("jensenshannon", cat, pres)
            pv = categorical_stat("chisquare", cat, pres)
            values = {"psi": ps, "jensenshannon": js, "chisquare": pv}
            miss = cat.missing(cat_counts) / max(n, 1)
            uns = cat.unseen(pres) / np.maximum(npres, 1)
            for j, c in enumerate(self.cat_cols):
                stat = self.cat_stat[j]
                value = float(values[stat][j])
                stats = {"psi": float(ps[j]), "jensenshannon": float(js[j]), "chisquare_pvalue": float(pv[j]),
                         "missing_rate": float(miss[j]), "unseen_rate": float(uns[j]), "events": int(npres[j])}
                checks = [("missing_rate", float(miss[j]), float(lim.cat_missing[j]))]
                if not cat.truncated[j]:
                    checks.append(("unseen_rate", float(uns[j]), float(lim.cat_unseen[j])))
                out[c.name] = self._result(c, stat, value, float(lim.cat_score[j]),
                                           (float(lim.cat_null_mean[j]), float(lim.cat_null_sd[j])),
                                           stats, checks, int(npres[j]), firing)
        return [out[name] for name in self.profile.monitored]

    def _result(self, col: NumericColumn | CategoricalColumn, stat: str, value: float, score_thr: float,
                null: tuple[float, float], stats: dict[str, Any], checks: list[tuple[str, float, float]],
                n_present: int, firing: dict[str, bool] | None) -> dict[str, Any]:
        score = float(_score(stat, np.array(value))[()])
        kind = self.config.threshold
        testable = n_present >= 1
        threshold: float | None = _unscore(stat, score_thr)
        if kind == "dynamic":
            drifted, level = self._dynamic(col.name, score, null, bool((firing or {}).get(col.name)))
            threshold = None if level is None else _unscore(stat, level)
        else:
            drifted = testable and score > score_thr
        ratio = score / score_thr if score_thr > 0 and math.isfinite(score_thr) else 0.0
        failed = [{"check": name, "value": v, "threshold": t} for name, v, t in checks if v > t]
        return {
            "column": col.name,
            "role": col.role,
            "kind": col.kind,
            "statistic": stat,
            "value": value,
            "threshold": threshold,
            "threshold_kind": kind,
            "drift": bool(drifted),
            "ratio": float(ratio),
            "stats": stats,
            "quality": failed,
        }

    def _dynamic(self, name: str, score: float, null: tuple[float, float], firing: bool) -> tuple[bool, float | None]:
        """A River detector over the column's window statistic, standardised by its null distribution.

        Fires on an upward change; while firing, the condition holds above the midpoint of the levels
        before and at the change. Returns the verdict and that level (on the score scale) once known.
        """
        st = self.dynamic[name]
        mean, sd = null
        z = min(max((score - mean) / sd, -5.0), 50.0)
        if not firing:
            st["level"] = None
        det = st["detector"]
        from river import drift  # loaded already: the detector is a River object

        x = min(max(z / 20.0, 0.0), 1.0) if isinstance(det, drift.ADWIN) else z
        det.update(x)
        st["sum"] += z
        st["n"] += 1
        detected_up = False
        if det.drift_detected:
            before = (st["sum"] - z) / max(st["n"] - 1, 1)
            if z > before:
                detected_up = True
                st["level"] = (before + z) / 2
            st["sum"], st["n"] = 0.0, 0  # River's detectors restart on their next update
        level = st["level"]
        cond = detected_up or (level is not None and z > level)
        return cond, None if level is None else mean + level * sd

    def dynamic_state(self) -> dict[str, Any]:
        return {k: {"detector": river_state.dumps(v["detector"]), "sum": v["sum"], "n": v["n"],
                    "level": v["level"]} for k, v in self.dynamic.items()}

    def load_dynamic_state(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            self.dynamic[k] = {"detector": river_state.loads(v["detector"]), "sum": float(v["sum"]),
                               "n": int(v["n"]), "level": v["level"]}

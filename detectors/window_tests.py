"""Per-window drift and data-quality tests of every monitored column against the reference profile.

For each closed window, :meth:`WindowTests.evaluate_windows` takes the window's bin counts and returns, per column,
all drift statistics (PSI, normed Wasserstein, Jensen-Shannon, KS and chi-square p-values), the decision
statistic with its threshold and verdict, and the data-quality checks (missing rate, values outside the
column's valid domain, unseen categories, wrong types). Thresholds are static, calibrated (see
:mod:`detectors.calibration`) or dynamic (River PageHinkley or ADWIN over each column's series of standardised
window statistics); calibrated limits are computed once per window size and remembered for the process
(keyed by :func:`calibration_key`, so another monitor of the same profile and settings pays nothing; the shell
can persist them, see :mod:`stream.backtest.replay_cache`).

With calibrated thresholds the decision statistic is also tested on the merged counts of the last ``h``
windows for each ``h`` of ``DetectionConfig.horizons`` (the drift budget split evenly over them), so a small
shift that persists gathers evidence. A column is tested at a horizon only while the horizon's events do not
outnumber the column's reference values (a 1,200-row reference supports at most 1,200 events).
Each column's verdict comes from its decisive horizon: the one with the
largest ``effect`` (statistic over threshold on the statistic's own scale, above 1 = drift; comparable
across columns and statistics).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import scipy

from detectors.calibration import binomial_limit, tail_quantile, two_sample_null
from detectors.config import DetectionConfig
from detectors.domains import bins_outside, valid_domains
from detectors.dynamic import DynamicThresholds
from detectors.encoding import CategoricalBins, NumericBins
from detectors.horizons import Horizons
from detectors.profile import CategoricalColumn, NumericColumn, ReferenceProfile
from detectors.stats import chisquare, jensenshannon, ks, ks_pvalue, psi, wasserstein

PVALUE_STATS = {"ks", "chisquare"}
BOUND_MARGIN = 1e-9  # relative and absolute slack on a bound, far above the float error of the values bounded
NUMERIC_SHOWN = ("wasserstein", "ks", "ks_pvalue", "psi", "jensenshannon")  # a numeric result's statistics
DECISION_KEY = {"ks": "ks_pvalue"}  # the shown statistic a decision statistic is, where the names differ
SCALE_CONFIDENCE = 0.95  # drift thresholds use this upper bound of the fitted null tail's scale
SMALL_REFERENCE = 1000  # Evidently: up to this many reference rows, p-value tests; above, distances
Merged = tuple[int, np.ndarray, np.ndarray, int]  # (windows, numeric counts, categorical counts, events)
CALIBRATION_VERSION = 1  # bump whenever :meth:`WindowTests._calibrate` gives other limits for the same inputs
CALIBRATION_FIELDS = frozenset({  # the DetectionConfig fields that calibrated limits depend on
    "seed", "threshold", "stattest", "false_alarm_rate", "horizon_windows", "horizons", "calibration_resamples",
    "static_thresholds", "quality_min_delta"})
MEMO_SIZE = 256  # (key, window size) entries remembered per process


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


def effect_size(stat: str, score: float, score_thr: float) -> float:
    """The statistic over its threshold on the statistic's own scale (distances as they are, p-values as
    ``-ln p``): above 1 is drift, and 2 means twice the distance the threshold allows.

    >>> effect_size("wasserstein", 0.04, 0.01), effect_size("ks", 10.0, 5.0)
    (2.0, 2.0)
    """
    if not (score_thr > 0 and math.isfinite(score_thr)):
        return 0.0
    if stat in SQUARED_STATS:
        return math.sqrt(max(score, 0.0) / score_thr)
    return max(score, 0.0) / score_thr


def _unscore(stat: str, score: float) -> float:
    if stat in PVALUE_STATS:
        return math.exp(-score)
    if stat in SQUARED_STATS:
        return math.sqrt(max(score, 0.0))
    return score


def numeric_stat(stat: str, bins: NumericBins, counts: np.ndarray, rows: np.ndarray | None = None,
                 ref: np.ndarray | None = None) -> np.ndarray:
    """One statistic of numeric columns; ``counts`` is ``(columns, bins)`` or ``(columns, resamples, bins)``.

    ``ref``: reference frequencies shaped as ``counts`` (a calibration's pseudo-references), else the profile's.
    """
    sel = slice(None) if rows is None else rows
    extra = counts.ndim - 2
    exp = (slice(None),) + (None,) * extra
    p = bins.ref[sel][exp] if ref is None else ref
    if stat == "wasserstein":
        return wasserstein(p, counts, bins.weights[sel][exp], bins.norm[sel][exp])
    if stat == "ks":
        n = counts.sum(axis=-1)
        return ks_pvalue(ks(p, counts), n, bins.n_ref[sel][exp].astype(np.float64))
    groups = bins.groups[sel][exp]
    coarse = np.einsum("...b,...bg->...g", counts, groups)
    pc = bins.ref_coarse[sel][exp] if ref is None else np.einsum("...b,...bg->...g", p, groups)
    if stat == "psi":
        return psi(pc, coarse)
    if stat == "jensenshannon":
        return jensenshannon(pc, coarse)
    if stat == "chisquare":
        return chisquare(pc, coarse)[1]
    raise ValueError(f"unknown statistic {stat!r}")


def categorical_stat(stat: str, bins: CategoricalBins, counts: np.ndarray,
                     rows: np.ndarray | None = None, ref: np.ndarray | None = None) -> np.ndarray:
    """One statistic of categorical columns (shapes as :func:`numeric_stat`)."""
    sel = slice(None) if rows is None else rows
    extra = counts.ndim - 2
    exp = (slice(None),) + (None,) * extra
    p = bins.ref[sel][exp] if ref is None else ref
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
    num_domain: np.ndarray
    num_type: np.ndarray
    cat_unseen: np.ndarray
    kind: str = "calibrated"


def calibration_key(profile: ReferenceProfile, config: DetectionConfig) -> str:
    """What calibrated limits depend on besides the window size, hashed: the profile (its whole content, as
    :attr:`~detectors.profile.ReferenceProfile.digest` but without its deep copy), the settings
    that matter (:data:`CALIBRATION_FIELDS`), this code's :data:`CALIBRATION_VERSION` and the versions of
    the libraries whose random streams and special functions it uses.

    >>> from detectors.profile import build_profile
    >>> import pandas as pd
    >>> p = build_profile(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), prediction=None)
    >>> calibration_key(p, DetectionConfig()) == calibration_key(p, DetectionConfig(window=50))
    True
    >>> calibration_key(p, DetectionConfig()) == calibration_key(p, DetectionConfig(seed=1))
    False
    """
    raw = orjson.dumps({"version": CALIBRATION_VERSION, "numpy": np.__version__, "scipy": scipy.__version__,
                        "profile": hashlib.sha256(orjson.dumps(profile)).hexdigest(),
                        "config": config.model_dump(include=set(CALIBRATION_FIELDS))}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()[:32]


_MEMO: OrderedDict[tuple[str, int], Limits] = OrderedDict()


def known_limits(key: str) -> dict[int, Limits]:
    """The limits remembered in this process for :func:`calibration_key` ``key``, by window size."""
    return {n: lim for (k, n), lim in _MEMO.items() if k == key}


def remember_limits(key: str, limits: Mapping[int, Limits]) -> None:
    """Remember limits for ``key`` (computed here or read from a persistent cache); the oldest entries go first.
    Their arrays become read-only: every monitor of the same key shares them."""
    for n, lim in limits.items():
        for value in vars(lim).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
        _MEMO[(key, int(n))] = lim
        _MEMO.move_to_end((key, int(n)))
    while len(_MEMO) > MEMO_SIZE:
        _MEMO.popitem(last=False)


def _groups(stats: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """``(statistic, rows)`` for each statistic in use, sorted by name."""
    return [(s, np.array([i for i, x in enumerate(stats) if x == s])) for s in sorted(set(stats))]


def forget_limits() -> None:
    """Forget every remembered limit (benchmarks of the cold start)."""
    _MEMO.clear()


@dataclass
class Steps:
    """The horizons of one window's columns (numeric or categorical): values and effects per column (rows) and
    horizon (columns, the window itself first), thresholds per horizon and column."""

    windows: list[int]
    events: list[int]
    values: np.ndarray
    thresholds: list[list[float]]
    effects: np.ndarray

    def _tested(self, count: int) -> list[int]:
        """The horizons a column with ``count`` reference values is tested at."""
        return [i for i, n in enumerate(self.events) if i == 0 or n <= count]

    def column(self, j: int, count: int) -> list[dict[str, Any]]:
        """Column ``j``'s ``windows``, ``events``, ``value``, ``threshold`` and ``effect`` per horizon."""
        v, e = self.values[j].tolist(), self.effects[j].tolist()
        return [{"windows": self.windows[i], "events": self.events[i], "value": v[i],
                 "threshold": self.thresholds[i][j], "effect": e[i]} for i in self._tested(count)]

    def decisive(self, counts: np.ndarray) -> list[float]:
        """Each column's largest effect over the horizons it is tested at (``counts``: reference values per
        column), as :meth:`WindowTests._result` picks it from :meth:`column` (Python's ``max`` where a NaN is)."""
        tested = np.asarray(self.events)[None, :] <= counts[:, None]
        tested[:, 0] = True
        out = np.where(tested, self.effects, -np.inf).max(axis=1).tolist()
        for j in np.flatnonzero(np.isnan(np.where(tested, self.effects, 0.0)).any(axis=1)).tolist():
            out[j] = max(x["effect"] for x in self.column(j, int(counts[j])))
        return out


class Verdict:
    """One column's verdict in a window (``drift``, ``quality`` failed, ``effect``) and its full result dict,
    built on first use (:attr:`result`)."""

    __slots__ = ("column", "role", "drift", "quality", "effect", "_build", "_result")

    def __init__(self, column: str, role: str, drift: bool, quality: bool, effect: float,
                 result: dict[str, Any] | Callable[[], dict[str, Any]]):
        self.column, self.role, self.drift, self.quality, self.effect = column, role, bool(drift), quality, effect
        self._build, self._result = (None, result) if isinstance(result, dict) else (result, None)

    @property
    def result(self) -> dict[str, Any]:
        if self._result is None:
            assert self._build is not None
            self._result = self._build()
        return self._result


class WindowResults(list[Verdict]):
    """The verdicts of one window's columns in profile order; :meth:`dicts` gives their full results."""

    def dicts(self) -> list[dict[str, Any]]:
        return [v.result for v in self]


@dataclass(frozen=True)
class ClosedWindow:
    """A closed window's counts as :meth:`WindowTests.evaluate_windows` takes them: numeric bin counts, type errors and
    values outside the valid domain per numeric column, categorical counts, its events, and the merged counts
    of the longer horizons reached (:meth:`detectors.horizons.WindowHistory.merged`)."""

    num_counts: np.ndarray
    num_type: np.ndarray
    num_domain: np.ndarray
    cat_counts: np.ndarray
    n: int
    longer: Sequence[Merged] = ()


class WindowTests:
    """Everything needed to test one closed window of a model's prediction stream."""

    def __init__(self, profile: ReferenceProfile, config: DetectionConfig):
        self.profile = profile
        self.config = config
        cols = [profile.columns[c] for c in profile.monitored]
        self.num_cols = [c for c in cols if isinstance(c, NumericColumn)]
        self.cat_cols = [c for c in cols if isinstance(c, CategoricalColumn)]
        self.domain = valid_domains(self.num_cols, config.domains, config.domain_margin)
        self.num = NumericBins(self.num_cols)
        self.domain_bins = bins_outside(self.num.cuts, *self.domain, self.num.width)
        self.cat = CategoricalBins(self.cat_cols)
        self.num_stat = [choose_stattest("numeric", c.count, config.stattest) for c in self.num_cols]
        self.cat_stat = [choose_stattest("categorical", c.count, config.stattest) for c in self.cat_cols]
        n_tests = (
            len(cols)  # drift
            + len(cols)  # missing rate
            + 2 * len(self.num_cols)  # outside the valid domain, wrong type
            + int(np.sum(~self.cat.truncated))  # unseen categories
            + 1  # performance
        )
        self.n_tests = n_tests
        self.alpha = config.false_alarm_rate / (config.horizon_windows * n_tests)
        self.horizons = list(config.horizons) if config.threshold == "calibrated" else [1]
        self.drift_alpha = self.alpha / len(self.horizons)  # each drift test's budget, split over horizons
        # a horizon is tested on a column only while its events do not outnumber the column's reference
        # values: beyond, the reference's own sampling error dominates and a longer horizon adds no power
        self.longest = max((c.count for c in cols), default=0)
        self._limits: dict[int, Limits] = {}
        self.key = calibration_key(profile, config)
        self._num_groups = _groups(self.num_stat)
        self._cat_groups = _groups(self.cat_stat)
        self._unscored: dict[int, tuple[list[float], list[float]]] = {}
        self._num_cdf = np.cumsum(self.num.ref, axis=-1)
        self._num_n_ref = self.num.n_ref.astype(np.float64)
        self._num_counts_ref = np.array([c.count for c in self.num_cols], np.int64)
        self._cat_counts_ref = np.array([c.count for c in self.cat_cols], np.int64)
        self.dynamic = DynamicThresholds(config, [c.name for c in cols] if config.threshold == "dynamic" else [])

    # thresholds -------------------------------------------------------------------------------------------
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
            lim = _MEMO.get((self.key, b))
            if lim is None:
                lim = self._calibrate(b)
                remember_limits(self.key, {b: lim})
            self._limits[b] = lim
        return lim

    def _calibrate(self, n: int) -> Limits:
        cfg, a, a_drift = self.config, self.alpha, self.drift_alpha
        rng = np.random.default_rng([cfg.seed, n])
        num, cat = self.num, self.cat

        def present_n(n_ref: np.ndarray, missing_ref: np.ndarray) -> np.ndarray:
            return np.maximum(np.round(n * n_ref / np.maximum(n_ref + missing_ref, 1)), 1).astype(np.int64)

        num_score = np.zeros(len(num))
        cat_score = np.zeros(len(cat))
        num_mean, num_sd = np.zeros(len(num)), np.ones(len(num))
        cat_mean, cat_sd = np.zeros(len(cat)), np.ones(len(cat))
        if len(num):
            ref, counts = two_sample_null(num.ref, present_n(num.n_ref, num.missing_ref), num.n_ref,
                                          cfg.calibration_resamples, rng)
            for stat, rows in self._num_groups:
                scores = _score(stat, numeric_stat(stat, num, counts[rows], rows, ref[rows]))
                for r, sc in zip(rows, scores, strict=True):
                    num_score[r] = tail_quantile(sc, a_drift, SCALE_CONFIDENCE)
                    num_mean[r], num_sd[r] = float(np.mean(sc)), max(float(np.std(sc)), 1e-12)
        if len(cat):
            ref, counts = two_sample_null(cat.ref, present_n(cat.n_ref, cat.missing_ref), cat.n_ref,
                                          cfg.calibration_resamples, rng)
            for stat, rows in self._cat_groups:
                scores = _score(stat, categorical_stat(stat, cat, counts[rows], rows, ref[rows]))
                for r, sc in zip(rows, scores, strict=True):
                    cat_score[r] = tail_quantile(sc, a_drift, SCALE_CONFIDENCE)
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
            # nothing in the reference lies outside its domain: no minimum delta, a few values are broken data
            num_domain=binomial_limit(n, tiny, a) / n if len(num) else np.zeros(0),
            num_type=rate_limit(tiny) if len(num) else np.zeros(0),
            cat_unseen=np.where(cat.truncated, np.inf, rate_limit(cat.unseen_ref)) if len(cat) else np.zeros(0),
            kind=cfg.threshold,
        )

    # evaluation -------------------------------------------------------------------------------------------
    def decision_values(self, numeric: bool, counts: np.ndarray) -> np.ndarray:
        """Each numeric (or categorical) column's decision statistic on (merged) window counts.

        The counts may carry an axis of horizons after the column axis (``(columns, horizons, bins)``):
        the values are then ``(columns, horizons)``, each as the same call on one horizon's counts gives."""
        bins, groups = (self.num, self._num_groups) if numeric else (self.cat, self._cat_groups)
        stat_of = numeric_stat if numeric else categorical_stat
        out = np.zeros(counts.shape[:-1])
        if len(bins):
            pres = np.where(bins.real[(slice(None), *(None,) * (counts.ndim - 2))], counts, 0)
            for stat, rows in groups:
                out[rows] = stat_of(stat, bins, pres[rows], rows)  # type: ignore[operator]
        return out

    def _thresholds(self, lim: Limits) -> tuple[list[float], list[float]]:
        """The limits' decision thresholds on the statistics' own scales (numeric, categorical), once per size."""
        key = id(lim)
        thr = self._unscored.get(key)
        if thr is None:
            thr = self._unscored[key] = (
                [_unscore(s, t) for s, t in zip(self.num_stat, lim.num_score.tolist(), strict=True)],
                [_unscore(s, t) for s, t in zip(self.cat_stat, lim.cat_score.tolist(), strict=True)])
        return thr

    def _effects(self, groups: list[tuple[str, np.ndarray]], values: np.ndarray, thresholds: np.ndarray
                 ) -> np.ndarray:
        """:func:`effect_size` of every column (rows) at every horizon (columns of ``values``)."""
        out = np.zeros(values.shape)
        ok = (thresholds > 0) & np.isfinite(thresholds)
        for stat, rows in groups:
            score = np.maximum(_score(stat, values[rows]), 0.0)
            thr = np.where(ok[rows], thresholds[rows], 1.0)
            e = np.sqrt(score / thr) if stat in SQUARED_STATS else score / thr
            out[rows] = np.where(ok[rows], e, 0.0)
        return out

    def _numeric_stats(self, pres: np.ndarray, npres: np.ndarray, names: Collection[str] = NUMERIC_SHOWN
                       ) -> dict[str, np.ndarray]:
        """The statistics ``names`` (of :data:`NUMERIC_SHOWN`: Wasserstein, KS distance and p-value, PSI,
        Jensen-Shannon) of every numeric column (rows) in every window (columns), the shared steps done once and
        only for what is asked (each value is what :func:`numeric_stat` gives)."""
        num, out = self.num, {}
        if {"wasserstein", "ks", "ks_pvalue"} & set(names):
            q = pres / np.maximum(npres[..., None], 1)
            diff = np.abs(np.cumsum(q, axis=-1) - self._num_cdf[:, None])
            if "wasserstein" in names:
                out["wasserstein"] = np.sum(diff * num.weights[:, None], axis=-1) / num.norm[:, None]
            if {"ks", "ks_pvalue"} & set(names):
                out["ks"] = d = np.max(diff, axis=-1)
                out["ks_pvalue"] = ks_pvalue(d, npres, self._num_n_ref[:, None])
        if {"psi", "jensenshannon"} & set(names):
            coarse = np.einsum("...b,...bg->...g", pres, num.groups[:, None])
            ref = num.ref_coarse[:, None]
            if "psi" in names:
                out["psi"] = psi(ref, coarse)
            if "jensenshannon" in names:
                out["jensenshannon"] = jensenshannon(ref, coarse)
        return out

    def evaluate_windows(self, windows: Sequence[ClosedWindow], horizons: Horizons | None = None,
                         lazy: bool = False) -> list[WindowEvaluation]:
        """Test closed windows (one or several) at once: their statistics are computed together (a few numpy calls
        for all of them, not per window), each window's verdicts when :meth:`WindowEvaluation.results` is called,
        in window order (``firing``, column -> currently firing, only matters to dynamic thresholds, which learn
        from every window): one result per monitored column, in profile order, its full dict built when first
        read. The same results however the windows are grouped. ``horizons``: the windows' longer horizons
        stacked (:meth:`detectors.horizons.WindowHistory.push_many`), else each window's ``longer``. ``lazy``:
        a quiet window's horizons are only bounded (:attr:`bounded`) until its results are read; the caller
        reads none of a window that is :meth:`WindowEvaluation.quiet` while its alerts are idle."""
        return WindowBatch(self, windows, horizons, lazy).evaluations()

    def _horizons(self, windows: Sequence[ClosedWindow], horizons: Horizons | None
                  ) -> tuple[list[list[tuple[int, int]]], Horizons | None, np.ndarray]:
        """Each window's longer horizons that some column's reference supports (see :attr:`longest`) as
        ``(windows, events)``, the horizons (``horizons``, else those of ``windows``; None without calibration)
        and the positions of the tested ones among them, in window order."""
        nothing = [[] for _ in windows], None, np.zeros(0, np.intp)
        if self.config.threshold != "calibrated":
            return nothing
        if horizons is None:
            flat = [m for w in windows for m in w.longer]
            if not flat:
                return nothing
            horizons = Horizons([[(m[0], m[3]) for m in w.longer] for w in windows],
                                np.stack([m[1] for m in flat], axis=1), np.stack([m[2] for m in flat], axis=1))
        keep = [e <= self.longest for r in horizons.reached for _, e in r]
        tested = [[(h, e) for h, e in r if e <= self.longest] for r in horizons.reached]
        return tested, horizons, np.flatnonzero(keep)

    @functools.cached_property
    def bounded(self) -> bool:
        """Whether every numeric column decides by Wasserstein distance, whose value on merged windows is at most
        the windows' own values averaged by their events (the distributions mix, and the distance is a norm
        of the difference of distribution functions): an upper bound on a horizon that costs no merged counts."""
        return self.config.threshold == "calibrated" and all(s == "wasserstein" for s, _ in self._num_groups)

    def _verdicts(self, out: dict[str, Verdict], cols: Sequence[NumericColumn | CategoricalColumn],
                  result: Callable[[int], dict[str, Any]], effects: list[float], drift: list[bool],
                  quality: list[bool]) -> None:
        """The columns' verdicts into ``out``; their result dicts (``result(j)``) at once with dynamic
        thresholds (their detectors see every window), else when first read. ``effects``: each column's
        decisive effect (:meth:`Steps.decisive`), ``drift``: whether it has values to drift."""
        if self.config.threshold == "dynamic":
            for j, c in enumerate(cols):
                r = result(j)
                out[c.name] = Verdict(c.name, c.role, r["drift"], quality[j], r["effect"], r)
            return
        for j, c in enumerate(cols):
            e = effects[j]
            out[c.name] = Verdict(c.name, c.role, drift[j] and e > 1.0, quality[j], float(e),
                                  functools.partial(result, j))

    def _result(self, col: NumericColumn | CategoricalColumn, stat: str, horizons: list[dict[str, Any]],
                null: tuple[float, float], stats: dict[str, Any], checks: list[tuple[str, float, float]],
                n_present: int, firing: dict[str, bool] | None) -> dict[str, Any]:
        """One column's verdict from its ``horizons`` (see :meth:`_steps`)."""
        kind = self.config.threshold
        effects = [x["effect"] for x in horizons]
        best = horizons[effects.index(max(effects))]  # the first (shortest) on ties
        value, threshold, effect = best["value"], best["threshold"], best["effect"]
        if kind == "dynamic":
            value = horizons[0]["value"]
            score = float(_score(stat, np.array(value))[()])
            drifted, level = self.dynamic.update(col.name, score, null, bool((firing or {}).get(col.name)))
            threshold = None if level is None else _unscore(stat, level)
            effect = 0.0 if level is None else effect_size(stat, score, level)
            best = horizons[0]
        else:
            drifted = n_present >= 1 and effect > 1.0
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
            "effect": float(effect),
            "horizon": {"windows": best["windows"], "events": best["events"]},
            "horizons": horizons,
            "stats": stats,
            "quality": failed,
        }


class WindowEvaluation:
    """One window of a :class:`WindowBatch`: :meth:`results` gives its verdicts."""

    __slots__ = ("batch", "k")

    def __init__(self, batch: WindowBatch, k: int):
        self.batch, self.k = batch, k

    def results(self, firing: dict[str, bool] | None = None) -> WindowResults:
        """The window's verdicts, one per monitored column in profile order (``firing``: dynamic thresholds)."""
        return self.batch.results(self.k, firing)

    def quiet(self) -> bool:
        """No column drifts and none fails a quality check (so :meth:`results` would say nothing new to a monitor
        whose alerts are all quiet); never with dynamic thresholds, whose detectors learn from every window."""
        return not self.batch.loud[self.k]


class WindowBatch:
    """The statistics of several closed windows, computed together as ``(columns, windows)`` arrays, and each
    window's verdicts from them (see :meth:`WindowTests.evaluate_windows`)."""

    def __init__(self, tests: WindowTests, windows: Sequence[ClosedWindow], horizons: Horizons | None = None,
                 lazy: bool = False):
        self.tests = tests
        self.n = [int(w.n) for w in windows]
        ns = np.maximum(np.array(self.n, np.int64), 1)
        self.tested, self._horizons, self._rows = tests._horizons(windows, horizons)
        self.hcuts = np.cumsum([0] + [len(t) for t in self.tested]).tolist()
        num, cat = tests.num, tests.cat
        # lazy: the numeric horizons of a window hold upper bounds until its results are asked for or a bound
        # says it may drift (see WindowTests.bounded); the others hold their values from the start
        lazy = (lazy and len(num) > 0 and tests.bounded and self._horizons is not None
                and self._horizons.windows is not None)
        self._exact = np.full(len(self.n), not lazy)
        self.limits = [tests.limits(n) for n in self.n]
        self._every = self.limits + [tests.limits(e) for t in self.tested for _, e in t]  # windows, then horizons
        if len(num):
            if lazy:  # the statistics of the history's windows too, for the bounds: the same counts, stacked
                stacked = self._horizons.windows  # type: ignore[union-attr]
                counts = stacked[:, stacked.shape[1] - len(windows):]
            else:
                counts = stacked = np.stack([w.num_counts for w in windows], axis=1)  # (columns, windows, bins)
            pres = np.where(num.real[:, None], stacked, 0)
            npres = pres.sum(axis=-1)
            decided = tests._numeric_stats(pres, npres, {DECISION_KEY.get(s, s) for s, _ in tests._num_groups})
            value = np.zeros(npres.shape)
            for stat, rows in tests._num_groups:
                key = DECISION_KEY.get(stat, stat)
                value[rows] = (decided[key] if key in decided else numeric_stat(stat, num, pres))[rows]
            if lazy:
                self._hnv = self._horizon_bounds(value, npres)
                first = stacked.shape[1] - len(windows)
                pres, npres, value = pres[:, first:], npres[:, first:], value[:, first:]
            else:
                self._hnv = self._merged_values(True, self._rows)
            self._num_pres = pres
            self.num = {"npres": npres, "value": value, "missing_rate": counts[num._rows, :, num.nb] / ns,
                        "domain_rate": np.stack([w.num_domain for w in windows], axis=1) / np.maximum(npres, 1),
                        "type_error_rate": np.stack([w.num_type for w in windows], axis=1) / ns}
            self._num_effects()
            failed = ((self.num["missing_rate"] > self._limit("num_missing"))
                      | (self.num["domain_rate"] > self._limit("num_domain"))
                      | (self.num["type_error_rate"] > self._limit("num_type")))
            self.num_quality = failed.T.tolist()
            self._num_failed = failed
        if len(cat):
            counts = np.stack([w.cat_counts for w in windows], axis=1)
            self._cat_pres = pres = np.where(cat.real[:, None], counts, 0)
            npres = pres.sum(axis=-1)
            decided = {stat: categorical_stat(stat, cat, pres) for stat, _ in tests._cat_groups}
            value = np.zeros(npres.shape)
            for stat, rows in tests._cat_groups:
                value[rows] = decided[stat][rows]
            self._cat_decided = decided
            self.cat = {"npres": npres, "value": value, "missing_rate": counts[cat._rows, :, cat.nb] / ns,
                        "unseen_rate": pres[cat._rows, :, cat.kc + 1] / np.maximum(npres, 1)}
            self.cat_steps = self._effects(False, value, self._merged_values(False, self._rows))
            failed = ((self.cat["missing_rate"] > self._limit("cat_missing"))
                      | (~cat.truncated[:, None] & (self.cat["unseen_rate"] > self._limit("cat_unseen"))))
            self.cat_quality = failed.T.tolist()
            self._cat_failed = failed
            self.cat_decisive = (None if tests.config.threshold == "dynamic"  # dynamic: each column's detector
                                 else self._decisive(self.cat_steps[1], tests._cat_counts_ref))
        self._find_loud()
        if lazy and self.loud.any():  # a window that may drift: its horizons' values, and the verdicts again
            self._make_exact(np.flatnonzero(self.loud))

    def _merged_values(self, numeric: bool, rows: np.ndarray) -> np.ndarray:
        """The decision values of the horizons at ``rows`` (positions in :attr:`_horizons`), ``(columns, rows)``."""
        t = self.tests
        if self._horizons is None:
            return np.zeros((len(t.num if numeric else t.cat), 0))
        return t.decision_values(numeric, self._horizons.select(rows, numeric))

    def _horizon_bounds(self, value: np.ndarray, npres: np.ndarray) -> np.ndarray:
        """Upper bounds on the tested horizons' decision values (:attr:`WindowTests.bounded`), ``(columns,
        horizons)``, from the values and events of the stacked windows they merge (``(columns, windows)``); NaN
        where a horizon has no events."""
        assert self._horizons is not None and self._horizons.spans is not None
        hi, lo = (s[self._rows] for s in self._horizons.spans)
        zero = np.zeros((len(value), 1))
        weighted = np.concatenate([zero, np.cumsum(value * npres, axis=1)], axis=1)
        events = np.concatenate([zero, np.cumsum(npres, axis=1)], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (weighted[:, hi] - weighted[:, lo]) / (events[:, hi] - events[:, lo])
        return mean * (1.0 + BOUND_MARGIN) + BOUND_MARGIN

    def _num_effects(self) -> None:
        """The numeric values and effects at every window and horizon, and each window's decisive effects."""
        t = self.tests
        self.num_steps = self._effects(True, self.num["value"], self._hnv)
        self.num_decisive = (None if t.config.threshold == "dynamic"  # dynamic: each column's detector
                             else self._decisive(self.num_steps[1], t._num_counts_ref))

    def _find_loud(self) -> None:
        """:attr:`loud`: the windows where a column fails a quality check or may drift (the drift verdict as
        :meth:`WindowTests._verdicts` gives it; a NaN effect: maybe); every window with dynamic thresholds."""
        t = self.tests
        self.loud = np.full(len(self.n), t.config.threshold == "dynamic")
        kinds = ([(self._num_failed, self.num["npres"], self.num_decisive)] if len(t.num) else []) + (
            [(self._cat_failed, self.cat["npres"], self.cat_decisive)] if len(t.cat) else [])
        for failed, npres, decisive in kinds:
            self.loud |= failed.any(axis=0)
            if decisive is not None:
                best, nan = decisive
                self.loud |= ((npres >= 1) & (best > 1.0)).any(axis=0) | nan

    def _make_exact(self, ks: np.ndarray) -> None:
        """Replace the bounds on windows ``ks``' numeric horizons by their values; effects and verdicts again."""
        ks = ks[~self._exact[ks]]
        if not len(ks):
            return
        at = np.concatenate([np.arange(self.hcuts[k], self.hcuts[k + 1]) for k in ks.tolist()])
        if len(at):
            self._hnv[:, at] = self._merged_values(True, self._rows[at])
        self._exact[ks] = True
        self._num_effects()
        self._find_loud()

    @functools.cached_property
    def _num_shown(self) -> dict[str, np.ndarray]:
        """The numeric statistics a result dict shows besides those deciding, of every window: computed when a
        result is first read (alerts, window records, dynamic thresholds), not for every window."""
        pres, npres = self._num_pres, self.num["npres"]
        shown = self.tests._numeric_stats(pres, npres)
        shown["out_of_range_rate"] = (np.sum(np.where(self.tests.num.oor[:, None], pres, 0), axis=-1)
                                      / np.maximum(npres, 1))
        return shown

    @functools.cached_property
    def _cat_shown(self) -> dict[str, np.ndarray]:
        """The categorical statistics a result dict shows (see :attr:`_num_shown`)."""
        t = self.tests
        return {s: self._cat_decided[s] if s in self._cat_decided else categorical_stat(s, t.cat, self._cat_pres)
                for s in ("psi", "jensenshannon", "chisquare")}

    def _limit(self, name: str) -> np.ndarray:
        """One limit of every column in every window, ``(columns, windows)``."""
        return np.stack([getattr(lim, name) for lim in self.limits], axis=1)

    @functools.cached_property
    def _layout(self) -> tuple[np.ndarray, np.ndarray]:
        """Per window, the positions of the window and its tested horizons in ``windows + horizons`` arrays
        (padded) and their events (padding: more than any reference holds)."""
        w, longest = len(self.n), max(len(t) for t in self.tested)
        at = np.zeros((w, 1 + longest), np.int64)  # window k, then its horizons, padded
        events = np.full((w, 1 + longest), np.iinfo(np.int64).max)
        at[:, 0], events[:, 0] = np.arange(w), 0
        for k, tested in enumerate(self.tested):
            at[k, 1: 1 + len(tested)] = np.arange(w + self.hcuts[k], w + self.hcuts[k + 1])
            events[k, 1: 1 + len(tested)] = [e for _, e in tested]
        return at, events

    def _decisive(self, effects: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`Steps.decisive` of every window at once, ``(columns, windows)``, and the windows where a NaN
        effect is among the tested ones (there Python's ``max`` decides: ask :meth:`Steps.decisive`)."""
        at, events = self._layout
        mask = events[None] <= counts[:, None, None]  # (columns, windows, horizons)
        picked = effects[:, at]
        best = np.where(mask, picked, -np.inf).max(axis=2)
        return best, np.isnan(np.where(mask, picked, 0.0)).any(axis=(0, 2))

    @functools.cached_property
    def _num_scores(self) -> np.ndarray:
        """Each numeric column's decision score threshold at every window, then every horizon."""
        return np.stack([lim.num_score for lim in self._every], axis=1)

    @functools.cached_property
    def _cat_scores(self) -> np.ndarray:
        """Each categorical column's decision score threshold at every window, then every horizon."""
        return np.stack([lim.cat_score for lim in self._every], axis=1)

    def _effects(self, numeric: bool, value: np.ndarray, horizons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values and effects of every column at every window, then every horizon: ``(columns, windows +
        horizons)``."""
        t = self.tests
        values = np.concatenate([value, horizons], axis=1)
        return values, t._effects(t._num_groups if numeric else t._cat_groups, values,
                                  self._num_scores if numeric else self._cat_scores)

    def _steps(self, k: int, numeric: bool) -> Steps:
        """Window ``k``'s columns at every horizon (the window itself first)."""
        t = self.tests
        limits = [self.limits[k], *(t.limits(e) for _, e in self.tested[k])]
        a, b = self.hcuts[k], self.hcuts[k + 1]
        at = [k, *range(len(self.n) + a, len(self.n) + b)]
        values, effects = self.num_steps if numeric else self.cat_steps
        tested = self.tested[k]
        return Steps([1, *(h for h, _ in tested)], [self.n[k], *(e for _, e in tested)], values[:, at],
                     [t._thresholds(lim)[0 if numeric else 1] for lim in limits], effects[:, at])

    def _decided(self, k: int, numeric: bool, steps: Callable[[], Steps]) -> list[float]:
        """Window ``k``'s decisive effect per column (:meth:`Steps.decisive`; none with dynamic thresholds)."""
        decisive = self.num_decisive if numeric else self.cat_decisive
        if decisive is None:
            return []
        best, nan = decisive
        if nan[k]:
            return steps().decisive(self.tests._num_counts_ref if numeric else self.tests._cat_counts_ref)
        return best[:, k].tolist()

    def evaluations(self) -> list[WindowEvaluation]:
        return [WindowEvaluation(self, k) for k in range(len(self.n))]

    def results(self, k: int, firing: dict[str, bool] | None) -> WindowResults:
        t = self.tests
        if not self._exact[k]:  # asked for while alerts are active: this window and the rest get their values
            self._make_exact(np.arange(k, len(self.n)))
        out: dict[str, Verdict] = {}
        if len(t.num):
            self._numeric(out, k, firing)
        if len(t.cat):
            self._categorical(out, k, firing)
        return WindowResults([out[name] for name in t.profile.monitored])

    def _numeric(self, out: dict[str, Verdict], k: int, firing: dict[str, bool] | None) -> None:
        t, lim = self.tests, self.limits[k]
        steps = functools.cache(lambda: self._steps(k, True))
        npres = self.num["npres"][:, k]

        def num_result(j: int) -> dict[str, Any]:
            col = {name: float(v[j, k]) for name, v in (self.num | self._num_shown).items()}
            c = t.num_cols[j]
            np_j, m_j, dom_j, t_j = int(npres[j]), col["missing_rate"], col["domain_rate"], col["type_error_rate"]
            stats = {"wasserstein": col["wasserstein"], "ks": col["ks"], "ks_pvalue": col["ks_pvalue"],
                     "psi": col["psi"], "jensenshannon": col["jensenshannon"], "missing_rate": m_j,
                     "out_of_range_rate": col["out_of_range_rate"], "domain_rate": dom_j,
                     "type_error_rate": t_j, "events": np_j}
            checks = [("missing_rate", m_j, float(lim.num_missing[j])),
                      ("domain_rate", dom_j, float(lim.num_domain[j])),
                      ("type_error_rate", t_j, float(lim.num_type[j]))]
            null = (float(lim.num_null_mean[j]), float(lim.num_null_sd[j]))
            return t._result(c, t.num_stat[j], steps().column(j, c.count), null, stats, checks, np_j, firing)

        t._verdicts(out, t.num_cols, num_result, self._decided(k, True, steps), (npres >= 1).tolist(),
                    self.num_quality[k])

    def _categorical(self, out: dict[str, Verdict], k: int, firing: dict[str, bool] | None) -> None:
        t, lim, cat = self.tests, self.limits[k], self.tests.cat
        steps = functools.cache(lambda: self._steps(k, False))
        npres = self.cat["npres"][:, k]

        def cat_result(j: int) -> dict[str, Any]:
            shown = self._cat_shown
            col = {name: float(v[j, k]) for name, v in self.cat.items()}
            col |= {"psi": float(shown["psi"][j, k]), "jensenshannon": float(shown["jensenshannon"][j, k]),
                    "chisquare_pvalue": float(shown["chisquare"][j, k])}
            c = t.cat_cols[j]
            np_j, m_j, u_j = int(npres[j]), col["missing_rate"], col["unseen_rate"]
            stats = {"psi": col["psi"], "jensenshannon": col["jensenshannon"],
                     "chisquare_pvalue": col["chisquare_pvalue"], "missing_rate": m_j, "unseen_rate": u_j,
                     "events": np_j}
            checks = [("missing_rate", m_j, float(lim.cat_missing[j]))]
            if not cat.truncated[j]:
                checks.append(("unseen_rate", u_j, float(lim.cat_unseen[j])))
            null = (float(lim.cat_null_mean[j]), float(lim.cat_null_sd[j]))
            return t._result(c, t.cat_stat[j], steps().column(j, c.count), null, stats, checks, np_j, firing)

        t._verdicts(out, t.cat_cols, cat_result, self._decided(k, False, steps), (npres >= 1).tolist(),
                    self.cat_quality[k])

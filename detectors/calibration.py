"""Calibrated thresholds: each statistic's null distribution from windows resampled out of the reference.

A window of ``n`` rows drawn with replacement from the reference, binned, is a multinomial draw over the
reference's bin frequencies, so null windows are drawn directly from the binned profile (no raw reference
needed). The reference's own sampling error is folded in (a window is compared with an estimate, not with the
true distribution): see :func:`null_counts`.

The family-wise false-alarm rate ``false_alarm_rate`` is split (Bonferroni) over every test of a window and
``horizon_windows`` windows, which asks for null quantiles far beyond the resamples: the tail above the
90% null quantile is modelled as exponential (peaks over threshold with shape 0), which is about exact for
chi-square-like statistics and conservative for the Gaussian-tailed distances (Wasserstein, KS).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> null = rng.exponential(1.0, 20000)
>>> 11 < tail_quantile(null, 1e-5) < 12.5   # the true quantile is ln(1e5) = 11.5
True
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

try:  # what scipy.stats.binom.isf/ppf run, without importing scipy.stats (~0.4 s)
    from scipy.special._ufuncs import _binom_isf, _binom_ppf
except ImportError:  # a SciPy that moved them: the public path (tests/test_detect_units.py compares both)
    from scipy.stats import binom

    _binom_isf, _binom_ppf = binom.isf, binom.ppf

TAIL_FROM = 0.9  # exceedances above this null quantile model the tail


def tail_quantile(null: np.ndarray, alpha: float) -> float:
    """The ``1 - alpha`` quantile of the distribution sampled by ``null`` (exponential tail above 90%)."""
    x = np.sort(np.asarray(null, np.float64))
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.inf
    if alpha >= 1.0 - TAIL_FROM:
        return float(np.quantile(x, 1.0 - alpha))
    u = float(np.quantile(x, TAIL_FROM))
    excess = x[x > u] - u
    scale = float(excess.mean()) if len(excess) else 0.0
    if scale <= 0.0:  # a lumpy (discrete) null: fall back to a tenth of the spread, at least a tiny step
        scale = max(float(x[-1] - x[0]) / 10.0, 1e-12)
    q = u + scale * math.log((1.0 - TAIL_FROM) / alpha)
    return max(q, float(x[-1]))


def null_counts(
    p: np.ndarray, n: np.ndarray, n_ref: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``resamples`` null windows as bin counts (last axis), for each row of ``p``.

    ``p`` is ``(columns, bins)``; ``n`` (window values) and ``n_ref`` (reference values) are per column.
    The reference's own sampling error is folded in by drawing ``n * n_ref / (n + n_ref)`` values: the
    window-minus-reference frequencies then have the covariance ``(1/n + 1/n_ref) * Sigma`` of the real
    comparison (statistics use frequencies, so the smaller count does not bias them). The result is
    ``(columns, resamples, bins)``.
    """
    p = np.asarray(p, np.float64)
    p = p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)
    n = np.maximum(np.asarray(n, np.float64), 1.0)
    n_ref = np.maximum(np.asarray(n_ref, np.float64), 1.0)
    n_eff = np.maximum(np.round(n * n_ref / (n + n_ref)), 1).astype(np.int64)[:, None]
    return rng.multinomial(n_eff, np.repeat(p[:, None, :], resamples, axis=1))


def binomial_limit(n: int | np.ndarray, p0: np.ndarray | float, alpha: float) -> np.ndarray:
    """Largest count still consistent with rate ``p0`` in ``n`` trials at level ``alpha`` (upper tail):
    a count above it has probability at most ``alpha``."""
    return np.asarray(_binom_isf(alpha, n, np.clip(p0, 1e-12, 1.0)), np.float64)


def binomial_floor(n: int | np.ndarray, p0: np.ndarray | float, alpha: float) -> np.ndarray:
    """Smallest count still consistent with rate ``p0`` in ``n`` trials at level ``alpha`` (lower tail)."""
    return np.asarray(_binom_ppf(alpha, n, np.clip(p0, 1e-12, 1.0)), np.float64)


def normal_quantile(alpha: float) -> float:
    """``z`` with ``P(Z > z) = alpha``."""
    return float(-special.ndtri(alpha))

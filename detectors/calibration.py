"""Calibrated thresholds: each statistic's null distribution from pairs resampled out of the reference.

A window of ``n`` rows drawn with replacement from the reference, binned, is a multinomial draw over the
reference's bin frequencies, so null windows are drawn directly from the binned profile (no raw reference
needed). A window is compared with the reference, itself a finite sample (``n_ref`` rows) of the true
distribution, so the null is two-sample (:func:`two_sample_null`): a pseudo-reference of ``n_ref`` rows and a
window of ``n`` rows, both drawn from the reference's frequencies, and the statistic between them. For a long
horizon (``n`` much larger than ``n_ref``) the reference's own sampling error dominates that spread, and only a
two-sample draw sees it (resampling windows alone compares the reference with itself); it also keeps the
statistics that grow with ``n`` (chi-square, KS p-values) on the scale of the real comparison.

The family-wise false-alarm rate ``false_alarm_rate`` is split (Bonferroni) over every test of a window and
``horizon_windows`` windows, which asks for null quantiles far beyond the resamples: the tail above the
90% null quantile is modelled as exponential (peaks over threshold with shape 0), which is about exact for
chi-square-like statistics and conservative for the Gaussian-tailed distances (Wasserstein, KS). The
exponential scale is estimated from about a hundred exceedances; ``scale_confidence`` takes an upper
confidence bound of it instead of the estimate (a 10% low scale, extrapolated 16 units of scale out, would
multiply the false-alarm rate by five), so the budget holds column after column.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> null = rng.exponential(1.0, 20000)
>>> 11 < tail_quantile(null, 1e-5) < 12.5   # the true quantile is ln(1e5) = 11.5
True
"""

from __future__ import annotations

import math

import numpy as np

from detectors.special import binom_isf, binom_ppf, chdtri, ndtri

TAIL_FROM = 0.9  # exceedances above this null quantile model the tail


def tail_quantile(null: np.ndarray, alpha: float, scale_confidence: float | None = None) -> float:
    """The ``1 - alpha`` quantile of the distribution sampled by ``null`` (exponential tail above 90%).

    ``scale_confidence`` (e.g. 0.95): use that upper confidence bound of the exponential scale (``2 k mean /
    chi2_{2k}``, ``k`` exceedances) rather than its estimate: conservative against an unlucky resample.
    """
    x = np.sort(np.asarray(null, np.float64))
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.inf
    if alpha >= 1.0 - TAIL_FROM:
        return float(np.quantile(x, 1.0 - alpha))
    u = float(np.quantile(x, TAIL_FROM))
    excess = x[x > u] - u
    scale = float(excess.mean()) if len(excess) else 0.0
    if scale_confidence is not None and len(excess):
        k = len(excess)
        scale *= 2 * k / float(chdtri(2 * k, scale_confidence))  # chi2.ppf(1 - c, 2k)
    if scale <= 0.0:  # a lumpy (discrete) null: fall back to a tenth of the spread, at least a tiny step
        scale = max(float(x[-1] - x[0]) / 10.0, 1e-12)
    q = u + scale * math.log((1.0 - TAIL_FROM) / alpha)
    return max(q, float(x[-1]))


def two_sample_null(
    p: np.ndarray, n: np.ndarray, n_ref: np.ndarray, resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``resamples`` null pairs for each row of ``p``: pseudo-reference frequencies and window counts.

    ``p`` is ``(columns, bins)``; ``n`` (window values) and ``n_ref`` (reference values) are per column.
    Both results are ``(columns, resamples, bins)``: the frequencies of ``n_ref`` values and the counts of
    ``n`` values, each drawn from ``p``, so a statistic between them has the spread of the real comparison
    (window sampling error plus the reference's own), whatever the ratio of ``n`` to ``n_ref``.

    >>> ref, counts = two_sample_null(np.array([[0.5, 0.5]]), np.array([10]), np.array([100]), 3,
    ...                               np.random.default_rng(0))
    >>> ref.shape, counts.sum(axis=-1).tolist(), bool(np.allclose(ref.sum(axis=-1), 1.0))
    ((1, 3, 2), [[10, 10, 10]], True)
    """
    p = np.asarray(p, np.float64)
    p = p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)
    pp = np.repeat(p[:, None, :], resamples, axis=1)
    n = np.maximum(np.asarray(n, np.int64), 1)[:, None]
    n_ref = np.maximum(np.asarray(n_ref, np.int64), 1)[:, None]
    ref = rng.multinomial(n_ref, pp) / n_ref[..., None]
    return ref, rng.multinomial(n, pp)


def binomial_limit(n: int | np.ndarray, p0: np.ndarray | float, alpha: float) -> np.ndarray:
    """Largest count still consistent with rate ``p0`` in ``n`` trials at level ``alpha`` (upper tail):
    a count above it has probability at most ``alpha``."""
    return np.asarray(binom_isf(alpha, n, np.clip(p0, 1e-12, 1.0)), np.float64)


def binomial_floor(n: int | np.ndarray, p0: np.ndarray | float, alpha: float) -> np.ndarray:
    """Smallest count still consistent with rate ``p0`` in ``n`` trials at level ``alpha`` (lower tail)."""
    return np.asarray(binom_ppf(alpha, n, np.clip(p0, 1e-12, 1.0)), np.float64)


def normal_quantile(alpha: float) -> float:
    """``z`` with ``P(Z > z) = alpha``."""
    return float(-ndtri(alpha))

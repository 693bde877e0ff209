"""Valid domains of numeric columns: the values a column can take at all, so that data quality means broken data.

A value outside its column's domain is impossible (a unit error, a sign flip, a sentinel such as -1 or
999999), not merely unusual: the tail of a shifted distribution stays inside and is reported as drift.
A domain is declared per column in the configuration (``DetectionConfig.domains``), else inferred from the
reference: its range ``[min, max]`` widened by ``margin`` times its span on each side, and cut at zero for a
column that the reference shows piled against zero (all values on one side, its first quantile bin within a
tenth of the span from the edge, as amounts, counts and durations are): a positive-only column stays ``>= 0``.
A column whose normal-looking tail merely stops short of zero is not cut.

>>> from detectors.profile import NumericColumn
>>> cuts = [-1.0, 0.5, 1.0, 4.0, 8.0, 8.5]  # bin 2 starts at the minimum 0.5, bin 4 ends at the maximum 8
>>> col = NumericColumn("x", "feature", 100, 0, 3.0, 2.0, 0.5, 8.0, cuts, [0, 0, 50, 30, 20, 0], 2, 5, [])
>>> infer_domain(col, 1.0)
(0.0, 15.5)
>>> valid_domains([col], {"x": (None, 10.0)}, 1.0)
(array([-inf]), array([10.]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from detectors.profile import NumericColumn

NUMBER = (int, float, np.integer, np.floating, np.bool_)
PILED = 0.1  # a one-signed column is cut at zero when its edge quantile bin is this narrow (share of the span)


def infer_domain(col: NumericColumn, margin: float) -> tuple[float, float]:
    """The reference range widened by ``margin`` spans each side, kept on the reference's side of zero."""
    span = col.max - col.min
    pad = margin * span if span > 0 else margin * max(abs(col.max), 1.0)
    lo, hi = col.min - pad, col.max + pad
    inner = col.cuts[col.lo: col.hi - 1]  # quantile cuts strictly inside the reference range
    piled = PILED * span
    if col.min >= 0 and (not inner or inner[0] - col.min <= piled):
        lo = max(lo, 0.0)
    if col.max <= 0 and (not inner or col.max - inner[-1] <= piled):
        hi = min(hi, 0.0)
    return float(lo), float(hi)


def valid_domains(columns: Sequence[NumericColumn], declared: Mapping[str, tuple[float | None, float | None]],
                  margin: float) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` bounds per column: declared ones (``None`` = unbounded) first, else inferred."""
    lo = np.empty(len(columns))
    hi = np.empty(len(columns))
    for j, c in enumerate(columns):
        if c.name in declared:
            a, b = declared[c.name]
            lo[j] = -np.inf if a is None else float(a)
            hi[j] = np.inf if b is None else float(b)
        else:
            lo[j], hi[j] = infer_domain(c, margin)
    return lo, hi


def _outside_mask(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if x.dtype.kind == "O":
        x = np.array([float(v) if isinstance(v, NUMBER) else np.nan for v in x], np.float64)
    elif x.dtype.kind != "f":
        x = x.astype(np.float64)
    return (x < lo) | (x > hi)


def outside(x: np.ndarray, lo: float, hi: float) -> int:
    """How many of the values ``x`` lie outside ``[lo, hi]`` (NaN is missing and a non-number a wrong type,
    neither is outside).

    >>> outside(np.array([1.0, -1.0, np.nan, 1e9]), 0.0, 10.0), outside(np.array([3, "x", None, -2], object), 0, 5)
    (2, 1)
    """
    if not (np.isfinite(lo) or np.isfinite(hi)):
        return 0
    return int(np.count_nonzero(_outside_mask(x, lo, hi)))


def bins_outside(cuts: Sequence[np.ndarray], lo: np.ndarray, hi: np.ndarray, width: int) -> np.ndarray:
    """``(columns, width)``: which bins of each column can hold a value outside ``[lo[j], hi[j]]``, in the
    layout of :class:`detectors.encoding.NumericBins` (bin ``k`` holds ``cuts[k-1] <= x < cuts[k]``; the slot
    after the last bin holds NaN and the values from the last cut up, ``+inf`` among them). A bin is safe when
    both its edges lie inside the domain; counts in safe bins only prove that no value is outside.

    >>> bins_outside([np.array([0.0, 1.0, 2.0])], np.array([0.0]), np.array([1.5]), 5).tolist()
    [[True, False, True, True, False]]
    >>> bins_outside([np.array([0.0, 1.0])], np.array([-np.inf]), np.array([np.inf]), 3).tolist()
    [[False, False, False]]
    """
    out = np.zeros((len(cuts), width), bool)
    for j, c in enumerate(cuts):
        lower, upper = np.r_[-np.inf, c], np.r_[c, np.inf]  # the real bins, then the missing slot
        out[j, : len(c) + 1] = (lower < lo[j]) | (upper > hi[j])
    return out


def count_outside_segments(values: Sequence[np.ndarray | None], lo: np.ndarray, hi: np.ndarray,
                           starts: np.ndarray, ends: np.ndarray, suspects: np.ndarray | None = None) -> np.ndarray:
    """Values of column ``j`` outside ``[lo[j], hi[j]]`` (as :func:`outside`) in each consecutive slice
    ``starts[s]:ends[s]``, all slices at once: ``(slices, columns)`` (``None``: an absent column, none outside).
    ``suspects``: per column, whether it can hold such values at all (its counts in :func:`bins_outside`'s bins);
    the others are not looked at.

    >>> count_outside_segments([np.array([1.0, -1.0, 9.0, 11.0]), None], np.array([0.0, 0.0]),
    ...                        np.array([10.0, 10.0]), np.array([0, 1]), np.array([1, 4])).tolist()
    [[0, 0], [2, 0]]
    """
    out = np.zeros((len(starts), len(values)), np.int64)
    for j, x in enumerate(values):
        if x is None or not (np.isfinite(lo[j]) or np.isfinite(hi[j])):
            continue
        if suspects is not None and not suspects[j]:
            continue
        a = int(starts[0])
        mask = _outside_mask(x[a: int(ends[-1])], float(lo[j]), float(hi[j]))
        out[:, j] = np.add.reduceat(mask.view(np.uint8), starts - a, dtype=np.int64)  # slices are not empty
    return out

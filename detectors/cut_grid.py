"""The bin of each value among fixed cuts, in a few branch-free passes over the values.

A window's numeric column is counted into the reference's bins: value ``x`` falls in bin ``k`` when ``k`` cuts
are at or below it (``np.searchsorted(cuts, x, side="right")``), NaN in the last slot. A binary search per value
mispredicts a branch at every step; sorting the window first is branch-free but still ``O(n log n)``.
:class:`CutGrid` lays a uniform grid over the cuts: one multiply-add gives a value's cell, a table the number of
cuts in the cells below it, and a comparison with each cut inside its cell (rarely more than one) the rest.

It is exact, not an approximation: the cell of a value and the cell of a cut come from the same monotone float
arithmetic (the same ufuncs, no fused operations), so a cut in a lower cell is below the value, a cut in a higher
cell above it, and only the cuts in the value's own cell need comparing. Values beyond the grid (infinities, the
profile's last cut at the largest float) are clipped into its end cells and compared there. NaN lands in the top
cell; a value's bin counts the cuts up to its cell minus those in its cell above it (``x < cut``: false for NaN),
so NaN gets the last slot.

>>> g = CutGrid(np.array([0.0, 1.0, 1.5]))
>>> x = np.array([-1.0, 0.0, 0.5, 1.0, 1.2, 1.5, 2.0, np.inf, -np.inf, np.nan])
>>> g.bins(x).tolist()
[0, 1, 1, 2, 2, 3, 3, 3, 0, 3]
>>> bool((g.bins(x) == np.searchsorted(g.cuts, x, side="right")).all())
True
"""

from __future__ import annotations

import numpy as np

CELLS_PER_CUT = 16  # grid resolution to start from; doubled (up to MAX_CELLS) while a cell holds 2+ cuts
MAX_CELLS = 1 << 14
MAX_DEPTH = 4  # deeper (cuts crowded by a heavy tail): sorting each slice is faster


class CutGrid:
    """Bins of values among sorted ``cuts`` (see the module docstring). ``depth`` is the most cuts one cell holds:
    the number of comparisons per value. Cuts a heavy tail crowds into a few cells of any uniform grid (a
    lognormal with sigma 2 or more, a Pareto) make it deep: :meth:`bins` then searches and :meth:`slice_counts`
    sorts each slice (:func:`sorted_bin_counts`), the same bins and counts."""

    def __init__(self, cuts: np.ndarray):
        self.cuts = np.asarray(cuts, np.float64)
        # The grid spans the cuts but the last (the profile's sentinel at the largest float): whatever lies
        # beyond is clipped into the end cells, which only costs comparisons, never exactness.
        span = self.cuts[np.isfinite(self.cuts)]
        span = span[:-1] if len(span) > 2 else span
        cells = max(CELLS_PER_CUT * len(self.cuts), 64)
        while True:
            self._layout(span, cells)
            if self.depth <= 1 or cells >= MAX_CELLS:
                break
            cells *= 2

    def _layout(self, span: np.ndarray, cells: int) -> None:
        lo, hi = (float(span[0]), float(span[-1])) if len(span) else (0.0, 0.0)
        with np.errstate(over="ignore", divide="ignore"):
            scale = np.float64(cells) / np.float64(hi - lo) if hi > lo else np.float64(1.0)
        self._scale = scale if np.isfinite(scale) and scale > 0 else np.float64(1.0)  # any positive one is exact
        with np.errstate(over="ignore"):
            offset = -lo * self._scale
        self._offset = offset if np.isfinite(offset) else np.float64(0.0)
        self._top = np.float64(cells + 1)  # NaN, +inf and everything past the grid
        cut_cells = self.cells(self.cuts)
        # cuts in each cell and the cells below it (cut cells are sorted: the cuts are)
        self._through = np.searchsorted(cut_cells, np.arange(cells + 2), side="right")
        per_cell = np.bincount(cut_cells, minlength=cells + 2)
        self.depth = int(per_cell.max()) if len(self.cuts) else 0
        # the cuts inside each cell, one row per rank within the cell; NaN (no value is below it) pads
        self._inside = np.full((self.depth, cells + 2), np.nan)
        rank = np.arange(len(self.cuts)) - (self._through - per_cell)[cut_cells]
        self._inside[rank, cut_cells] = self.cuts

    def cells(self, x: np.ndarray) -> np.ndarray:
        """The grid cell of each value: monotone in the value, NaN in the top cell."""
        with np.errstate(over="ignore"):  # past the largest float: infinite, clipped to the top cell
            t = x * self._scale
            t += self._offset
        np.fmin(t, self._top, out=t)  # fmin keeps the number: NaN -> top
        np.maximum(t, 0.0, out=t)
        return t.astype(np.intp)

    def bins(self, x: np.ndarray) -> np.ndarray:
        """The bin of each value: the number of cuts at or below it, ``len(cuts)`` for NaN. ``depth + 6`` passes
        over the values; a deep grid searches instead (``np.searchsorted``, the definition)."""
        if self.depth > MAX_DEPTH:
            return np.searchsorted(self.cuts, x, side="right")  # NaN sorts last
        cell = self.cells(x)
        out = np.take(self._through, cell)  # take: faster than fancy indexing
        for inside in self._inside:
            out -= x < np.take(inside, cell)
        return out

    def slice_counts(self, x: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int,
                     slots: np.ndarray | None = None) -> np.ndarray:
        """Counts over the bins of each consecutive slice ``x[starts[s]:ends[s]]`` (covering ``x``), ``(slices,
        width)``; ``width`` pads past the ``len(cuts) + 1`` bins. ``slots``: each value's slice times ``width``
        (:func:`slice_slots`), when the caller counts several columns over the same slices.

        >>> g = CutGrid(np.array([0.0, 1.0]))
        >>> g.slice_counts(np.array([-1.0, 0.5, 2.0, np.nan, 0.0]), np.array([0, 2]), np.array([2, 5]), 4).tolist()
        [[1, 1, 0, 0], [0, 1, 2, 0]]
        """
        if self.depth > MAX_DEPTH:
            out = np.zeros((len(starts), width), np.int64)
            for s, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
                out[s, : len(self.cuts) + 1] = sorted_bin_counts(self.cuts, x[a:b])
            return out
        keys = self.bins(x)
        keys += slice_slots(starts, ends, width) if slots is None else slots
        return np.bincount(keys, minlength=len(starts) * width).reshape(-1, width)


def slice_slots(starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Each value's slice number times ``width``, for consecutive slices ``starts[s]:ends[s]``.

    >>> slice_slots(np.array([0, 2]), np.array([2, 5]), 4).tolist()
    [0, 0, 4, 4, 4]
    """
    return np.repeat(np.arange(len(starts)) * width, ends - starts)


def sorted_bin_counts(cuts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Counts of ``x`` per bin of ``cuts`` by sorting ``x`` and searching the cuts in it (branch-free: SIMD sort).

    >>> sorted_bin_counts(np.array([0.0, 1.0]), np.array([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan])).tolist()
    [1, 2, 3]
    """
    below = np.searchsorted(np.sort(x), cuts, side="left")  # values under each cut; NaN sorts last
    out = np.empty(len(cuts) + 1, np.int64)
    out[0] = below[0] if len(cuts) else len(x)
    out[1:-1] = below[1:] - below[:-1]
    out[-1] = len(x) - below[-1] if len(cuts) else out[0]
    return out

"""The counts of the last closed windows, merged over longer horizons so that small persistent shifts add up.

A window's state is integer counts per bin and category; the counts of ``h`` consecutive windows are their
sum, which is exactly the state of one window ``h`` times as long. :class:`WindowHistory` keeps the last
``max(horizons)`` closed windows and returns, for every horizon already reached, the merged counts that
:meth:`detectors.window_tests.WindowTests.evaluate_windows` tests against the reference (each horizon with its own
calibrated threshold for its number of events).

>>> import numpy as np
>>> hist = WindowHistory([1, 2, 4])
>>> for k in range(3):
...     hist.push(np.full((1, 2), k), np.zeros((0, 1), np.int64), 10)
>>> [(h, n.tolist(), events) for h, n, _, events in hist.merged()]
[(2, [[3, 3]], 20)]
>>> WindowHistory.from_state([1, 2, 4], hist.to_state()).merged()[0][1].tolist()
[[3, 3]]
>>> for k in range(3, 7):  # windows 0..6: the last 2 are 5 + 6, the last 4 are 3 + 4 + 5 + 6
...     hist.push(np.full((1, 2), k), np.zeros((0, 1), np.int64), 10)
>>> [(h, n.tolist(), events) for h, n, _, events in hist.merged()]
[(2, [[11, 11]], 20), (4, [[18, 18]], 40)]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np


class Horizons:
    """The longer horizons of consecutive closed windows, stacked: per window the ``(windows, events)`` of each
    horizon it reached, and the merged counts of all of them in that order along axis 1 (numeric
    ``(columns, horizons, bins)``, categorical likewise): what :meth:`WindowHistory.merged` gives window by
    window, in one array (:meth:`select`).

    From :meth:`WindowHistory.push_many` the merged counts are differences of running sums over the stacked
    windows (the history's, then the new ones), computed for the horizons asked for only; :attr:`windows` and
    :attr:`spans` say which windows each horizon sums, for bounds on its statistics that need no merged
    counts."""

    def __init__(self, reached: list[list[tuple[int, int]]], num: np.ndarray | None = None,
                 cat: np.ndarray | None = None, *, sums: tuple[np.ndarray, np.ndarray] | None = None,
                 spans: tuple[np.ndarray, np.ndarray] | None = None, windows: np.ndarray | None = None):
        self.reached = reached
        self._num, self._cat = num, cat
        self._sums = sums  # running sums of the stacked windows' counts (windows on axis 1, a zero window first)
        self.spans = spans  # per horizon, the running-sum indices of its end and start
        self.windows = windows  # the stacked windows' numeric counts, (columns, windows, bins)

    def select(self, rows: slice | np.ndarray, numeric: bool) -> np.ndarray:
        """The merged numeric (or categorical) counts of the horizons ``rows``."""
        if self._sums is None:
            given = self._num if numeric else self._cat
            assert given is not None
            return given[:, rows]
        assert self.spans is not None
        sums = self._sums[0 if numeric else 1]
        return sums[:, self.spans[0][rows]] - sums[:, self.spans[1][rows]]


class WindowHistory:
    """The last ``max(horizons)`` closed windows' integer counts (numeric bins, categories, events), and each
    longer horizon's running sum of them (integers: the same as summing the windows again)."""

    def __init__(self, horizons: Sequence[int]):
        self.horizons = sorted(h for h in set(horizons) if h > 1)
        self._windows: deque[tuple[np.ndarray, np.ndarray, int]] = deque(maxlen=max(self.horizons, default=1))
        self._sums: list[list[Any]] = []  # per horizon: [numeric counts, categorical counts, events]

    def push(self, num_counts: np.ndarray, cat_counts: np.ndarray, events: int) -> None:
        """Add the counts of the window that just closed (copied: the caller reuses its arrays)."""
        if not self.horizons:
            return
        wins = self._windows
        if not self._sums:
            self._sums = [[np.zeros_like(num_counts), np.zeros_like(cat_counts), 0] for _ in self.horizons]
        for h, acc in zip(self.horizons, self._sums, strict=True):
            if len(wins) >= h:  # the window that leaves this horizon
                nc, cc, e = wins[-h]
                acc[0] -= nc
                acc[1] -= cc
                acc[2] -= e
            acc[0] += num_counts
            acc[1] += cat_counts
            acc[2] += int(events)
        wins.append((num_counts.copy(), cat_counts.copy(), int(events)))

    def merged(self) -> list[tuple[int, np.ndarray, np.ndarray, int]]:
        """``(windows, numeric counts, categorical counts, events)`` for each longer horizon reached."""
        n = len(self._windows)
        return [(h, acc[0].copy(), acc[1].copy(), acc[2])
                for h, acc in zip(self.horizons, self._sums, strict=True) if h <= n]

    def push_many(self, num_counts: Sequence[np.ndarray], cat_counts: Sequence[np.ndarray], events: Sequence[int]
                  ) -> Horizons:
        """Add the counts of several windows that just closed, in order, and return their horizons stacked (the
        same integers as :meth:`push` and :meth:`merged` after each, summed from one cumulative sum).

        >>> hist, one = WindowHistory([1, 2, 4]), WindowHistory([1, 2, 4])
        >>> wins = [np.full((1, 2), k) for k in range(6)]
        >>> merged = []
        >>> for w in wins:
        ...     one.push(w, np.zeros((0, 1), np.int64), 10)
        ...     merged += [m[1] for m in one.merged()]
        >>> h = hist.push_many(wins[:3], [np.zeros((0, 1), np.int64)] * 3, [10] * 3)
        >>> h2 = hist.push_many(wins[3:], [np.zeros((0, 1), np.int64)] * 3, [10] * 3)
        >>> h.reached + h2.reached
        [[], [(2, 20)], [(2, 20)], [(2, 20), (4, 40)], [(2, 20), (4, 40)], [(2, 20), (4, 40)]]
        >>> both = [x.select(slice(None), numeric=True) for x in (h, h2)]
        >>> np.concatenate(both, axis=1)[0].tolist() == [m[0].tolist() for m in merged]
        True
        """
        if not self.horizons:
            for nc, cc, e in zip(num_counts, cat_counts, events, strict=True):
                self.push(nc, cc, e)
            return Horizons([[] for _ in events], np.zeros((*num_counts[0].shape[:1], 0, num_counts[0].shape[1])),
                            np.zeros((*cat_counts[0].shape[:1], 0, cat_counts[0].shape[1])))
        before = list(self._windows)
        p = len(before)
        # windows along axis 1, after a zero window: the running sums of (columns, windows, bins), whose
        # differences at the horizons' ends come out in the layout the tests take
        nums, cats = [w[0] for w in before] + list(num_counts), [w[1] for w in before] + list(cat_counts)
        stacked = [np.stack([np.zeros_like(x[0]), *x], axis=1) for x in (nums, cats)]
        cnum, ccat = (np.cumsum(x, axis=1) for x in stacked)
        cev = np.r_[0, np.cumsum([w[2] for w in before] + [int(e) for e in events])]
        reached, hi, lo = [], [], []
        for k in range(len(events)):
            end = p + k + 1  # the windows up to this one in the stack: all of them, or more than any horizon
            mine = [h for h in self.horizons if h <= end]
            reached.append([(h, int(cev[end] - cev[end - h])) for h in mine])
            hi += [end] * len(mine)
            lo += [end - h for h in mine]
        for nc, cc, e in zip(num_counts, cat_counts, events, strict=True):
            self._windows.append((nc.copy(), cc.copy(), int(e)))
        end = p + len(events)
        self._sums = [[cnum[:, end] - cnum[:, max(end - h, 0)], ccat[:, end] - ccat[:, max(end - h, 0)],
                       int(cev[end] - cev[max(end - h, 0)])] for h in self.horizons]
        return Horizons(reached, sums=(cnum, ccat), spans=(np.array(hi, np.intp), np.array(lo, np.intp)),
                        windows=stacked[0][:, 1:])

    def to_state(self) -> list[dict[str, Any]]:
        return [{"num": nc.tolist(), "cat": cc.tolist(), "events": e} for nc, cc, e in self._windows]

    @classmethod
    def from_state(cls, horizons: Sequence[int], state: Sequence[dict[str, Any]],
                   shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None) -> WindowHistory:
        """The history saved by :meth:`to_state`; ``shapes`` restores empty matrices' shapes."""
        hist = cls(horizons)
        for w in state:
            nc, cc = np.asarray(w["num"], np.int64), np.asarray(w["cat"], np.int64)
            if shapes is not None:
                nc, cc = nc.reshape(shapes[0]), cc.reshape(shapes[1])
            hist.push(nc, cc, int(w["events"]))
        return hist

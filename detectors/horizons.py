"""The counts of the last closed windows, merged over longer horizons so that small persistent shifts add up.

A window's state is integer counts per bin and category; the counts of ``h`` consecutive windows are their
sum, which is exactly the state of one window ``h`` times as long. :class:`WindowHistory` keeps the last
``max(horizons)`` closed windows and returns, for every horizon already reached, the merged counts that
:meth:`detectors.window_tests.WindowTests.evaluate` tests against the reference (each horizon with its own
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

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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np


class WindowHistory:
    """The last ``max(horizons)`` closed windows' integer counts (numeric bins, categories, events)."""

    def __init__(self, horizons: Sequence[int]):
        self.horizons = sorted(h for h in set(horizons) if h > 1)
        self._windows: deque[tuple[np.ndarray, np.ndarray, int]] = deque(maxlen=max(self.horizons, default=1))

    def push(self, num_counts: np.ndarray, cat_counts: np.ndarray, events: int) -> None:
        """Add the counts of the window that just closed (copied: the caller reuses its arrays)."""
        if self.horizons:
            self._windows.append((num_counts.copy(), cat_counts.copy(), int(events)))

    def merged(self) -> list[tuple[int, np.ndarray, np.ndarray, int]]:
        """``(windows, numeric counts, categorical counts, events)`` for each longer horizon reached."""
        out = []
        wins = list(self._windows)
        if not wins:
            return out
        num = np.zeros_like(wins[-1][0])
        cat = np.zeros_like(wins[-1][1])
        events, taken = 0, 0
        for h in self.horizons:
            if h > len(wins):
                break
            for nc, cc, e in wins[len(wins) - h: len(wins) - taken]:
                num += nc
                cat += cc
                events += e
            taken = h
            out.append((h, num.copy(), cat.copy(), events))
        return out

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

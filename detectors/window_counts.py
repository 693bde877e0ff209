"""One event-time window's mergeable state: the integer counts a window's tests need, and where its events lie.

Counts add up, so the partial windows of a sharded model's partitions merge into exactly the counts one pass over
all events gives (:mod:`detectors.partials`); :meth:`detectors.monitor.ModelMonitor.close_window` closes a window
from them.

>>> import numpy as np
>>> a = WindowCounts(np.array([[1, 2]]), np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros((0, 1), np.int64),
...                  3, 10, 20, (0, 5), (0, 7))
>>> b = WindowCounts(np.array([[0, 4]]), np.ones(1, np.int64), np.zeros(1, np.int64), np.zeros((0, 1), np.int64),
...                  4, 5, 15, (1, 2), (1, 5))
>>> m = a.merge(b)
>>> m.num.tolist(), m.n, m.start, m.end, m.first, m.last
([[1, 6]], 7, 5, 20, (1, 2), (0, 7))
>>> WindowCounts.from_state(m.to_state(), ((1, 2), (0, 1))).merge(a).n
10
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class WindowCounts:
    """One event-time window's mergeable state: integer counts per numeric bin and category, type errors and
    values outside the valid domain per numeric column, and where the events lie (count, first and last event
    time, first and last (partition, offset))."""

    num: np.ndarray
    num_type: np.ndarray
    num_domain: np.ndarray
    cat: np.ndarray
    n: int = 0
    start: int | None = None
    end: int | None = None
    first: tuple[int, int] | None = None
    last: tuple[int, int] | None = None

    def merge(self, other: WindowCounts) -> WindowCounts:
        """The counts of both (associative and commutative in every count; the span takes the earliest start
        and the latest end)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        a, b = (self, other) if (self.start, self.first) <= (other.start, other.first) else (other, self)
        z = (a.end, a.last) >= (b.end, b.last)
        return WindowCounts(self.num + other.num, self.num_type + other.num_type, self.num_domain + other.num_domain,
                            self.cat + other.cat, self.n + other.n, a.start, a.end if z else b.end, a.first,
                            a.last if z else b.last)

    def to_state(self) -> dict[str, Any]:
        return {"num": self.num.ravel().tolist(), "num_type": self.num_type.tolist(),
                "num_domain": self.num_domain.tolist(), "cat": self.cat.ravel().tolist(), "n": self.n,
                "start": self.start, "end": self.end, "first": list(self.first) if self.first else None,
                "last": list(self.last) if self.last else None}

    @classmethod
    def from_state(cls, st: dict[str, Any], shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> WindowCounts:
        return cls(np.asarray(st["num"], np.int64).reshape(shapes[0]), np.asarray(st["num_type"], np.int64),
                   np.asarray(st["num_domain"], np.int64), np.asarray(st["cat"], np.int64).reshape(shapes[1]),
                   int(st["n"]), st["start"], st["end"], tuple(st["first"]) if st["first"] else None,
                   tuple(st["last"]) if st["last"] else None)

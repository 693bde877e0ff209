"""Where a window of events lies: how many events, their event-time start and end, and the first and last
(partition, offset) they came from, so that an alert can name its window and its source range.

>>> import numpy as np
>>> span = WindowSpan()
>>> ts, parts, offs = np.array([10, 20, 30]), np.array([0, 0, 0]), np.array([5, 6, 7])
>>> span.extend(ts, parts, offs, 0, 2)
>>> span.extend(ts, parts, offs, 2, 3)
>>> span.n, span.start, span.end, span.source()
(3, 10, 30, (0, 5, 7))
>>> WindowSpan.from_state(span.to_state()) == span
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.batch import EventBatch


def positions(batches: Sequence[EventBatch], base: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Event times, partitions and offsets of consecutive batches as aligned arrays. A batch without
    partitions gets -1 (a file) and without offsets its row numbers, counted on from ``base`` events.

    >>> b = EventBatch.from_columns(ids=["a", "b"], timestamps=[1, 2], features={}, prediction=[0, 1])
    >>> b.partitions, b.offsets = np.empty(0, np.int64), np.empty(0, np.int64)  # rows of a file
    >>> [a.tolist() for a in positions([b, b], 10)]
    [[1, 2, 1, 2], [-1, -1, -1, -1], [10, 11, 12, 13]]
    """
    parts, offs = [], []
    for b in batches:
        m = len(b)
        parts.append(b.partitions if len(b.partitions) == m else np.full(m, -1, np.int64))
        offs.append(b.offsets if len(b.offsets) == m else np.arange(base, base + m, dtype=np.int64))
        base += m
    if len(batches) == 1:
        return batches[0].timestamps, parts[0], offs[0]
    return np.concatenate([b.timestamps for b in batches]), np.concatenate(parts), np.concatenate(offs)


@dataclass
class WindowSpan:
    n: int = 0
    start: int | None = None
    end: int | None = None
    first: tuple[int, int] | None = None  # (partition, offset) of the first event; partition -1: a file row
    last: tuple[int, int] | None = None

    def extend(self, ts: np.ndarray, parts: np.ndarray, offs: np.ndarray, a: int, b: int) -> None:
        """Add the events ``a:b`` of aligned time, partition and offset arrays (``a < b``)."""
        if self.n == 0:
            self.start = int(ts[a])
            self.first = (int(parts[a]), int(offs[a]))
        self.n += b - a
        self.end = int(ts[b - 1])
        self.last = (int(parts[b - 1]), int(offs[b - 1]))

    def source(self) -> tuple[int, int, int]:
        """``(partition, first offset, last offset)``: the source range of an alert on this window."""
        assert self.first is not None and self.last is not None, "an empty window has no source"
        return self.last[0], self.first[1], self.last[1]

    def to_state(self) -> dict[str, Any]:
        return {"n": self.n, "start": self.start, "end": self.end,
                "first": list(self.first) if self.first else None, "last": list(self.last) if self.last else None}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WindowSpan:
        first, last = state["first"], state["last"]
        return cls(n=int(state["n"]), start=state["start"], end=state["end"],
                   first=tuple(first) if first else None, last=tuple(last) if last else None)

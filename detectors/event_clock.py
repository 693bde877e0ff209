"""Rows <-> event times of each model's stream, from the closed prediction-window records of a replay.

Backtest scoring (:mod:`detectors.scoring`) and the timeline place alerts and change points on one axis
with it: exact at prediction-window ends, linear in between.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any


class EventClock:
    """Rows <-> event times of each model's stream, from closed prediction-window records.

    A record ``{"kind": "predictions", "index", "start", "end", "events"[, "model"]}`` covers the next
    ``events`` rows of its model's stream, from time ``start`` to ``end``.

    >>> c = EventClock.from_windows([{"kind": "predictions", "index": 0, "start": 0, "end": 990, "events": 100},
    ...                              {"kind": "predictions", "index": 1, "start": 1000, "end": 1990, "events": 100}])
    >>> c.window_end_row(None, 1), c.row_at(None, 1500), c.time_at(None, 150)
    (199, 150, 1500)
    """

    def __init__(self) -> None:
        self._rows: dict[str | None, list[int]] = {}  # first row of each window
        self._n: dict[str | None, list[int]] = {}
        self._t0: dict[str | None, list[int]] = {}
        self._t1: dict[str | None, list[int]] = {}
        self._index: dict[str | None, dict[int, int]] = {}

    @classmethod
    def from_windows(cls, windows: Iterable[Mapping[str, Any]]) -> EventClock:
        c = cls()
        for w in windows:
            if w.get("kind", "predictions") != "predictions" or not w.get("events"):
                continue
            m = w.get("model")
            rows = c._rows.setdefault(m, [])
            ns = c._n.setdefault(m, [])
            first = rows[-1] + ns[-1] if rows else 0
            c._index.setdefault(m, {})[int(w["index"])] = len(rows)
            rows.append(first)
            ns.append(int(w["events"]))
            c._t0.setdefault(m, []).append(int(w["start"]))
            c._t1.setdefault(m, []).append(int(w["end"]))
        return c

    def _key(self, model: str | None) -> str | None:
        if model in self._rows:
            return model
        if None in self._rows:
            return None
        return next(iter(self._rows)) if len(self._rows) == 1 else model

    def __bool__(self) -> bool:
        return bool(self._rows)

    def window_end_row(self, model: str | None, index: int) -> int | None:
        k = self._key(model)
        i = self._index.get(k, {}).get(index)
        return None if i is None else self._rows[k][i] + self._n[k][i] - 1

    def rows(self, model: str | None = None) -> int:
        k = self._key(model)
        return self._rows[k][-1] + self._n[k][-1] if k in self._rows else 0

    def total_rows(self) -> int:
        """Rows of every model's stream together."""
        return sum(self.rows(m) for m in self._rows)

    def span_ms(self) -> int | None:
        if not self._t0:
            return None
        return max(max(v) for v in self._t1.values()) - min(min(v) for v in self._t0.values())

    def row_at(self, model: str | None, t: int) -> int | None:
        """Rows of the model's stream seen by event time ``t`` (linear within a window)."""
        k = self._key(model)
        if k not in self._rows:
            return None
        t1 = self._t1[k]
        i = bisect_left(t1, t)
        if i >= len(t1):
            return self._rows[k][-1] + self._n[k][-1] - 1
        a, n, s, e = self._rows[k][i], self._n[k][i], self._t0[k][i], t1[i]
        if t <= s or e <= s:
            return a
        return a + round((n - 1) * (t - s) / (e - s))

    def time_at(self, model: str | None, row: int) -> int | None:
        k = self._key(model)
        if k not in self._rows:
            return None
        rows = self._rows[k]
        i = max(0, min(len(rows) - 1, bisect_left(rows, row + 1) - 1))
        a, n, s, e = rows[i], self._n[k][i], self._t0[k][i], self._t1[k][i]
        if n <= 1:
            return s
        return s + round((e - s) * min(max(row - a, 0), n - 1) / (n - 1))

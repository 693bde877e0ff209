"""A seeded reservoir: a uniform sample of at most ``k`` events of one window, vectorised over batches.

Bottom-k sampling: every event of the window gets a uniform key drawn, in event order, from a generator
seeded with ``(seed, window index)``; the reservoir keeps the ``k`` events with the smallest keys, which is
a uniform sample without replacement of the window. numpy's PCG64 draws one 64-bit word per double, so
``random(3)`` then ``random(7)`` yields the same keys as ``random(10)``: the sample depends on the seed and
the event order only, never on how the events were chunked into batches.

>>> import numpy as np
>>> a, b = Reservoir(3, seed=1), Reservoir(3, seed=1)
>>> a.offer({"x": np.arange(10.0)})
>>> for lo in range(0, 10, 4):
...     b.offer({"x": np.arange(10.0)[lo:lo + 4]})
>>> a.sample()["x"].tolist() == b.sample()["x"].tolist(), len(a), a.seen
(True, 3, 10)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def _generator(seed: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF, 0x5EED]))


class Reservoir:
    """At most ``k`` events of one window, chosen uniformly with a seeded key per event.

    ``offer`` takes aligned columns (any dtype, the same names every time) for the next events in order;
    ``sample`` returns the kept events' columns in event order plus ``"_position"`` (0-based position in
    the window). ``reset(index)`` starts the next window with its own seed stream.
    """

    __slots__ = ("k", "seed", "index", "seen", "_rng", "_keys", "_pos", "_cols")

    def __init__(self, k: int, seed: int = 42, index: int = 0):
        if k < 1:
            raise ValueError("reservoir size k must be >= 1")
        self.k = int(k)
        self.seed = int(seed)
        self.reset(index)

    def reset(self, index: int) -> None:
        """Empty the reservoir for window ``index``."""
        self.index = int(index)
        self.seen = 0
        self._rng = _generator(self.seed, self.index)
        self._keys = np.empty(0, np.float64)
        self._pos = np.empty(0, np.int64)
        self._cols: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def offer(self, columns: Mapping[str, np.ndarray]) -> None:
        """Offer the next ``n`` events (aligned columns, event order)."""
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return
        keys = self._rng.random(n)
        full = len(self._keys) >= self.k
        bound = self._keys.max() if full else math.inf
        cand = np.flatnonzero(keys < bound) if full else np.arange(n)
        start = self.seen
        self.seen += n
        if len(cand) == 0:
            return
        all_keys = np.concatenate([self._keys, keys[cand]])
        all_pos = np.concatenate([self._pos, start + cand])
        sel = np.sort(np.argpartition(all_keys, self.k - 1)[: self.k]) if len(all_keys) > self.k else None
        self._keys = all_keys if sel is None else all_keys[sel]
        self._pos = all_pos if sel is None else all_pos[sel]
        cols = {}
        for name, col in columns.items():
            col = np.asarray(col)
            old = self._cols.get(name)
            new = col[cand]
            merged = new if old is None else np.concatenate([old, new])
            cols[name] = merged if sel is None else merged[sel]
        self._cols = cols

    def sample(self) -> dict[str, np.ndarray]:
        """The kept events in event order: each column, and ``"_position"`` within the window."""
        order = np.argsort(self._pos, kind="stable")
        out = {name: col[order] for name, col in self._cols.items()}
        out["_position"] = self._pos[order]
        return out

    # state ------------------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-safe state (NaN as ``None``); the generator is restored by advancing ``seen`` draws."""
        return {
            "k": self.k, "seed": self.seed, "index": self.index, "seen": self.seen,
            "keys": self._keys.tolist(), "pos": self._pos.tolist(),
            "cols": {n: {"kind": c.dtype.kind, "values": json_values(c)} for n, c in self._cols.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Reservoir:
        r = cls(int(state["k"]), int(state["seed"]), int(state["index"]))
        r.seen = int(state["seen"])
        r._rng.bit_generator.advance(r.seen)
        r._keys = np.asarray(state["keys"], np.float64)
        r._pos = np.asarray(state["pos"], np.int64)
        r._cols = {n: from_json_values(c["values"], c["kind"]) for n, c in state["cols"].items()}
        return r


def json_values(col: np.ndarray) -> list[Any]:
    if col.dtype.kind == "f":
        return [None if v != v else v for v in col.tolist()]
    return [v.item() if isinstance(v, np.generic) else v for v in col.tolist()]


def from_json_values(values: list[Any], kind: str) -> np.ndarray:
    if kind == "f":
        return np.array([np.nan if v is None else v for v in values], np.float64)
    if kind in "iub":
        return np.asarray(values, dtype={"i": np.int64, "u": np.uint64, "b": bool}[kind])
    return np.array(values, dtype=object)

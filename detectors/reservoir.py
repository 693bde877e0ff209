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

    The hot path only draws keys: offered columns are kept by reference (not copied, so they must not be
    modified afterwards) and the kept rows are gathered once, by :meth:`sample`. Referenced rows are
    compacted to the kept ones when they exceed ``max(8 k, 8192)``, so memory stays bounded without resets.
    """

    __slots__ = ("k", "seed", "index", "seen", "_rng", "_keys", "_pos", "_bound", "_chunks", "_rows")

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
        self._bound = math.inf  # largest kept key once full: only smaller keys can enter
        # (first position, columns) of offered rows in position order; a compacted chunk has its positions
        self._chunks: list[tuple[int | np.ndarray, Mapping[str, np.ndarray]]] = []
        self._rows = 0

    def __len__(self) -> int:
        return len(self._keys)

    def offer(self, columns: Mapping[str, np.ndarray]) -> None:
        """Offer the next ``n`` events (aligned columns, event order)."""
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return
        keys = self._rng.random(n)
        start = self.seen
        self.seen += n
        if len(self._keys) >= self.k:
            cand = np.flatnonzero(keys < self._bound)
            if len(cand) == 0:
                return
            all_keys = np.concatenate([self._keys, keys[cand]])
            all_pos = np.concatenate([self._pos, start + cand])
        else:
            all_keys = np.concatenate([self._keys, keys])
            all_pos = np.concatenate([self._pos, np.arange(start, start + n, dtype=np.int64)])
        if len(all_keys) > self.k:
            sel = np.sort(np.argpartition(all_keys, self.k - 1)[: self.k])
            all_keys, all_pos = all_keys[sel], all_pos[sel]
        self._keys, self._pos = all_keys, all_pos
        if len(all_keys) >= self.k:
            self._bound = float(all_keys.max())
        self._chunks.append((start, {name: np.asarray(col) for name, col in columns.items()}))
        self._rows += n
        if self._rows > max(8 * self.k, 8192):
            self._compact()

    def _gather(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """The columns of the rows at ``positions`` (sorted), from the referenced chunks."""
        parts: dict[str, list[np.ndarray]] = {}
        for key, cols in self._chunks:
            if isinstance(key, np.ndarray):
                lo, hi = np.searchsorted(positions, [key[0], key[-1] + 1]) if len(key) else (0, 0)
                idx = np.searchsorted(key, positions[lo:hi])
            else:
                size = len(next(iter(cols.values()))) if cols else 0
                lo, hi = np.searchsorted(positions, [key, key + size])
                idx = positions[lo:hi] - key
            if hi == lo:
                continue
            for name, col in cols.items():
                parts.setdefault(name, []).append(col[idx])
        return {name: p[0] if len(p) == 1 else np.concatenate(p) for name, p in parts.items()}

    def _compact(self) -> None:
        pos = np.sort(self._pos)
        self._chunks = [(pos, self._gather(pos))]
        self._rows = len(pos)

    def sample(self) -> dict[str, np.ndarray]:
        """The kept events in event order: each column, and ``"_position"`` within the window."""
        pos = np.sort(self._pos)
        out = self._gather(pos) if len(pos) else {}
        out["_position"] = pos
        return out

    # state ------------------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-safe state (NaN as ``None``); the generator is restored by advancing ``seen`` draws."""
        order = np.argsort(self._pos, kind="stable")
        cols = self._gather(self._pos[order]) if len(order) else {}
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        cols = {n: c[inverse] for n, c in cols.items()}  # aligned with keys and positions
        return {
            "k": self.k, "seed": self.seed, "index": self.index, "seen": self.seen,
            "keys": self._keys.tolist(), "pos": self._pos.tolist(),
            "cols": {n: {"kind": c.dtype.kind, "values": json_values(c)} for n, c in cols.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Reservoir:
        r = cls(int(state["k"]), int(state["seed"]), int(state["index"]))
        r.seen = int(state["seen"])
        r._rng.bit_generator.advance(r.seen)
        r._keys = np.asarray(state["keys"], np.float64)
        r._pos = np.asarray(state["pos"], np.int64)
        if len(r._keys) >= r.k:
            r._bound = float(r._keys.max())
        cols = {n: from_json_values(c["values"], c["kind"]) for n, c in state["cols"].items()}
        if len(r._pos):
            order = np.argsort(r._pos, kind="stable")
            r._chunks = [(r._pos[order], {n: c[order] for n, c in cols.items()})]
            r._rows = len(order)
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

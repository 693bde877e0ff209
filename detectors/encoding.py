"""Turning window columns into bin counts: the vectorised hot path.

:class:`NumericBins` and :class:`CategoricalBins` hold, for all numeric (categorical) columns of a profile,
the bin layout as padded matrices: row ``j`` is column ``j``, its real bins first, then its missing slot
at ``nb[j]``, then padding. A batch's consecutive slices (the windows it fills) are counted at once: per
numeric column a grid lookup of every value's bin (:mod:`detectors.cut_grid`) and one ``bincount``, per
categorical column one hash lookup and one ``bincount``; counts are integers, so windows add up the same
however the events were chunked.

>>> import numpy as np, pandas as pd
>>> from detectors.profile import build_profile
>>> p = build_profile(pd.DataFrame({"x": np.arange(100.0), "c": ["a", "b"] * 50}), prediction=None)
>>> nb = NumericBins([p.columns["x"]])
>>> counts, bad = nb.segment_counts([np.array([5.0, np.nan, 1e9, 7.0])], np.array([0, 2]), np.array([2, 4]))
>>> counts[:, 0].sum(axis=1).tolist(), int(counts[0, 0, nb.nb[0]]), nb.out_of_range(counts[1]).tolist()
([2, 2], 1, [1])
>>> cb = CategoricalBins([p.columns["c"]])
>>> cc = cb.empty()
>>> cb.add(cc, [np.array(["a", "z", None], dtype=object)])
>>> cc[0].tolist()
[1, 0, 0, 1, 1]
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
from pandas import Categorical

from detectors.cut_grid import CutGrid, slice_slots
from detectors.profile import CategoricalColumn, NumericColumn
from detectors.values import canon

try:  # pandas' object hash table: 5x faster than a dict comprehension for string lookups
    from pandas._libs.hashtable import PyObjectHashTable as _HashTable
except ImportError:  # pragma: no cover - private API moved
    _HashTable = None


def _coerce_numeric(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An object column as float64 and its wrong-type mask: numbers kept, ``None`` -> NaN, anything else
    (strings in a numeric column) NaN and flagged."""
    out = np.empty(len(x), np.float64)
    bad = np.zeros(len(x), bool)
    for i, v in enumerate(x):
        if v is None:
            out[i] = np.nan
        elif isinstance(v, (int, float, np.integer, np.floating, np.bool_)):
            out[i] = float(v)
        else:
            out[i] = np.nan
            bad[i] = True
    return out, bad


class NumericBins:
    """Bin layout of the numeric columns of a profile, as matrices (columns x bins)."""

    def __init__(self, columns: Sequence[NumericColumn]):
        self.names = [c.name for c in columns]
        self.cuts = [np.asarray(c.cuts, np.float64) for c in columns]
        self.grids = [CutGrid(c) for c in self.cuts]
        self.nb = np.array([len(c) for c in self.cuts], np.int64)
        self.width = int(self.nb.max()) + 1 if len(columns) else 1
        k = len(columns)
        self.ref = np.zeros((k, self.width))  # reference probabilities over real bins
        self.real = np.zeros((k, self.width), bool)
        self.oor = np.zeros((k, self.width), bool)  # bins outside the reference range
        self.weights = np.zeros((k, self.width))  # Wasserstein trapezoid weights per cut
        from detectors.profile import COARSE_BINS
        from detectors.stats import wasserstein_weights

        self.groups = np.zeros((k, self.width, COARSE_BINS + 2))  # one-hot coarse group per bin
        for j, c in enumerate(columns):
            nb = len(c.cuts)
            counts = np.asarray(c.counts, np.float64)
            self.ref[j, :nb] = counts / max(counts.sum(), 1.0)
            self.real[j, :nb] = True
            self.oor[j, : c.lo] = True
            self.oor[j, c.hi : nb] = True
            self.weights[j, :nb] = wasserstein_weights(self.cuts[j])
            self.groups[j, np.arange(nb), np.asarray(c.groups)] = 1.0
        self.ref_coarse = np.einsum("cb,cbg->cg", self.ref, self.groups)
        self.norm = np.array([max(c.std, 0.001) for c in columns])
        self.n_ref = np.array([c.count for c in columns], np.int64)
        self.missing_ref = np.array([c.missing for c in columns], np.int64)
        self._rows = np.arange(k)

    def __len__(self) -> int:
        return len(self.names)

    def empty(self) -> np.ndarray:
        return np.zeros((len(self.names), self.width), np.int64)

    def segment_counts(self, values: Sequence[np.ndarray | None], starts: np.ndarray, ends: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Counts of each consecutive slice ``starts[s]:ends[s]`` of the columns (``None``: absent, all missing),
        ``(slices, columns, bins)``, and the values of the wrong type (strings in a numeric column; counted
        as such, not as missing), ``(slices, columns)``. Integers count as floats.

        >>> import pandas as pd
        >>> from detectors.profile import build_profile
        >>> p = build_profile(pd.DataFrame({"x": np.arange(100.0)}), prediction=None)
        >>> nb = NumericBins([p.columns["x"]])
        >>> counts, bad = nb.segment_counts([np.array([5.0, np.nan, 1e9, "x"], dtype=object)], np.array([0]),
        ...                                 np.array([4]))
        >>> int(counts[0, 0, nb.nb[0]]), int(bad[0, 0]), int(nb.out_of_range(counts[0])[0])
        (1, 1, 1)
        """
        lengths = ends - starts
        counts = np.zeros((len(lengths), len(self.names), self.width), np.int64)
        wrong = np.zeros((len(lengths), len(self.names)), np.int64)
        a, b = int(starts[0]), int(ends[-1])
        slots = slice_slots(starts, ends, self.width)  # the same for every column
        for j, x in enumerate(values):
            nb = int(self.nb[j])
            if x is None:
                counts[:, j, nb] = lengths
                continue
            x = x[a:b]
            if x.dtype.kind in "iub":
                x = x.astype(np.float64)
            elif x.dtype.kind != "f":
                x, bad = _coerce_numeric(x)
                if bad.any():
                    wrong[:, j] = np.add.reduceat(bad.astype(np.int64), starts - a)
            counts[:, j, :] = self.grids[j].slice_counts(x, starts - a, ends - a, self.width, slots)
            counts[:, j, nb] -= wrong[:, j]
        return counts, wrong

    def missing(self, counts: np.ndarray) -> np.ndarray:
        return counts[self._rows, self.nb]

    def present(self, counts: np.ndarray) -> np.ndarray:
        """Counts over the real bins only (missing slot and padding zeroed)."""
        return np.where(self.real, counts, 0)

    def out_of_range(self, counts: np.ndarray) -> np.ndarray:
        return np.sum(np.where(self.oor, counts, 0), axis=-1)


MAX_TABLE = 4096  # largest class number a direct table covers


class CategoryIndex:
    """Category string -> code lookup that also accepts numbers (``1.0`` finds category ``"1"``). Numbers go
    through a direct table when every category that reads as a number is an integer in ``[0, MAX_TABLE)`` (classes
    named ``"0"``, ``"1"``, ...: about ten times faster than the binary search, and its own answers)."""

    def __init__(self, categories: Sequence[str]):
        self.categories = list(categories)
        self._dict = {c: i for i, c in enumerate(self.categories)}
        self._table = None
        if _HashTable is not None:
            self._table = _HashTable()
            self._table.map_locations(np.asarray(self.categories, dtype=object))
        fl: list[tuple[float, int]] = []
        for i, c in enumerate(self.categories):
            with contextlib.suppress(ValueError):
                fl.append((float(c), i))
        fl.sort()
        self._fvals = np.array([f for f, _ in fl], np.float64)
        self._fcodes = np.array([i for _, i in fl], np.int64)
        f = self._fvals
        self._numbers: np.ndarray | None = None  # code of each integer 0..max, when the numbers allow a table
        if len(f) and bool(np.all((f >= 0) & (f < MAX_TABLE) & (f == np.floor(f)))):
            self._numbers = self._search(np.arange(int(f.max()) + 1, dtype=np.float64))

    def _search(self, xf: np.ndarray) -> np.ndarray:
        """Codes of float values by binary search among the categories that read as numbers."""
        codes = np.full(len(xf), -1, np.int64)
        if len(self._fvals):
            pos = np.minimum(np.searchsorted(self._fvals, xf), len(self._fvals) - 1)
            hit = self._fvals[pos] == xf
            codes[hit] = self._fcodes[pos[hit]]
        return codes

    def lookup(self, x: np.ndarray | Categorical) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, missing)``: codes are ``-1`` for unknown values and for missing ones.

        A :class:`pandas.Categorical` (a dictionary-encoded column, as Arrow reads strings) is looked up once
        per distinct value: the same result as looking up every value.

        >>> ix = CategoryIndex(["a", "b"])
        >>> [c.tolist() for c in ix.lookup(Categorical(["b", None, "z", "b"]))]
        [[1, -1, -1, 1], [False, True, False, False]]
        """
        if isinstance(x, Categorical):
            codes, missing = self.lookup(np.asarray(x.categories, dtype=object))
            at = x.codes  # -1: a missing value, the sentinel appended last
            return np.append(codes, -1)[at], np.append(missing, True)[at]
        if x.dtype.kind in "fiub":
            xf = x.astype(np.float64, copy=False)
            table = self._numbers
            if table is None:
                return self._search(xf), np.isnan(xf)
            inside = (xf >= 0) & (xf < len(table))  # NaN is outside; no category number lies outside
            xi = np.where(inside, xf, 0).astype(np.int64)
            return np.where(inside & (xi == xf), table[xi], -1), np.isnan(xf)
        codes = None
        if self._table is not None:
            try:
                codes = self._table.lookup(x.astype(object, copy=False)).astype(np.int64, copy=False)
            except TypeError:  # unhashable values: the slow path below
                codes = None
        if codes is None:
            get = self._dict.get
            codes = np.fromiter((get(v, -1) if isinstance(v, str) else -1 for v in x), np.int64, len(x))
        missing = np.zeros(len(x), bool)
        miss_idx = np.flatnonzero(codes < 0)
        if len(miss_idx):
            get = self._dict.get
            for i in miss_idx:
                try:
                    c = canon(x[i])
                except Exception:  # a value with no canonical form: unseen
                    c = repr(x[i])
                if c is None:
                    missing[i] = True
                else:
                    codes[i] = get(c, -1)
        return codes, missing

    def bins(self, x: np.ndarray | Categorical, missing_bin: int, unknown_bin: int) -> np.ndarray:
        """Each value's bin: its category's code, ``missing_bin`` if missing, ``unknown_bin`` if unknown (a
        :class:`pandas.Categorical`: each distinct value once, then one gather).

        >>> CategoryIndex(["a", "b"]).bins(Categorical(["b", None, "z", "b"]), 4, 3).tolist()
        [1, 4, 3, 1]
        """
        if isinstance(x, Categorical):
            per_value = self.bins(np.asarray(x.categories, dtype=object), missing_bin, unknown_bin)
            return np.append(per_value, missing_bin)[x.codes]  # code -1: a missing value
        codes, missing = self.lookup(x)
        return np.where(codes < 0, np.where(missing, missing_bin, unknown_bin), codes)


class CategoricalBins:
    """Bin layout of the categorical columns: categories, ``other``, ``unseen``, then the missing slot."""

    def __init__(self, columns: Sequence[CategoricalColumn]):
        self.names = [c.name for c in columns]
        self.index = [CategoryIndex(c.categories) for c in columns]
        self.kc = np.array([len(c.categories) for c in columns], np.int64)
        self.nb = self.kc + 2  # real bins: categories, other, unseen
        self.truncated = np.array([c.truncated for c in columns], bool)
        self.width = int(self.nb.max()) + 1 if len(columns) else 1
        k = len(columns)
        self.ref = np.zeros((k, self.width))
        self.real = np.zeros((k, self.width), bool)
        for j, c in enumerate(columns):
            counts = np.asarray(c.counts + [c.other], np.float64)
            self.ref[j, : len(counts)] = counts / max(c.count, 1)
            self.real[j, : self.nb[j]] = True
        self.n_ref = np.array([c.count for c in columns], np.int64)
        self.missing_ref = np.array([c.missing for c in columns], np.int64)
        # Good-Turing: the probability of a value the reference never showed ~ share of singletons
        self.unseen_ref = np.array([max(c.singletons, 1) / (c.count + 1) for c in columns])
        self._rows = np.arange(k)

    def __len__(self) -> int:
        return len(self.names)

    def empty(self) -> np.ndarray:
        return np.zeros((len(self.names), self.width), np.int64)

    def add(self, counts: np.ndarray, values: Sequence[np.ndarray | None], n: int | None = None) -> None:
        for j, x in enumerate(values):
            nb = int(self.nb[j])
            if x is None:
                counts[j, nb] += n or 0
                continue
            unknown = int(self.kc[j]) if self.truncated[j] else int(self.kc[j]) + 1  # other / unseen
            codes = self.index[j].bins(x, nb, unknown)
            counts[j, : nb + 1] += np.bincount(codes, minlength=nb + 1)

    def segment_counts(self, values: Sequence[np.ndarray | None], starts: np.ndarray, ends: np.ndarray
                       ) -> np.ndarray:
        """Counts of each consecutive slice ``starts[s]:ends[s]`` (covering the columns), ``(slices, columns,
        bins)``: every column is looked up once and counted with one ``bincount``, the same counts as
        :meth:`add` of each slice.

        >>> cb = CategoricalBins([CategoricalColumn("c", "feature", 4, 0, ["a", "b"], [2, 2], 0, False, 0)])
        >>> cb.segment_counts([np.array(["a", "b", "z", None, "a"], dtype=object)], np.array([0, 2]),
        ...                   np.array([2, 5]))[:, 0].tolist()
        [[1, 1, 0, 0, 0], [1, 0, 0, 1, 1]]
        """
        lengths = ends - starts
        out = np.zeros((len(lengths), len(self.names), self.width), np.int64)
        seg = slice_slots(starts, ends, self.width)
        for j, x in enumerate(values):
            nb = int(self.nb[j])
            if x is None:
                out[:, j, nb] = lengths
                continue
            x = x[starts[0]: ends[-1]]
            unknown = int(self.kc[j]) if self.truncated[j] else int(self.kc[j]) + 1  # other / unseen
            codes = self.index[j].bins(x, nb, unknown)
            out[:, j, :] = np.bincount(seg + codes, minlength=len(lengths) * self.width).reshape(-1, self.width)
        return out

    def missing(self, counts: np.ndarray) -> np.ndarray:
        return counts[self._rows, self.nb]

    def present(self, counts: np.ndarray) -> np.ndarray:
        return np.where(self.real, counts, 0)

    def unseen(self, counts: np.ndarray) -> np.ndarray:
        return counts[self._rows, self.kc + 1]

"""The grid lookup of numeric bins gives the bins of a binary search, for any cuts and values.

Window counts must not depend on how they are computed (alerts stay byte-identical), so :class:`CutGrid`
is checked against the definition, ``np.searchsorted(cuts, x, side="right")`` with NaN in the last slot, on
cuts and values built to break it: crowded and heavy-tailed cuts (deep grids, the sorted fallback), the
profile's sentinel cut at the largest float, infinities, signed zeros, NaN of either sign, neighbouring floats.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.cut_grid import MAX_DEPTH, CutGrid
from detectors.domains import bins_outside, count_outside_segments
from detectors.encoding import NumericBins
from detectors.profile import build_profile

MAX_FLOAT = float(np.finfo(np.float64).max)
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, MAX_FLOAT, -MAX_FLOAT, 5e-324, 1e-300, 1e300]


def definition(cuts: np.ndarray, x: np.ndarray, starts: list[int], ends: list[int], width: int) -> np.ndarray:
    bins = np.searchsorted(cuts, x, side="right")  # NaN sorts last: len(cuts)
    out = np.zeros((len(starts), width), np.int64)
    for s, (a, b) in enumerate(zip(starts, ends, strict=True)):
        out[s, : len(cuts) + 1] = np.bincount(bins[a:b], minlength=len(cuts) + 1)
    return out


def values_around(cuts: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Values that hit the cuts, their neighbouring floats, the specials and a spread in between."""
    with np.errstate(over="ignore"):
        near = np.r_[cuts, np.nextafter(cuts, np.inf), np.nextafter(cuts, -np.inf)]
    lo, hi = np.clip([cuts.min(), cuts.max()] if len(cuts) else [-1.0, 1.0], -1e300, 1e300)
    spread = lo + rng.uniform(0.0, 1.0, n) * (hi - lo)
    x = np.r_[near, SPECIAL, spread, rng.choice(near, n) if len(near) else []]
    rng.shuffle(x)
    return x


cut_sets = st.one_of(
    st.lists(st.floats(allow_nan=False, width=64), max_size=80),
    st.lists(st.sampled_from([v for v in SPECIAL if v == v] + [1.0, 1.0 + 2**-52, 2.0]), max_size=12),
    st.builds(lambda n, scale: list(np.cumsum(np.full(n, scale))), st.integers(1, 70),
              st.sampled_from([1e-12, 1e-3, 1.0, 1e12])),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(cuts=cut_sets, seed=st.integers(0, 2**32 - 1), pieces=st.integers(1, 6))
def test_slice_counts_are_the_binary_search_counts(cuts: list[float], seed: int, pieces: int) -> None:
    c = np.unique(np.asarray(cuts, np.float64))
    rng = np.random.default_rng(seed)
    x = values_around(c, rng, 200)
    edges = np.sort(rng.choice(np.arange(1, len(x)), size=min(pieces - 1, len(x) - 1), replace=False))
    starts, ends = np.r_[0, edges], np.r_[edges, len(x)]
    grid = CutGrid(c)
    assert (grid.bins(x) == np.searchsorted(c, x, side="right")).all()
    got = grid.slice_counts(x, starts, ends, len(c) + 3)
    assert (got == definition(c, x, starts.tolist(), ends.tolist(), len(c) + 3)).all()


@pytest.mark.parametrize("name, sample", [
    ("normal", lambda rng, n: rng.normal(size=n)),
    ("exponential", lambda rng, n: rng.exponential(size=n)),
    ("integers", lambda rng, n: rng.poisson(3, n).astype(float)),
    ("lognormal sigma 3", lambda rng, n: rng.lognormal(0, 3, n)),
    ("pareto", lambda rng, n: rng.pareto(1.0, n)),
    ("one value", lambda rng, n: np.full(n, 7.0)),
    ("offset noise", lambda rng, n: 1e6 + rng.normal(size=n) * 1e-6),
])
def test_profile_bins_counted_as_defined(name: str, sample) -> None:
    """Cuts as profiles build them (quantiles, tail bins, the sentinel) on shallow and deep layouts."""
    rng = np.random.default_rng(3)
    col = build_profile(pd.DataFrame({"x": sample(rng, 20_000)}), prediction=None).columns["x"]
    cuts = np.asarray(col.cuts)
    x = np.r_[sample(rng, 40_000), values_around(cuts, rng, 100)]
    starts, ends = np.array([0, 1_000, 20_500]), np.array([1_000, 20_500, len(x)])
    grid = CutGrid(cuts)
    got = grid.slice_counts(x, starts, ends, len(cuts) + 1)
    assert (got == definition(cuts, x, starts.tolist(), ends.tolist(), len(cuts) + 1)).all()
    assert (grid.bins(x) == np.searchsorted(cuts, x, side="right")).all()


def test_heavy_tails_make_deep_grids_that_sort_instead() -> None:
    rng = np.random.default_rng(4)
    shallow = build_profile(pd.DataFrame({"x": rng.normal(size=20_000)}), prediction=None).columns["x"]
    deep = build_profile(pd.DataFrame({"x": rng.lognormal(0, 3, 20_000)}), prediction=None).columns["x"]
    assert CutGrid(np.asarray(shallow.cuts)).depth <= 1
    assert CutGrid(np.asarray(deep.cuts)).depth > MAX_DEPTH


def test_segment_counts_of_mixed_columns() -> None:
    """Floats, integers, an object column with strings (wrong type, not missing) and an absent column."""
    p = build_profile(pd.DataFrame({c: np.arange(100.0) for c in "abcd"}), prediction=None)
    nb = NumericBins([p.columns[c] for c in "abcd"])
    floats = np.array([1.0, np.nan, 50.0, 1e9, -5.0])
    ints = np.array([1, 2, 3, 4, 5])
    objects = np.array([1.0, "x", None, 2, "y"], dtype=object)
    counts, wrong = nb.segment_counts([floats, ints, objects, None], np.array([0, 2]), np.array([2, 5]))
    assert wrong.tolist() == [[0, 0, 1, 0], [0, 0, 1, 0]]
    missing = counts[:, np.arange(4), nb.nb]
    assert missing.tolist() == [[1, 0, 0, 2], [0, 0, 1, 3]]  # strings are not missing, None is
    assert counts.sum(axis=2).tolist() == [[2, 2, 1, 2], [3, 3, 2, 3]]  # every value once, but the strings
    assert nb.out_of_range(counts[1]).tolist() == [2, 0, 0, 0]  # 1e9 and -5 outside [0, 99]


domain_bounds = st.one_of(st.floats(allow_nan=False, width=64), st.sampled_from([0.0, -0.0, 1.0, 2.0]))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(cuts=cut_sets, lo=domain_bounds, hi=domain_bounds, seed=st.integers(0, 2**32 - 1))
def test_values_outside_the_domain_fall_in_its_suspect_bins(cuts: list[float], lo: float, hi: float,
                                                           seed: int) -> None:
    """Counting outside the valid domain only where the bin counts allow it (:func:`bins_outside`) counts the
    same as looking at every value: a column whose counts miss those bins has none outside."""
    c = np.unique(np.asarray(cuts, np.float64))
    lo, hi = min(lo, hi), max(lo, hi)
    x = values_around(np.unique(np.r_[c, lo, hi]), np.random.default_rng(seed), 200)
    starts = np.array([0])
    width = len(c) + 3
    suspect_bins = bins_outside([c], np.array([lo]), np.array([hi]), width)
    for part in (x, x[(x >= lo) & (x <= hi) | np.isnan(x)]):  # with values outside, and without
        counts = CutGrid(c).slice_counts(part, starts, np.array([len(part)]), width)
        suspects = np.any(counts.sum(axis=0) * suspect_bins, axis=1)
        expected = count_outside_segments([part], np.array([lo]), np.array([hi]), starts, np.array([len(part)]))
        if expected.any():
            assert suspects[0]
        got = count_outside_segments([part], np.array([lo]), np.array([hi]), starts, np.array([len(part)]),
                                     suspects)
        assert (got == expected).all()

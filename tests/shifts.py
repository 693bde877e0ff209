"""Small persistent shifts and broken values applied to a :mod:`synth` stream from row ``at`` on.

Shared by the detection tests (``test_detect_horizons``, ``test_detect_quality``) and ``bench/bench_power.py``.
``size`` is in the shift's own unit: reference sd for ``mean``, relative change of the spread for ``spread``,
share points (0.05 = 5 points) for ``category``. ``num_7`` is a normal column, ``cat_3`` has five categories of
20% each; ``category`` moves rows of other categories to ``a`` so that its share becomes ``0.2 + size``.

>>> import synth
>>> df = shifted(synth.frame(40_000, seed=1), "category", 0.10, at=20_000)
>>> round(float((df["cat_3"].iloc[20_000:] == "a").mean()), 2)
0.3
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import synth

NUMERIC, CATEGORY = "num_7", "cat_3"
KINDS = ("mean", "spread", "category")


def feature(kind: str) -> str:
    """The column a shift of ``kind`` changes."""
    return CATEGORY if kind == "category" else NUMERIC


def shifted(df: pd.DataFrame, kind: str, size: float, at: int, seed: int = 0) -> pd.DataFrame:
    """A copy of ``df`` whose :func:`feature` column changes by ``size`` from row ``at`` on."""
    out = df.copy()
    after = np.arange(len(out)) >= at
    mu, sd = synth._layout()
    j = synth.NUM.index(NUMERIC)
    if kind == "mean":
        out.loc[after, NUMERIC] += size * sd[j]
    elif kind == "spread":
        out.loc[after, NUMERIC] = mu[j] + (out.loc[after, NUMERIC] - mu[j]) * (1.0 + size)
    elif kind == "category":
        rng = np.random.default_rng([seed, 77])
        v = out[CATEGORY].to_numpy(dtype=object).copy()
        move = after & (v != "a") & (rng.random(len(v)) < size / 0.8)
        v[move] = "a"
        out[CATEGORY] = v
    else:
        raise ValueError(f"unknown shift {kind!r}; one of {', '.join(KINDS)}")
    return out


def broken(df: pd.DataFrame, column: str, share: float, at: int, *, factor: float | None = None,
           value: float | None = None, seed: int = 0) -> pd.DataFrame:
    """A copy of ``df`` where ``share`` of the rows from ``at`` on have ``column`` multiplied by ``factor``
    (a unit error) or set to ``value`` (a sentinel)."""
    out = df.copy()
    rng = np.random.default_rng([seed, 78])
    rows = (np.arange(len(out)) >= at) & (rng.random(len(out)) < share)
    x = out[column].to_numpy(dtype=np.float64).copy()
    x[rows] = x[rows] * factor if factor is not None else value
    out[column] = x
    return out

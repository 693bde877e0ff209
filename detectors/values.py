"""Canonical forms of column values, so a category reads the same from pandas, JSON and numpy.

Categories are compared as strings: integral numbers lose their ``.0`` (``1``, ``1.0`` and ``True``
are all ``"1"``), other floats use ``repr`` and strings stay as they are. Missing is ``None``/NaN/NA.

>>> [canon(v) for v in (1, 1.0, True, 0.5, "a", None, float("nan"))]
['1', '1', '1', '0.5', 'a', None, None]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def canon(value: Any) -> str | None:
    """The canonical category string of one value (``None`` when missing)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isnan(f):
            return None
        if math.isinf(f):
            return repr(f)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value)


def canon_series(s: pd.Series) -> pd.Series:
    """``canon`` over a pandas column (object dtype, ``None`` for missing); vectorised for integral numbers."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(x)
        if np.all(x[ok] == np.round(x[ok])) and np.all(np.abs(x[ok]) < 2**53):
            out = np.full(len(x), None, dtype=object)
            out[ok] = x[ok].astype(np.int64).astype(str).astype(object)
            return pd.Series(out, index=s.index, dtype=object)
    return pd.Series([canon(v) for v in s.to_numpy(dtype=object)], index=s.index, dtype=object)


def is_categorical_dtype(s: pd.Series) -> bool:
    """True for columns profiled as categories: strings, objects, bools and pandas categoricals."""
    return not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)


def numeric_values(s: pd.Series) -> np.ndarray:
    """A numeric pandas column as float64 with NaN for missing (and for +-inf)."""
    x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    x = x.copy()
    x[~np.isfinite(x)] = np.nan
    return x


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float (bools as 0/1), else ``None`` (missing, text, NaN, infinite).

    >>> [finite_number(v) for v in (2, True, "3", None, float("inf"))]
    [2.0, 1.0, None, None, None]
    """
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None

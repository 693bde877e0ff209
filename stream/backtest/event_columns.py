"""How an events table's columns become events: which column plays which role (timestamp, id, prediction, label,
scores, features), event times in epoch ms, and values as the core expects them (float64 with NaN, or objects
with None). Columns without a role are features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from detectors.config import DetectionConfig
from stream.errors import UserError

DEFAULT_ROLES = {"timestamp": "timestamp", "id": "prediction_id", "prediction": "prediction", "label": "label"}
META_COLUMNS = ("model", "model_version", "schema")  # never features


class ReplayError(UserError, ValueError):
    """A replay that cannot run as asked (a missing column, a bad option); one-line message."""


@dataclass
class ReplayOptions:
    """How to read the events table. ``None`` roles use the default column name when the table has it."""

    timestamp_col: str | None = None
    id_col: str | None = None
    prediction_col: str | None = None
    score_cols: list[str] = field(default_factory=list)
    label_col: str | None = None
    label_delay: int = 0
    task: str | None = None
    features: list[str] | None = None
    categorical: list[str] | None = None
    window: int | None = None
    config: DetectionConfig | None = None
    model: str | None = None  # default: the table's single ``model`` value, else the file's stem
    model_version: str | None = None
    chunk_rows: int = 65_536
    keep_windows: bool = True
    progress: Callable[[int], None] | None = None  # called with the rows done after every chunk
    links: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # adds an alert's links (runbook), as live


@dataclass
class Roles:
    """The events table's columns by role."""

    timestamp: str | None
    id: str | None
    prediction: str | None
    label: str | None
    scores: list[str]
    features: list[str]


def resolve_roles(columns: list[str], opts: ReplayOptions) -> Roles:
    """Which column plays which role (explicit options, else the default names present); :class:`ReplayError`
    for a missing column or contradictory options.

    >>> resolve_roles(["timestamp", "x", "prediction"], ReplayOptions()).features
    ['x']
    """
    cols = set(columns)

    def pick(explicit: str | None, default: str, what: str) -> str | None:
        if explicit is not None:
            if explicit not in cols:
                raise ReplayError(f"{what} column {explicit!r} is not in the events table "
                                  f"(columns: {', '.join(columns)})")
            return explicit
        return default if default in cols else None

    ts = pick(opts.timestamp_col, DEFAULT_ROLES["timestamp"], "timestamp")
    idc = pick(opts.id_col, DEFAULT_ROLES["id"], "id")
    pred = pick(opts.prediction_col, DEFAULT_ROLES["prediction"], "prediction")
    label = pick(opts.label_col, DEFAULT_ROLES["label"], "label")
    for s in opts.score_cols:
        if s not in cols:
            raise ReplayError(f"score column {s!r} is not in the events table")
    roles = {c for c in (ts, idc, pred, label) if c} | set(opts.score_cols) | set(META_COLUMNS)
    if opts.features is not None:
        for f in opts.features:
            if f not in cols:
                raise ReplayError(f"feature column {f!r} is not in the events table")
            if f in roles:
                raise ReplayError(f"column {f!r} cannot be a feature: it already has a role")
        feats = list(opts.features)
    else:
        feats = [c for c in columns if c not in roles]
    for c in opts.categorical or []:
        if c not in feats:
            raise ReplayError(f"categorical column {c!r} is not a feature (features: {', '.join(feats)})")
    if not feats and pred is None:
        raise ReplayError("nothing to monitor: the events table has no feature and no prediction column")
    if opts.label_delay < 0:
        raise ReplayError("--label-delay must be >= 0")
    if opts.label_delay and label is None:
        raise ReplayError("--label-delay needs a label column")
    return Roles(ts, idc, pred, label, list(opts.score_cols), feats)


def event_times(chunk: pd.DataFrame, col: str | None, start: int) -> np.ndarray:
    """Event times (epoch ms) of a chunk from ``col`` (epoch ms, datetimes or date strings), else the row numbers
    from ``start``."""
    n = len(chunk)
    if col is None:
        return np.arange(start, start + n, dtype=np.int64)
    s = chunk[col]
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s.dt.tz_localize(None).astype("datetime64[ms]").astype(np.int64).to_numpy() if s.dt.tz \
            else s.astype("datetime64[ms]").astype(np.int64).to_numpy()
    if pd.api.types.is_numeric_dtype(s.dtype):
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.isnan(x).any():
            raise ReplayError(f"timestamp column {col!r} has missing values (rows {start}..{start + n - 1})")
        return x.astype(np.int64)
    try:
        t = pd.to_datetime(s, utc=True, format="mixed")
    except (ValueError, TypeError) as err:
        raise ReplayError(f"timestamp column {col!r} is neither epoch ms nor a date/time: {err}") from None
    if t.isna().any():
        raise ReplayError(f"timestamp column {col!r} has missing values (rows {start}..{start + n - 1})")
    return t.dt.tz_localize(None).astype("datetime64[ms]").astype(np.int64).to_numpy()


def column_values(s: pd.Series) -> np.ndarray:
    """A column as the core expects it: float64 with NaN, or object with None."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = s.cat.categories
        if not pd.api.types.is_numeric_dtype(cats.dtype) or pd.api.types.is_bool_dtype(cats.dtype):
            # one Python object per category, not per value (parquet strings are read as dictionaries)
            lookup = np.append(cats.to_numpy(dtype=object), None)
            return lookup[s.cat.codes.to_numpy()]
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    return s.to_numpy(dtype=object, na_value=None)

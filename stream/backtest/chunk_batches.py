"""One chunk of an events table as the core's :class:`~detectors.batch.EventBatch`: the replay's and its binning
process's one way to read the monitored columns (features, prediction, scores), so both count the same values."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from detectors.batch import EventBatch
from detectors.profile import ReferenceProfile
from stream.backtest.arrow_chunks import ArrowChunk
from stream.backtest.event_columns import ReplayError, Roles, column_values, event_times

Chunk = pd.DataFrame | ArrowChunk


class ChunkColumns:
    """Reads chunks of one events table: the roles' columns in the core's form (``categorical``: features the user
    declared categorical; ``coded``: categorical features the profile holds, which stay dictionary codes)."""

    def __init__(self, roles: Roles, categorical: set[str], coded: set[str]):
        self.roles, self.categorical, self.coded = roles, categorical, coded

    @classmethod
    def of(cls, roles: Roles, categorical: list[str] | None, profile: ReferenceProfile) -> ChunkColumns:
        """The reader of a replay's table (``categorical``: the user's option) against ``profile``."""
        return cls(roles, set(categorical or []),
                   {f for f in roles.features if profile.columns[f].kind == "categorical"})

    @staticmethod
    def values(chunk: Chunk) -> Callable[[str], np.ndarray]:
        """The chunk's column by name, as float64 with NaN or objects with None."""
        return chunk.values if isinstance(chunk, ArrowChunk) else (lambda c: column_values(chunk[c]))

    def check(self, chunk: Chunk, first_row: int) -> None:
        r = self.roles
        missing = [c for c in r.features + r.scores + [x for x in (r.prediction, r.label) if x] if c not in chunk]
        if missing:
            raise ReplayError(f"rows {first_row}..{first_row + len(chunk) - 1} lack columns: {', '.join(missing)}")

    def batch(self, chunk: Chunk, first_row: int, *, events: bool = True, features: bool = True) -> EventBatch:
        """The chunk's events, rows ``first_row...``; without ids and event times (``events=False``: for counting),
        without features (``features=False``: counted elsewhere)."""
        r, n = self.roles, len(chunk)
        arrow = isinstance(chunk, ArrowChunk)
        values = self.values(chunk)
        rows = np.arange(first_row, first_row + n, dtype=np.int64)
        if not events:
            ts, ids = rows, rows
        else:
            ts = chunk.times(r.timestamp, first_row) if arrow else event_times(chunk, r.timestamp, first_row)
            ids = rows if not r.id else (chunk.series(r.id) if arrow else chunk[r.id]).to_numpy(dtype=object)
        feats = {}
        for f in r.features if features else ():
            codes = chunk.categorical(f) if arrow and f in self.coded else None
            if codes is not None:  # strings stay codes into their dictionary
                feats[f] = codes
                continue
            v = values(f)
            if f in self.categorical and v.dtype.kind == "f":
                v = (chunk.series(f) if arrow else chunk[f]).to_numpy(dtype=object, na_value=None)
            feats[f] = v
        pred = values(r.prediction) if r.prediction else np.full(n, np.nan)
        scores = {s: _floats(values(s)) for s in r.scores} or None
        return EventBatch(ids=ids, timestamps=ts, features=feats, prediction=pred, scores=scores,
                          partitions=np.full(n, -1, np.int64), offsets=rows)


def _floats(x: np.ndarray) -> np.ndarray:
    """A score column as float64 (``None`` -> NaN)."""
    return x if x.dtype.kind == "f" else np.array([np.nan if v is None else v for v in x], np.float64)

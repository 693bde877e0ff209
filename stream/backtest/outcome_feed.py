"""The outcome side of a file replay: the label-side columns of each chunk (:func:`label_side`) and the labels'
arrival (:class:`OutcomeFeed`), shared by the replaying process and the outcome process
(:mod:`stream.backtest.outcome_process`), which read the same table and so make the same batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from detectors.batch import OutcomeBatch, as_column
from stream.backtest.arrow_chunks import ArrowChunk
from stream.backtest.event_columns import Roles, column_values, event_times


@dataclass
class LabelSide:
    """One chunk's columns an outcome needs, ``rows`` its 0-based row numbers."""

    ids: np.ndarray
    ts: np.ndarray
    pred: np.ndarray
    label: np.ndarray | None  # None without a label column
    scores: dict[str, np.ndarray] | None
    rows: np.ndarray


def _floats(x: np.ndarray) -> np.ndarray:
    """A score column as float64 (``None`` -> NaN)."""
    return x if x.dtype.kind == "f" else np.array([np.nan if v is None else v for v in x], np.float64)


def label_columns(roles: Roles) -> list[str]:
    """The columns :func:`label_side` reads."""
    return [c for c in (roles.timestamp, roles.id, roles.prediction, roles.label, *roles.scores) if c]


def label_side(chunk: pd.DataFrame | ArrowChunk, roles: Roles, start: int) -> LabelSide:
    """The chunk's outcome columns; ``start`` is the row number of its first row (the default id and time)."""
    n = len(chunk)
    arrow = isinstance(chunk, ArrowChunk)
    values = chunk.values if arrow else (lambda c: column_values(chunk[c]))
    rows = np.arange(start, start + n, dtype=np.int64)
    ts = chunk.times(roles.timestamp, start) if arrow else event_times(chunk, roles.timestamp, start)
    ids = rows if not roles.id else (chunk.series(roles.id) if arrow else chunk[roles.id]).to_numpy(dtype=object)
    pred = values(roles.prediction) if roles.prediction else np.full(n, np.nan)
    scores = {s: _floats(values(s)) for s in roles.scores} or None
    label = as_column(values(roles.label)) if roles.label else None
    return LabelSide(ids=ids, ts=ts, pred=pred, label=label, scores=scores, rows=rows)


def _concat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype != b.dtype:
        return np.concatenate([a.astype(object), b.astype(object)])
    return np.concatenate([a, b])


class OutcomeFeed:
    """Rows with labels in, outcome batches out in arrival order: a label joins at once (``delay`` 0) or
    ``delay`` rows later; the labels of the last ``delay`` rows arrive at the last row (:meth:`finish`)."""

    def __init__(self, delay: int):
        self.delay = delay
        self._carry: dict[str, np.ndarray] | None = None  # delayed labels not yet arrived
        self._last_row = -1
        self._last_ts = 0

    def add(self, side: LabelSide) -> Iterator[OutcomeBatch]:
        """The outcomes whose labels arrive within this chunk (at most one batch)."""
        d, rows, ts = self.delay, side.rows, side.ts
        assert side.label is not None, "outcomes need labels"
        if len(rows) == 0:
            return
        self._last_row, self._last_ts = int(rows[-1]), int(ts[-1])
        cur = {"ids": side.ids, "ts": ts, "pred": side.pred, "label": side.label, "rows": rows}
        if side.scores:
            cur |= {f"s:{k}": v for k, v in side.scores.items()}
        if d == 0:
            yield _batch(cur, rows, ts)
            return
        if self._carry is not None:
            cur = {k: _concat(self._carry[k], v) for k, v in cur.items()}
        # labels of source rows i arrive at row i + d: those arriving inside this chunk go now
        k = int(np.searchsorted(cur["rows"], self._last_row - d, side="right"))
        if k:
            arrive = cur["rows"][:k] + d
            yield _batch({kk: v[:k] for kk, v in cur.items()}, arrive, ts[arrive - int(rows[0])])
        self._carry = {kk: v[k:] for kk, v in cur.items()}

    def finish(self) -> Iterator[OutcomeBatch]:
        """The labels still waiting, arriving at the last row."""
        if self._carry is not None and len(self._carry["ids"]):
            m = len(self._carry["ids"])
            yield _batch(self._carry, np.full(m, max(self._last_row, 0), np.int64),
                         np.full(m, self._last_ts, np.int64))
        self._carry = None


def _batch(cur: dict[str, np.ndarray], arrive_rows: np.ndarray, arrive_ts: np.ndarray) -> OutcomeBatch:
    m = len(cur["ids"])
    scores = {k[2:]: v for k, v in cur.items() if k.startswith("s:")} or None
    return OutcomeBatch(ids=cur["ids"], timestamps=cur["ts"], label_timestamps=np.asarray(arrive_ts, np.int64),
                        prediction=cur["pred"], label=cur["label"], scores=scores,
                        partitions=np.full(m, -1, np.int64), offsets=np.asarray(arrive_rows, np.int64))

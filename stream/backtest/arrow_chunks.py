"""Parquet chunks as numpy columns straight from Arrow (no pandas frame per chunk), read one chunk ahead.

A replay of a parquet file reads record batches in a background thread (Arrow decodes and casts without the GIL,
so reading and converting overlap the detection work on the second core) and turns each column into what the
core expects:
float64 with NaN for numbers, objects with ``None`` for strings (one Python object per dictionary entry, not
per value). The values are the same as through pandas (:func:`stream.backtest.event_columns.column_values`):
other types (booleans with nulls, dates, non-UTC timestamps) and object views go through pandas.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stream.backtest.event_columns import ReplayError, column_values, event_times
from stream.backtest.table_files import TableError

_DONE = object()


class ArrowChunk:
    """One record batch, column by column in the core's form (converted on first use, then cached)."""

    def __init__(self, batch: pa.RecordBatch):
        self.batch = batch
        self.columns = batch.schema.names
        self._values: dict[str, np.ndarray] = {}
        self._categoricals: dict[str, pd.Categorical | bool] = {}  # False: not a string dictionary

    def __len__(self) -> int:
        return self.batch.num_rows

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def values(self, name: str) -> np.ndarray:
        """The column as float64 with NaN, or objects with ``None``."""
        v = self._values.get(name)
        if v is None:
            v = _core_values(self.batch.column(name))
            self._values[name] = v = column_values(self.series(name)) if v is None else v
        return v

    def categorical(self, name: str) -> pd.Categorical | None:
        """Strings read as a dictionary as a :class:`pandas.Categorical` (codes into the distinct values, which
        the core looks up once each, not once per event); None for other columns."""
        c = self._categoricals.get(name)
        if c is None:
            c = self._categoricals[name] = _categorical(self.batch.column(name))
        return c or None

    def prefetch(self, max_dictionary: int = 1024) -> ArrowChunk:
        """Convert the columns with a fast path now (numbers; strings with at most ``max_dictionary``
        distinct values): the reader thread does it, mostly without the GIL, while the replay detects."""
        for name, col in zip(self.columns, self.batch.columns, strict=True):
            if not pa.types.is_dictionary(col.type):
                v = _core_values(col)
                if v is not None:
                    self._values[name] = v
                self._categoricals[name] = False
            elif len(col.dictionary) <= max_dictionary:  # objects per value only if asked: they need the GIL
                self._categoricals[name] = _categorical(col)
        return self

    def series(self, name: str) -> pd.Series:
        """The column through pandas, for the conversions the fast paths leave to it."""
        return pa.table([self.batch.column(name)], names=[name]).to_pandas()[name]

    def times(self, name: str | None, start: int) -> np.ndarray:
        """Event times in epoch ms (as :func:`event_times` gives them for the same column in pandas)."""
        n = len(self)
        if name is None:
            return np.arange(start, start + n, dtype=np.int64)
        col = self.batch.column(name)
        t = col.type
        if pa.types.is_timestamp(t) and t.tz in (None, "UTC", "utc", "+00:00", "Etc/UTC"):
            if col.null_count:
                raise ReplayError(f"timestamp column {name!r} has missing values (rows {start}..{start + n - 1})")
            return pc.cast(col, pa.timestamp("ms", tz=t.tz), safe=False).cast(pa.int64()).to_numpy()
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            x = self.values(name)
            if np.isnan(x).any():
                raise ReplayError(f"timestamp column {name!r} has missing values (rows {start}..{start + n - 1})")
            return x.astype(np.int64)
        return event_times(self.series(name).to_frame(), name, start)

    def single_value(self, name: str) -> Any | None:
        """The column's only non-missing value, or ``None`` when it has none or several."""
        u = pc.unique(pc.drop_null(self.batch.column(name))).to_pylist()
        return u[0] if len(u) == 1 else None


def _categorical(col: pa.Array) -> pd.Categorical | bool:
    """A string dictionary column as a Categorical (its dictionary's values unique and not null), else False."""
    if not pa.types.is_dictionary(col.type):
        return False
    d = col.dictionary
    if not (pa.types.is_string(d.type) or pa.types.is_large_string(d.type)) or d.null_count:
        return False
    values = d.to_numpy(zero_copy_only=False).astype(object)
    if len(set(values)) != len(values):
        return False
    codes = col.indices if not col.indices.null_count else col.indices.fill_null(-1)
    return pd.Categorical.from_codes(codes.to_numpy(), categories=pd.Index(values, dtype=object), validate=False)


def _core_values(col: pa.Array) -> np.ndarray | None:
    """Numbers and dictionary-encoded strings straight from Arrow; ``None`` for what pandas converts."""
    t = col.type
    if pa.types.is_dictionary(t):
        d = col.dictionary
        if pa.types.is_string(d.type) or pa.types.is_large_string(d.type):
            lookup = np.append(d.to_numpy(zero_copy_only=False).astype(object), None)
            return lookup[col.indices.fill_null(len(d)).to_numpy()]
        return None
    if t == pa.float64():  # nulls become NaN
        return col.to_numpy(zero_copy_only=False)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or (pa.types.is_boolean(t) and not col.null_count):
        return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    return None  # booleans with nulls (objects in pandas), dates, nested values...


def iter_arrow_chunks(path: str | os.PathLike[str], chunk_rows: int, ahead: int = 2,
                      columns: list[str] | None = None) -> Iterator[ArrowChunk]:
    """The parquet file (its ``columns``, default all) in chunks of at most ``chunk_rows`` rows, read up to
    ``ahead`` chunks ahead in a thread; strings are read as dictionaries."""
    try:
        pf = pq.ParquetFile(path)
        strings = [f.name for f in pf.schema_arrow
                   if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        if strings:
            pf = pq.ParquetFile(path, read_dictionary=strings)
    except (OSError, ValueError) as err:
        raise _table_error(path, err) from None
    q: queue.Queue[Any] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for rb in pf.iter_batches(batch_size=chunk_rows, columns=columns):
                if not put(ArrowChunk(rb).prefetch()):
                    return
            put(_DONE)
        except BaseException as err:  # handed to the consumer, raised there
            put(err)

    reader = threading.Thread(target=read, name="glassbox-parquet-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, (OSError, ValueError)):
                raise _table_error(path, item) from None
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def parquet_rows(path: str | os.PathLike[str]) -> int | None:
    """The parquet file's number of rows from its footer (None if it cannot be read: the replay says why)."""
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError):
        return None


def _table_error(path: str | os.PathLike[str], err: Exception) -> TableError:
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    return TableError(f"cannot read {path} as parquet: {msg}")

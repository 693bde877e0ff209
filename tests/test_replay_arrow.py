"""Parquet chunks read straight from Arrow give the core the same values as through pandas."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stream.backtest.arrow_chunks import iter_arrow_chunks
from stream.backtest.event_columns import column_values, event_times
from stream.backtest.table_files import TableError, iter_table

N = 1_000


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    x = rng.normal(size=N)
    x[::17] = np.nan
    ints = pa.array([None if i % 23 == 0 else int(v) for i, v in enumerate(rng.integers(0, 5, N))], pa.int64())
    strings = pa.array([None if i % 11 == 0 else "abc"[i % 3] for i in range(N)])
    t0 = dt.datetime(2026, 1, 1, 8, 30)
    stamps = [t0 + dt.timedelta(seconds=37 * i, microseconds=i) for i in range(N)]
    cols = {
        "x": pa.array(x, from_pandas=True), "i": ints, "s": strings,
        "b": pa.array(rng.random(N) < 0.3), "bn": pa.array([None if i % 5 == 0 else i % 2 == 0 for i in range(N)]),
        "d": pa.array([t0.date() + dt.timedelta(days=i % 9) for i in range(N)]),
        "t_naive": pa.array(stamps, pa.timestamp("us")), "t_utc": pa.array(stamps, pa.timestamp("us", tz="UTC")),
        "t_paris": pa.array(stamps, pa.timestamp("us", tz="Europe/Paris")), "ms": pa.array(np.arange(N) * 1000),
    }
    path = tmp_path_factory.mktemp("arrow") / "t.parquet"
    pq.write_table(pa.table(cols), path)
    return path


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and len(a) == len(b) and all(
        (u is None and v is None) or (u != u and v != v) or u == v for u, v in zip(a.tolist(), b.tolist(), strict=True))


def test_values_and_times_match_pandas(table: Path) -> None:
    arrow = list(iter_arrow_chunks(table, 300))
    frames = list(iter_table(table, 300))
    assert [len(c) for c in arrow] == [len(f) for f in frames] == [300, 300, 300, 100]
    start = 0
    for chunk, frame in zip(arrow, frames, strict=True):
        for name in frame.columns:
            assert _same(chunk.values(name), column_values(frame[name])), name
        for name in ("t_naive", "t_utc", "t_paris", "ms", None):
            assert chunk.times(name, start).tolist() == event_times(frame, name, start).tolist(), name
        start += len(chunk)
    assert arrow[0].values("s").dtype == object and arrow[0].values("x").dtype == np.float64


def test_a_broken_file_is_a_table_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(TableError, match="cannot read .* as parquet"):
        list(iter_arrow_chunks(bad, 100))


def test_stopping_early_stops_the_reader(table: Path) -> None:
    it = iter_arrow_chunks(table, 10, ahead=1)
    first = next(it)
    it.close()  # the reader thread is told to stop and joined
    assert len(first) == 10
    assert pd.Series(first.values("i")).notna().sum() > 0

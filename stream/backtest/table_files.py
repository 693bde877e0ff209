"""Reading prediction tables (.parquet, .csv, .jsonl) into pandas, whole or in bounded chunks.

One row per prediction. JSON lines may also be prediction events of the contract: a nested ``features``
object is flattened into columns (and ``scores`` into ``score_<class>`` columns). A missing file or an
unknown extension raises :class:`TableError` with a one-line message.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "t.jsonl").write_text('{"features": {"x": 1.5}, "prediction": 1}\\n')
>>> read_table(d / "t.jsonl").columns.tolist()
['prediction', 'x']
>>> try:
...     read_table(d / "t.xlsx")
... except TableError as err:
...     print(str(err).split(" for ")[0])
unsupported table format '.xlsx'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd

from stream.errors import UserError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class TableError(UserError, ValueError):
    """A table that cannot be read; the message is one line naming the path and what to do."""


def table_format(path: str | os.PathLike[str]) -> str:
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise TableError(f"unsupported table format {p.suffix or '(none)'!r} for {p} (use .parquet, .csv or .jsonl)")
    if not p.exists():
        raise TableError(f"no such file: {p}")
    if p.is_dir():
        raise TableError(f"{p} is a directory, not a table file")
    return fmt


def _flatten(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        if isinstance(r.get("features"), dict):
            r = dict(r)
            feats = r.pop("features")
            scores = r.pop("scores", None)
            r = {k: v for k, v in r.items() if k != "schema"}
            r.update(feats)
            if isinstance(scores, dict):
                r.update({f"score_{k}": v for k, v in scores.items()})
        rows.append(r)
    return pd.DataFrame.from_records(rows)


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    buf: list[dict] = []
    with path.open("rb") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as err:
                raise TableError(f"{path}:{i}: not valid JSON ({err})") from None
            if not isinstance(rec, dict):
                raise TableError(f"{path}:{i}: expected one JSON object per line")
            buf.append(rec)
            if len(buf) >= chunk_rows:
                yield _flatten(buf)
                buf = []
    if buf:
        yield _flatten(buf)


def iter_table(path: str | os.PathLike[str], chunk_rows: int = 65_536) -> Iterator[pd.DataFrame]:
    """The table in chunks of at most ``chunk_rows`` rows, in file order (bounded memory for parquet,
    csv and jsonl alike)."""
    p = Path(path)
    fmt = table_format(p)
    try:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(p)
            # strings as dictionaries -> pandas categoricals: no Python string per value
            strings = [f.name for f in pf.schema_arrow
                       if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            if strings:
                pf = pq.ParquetFile(p, read_dictionary=strings)
            for rb in pf.iter_batches(batch_size=chunk_rows):
                yield rb.to_pandas(split_blocks=True)  # one block per column: no consolidation copy
        elif fmt == "csv":
            yield from pd.read_csv(p, chunksize=chunk_rows)
        else:
            yield from _jsonl_chunks(p, chunk_rows)
    except TableError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TableError(f"cannot read {p} as {fmt}: {msg}") from None


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The whole table as one DataFrame."""
    p = Path(path)
    fmt = table_format(p)
    try:
        if fmt == "parquet":
            return pd.read_parquet(p)
        if fmt == "csv":
            return pd.read_csv(p)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TableError(f"cannot read {p} as {fmt}: {msg}") from None
    chunks = list(_jsonl_chunks(p, 1 << 20))
    if not chunks:
        return pd.DataFrame()
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]

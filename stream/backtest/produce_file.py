"""``glassbox produce FILE``: publish a table of predictions (and labels) with the producer SDK."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from stream.errors import UserError
from stream.producer import Producer


def produce_file(
    path: Path, *, model: str, bootstrap: str, settings: Any, batch: int = 500, id_col: str | None = None,
    timestamp_col: str | None = None, prediction_col: str = "prediction", label_col: str | None = None,
    progress: bool = True,
) -> int:
    """Publish every row of ``path``; returns the number of predictions sent."""
    from rich.progress import Progress

    from stream.backtest.table_files import read_table

    df = read_table(path)
    for role, col in (("--id-col", id_col), ("--timestamp-col", timestamp_col), ("--prediction-col", prediction_col),
                      ("--label-col", label_col)):
        if col is not None and col not in df.columns:
            have = ", ".join(map(str, df.columns[:12]))
            raise UserError(f"{role}: column {col!r} is not in {path} (columns: {have})")
    n = len(df)
    ids = df[id_col].astype(str).to_numpy() if id_col else np.arange(n).astype(str)
    if timestamp_col:
        ts_col = df[timestamp_col]
        ts = (ts_col.astype("int64") // 1_000_000 if ts_col.dtype.kind == "M" else ts_col.astype("int64")).to_numpy()
    else:
        ts = int(time.time() * 1000) + np.arange(n, dtype=np.int64)
    roles = {c for c in (id_col, timestamp_col, prediction_col, label_col) if c}
    features = [c for c in df.columns if c not in roles]
    cols = {c: _json_column(df[c]) for c in features}
    preds = _json_column(df[prediction_col])
    labels = _json_column(df[label_col]) if label_col else None
    with Producer(bootstrap, topic_prefix=settings.kafka.topic_prefix, kafka=settings.kafka, batch_events=batch,
                  connect_timeout_s=settings.kafka.connect_timeout_s) as prod, \
            Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"producing {path.name}", total=n)
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            if batch == 1:
                prod.send_prediction(prediction_id=ids[lo], model=model, timestamp=int(ts[lo]),
                                     features={c: cols[c][lo] for c in features}, prediction=preds[lo])
            else:
                prod.send_prediction_batch(model=model, prediction_ids=ids[lo:hi].tolist(),
                                           timestamps=ts[lo:hi].tolist(),
                                           features={c: cols[c][lo:hi] for c in features},
                                           predictions=preds[lo:hi])
            if labels is not None:
                for i in range(lo, hi):
                    prod.send_label(prediction_id=ids[i], model=model, label=labels[i], timestamp=int(ts[i]))
            bar.update(task, advance=hi - lo)
    return n


def _json_column(s: Any) -> list[Any]:
    """A pandas column as JSON-ready Python values (NaN -> None)."""
    if s.dtype.kind in "iub":
        return s.tolist()
    if s.dtype.kind == "f":
        return [None if v != v else v for v in s.tolist()]
    return [None if v is None or (isinstance(v, float) and v != v) else (v if isinstance(v, (str, int, float, bool))
            else str(v)) for v in s.tolist()]

"""Benchmark of ``glassbox replay``: throughput from parquet, ratio against Evidently, memory growth.

- Throughput: replay a 1,000,000-row parquet file (20 numeric + 5 categorical features, prediction, score,
  label joined at once; default settings: windows of 1,000 events, calibrated thresholds) through
  :func:`stream.backtest.file_replay.replay_file`. Target: >= 1,000,000 events/s. The first replay starts
  with an empty cache (:mod:`stream.backtest.replay_cache`, in a temporary directory): it profiles the
  reference and calibrates, and boots the fork server of the outcome process
  (:mod:`stream.backtest.outcome_process`); the repeats find all three ready, as a user's second backtest in
  the same process does (a notebook, ``glassbox replay --compare``), and replay their outcomes in that second
  process. Both are printed; CPU seconds count both processes.
- Estimation: the same replay with the ``estimated_performance`` monitor on (the default) and off
  (``estimation_metrics=[]``), in back-to-back pairs: the ratio of the best of each, and the median of the
  pairs' ratios (robust to a host whose speed drifts between runs). Target: on / off <= 1.10 (issue 18).
- Floor: the least work a replay must do, measured in the same run: read the file's columns with Arrow and
  count every value into the reference bins, one Python thread (Arrow decodes the columns with its own thread
  pool, its fastest read): numbers by ``searchsorted`` + ``bincount``, by
  sorting blocks of 1,024 values then searching the cuts, and by the grid lookup of :mod:`detectors.cut_grid`
  + ``bincount`` (the fastest is the floor), strings by dictionary codes + ``bincount``. Target: replay >= 0.5x
  the floor.
- Baseline: Evidently's ``DataDriftPreset`` on the same windows (1,000 rows vs the 20,000-row reference),
  measured on a few windows in this run and scaled to the same number of windows. Target: >= 100x.
- Memory: one replay of 5,000,000 events (the 1M file read 5 times in a row, as one stream); RSS sampled
  after every chunk. Target: growth <= 50 MB between event 1M and event 5M.
- MLflow: what the monitoring run costs ``glassbox replay`` (the command's own code path,
  :func:`stream.cli.replay.run_replay`, on the same file in this process, with and without ``--mlflow``,
  interleaved; the first run also creates the sqlite store, reported apart).

Run: ``uv run python bench/bench_replay.py [--rows 1000000] [--evidently-windows 3] [--memory-rows 5000000]
[--mlflow-repeats 3] [--estimation-repeats 5] [--only mlflow]``. The last line is
``replay: events_per_s=N floor_ratio=R evidently_ratio=E``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import synth  # noqa: E402

from detectors.config import DetectionConfig  # noqa: E402
from detectors.cut_grid import CutGrid  # noqa: E402
from detectors.profile import CategoricalColumn, NumericColumn, build_profile  # noqa: E402
from detectors.window_tests import forget_limits  # noqa: E402
from stream.backtest.file_replay import ReplayOptions, replay_file, replay_frames  # noqa: E402
from stream.backtest.table_files import iter_table  # noqa: E402

WINDOW = 1000


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_events(path: Path, rows: int, chunk: int = 100_000) -> None:
    writer = None
    for i, a in enumerate(range(0, rows, chunk)):
        df = synth.frame(min(chunk, rows - a), seed=100 + i)
        table = pa.Table.from_pandas(df, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def _replay(events: Path, reference: Path, estimation: bool = True) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process and of the outcome process if the replay had one, alerts)."""
    cfg = None if estimation else DetectionConfig(estimation_metrics=[])
    opts = ReplayOptions(score_cols=["score"], keep_windows=False, config=cfg)
    t0, c0 = time.perf_counter(), time.process_time()
    res = replay_file(events, reference, opts)
    cpu = time.process_time() - c0 + (res.summary["outcome_process_cpu_seconds"] or 0.0)
    return time.perf_counter() - t0, cpu, len(res.alerts)


def bench_throughput(events: Path, reference: Path, cache: Path, rows: int, repeats: int
                     ) -> tuple[float, float, float, int]:
    """(events/s wall clock with the reference's profile and calibration cached, events per CPU second,
    events/s wall clock of the first replay with an empty cache, alerts). The CPU-time figure is what the
    machine gives one process when other processes share its cores."""
    os.environ["GLASSBOX_CACHE_DIR"] = str(cache)
    forget_limits()
    cold, _, alerts = _replay(events, reference)
    rates, cpu_rates = [], []
    for _ in range(repeats):
        dt, dc, alerts = _replay(events, reference)
        rates.append(rows / dt)
        cpu_rates.append(rows / dc)
    return max(rates), max(cpu_rates), rows / cold, alerts


def bench_estimation(events: Path, reference: Path, repeats: int) -> list[tuple[float, float]]:
    """Wall seconds of the replay with estimated performance off and on, pair by pair (caches warm): a pair
    runs back to back, so its ratio sees the same host, while the best of each side may come from a quieter
    minute of the other's."""
    pairs = []
    for _ in range(repeats):
        off = _replay(events, reference, estimation=False)[0]
        pairs.append((off, _replay(events, reference, estimation=True)[0]))
    return pairs


def _count_search(grid: CutGrid, x: np.ndarray) -> np.ndarray:
    """Counts per bin by a binary search per value."""
    return np.bincount(np.searchsorted(grid.cuts, x, side="right"), minlength=len(grid.cuts) + 1)


def _count_block_sort(grid: CutGrid, x: np.ndarray, block: int = 1024) -> np.ndarray:
    """Counts per bin by sorting blocks of ``block`` values (cache-sized, branch-free) and searching the cuts
    in each: about twice as fast as a search per value on fresh data."""
    cuts = grid.cuts
    full = len(x) // block * block
    srt = np.sort(x[:full].reshape(-1, block), axis=1)
    below = sum((row.searchsorted(cuts, side="right") for row in srt), np.zeros(len(cuts), np.int64))
    below = below + np.searchsorted(np.sort(x[full:]), cuts, side="right")
    return np.diff(below, prepend=0, append=len(x))


def _count_grid(grid: CutGrid, x: np.ndarray) -> np.ndarray:
    """Counts per bin by the grid lookup the replay uses (:mod:`detectors.cut_grid`: a table and a comparison
    per value) and one ``bincount``."""
    return np.bincount(grid.bins(x), minlength=len(grid.cuts) + 1)


FLOOR_METHODS = {"searchsorted + bincount": _count_search, "block sort + searchsorted": _count_block_sort,
                 "grid lookup + bincount": _count_grid}


def bench_floor(events: Path, reference: Path, repeats: int) -> dict[str, tuple[float, float, int]]:
    """Per way of counting numbers, ``(best wall seconds, best CPU seconds, values counted)``: read every feature,
    prediction and score column of ``events`` with Arrow and count its values into the reference profile's bins
    (strings: dictionary codes + ``bincount``, the dictionary mapped to the categories once). One thread."""
    prof = build_profile(pd.read_parquet(reference), label="label", scores=["score"])
    num = {c.name: CutGrid(np.asarray(c.cuts)) for c in prof.columns.values() if isinstance(c, NumericColumn)}
    cat = {c.name: c.categories for c in prof.columns.values()
           if isinstance(c, CategoricalColumn) and c.role != "label"}  # labels are not binned per window
    cols = list(num) + list(cat)
    out = {}
    for method, count in FLOOR_METHODS.items():
        best, best_cpu, counted = float("inf"), float("inf"), 0
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            counted = 0
            pf = pq.ParquetFile(events, read_dictionary=list(cat))
            for rb in pf.iter_batches(batch_size=65_536, columns=cols):
                for name, col in zip(rb.schema.names, rb.columns, strict=True):
                    if name in num:
                        counts = count(num[name], col.to_numpy(zero_copy_only=False))
                    elif pa.types.is_dictionary(col.type):  # codes, then the dictionary mapped to the categories
                        idx = col.indices.fill_null(len(col.dictionary)).to_numpy()
                        per_code = np.bincount(idx, minlength=len(col.dictionary) + 1)
                        lookup = {v: i for i, v in enumerate(cat[name])}
                        codes = [lookup.get(v, len(lookup)) for v in col.dictionary.to_pylist()] + [len(lookup) + 1]
                        counts = np.bincount(codes, weights=per_code, minlength=len(lookup) + 2)
                    else:  # numbers as categories (a class prediction): sorted category values
                        vals = np.sort(np.asarray(cat[name], np.float64))
                        x = col.to_numpy(zero_copy_only=False).astype(np.float64)
                        pos = np.minimum(np.searchsorted(vals, x), len(vals) - 1)
                        counts = np.bincount(np.where(vals[pos] == x, pos, len(vals)), minlength=len(vals) + 1)
                    counted += int(counts.sum())
            best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
        out[method] = (best, best_cpu, counted)
    return out


def bench_evidently(reference: Path, events: Path, windows: int) -> tuple[float, float]:
    """(wall, CPU) seconds per window (best of ``windows``) for Evidently's DataDriftPreset, WINDOW rows."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref = pd.read_parquet(reference)[synth.FEATURES]
    dd = DataDefinition(numerical_columns=synth.NUM, categorical_columns=synth.CAT)
    rds = Dataset.from_pandas(ref, data_definition=dd)
    ev = next(iter_table(events, WINDOW * (windows + 1)))[synth.FEATURES]
    Report([DataDriftPreset()]).run(current_data=Dataset.from_pandas(ev.iloc[:WINDOW], data_definition=dd),
                                    reference_data=rds).dict()  # warm-up (imports, caches)
    times, cpu = [], []
    for w in range(1, windows + 1):
        cur = ev.iloc[w * WINDOW:(w + 1) * WINDOW]
        t0, c0 = time.perf_counter(), time.process_time()
        snap = Report([DataDriftPreset()]).run(current_data=Dataset.from_pandas(cur, data_definition=dd),
                                               reference_data=rds)
        snap.dict()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(times), min(cpu)


def bench_memory(events: Path, reference: Path, total: int, file_rows: int) -> tuple[float, float, float]:
    samples: dict[int, float] = {}

    def chunks() -> Iterator[pd.DataFrame]:
        for _ in range(total // file_rows):
            yield from iter_table(events, 65_536)

    def progress(n: int) -> None:
        samples[n] = rss_mb()

    prof = build_profile(pd.read_parquet(reference), label="label", scores=["score"])
    replay_frames(chunks(), prof, ReplayOptions(score_cols=["score"], keep_windows=False, progress=progress))
    rows = sorted(samples)
    at_1m = samples[next(n for n in rows if n >= 1_000_000)]
    at_end = samples[rows[-1]]
    return at_1m, at_end, max(samples.values())


def bench_mlflow_cost(events: Path, reference: Path, home: Path, repeats: int) -> dict[str, float]:
    """Wall seconds of ``glassbox replay`` with and without its MLflow run (best and median of ``repeats``,
    interleaved), and of the first run with MLflow (which also creates the sqlite store)."""
    import contextlib
    import io
    import statistics

    from stream.backtest.outcomes import FileColumns, ReplayRequest
    from stream.cli.replay import ReplayOutputs, run_replay

    os.environ["GLASSBOX_HOME"] = str(home)
    req = ReplayRequest(events=str(events), reference=str(reference), columns=FileColumns(score_cols=("score",)))

    def once(mlflow: bool) -> float:
        out = ReplayOutputs(alerts_out=home / "alerts.jsonl", mlflow=mlflow)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            run_replay(req, out)
        return time.perf_counter() - t0

    once(False)  # warm-up: imports, caches
    first = once(True)
    off, on = [], []
    for _ in range(repeats):
        off.append(once(False))
        on.append(once(True))
    return {"first": first, "off_best": min(off), "on_best": min(on), "off_median": statistics.median(off),
            "on_median": statistics.median(on)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--evidently-windows", type=int, default=3)
    ap.add_argument("--memory-rows", type=int, default=5_000_000)
    ap.add_argument("--mlflow-repeats", type=int, default=3)
    ap.add_argument("--estimation-repeats", type=int, default=5)
    ap.add_argument("--only", choices=["mlflow"], help="run only this section")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="glassbox-bench-") as tmp:
        d = Path(tmp)
        ref, events = d / "reference.parquet", d / "events.parquet"
        os.environ["GLASSBOX_CACHE_DIR"] = str(d / "cache")  # never the user's cache
        synth.frame(20_000, seed=1).to_parquet(ref)
        t0 = time.perf_counter()
        write_events(events, args.rows)
        print(f"data: {args.rows:,} events x 25 features + prediction, score, label "
              f"({events.stat().st_size / 2**20:.0f} MB parquet, written in {time.perf_counter() - t0:.1f} s)")

        if args.mlflow_repeats:
            load = os.getloadavg()
            m = bench_mlflow_cost(events, ref, d / "home", args.mlflow_repeats)
            print(f"glassbox replay with its MLflow run: {m['on_best']:.2f} s (median {m['on_median']:.2f} s), "
                  f"without (--no-mlflow): {m['off_best']:.2f} s (median {m['off_median']:.2f} s): "
                  f"{m['on_best'] / m['off_best']:.2f}x (medians {m['on_median'] / m['off_median']:.2f}x), "
                  f"+{m['on_best'] - m['off_best']:.2f} s; the first run, creating the sqlite store: "
                  f"{m['first']:.2f} s; best of {args.mlflow_repeats}, interleaved, one process; load average "
                  f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores")
        if args.only == "mlflow":
            return
        load = os.getloadavg()[0]
        rate, cpu_rate, cold_rate, n_alerts = bench_throughput(events, ref, d / "empty-cache", args.rows, args.repeats)
        print(f"glassbox replay (parquet, labels, defaults): {rate:,.0f} events/s wall clock (best of "
              f"{args.repeats}), {cpu_rate:,.0f} events per CPU second; end to end incl. reading the files, with "
              f"the reference's profile and calibration cached; the first replay (empty cache: profiling and "
              f"calibration): {cold_rate:,.0f} events/s; {n_alerts} alerts (no change in the data); "
              f"load average {load:.1f} on {os.cpu_count()} cores")
        if args.estimation_repeats:
            load = os.getloadavg()[0]
            pairs = bench_estimation(events, ref, args.estimation_repeats)
            est_off, est_on = min(p[0] for p in pairs), min(p[1] for p in pairs)
            paired = statistics.median(on / off for off, on in pairs)
            print(f"estimated performance: replay {est_on:.2f} s with it, {est_off:.2f} s without "
                  f"(estimation_metrics=[]; best of {args.estimation_repeats}, interleaved): {est_on / est_off:.2f}x; "
                  f"median of the back-to-back pairs' ratios {paired:.2f}x (target <= 1.10: "
                  f"{'met' if est_on / est_off <= 1.10 else 'NOT met'} by the best, "
                  f"{'met' if paired <= 1.10 else 'NOT met'} by the pairs); load average {load:.1f}")

        ev_window, ev_cpu = bench_evidently(ref, events, args.evidently_windows)
        windows = args.rows // WINDOW
        ev_rate, ev_cpu_rate = args.rows / (ev_window * windows), args.rows / (ev_cpu * windows)
        print(f"evidently DataDriftPreset: {ev_window * 1000:,.0f} ms ({ev_cpu * 1000:,.0f} ms CPU) per window of "
              f"{WINDOW} rows x 25 features (best of {args.evidently_windows}); scaled to {windows:,} windows: "
              f"{ev_window * windows:,.0f} s, {ev_rate:,.0f} events/s")
        print(f"ratio glassbox / evidently: {rate / ev_rate:,.0f}x wall clock, {cpu_rate / ev_cpu_rate:,.0f}x CPU "
              f"(target >= 100x)")
        load = os.getloadavg()[0]
        floors = bench_floor(events, ref, args.repeats)
        for method, (secs, cpu, counted) in floors.items():
            print(f"floor by {method}: {args.rows / secs:,.0f} events/s wall, {args.rows / cpu:,.0f} per CPU second "
                  f"({secs * 1e9 / counted:.1f} ns per value, {counted:,} values, best of {args.repeats})")
        method, (floor_s, floor_cpu, _) = min(floors.items(), key=lambda kv: kv[1][0])
        floor_rate = args.rows / floor_s
        print(f"floor (the fastest: Arrow read + {method} into the reference bins, one Python thread): "
              f"{floor_rate:,.0f} events/s; replay / floor: {rate / floor_rate:.2f} wall (target >= 0.5), "
              f"{cpu_rate * floor_cpu / args.rows:.2f} per CPU second; load average {load:.1f}")
        print(f"target >= 1,000,000 events/s: wall clock {'met' if rate >= 1_000_000 else 'NOT met'}, "
              f"per CPU second {'met' if cpu_rate >= 1_000_000 else 'NOT met'}")

        if args.memory_rows:
            at_1m, at_end, peak = bench_memory(events, ref, args.memory_rows, args.rows)
            growth = at_end - at_1m
            print(f"memory: RSS {at_1m:,.1f} MB at event 1M, {at_end:,.1f} MB at event {args.memory_rows:,} "
                  f"(peak {peak:,.1f} MB): growth {growth:+.1f} MB (target <= 50 MB)")
        print(f"replay: events_per_s={rate:.0f} floor_ratio={rate / floor_rate:.2f} "
              f"evidently_ratio={rate / ev_rate:.0f}")


if __name__ == "__main__":
    main()

"""Snapshot cost: time and HTML size per Evidently snapshot, and the monitor's throughput with snapshots
every N windows (thread and process executors) against the same monitor without snapshots, in one run.

The detection core here runs much faster than a Faust worker (12-14k messages/s, FIELD-NOTES), so it asks
for snapshots far more often per second than a live worker would: the ratio is a pessimistic bound.

    uv run python bench/bench_snapshots.py [--events 200000] [--window 1000] [--every 10]
    uv run python bench/bench_snapshots.py --events 60000 --paced-us 75   # paced like a live Faust worker
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from train_reference import CATEGORICAL, FEATURES, make_dataset  # noqa: E402

from detectors.batch import EventBatch  # noqa: E402
from detectors.config import DetectionConfig  # noqa: E402
from detectors.monitor import ModelMonitor  # noqa: E402
from detectors.profile import build_profile  # noqa: E402
from detectors.snapshot import build_snapshot  # noqa: E402
from stream.snapshots import SnapshotService, warm_up  # noqa: E402


def per_snapshot(ref, cur, sizes=(1000, 2000, 5000), repeats=3) -> None:  # noqa: ANN001
    build_snapshot(cur, ref, features=FEATURES, label="churn", task="binary", sample_size=500)  # warm
    for n in sizes:
        times, html = [], 0
        for r in range(repeats):
            t = time.perf_counter()
            s = build_snapshot(cur, ref, features=FEATURES, label="churn", task="binary", sample_size=n, seed=r)
            h = s.to_html()
            times.append(time.perf_counter() - t)
            html = len(h.encode())
        print(f"snapshot sample={n:5d}: {statistics.median(times):.2f} s (median of {repeats}, report+HTML), "
              f"HTML {html / 1e6:.1f} MB, JSON {len(s.to_json()) / 1e3:.0f} kB")


def spin(seconds: float) -> None:
    """Hold the interpreter like a Faust agent's per-message work does (pure Python, GIL held)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def run(events, batches, profile, ref, window: int, every: int | None, executor: str | None, tmp: Path,  # noqa: ANN001
        paced_us: float = 0.0):
    mon = ModelMonitor(profile, DetectionConfig(window=window, seed=1), model="churn")
    svc = None
    if every is not None:
        ex = (cf.ProcessPoolExecutor(1) if executor == "process" else cf.ThreadPoolExecutor(1))
        ex.submit(warm_up).result()
        svc = SnapshotService(workspace=tmp / f"ws-{executor}", out_dir=tmp / f"out-{executor}",
                              every_n_windows=every, sample_size=2000, executor=ex, max_pending=2)
    t0 = time.perf_counter()
    for b in batches:
        if paced_us:
            spin(paced_us * 1e-6 * len(b))
        alerts = mon.observe(b)
        fired = {a["window"]["index"] for a in alerts}
        for rec in mon.drain_windows():
            if svc is not None and rec.get("kind") == "predictions" and svc.should_snapshot(
                    rec["index"], fired=rec["index"] in fired):
                svc.request(model="churn", window_index=rec["index"], window_end_ms=rec["end"],
                            current=events.iloc[rec["start"]:rec["end"] + 1], reference=ref,
                            features=FEATURES, categorical=CATEGORICAL, task="binary")
    elapsed = time.perf_counter() - t0
    stats = None
    if svc is not None:
        svc.close(wait=True, timeout=120)
        svc.executor.shutdown()
        stats = svc.stats.as_dict()
    return len(events) / elapsed, stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--paced-us", type=float, default=0.0,
                    help="emulated per-event worker cost (Faust: about 75 us per message, FIELD-NOTES)")
    a = ap.parse_args()
    ref_df = make_dataset(5000, seed=1).assign(prediction=lambda d: (d.monthly_charges > 75).astype(int))
    profile = build_profile(ref_df, prediction="prediction", categorical=CATEGORICAL, features=FEATURES)
    half = a.events // 2
    import pandas as pd

    events = pd.concat([make_dataset(half, seed=2), make_dataset(a.events - half, seed=3,
                                                                   shift={"monthly_charges": 1.0})],
                       ignore_index=True)
    events["prediction"] = (events.monthly_charges > 75).astype(int)
    per_snapshot(ref_df, events.iloc[-2000:].assign(churn=events.churn.iloc[-2000:]))
    batches = []
    for s in range(0, len(events), a.batch):
        c = events.iloc[s:s + a.batch]
        batches.append(EventBatch.from_columns(
            ids=[str(i) for i in range(s, s + len(c))], timestamps=np.arange(s, s + len(c)),
            features={f: (c[f].to_numpy(dtype=object) if f in CATEGORICAL else c[f].to_numpy()) for f in FEATURES},
            prediction=c.prediction.to_numpy()))
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for label, every, ex in (("baseline", None, None), ("thread", a.every, "thread"),
                                 ("process", a.every, "process"), ("baseline", None, None)):
            rate, stats = run(events, batches, profile, ref_df, a.window, every, ex, Path(tmp), a.paced_us)
            rows.append((label, rate, stats))
            print(f"{label:9s} {rate:10,.0f} events/s  {stats or ''}")
        base = max(r[1] for r in rows if r[0] == "baseline")
        for label, rate, _ in rows:
            if label != "baseline":
                print(f"ratio {label} / baseline (best of two): {rate / base:.2f}x "
                      f"(snapshots every {a.every} windows of {a.window} events)")


if __name__ == "__main__":
    main()

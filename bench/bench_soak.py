"""Memory soak: RSS of a live worker over 2M events and of a file replay over 5M events, after warm-up.

    uv run python bench/bench_soak.py [--worker-events 2000000] [--replay-events 5000000] [--skip-worker]

The worker (``glassbox worker`` as a child process on the embedded broker, one monitored model, 20 numeric +
5 categorical features, 500 events per message, labels for one event in ten, a 60 s label TTL in event
time) is sampled with psutil while the stream is produced; the replay (``stream.backtest.file_replay.replay_frames`` in
this process, chunks generated on the fly, labels joined 1,000 rows late, windows not kept) is sampled after
every chunk. Each prints RSS at the end of warm-up (the first 20% of the events: reference loaded, windows,
label join and detectors at their steady size), the band (max - min) after it, the least-squares slope in
MB per million events, and the ratio of the final RSS to the warm-up RSS measured in the same run.
MLflow, Evidently and SHAP are off in the worker: their work is per window, bounded and in other processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

T0 = 1_700_000_000_000
PER_MESSAGE = 500
WARMUP = 0.2


def band(samples: list[tuple[int, float]]) -> dict[str, float]:
    """Figures of (events, RSS bytes) samples after warm-up."""
    total = samples[-1][0]
    after = [(e, r) for e, r in samples if e >= WARMUP * total] or samples[-2:]
    ev = np.array([e for e, _ in after], float)
    rss = np.array([r for _, r in after], float) / 1e6
    slope = float(np.polyfit(ev / 1e6, rss, 1)[0]) if len(after) > 2 and np.ptp(ev) > 0 else 0.0
    return {"events": total, "warm_mb": float(rss[0]), "min_mb": float(rss.min()), "max_mb": float(rss.max()),
            "band_mb": float(np.ptp(rss)), "final_mb": float(rss[-1]), "slope_mb_per_m": slope,
            "ratio": float(rss[-1] / rss[0]), "samples": len(after)}


def show(what: str, f: dict[str, float], seconds: float) -> None:
    print(f"{what}: {f['events']:,} events in {seconds:.0f} s ({f['events'] / seconds:,.0f}/s); RSS after warm-up "
          f"{f['warm_mb']:.0f} MB, band {f['min_mb']:.0f}..{f['max_mb']:.0f} MB ({f['band_mb']:.1f} MB), "
          f"slope {f['slope_mb_per_m']:+.2f} MB per 1M events, final/warm-up {f['ratio']:.3f} "
          f"({f['samples']} samples)")


def _stream_frame(n: int, seed: int):  # noqa: ANN202
    from tests.synth import frame

    return frame(n, seed=seed).drop(columns=["score"])


def soak_replay(events: int, chunk: int = 65_536) -> tuple[dict[str, float], float]:
    """RSS of this process while ``replay_frames`` reads ``events`` rows generated chunk by chunk."""
    import psutil

    from stream.backtest.file_replay import ReplayOptions, replay_frames

    proc = psutil.Process()
    base = _stream_frame(chunk, seed=2)
    samples: list[tuple[int, float]] = []

    def chunks():  # noqa: ANN202
        for lo in range(0, events, chunk):
            df = base.iloc[: min(chunk, events - lo)].copy()
            df.insert(0, "timestamp", T0 + np.arange(lo, lo + len(df), dtype=np.int64))
            df.insert(0, "prediction_id", [f"r{i}" for i in range(lo, lo + len(df))])
            yield df

    opts = ReplayOptions(model="m", label_col="label", label_delay=1000, keep_windows=False, chunk_rows=chunk,
                         progress=lambda rows: samples.append((rows, proc.memory_info().rss)))
    t0 = time.perf_counter()
    result = replay_frames(chunks(), _stream_frame(20_000, seed=1), opts)
    seconds = time.perf_counter() - t0
    assert result.summary, "replay produced no summary"
    return band(samples), seconds


def soak_worker(events: int, label_every: int = 10) -> tuple[dict[str, float], float]:
    """RSS of a ``glassbox worker`` process while ``events`` predictions (and their labels) stream in."""
    import psutil

    from stream.kafka.broker import EmbeddedBroker
    from stream.producer import Producer
    from tests.kafka_util import WorkerProcess
    from tests.synth import FEATURES

    tmp = Path(tempfile.mkdtemp(prefix="glassbox-soak-"))
    ref = tmp / "reference.parquet"
    _stream_frame(20_000, seed=1).to_parquet(ref)
    base = _stream_frame(50_000, seed=2)
    cols = {c: [None if v != v else v for v in base[c].tolist()] for c in FEATURES}
    preds, labels = base["prediction"].tolist(), base["label"].tolist()
    env = {"GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_EVIDENTLY__ENABLED": "false",
           "GLASSBOX_ATTRIBUTION__ENABLED": "false", "GLASSBOX_WORKER__LABEL_TTL_S": "60"}
    samples: list[tuple[int, float]] = []
    with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
        worker = WorkerProcess(broker.bootstrap, "soak.", app_id="soak", home=tmp / "w", models={"m": str(ref)},
                               audit=False, extra_env=env).start()
        try:
            worker.wait_ready(120)
            proc = psutil.Process(worker.proc.pid)
            done = threading.Event()

            def produce() -> None:
                with Producer(broker.bootstrap, topic_prefix="soak.") as p:
                    for lo in range(0, events, PER_MESSAGE):
                        k = lo % len(preds)
                        k = min(k, len(preds) - PER_MESSAGE)
                        ids = [f"w{i}" for i in range(lo, lo + PER_MESSAGE)]
                        p.send_prediction_batch(
                            model="m", prediction_ids=ids, timestamps=[T0 + i for i in range(lo, lo + PER_MESSAGE)],
                            features={c: v[k:k + PER_MESSAGE] for c, v in cols.items()},
                            predictions=preds[k:k + PER_MESSAGE])
                        for j in range(0, PER_MESSAGE, label_every):
                            p.send_label(prediction_id=ids[j], model="m", label=int(labels[k + j]),
                                         timestamp=T0 + lo + j + 500)
                        if lo % 50_000 == 0:
                            p.flush()
                done.set()

            t0 = time.perf_counter()
            threading.Thread(target=produce, daemon=True).start()
            seen = 0
            while seen < events:
                s = worker.stats()
                if s:
                    seen = s["events"]
                    samples.append((seen, proc.memory_info().rss))
                assert worker.proc.poll() is None, worker.log()[-2000:]
                time.sleep(0.5)
            seconds = time.perf_counter() - t0
            labels_done = (worker.stats() or {}).get("labels", 0)
            print(f"worker: {labels_done:,} labels joined so far; joins {(worker.stats() or {}).get('joins')}")
        finally:
            worker.stop()
    return band([(e, r) for e, r in samples if e > 0]), seconds


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker-events", type=int, default=2_000_000)
    ap.add_argument("--replay-events", type=int, default=5_000_000)
    ap.add_argument("--skip-worker", action="store_true")
    ap.add_argument("--skip-replay", action="store_true")
    args = ap.parse_args(argv)
    out = {}
    if not args.skip_replay:
        f, s = soak_replay(args.replay_events)
        show("replay", f, s)
        out["replay"] = f
    if not args.skip_worker:
        f, s = soak_worker(args.worker_events)
        show("worker", f, s)
        out["worker"] = f
    return out


if __name__ == "__main__":
    main()

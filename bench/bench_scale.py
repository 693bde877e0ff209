"""Scaling: the per-prediction SDK path into one worker, against explicit batches and single-event messages.

    uv run python bench/bench_scale.py [--events 200000] [--single 30000]

The same stream (20 numeric + 5 categorical features, drawn like the reference) is published three ways in
one run: ``send_prediction`` per prediction with the SDK's batching (defaults: 500 events or 50 ms per
message), ``send_prediction_batch`` with 500-event columns the caller built, and ``send_prediction`` with
``batch_events=1`` (one ``prediction/v1`` message each, as producers without the SDK send). For each it prints
the producer's rate and CPU per event, then the rate of one glassbox worker with detection on (the model
monitored against a reference) reading that topic, each worker in its own process and consumer group, its
clock running from its first to its last message (as ``bench/bench_worker.py`` measures), best of
``--repeats`` runs interleaved across the modes. The ratios compare the worker's rates: the producer's CPU is
spent on the model servers, the worker's is the monitor's ceiling. With full batches the SDK's messages are
byte for byte those of the explicit batches, so ``sdk_vs_batch`` departs from 1 only when the linger cuts
batches short, or by noise.

Sharded: ``--sharded`` events of one sharded model (``worker.sharded_models``, 10-s event-time windows of 10,000
events) are published with the SDK (``sharded=True``: batches split per target partition of prediction_id, 4
partitions) once one, then two, ``glassbox worker`` processes own the partitions (one consumer group and topic set
per run), faster than the workers take them; the rate runs from 10% to 90% of the events and the CPU seconds of
the worker processes over the same span give the CPU per event (on 2 cores the broker and the producer compete, so
two workers cannot double the rate here; the CPU per event shows what they cost). ``two_workers_ratio`` is two
workers' rate over one's. The combiner's cost is measured in process: the partial windows of 4 shards fed the
same stream, merged and closed by :class:`detectors.partials.Combiner`; per partial (merging) and per window
(closing: the tests, as unsharded).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench_worker import CAT, NUM, T0, measure, reference  # noqa: E402 (the worker roles live there)

CHUNK = 500
SHARDED_WINDOW_MS = 10_000  # events are 1 ms apart: 10,000 events per window


def chunks(n: int, seed: int) -> Iterator[tuple[int, dict[str, list[Any]], list[float]]]:
    """The stream in 500-event columns: (first index, feature columns, predictions)."""
    rng = np.random.default_rng(seed)
    for lo in range(0, n, CHUNK):
        m = min(CHUNK, n - lo)
        cols: dict[str, list[Any]] = {k: rng.normal(size=m).round(6).tolist() for k in NUM}
        cols |= {k: np.array(list("abcd"))[rng.integers(0, 4, m)].tolist() for k in CAT}
        yield lo, cols, rng.random(m).round(6).tolist()


def produce(bootstrap: str, prefix: str, mode: str, n: int) -> tuple[float, float]:
    """Publish ``n`` events one of three ways; (events/s, CPU us per event) of the producer, flush included."""
    from stream.producer import Producer

    opts = {"batch_events": 1} if mode == "single" else {}
    wall = cpu = 0.0
    with Producer(bootstrap, topic_prefix=prefix, **opts) as p:
        for lo, cols, preds in chunks(n, seed=7):  # the clock runs only while sending
            ids, ts = [f"e{lo + i}" for i in range(len(preds))], [T0 + lo + i for i in range(len(preds))]
            rows = [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
            t, c = time.perf_counter(), time.process_time()
            if mode == "batch":
                p.send_prediction_batch(model="bench", prediction_ids=ids, timestamps=ts, features=cols,
                                        predictions=preds)
            else:  # one call per prediction, with the features as a model server has them: a dict
                for pid, t_ms, feats, pred in zip(ids, ts, rows, preds, strict=True):
                    p.send_prediction(prediction_id=pid, model="bench", timestamp=t_ms, features=feats,
                                      prediction=pred)
            wall, cpu = wall + time.perf_counter() - t, cpu + time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        p.flush()
        wall, cpu = wall + time.perf_counter() - t, cpu + time.process_time() - c
    return n / wall, cpu / n * 1e6


def produce_sharded(bootstrap: str, prefix: str, n: int) -> None:
    """The stream as one sharded model's batches (the SDK splits each per target partition)."""
    from stream.producer import Producer

    with Producer(bootstrap, topic_prefix=prefix, sharded=True) as p:
        for lo, cols, preds in chunks(n, seed=7):
            p.send_prediction_batch(model="bench", prediction_ids=[f"e{lo + i}" for i in range(len(preds))],
                                    timestamps=[T0 + lo + i for i in range(len(preds))], features=cols,
                                    predictions=preds)


def _cpu_s(pid: int) -> float:
    from pathlib import Path

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sharded_workers(bootstrap: str, prefix: str, n: int, ref: str, workers: int, home: str) -> tuple[float, float]:
    """(events/s, CPU us per event) of ``workers`` worker processes on the sharded topic, 10% to 90% of ``n``."""
    import json
    import threading
    from pathlib import Path

    from stream.kafka.topics import ensure_topics
    from stream.settings import Settings
    from tests.kafka_util import WorkerProcess

    env = {"GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_EVIDENTLY__ENABLED": "false",
           "GLASSBOX_ATTRIBUTION__ENABLED": "false", "GLASSBOX_WORKER__SHARDED_MODELS": '["bench"]',
           "GLASSBOX_DETECTION__WINDOW_MS": str(SHARDED_WINDOW_MS)}
    app = f"bench-{prefix}{workers}-{time.monotonic_ns()}"
    ensure_topics(Settings(kafka={"topic_prefix": prefix, "partitions": 4}), bootstrap)
    procs = [WorkerProcess(bootstrap, prefix, app_id=app, home=Path(home) / f"{app}-{i}", models={"bench": ref},
                           audit=False, extra_env=env).start() for i in range(workers)]
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # every worker owns predictions partitions: the group has settled
            owned = [sum(x.startswith(f"{prefix}predictions:") for x in (w.stats() or {}).get("assignment", []))
                     for w in procs]
            if sum(owned) == 4 and min(owned) > 0:
                break
            time.sleep(0.3)
        feeder = threading.Thread(target=produce_sharded, args=(bootstrap, prefix, n), daemon=True)
        feeder.start()  # the producer outpaces the workers, so their rate is measured, not its
        marks: dict[float, tuple[float, float]] = {}
        while len(marks) < 2 and time.monotonic() < deadline:
            stats = [w.stats() for w in procs]
            done = sum(s["events"] for s in stats if s)
            for frac in (0.1, 0.9):
                if done >= frac * n and frac not in marks:
                    marks[frac] = (time.perf_counter(), sum(_cpu_s(w.proc.pid) for w in procs if w.proc))
            time.sleep(0.02)
        if len(marks) < 2:
            raise SystemExit(f"the sharded workers did not finish: {json.dumps([w.stats() for w in procs])}\n"
                             f"{procs[0].log()[-3000:]}")
        (t0, c0), (t1, c1) = marks[0.1], marks[0.9]
        return 0.8 * n / (t1 - t0), (c1 - c0) / (0.8 * n) * 1e6
    finally:
        for w in procs:
            w.stop()


def combiner_cost(ref: str, n: int, shards: int = 4) -> tuple[float, float, int, int]:
    """(us per partial merged, ms per window closed, partials, windows) of a combiner over ``shards`` shards."""
    import pandas as pd

    from detectors.batch import EventBatch
    from detectors.config import DetectionConfig
    from detectors.monitor import ModelMonitor
    from detectors.partials import Combiner, ShardMonitor
    from detectors.profile import build_profile

    profile = build_profile(pd.read_parquet(ref))
    cfg = DetectionConfig(window_ms=SHARDED_WINDOW_MS)
    mons = [ShardMonitor(profile, cfg, model="bench", shard=s) for s in range(shards)]
    for lo, cols, preds in chunks(n, seed=7):
        m = len(preds)
        ts = np.arange(T0 + lo, T0 + lo + m)
        batch = EventBatch.from_columns(ids=[f"e{lo + i}" for i in range(m)], timestamps=ts, features=cols,
                                        prediction=preds)
        for s, mon in enumerate(mons):
            mon.observe(batch.take(np.arange(m) % shards == s))
    partials = [p for mon in mons for p in mon.take_outbox()]
    comb = Combiner(ModelMonitor(profile, cfg, model="bench"), shards)
    comb.monitor.tests.limits(SHARDED_WINDOW_MS)  # calibrated before the clock, as a live worker's would be
    closing = [0.0]
    close = comb.monitor.close_window

    def timed_close(key: int, counts: Any) -> Any:
        t = time.perf_counter()
        try:
            return close(key, counts)
        finally:
            closing[0] += time.perf_counter() - t

    comb.monitor.close_window = timed_close  # type: ignore[method-assign]
    t = time.perf_counter()
    for p in sorted(partials, key=lambda p: (p["key"], p["shard"])):  # as they arrive: window by window
        comb.add(p, now=0.0)
    total = time.perf_counter() - t
    return (total - closing[0]) / len(partials) * 1e6, closing[0] / max(comb.closed, 1) * 1e3, len(partials), \
        comb.closed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000, help="events of the SDK and explicit-batch runs")
    ap.add_argument("--single", type=int, default=30_000, help="events of the single-event run")
    ap.add_argument("--repeats", type=int, default=3, help="worker runs per mode, interleaved; the best counts")
    ap.add_argument("--sharded", type=int, default=200_000, help="events of the one- and two-worker sharded runs")
    a = ap.parse_args()

    from stream.kafka.broker import EmbeddedBroker

    runs = {"sdk": a.events, "batch": a.events, "single": a.single}
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        ref = reference(os.path.join(tmp, "reference.parquet"))
        prod = {mode: produce(broker.bootstrap, f"{mode}.", mode, n) for mode, n in runs.items()}
        load_produce = os.getloadavg()[0]
        tries: dict[str, list[float]] = {mode: [] for mode in runs}
        order = list(runs)
        for r in range(a.repeats):  # interleaved, first mode rotating, so load elsewhere hits every mode alike
            for mode in order[r % 3:] + order[:r % 3]:
                tries[mode].append(measure("glassbox", broker.bootstrap, f"{mode}.", f"{mode}.predictions",
                                           runs[mode], ref))
        worker = {mode: max(v) for mode, v in tries.items()}  # best of the repeats: the least disturbed
        load_workers = os.getloadavg()[0]
        shard = {}
        for k in (1, 2):  # each run its own topics: a run restores the state (and offsets) left on its state topic
            shard[k] = sharded_workers(broker.bootstrap, f"sharded{k}.", a.sharded, ref, k, tmp)
        load_sharded = os.getloadavg()[0]
        comb = combiner_cost(ref, a.sharded)
    names = {"sdk": "send_prediction (SDK batching)", "batch": "send_prediction_batch (500 per message)",
             "single": "send_prediction, batch_events=1"}
    for mode, n in runs.items():
        rate, us = prod[mode]
        print(f"{names[mode]:42s} {n:>8,} events: producer {rate:>9,.0f} events/s ({us:5.1f} CPU us/event); "
              f"one worker with detection {worker[mode]:>9,.0f} events/s (best of "
              f"{', '.join(f'{x:,.0f}' for x in tries[mode])})")
    for k, (rate, us) in shard.items():
        print(f"sharded model, 4 partitions, {k} worker(s)        {a.sharded:>8,} events: {rate:>9,.0f} events/s, "
              f"{us:5.1f} worker CPU us/event (10% to 90% of the events)")
    print(f"combiner: {comb[0]:.0f} us per partial merged ({comb[2]} partials), {comb[1]:.1f} ms per window closed "
          f"({comb[3]} windows of {SHARDED_WINDOW_MS:,} events, the tests as unsharded)")
    print(f"load average (1 min) {load_produce:.1f} while producing, {load_workers:.1f} after the workers, "
          f"{load_sharded:.1f} after the sharded runs, on {os.cpu_count()} cores: the machine is shared, so absolute "
          f"figures move; the ratios are of one run")
    sdk = worker["sdk"]
    print(f"scale: sdk_events_per_s={sdk:.0f} sdk_vs_batch={sdk / worker['batch']:.2f} "
          f"sdk_vs_single={sdk / worker['single']:.1f} two_workers_ratio={shard[2][0] / shard[1][0]:.2f} "
          f"combiner_us_per_partial={comb[0]:.0f}")


if __name__ == "__main__":
    main()

"""Alert latency of the live worker: from producing the last event of a window to its alert on the alerts
topic, at a steady input rate, for an unsharded and a sharded model in the same run.

    uv run python bench/bench_latency.py [--rate 5000] [--seconds 60] [--per-message 50] [--window-ms 1000]

Events go out as columnar messages of ``--per-message`` events (1 = one event per message) at the given
rate, their event time running at wall-clock speed; windows are event-time windows of ``--window-ms``
(``detection.window_ms``) in both modes: 1 s holds 5,000 events at 5k events/s, and one window ends per second, as
in production only with far shorter windows than usual.

- unsharded: the model keyed by name, one worker folds and tests its windows;
- sharded (``worker.sharded_models``): the SDK keys events by ``prediction_id`` over 4 partitions, one worker
  folds each partition into partial windows, and the combiner closes a window once every partition's watermark
  passed its end (its partial out after the shard's state record), then tests it. Its extra latency over the
  unsharded mode is that watermark and the summaries hop.

The stream alternates one drifted window (a 1.5 sd shift on one feature) with three clean ones, so the
data_drift alert fires and resolves over and over; every state change is one latency sample. Prints p50,
p99 and max per mode, the sharded mode's extra latency, and a bare produce -> consume round trip measured in the
same run (the baseline).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

T0 = 1_700_000_000_000
PARTITIONS = 4


def consume(bootstrap: str, topic: str, out: list[tuple[float, dict]], stop: threading.Event) -> None:
    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                      consumer_timeout_ms=200, fetch_max_wait_ms=10)
    while not stop.is_set():
        for rec in c:
            out.append((time.monotonic(), orjson.loads(rec.value)))
    c.close()


def combined(port: int) -> dict | None:
    """The worker's combiner counters of model ``m`` (None before its first partial)."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/combiner", timeout=5) as r:
        return json.loads(r.read())["models"].get("m")


def run(bootstrap: str, tmp: Path, ref: str, mode: str, a: Any) -> tuple[list[tuple[int, float]], list[float],
                                                                      dict | None]:
    """(window end, latency in s) of one mode's alerts, the echo round trips (s), the combiner's counters."""
    from stream.kafka.topics import ensure_topics
    from stream.producer import Producer
    from stream.settings import Settings
    from tests.kafka_util import WorkerProcess

    sharded = mode == "sharded"
    prefix = f"lat{mode}."
    ensure_topics(Settings(kafka={"topic_prefix": prefix, "partitions": PARTITIONS}), bootstrap)
    env = {"GLASSBOX_WORKER__BATCH_WAIT_S": "0.01", "GLASSBOX_DETECTION__WINDOW_MS": str(a.window_ms),
           "GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_EVIDENTLY__ENABLED": "false",
           "GLASSBOX_ATTRIBUTION__ENABLED": "false", "GLASSBOX_DETECTION__HORIZONS": a.horizons,
           "GLASSBOX_CACHE_DIR": str(tmp / f"cache-{mode}")}  # both modes calibrate from cold
    if sharded:
        env["GLASSBOX_WORKER__SHARDED_MODELS"] = '["m"]'
    rng = np.random.default_rng(0)
    alerts: list[tuple[float, dict]] = []
    echo: list[tuple[float, dict]] = []
    stop = threading.Event()
    sent: dict[int, float] = {}
    combiner = None
    with WorkerProcess(bootstrap, prefix, app_id=prefix + "w", home=tmp / mode, models={"m": ref}, audit=False,
                       partitions=PARTITIONS, extra_env=env) as worker:
        worker.wait_ready()
        threads = [threading.Thread(target=consume, args=(bootstrap, prefix + "alerts", alerts, stop)),
                   threading.Thread(target=consume, args=(bootstrap, prefix + "echo", echo, stop))]
        for t in threads:
            t.start()
        warm, n = int(a.rate * a.warmup), int(a.rate * (a.warmup + a.seconds))
        with Producer(bootstrap, topic_prefix=prefix, linger_ms=1, sharded=sharded) as prod:
            for lo, hi in ((0, warm), (warm, n)):  # the warm-up (calibration at the first close), then the test
                start = time.monotonic()
                for b in range(lo, hi, a.per_message):
                    due = start + (b - lo) / a.rate
                    while (now := time.monotonic()) < due:
                        time.sleep(min(due - now, 0.001))
                    idx = range(b, min(b + a.per_message, hi))
                    ts = [T0 + i * 1000 // a.rate for i in idx]  # event time runs at wall-clock speed
                    drifted = np.array([((t - T0) // a.window_ms) % 4 == 1 for t in ts])
                    feats = {f"x{j}": (rng.normal(size=len(idx)) + (1.5 * drifted if j == 0 else 0.0)).tolist()
                             for j in range(5)}
                    prod.send_prediction_batch(model="m", prediction_ids=[f"p{i}" for i in idx],
                                               timestamps=ts, features=feats,
                                               predictions=rng.random(len(idx)).tolist())
                    if b % 100 < a.per_message:  # baseline: a bare produce -> consume round trip, same broker
                        prod.send_raw(prefix + "echo", orjson.dumps({"t": time.monotonic()}))
                    t_sent = time.monotonic()
                    for t in ts:
                        sent[t - T0] = t_sent  # the last event of that millisecond
                if hi == warm:  # caught up: every warm-up event folded and (sharded) its windows closed
                    prod.flush()
                    worker.wait_for(lambda st: st["events"] >= warm, timeout_s=300)
                    windows = int(a.warmup * 1000) // a.window_ms - 1
                    while sharded and (combined(worker.web_port) or {}).get("closed", 0) < windows:
                        time.sleep(0.2)
                    time.sleep(1.0)
        time.sleep(3)
        combiner = combined(worker.web_port) if sharded else None
        stop.set()
        for t in threads:
            t.join()
    lat = [(alert["window"]["end"] - T0, received - sent[alert["window"]["end"] - T0]) for received, alert in alerts
           if alert["window"]["end"] - T0 in sent]  # (the last event of the window: the next one closes it)
    return lat, [received - e["t"] for received, e in echo], combiner


def pct(xs: list[float]) -> np.ndarray:
    return np.percentile(np.array(xs) * 1000, [50, 99, 100])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--per-message", type=int, default=50)
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of stream sent (and caught up with) "
                    "before the measured --seconds: the worker calibrates its limits when it closes its first window")
    ap.add_argument("--horizons", default="[1]", help="detection.horizons (JSON list); the default [1] lets an "
                    "alert resolve after 3 clean windows, so alerts fire and resolve every 4 windows")
    ap.add_argument("--window-ms", type=int, default=1000, help="detection.window_ms (event time runs at "
                    "wall-clock speed: a window holds rate x window-ms / 1000 events)")
    ap.add_argument("--series", action="store_true", help="print every alert's latency by its window's end")
    ap.add_argument("--mode", choices=("unsharded", "sharded", "both"), default="both")
    a = ap.parse_args()

    import pandas as pd

    from stream.kafka.broker import EmbeddedBroker

    rng = np.random.default_rng(0)
    modes = ("unsharded", "sharded") if a.mode == "both" else (a.mode,)
    got: dict[str, np.ndarray] = {}
    base: list[float] = []
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        ref = pd.DataFrame({f"x{i}": rng.normal(size=20_000) for i in range(5)})
        ref["prediction"] = rng.random(20_000)
        ref.to_parquet(f"{tmp}/ref.parquet")
        for mode in modes:
            samples, echo, combiner = run(broker.bootstrap, Path(tmp), f"{tmp}/ref.parquet", mode, a)
            base += echo
            if a.series:
                print(" ".join(f"{end / 1000:.1f}s:{x * 1000:.0f}ms" for end, x in samples))
            lat = [x for end, x in samples if end >= a.warmup * 1000]
            if not lat:
                raise SystemExit(f"{mode}: no alerts received after the warm-up")
            p = got[mode] = pct(lat)
            print(f"{mode}: alert latency at {a.rate:,} events/s ({len(lat)} alerts): p50 {p[0]:.0f} ms, "
                  f"p99 {p[1]:.0f} ms, max {p[2]:.0f} ms (target p99 <= 1000 ms)")
            print(f"  warm-up: the first alert (window ending at {samples[0][0] / 1000:.1f} s of the stream) "
                  f"took {samples[0][1] * 1000:.0f} ms (the worker calibrates when it closes its first window)")
            if combiner is not None:
                print(f"  combiner: {combiner['closed']} windows closed ({combiner['by_lateness']} by lateness), "
                      f"{combiner['partials']} partials")
    b = pct(base)
    print(f"bare produce -> consume round trip, same run ({len(base)} samples): p50 {b[0]:.0f} ms, "
          f"p99 {b[1]:.0f} ms")
    for mode, p in got.items():
        print(f"{mode}: ratio of p99 to the round trip's {p[1] / max(b[1], 1e-9):.1f}x")
    if len(got) == 2:
        d = got["sharded"] - got["unsharded"]
        print(f"sharded extra latency (watermark, partial state, summaries hop): p50 {d[0]:+.0f} ms, "
              f"p99 {d[1]:+.0f} ms")
    print("latency: " + " ".join(f"{m}_p99_ms={p[1]:.0f}" for m, p in got.items()))


if __name__ == "__main__":
    main()

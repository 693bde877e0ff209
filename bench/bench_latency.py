"""Alert latency of the live worker: from producing the event that closes a window to its alert on the
alerts topic, at a steady input rate.

    uv run python bench/bench_latency.py [--rate 5000] [--seconds 30] [--per-message 50]

Events go out as columnar messages of ``--per-message`` events (1 = one event per message) at the given
rate.

The stream alternates one drifted window (a 1.5 sd shift on one feature) with three clean ones, so the
data_drift alert fires and resolves over and over; every state change is one latency sample. Prints p50,
p99 and max, and the same percentiles of a bare produce -> consume round trip measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

T0 = 1_700_000_000_000
WINDOW = 1000


def consume(bootstrap: str, topic: str, out: list[tuple[float, dict]], stop: threading.Event) -> None:
    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                      consumer_timeout_ms=200, fetch_max_wait_ms=10)
    while not stop.is_set():
        for rec in c:
            out.append((time.monotonic(), orjson.loads(rec.value)))
    c.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--per-message", type=int, default=50)
    a = ap.parse_args()

    import pandas as pd

    from stream.kafka.broker import EmbeddedBroker
    from stream.producer import Producer
    from tests.kafka_util import WorkerProcess

    rng = np.random.default_rng(0)
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        ref = pd.DataFrame({f"x{i}": rng.normal(size=20_000) for i in range(5)})
        ref["prediction"] = rng.random(20_000)
        ref.to_parquet(f"{tmp}/ref.parquet")
        alerts: list[tuple[float, dict]] = []
        echo: list[tuple[float, dict]] = []
        stop = threading.Event()
        with WorkerProcess(broker.bootstrap, "lat.", app_id="lat", home=__import__("pathlib").Path(tmp) / "w",
                           models={"m": f"{tmp}/ref.parquet"}, audit=False,
                           extra_env={"GLASSBOX_WORKER__BATCH_WAIT_S": "0.01"}) as worker:
            worker.wait_ready()
            threads = [threading.Thread(target=consume, args=(broker.bootstrap, "lat.alerts", alerts, stop)),
                       threading.Thread(target=consume, args=(broker.bootstrap, "echo", echo, stop))]
            for t in threads:
                t.start()
            sent: dict[int, float] = {}
            n = int(a.rate * a.seconds)
            with Producer(broker.bootstrap, topic_prefix="lat.", linger_ms=1) as prod:
                start = time.monotonic()
                k = a.per_message
                for lo in range(0, n, k):
                    due = start + lo / a.rate
                    while (now := time.monotonic()) < due:
                        time.sleep(min(due - now, 0.001))
                    idx = range(lo, min(lo + k, n))
                    drifted = np.array([(i // WINDOW) % 4 == 1 for i in idx])
                    feats = {f"x{j}": (rng.normal(size=len(idx)) + (1.5 * drifted if j == 0 else 0.0)).tolist()
                             for j in range(5)}
                    prod.send_prediction_batch(model="m", prediction_ids=[f"p{i}" for i in idx],
                                               timestamps=[T0 + i for i in idx], features=feats,
                                               predictions=rng.random(len(idx)).tolist())
                    if lo % 100 < k:  # baseline: a bare produce -> consume round trip on the same broker
                        prod.send_raw("echo", orjson.dumps({"t": time.monotonic()}))
                    t_sent = time.monotonic()
                    for i in idx:
                        sent[i] = t_sent
            time.sleep(3)
            stop.set()
            for t in threads:
                t.join()
        lat = []
        for received, alert in alerts:
            i = alert["window"]["end"] - T0
            if i in sent:
                lat.append(received - sent[i])
        base = [received - e["t"] for received, e in echo]
    if not lat:
        raise SystemExit("no alerts received")
    p = np.percentile(np.array(lat) * 1000, [50, 99, 100])
    b = np.percentile(np.array(base) * 1000, [50, 99, 100])
    print(f"alert latency at {a.rate:,} events/s ({len(lat)} alerts): p50 {p[0]:.0f} ms, p99 {p[1]:.0f} ms, "
          f"max {p[2]:.0f} ms (target p99 <= 1000 ms)")
    print(f"bare produce -> consume round trip, same run ({len(base)} samples): p50 {b[0]:.0f} ms, "
          f"p99 {b[1]:.0f} ms; ratio of p99s {p[1] / max(b[1], 1e-9):.1f}x")


if __name__ == "__main__":
    main()

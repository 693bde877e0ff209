"""Worker validation throughput against a bare Faust agent that only counts, on the same topic, same run.

    uv run python bench/bench_worker.py [--single 60000] [--batches 400]

Prints events/s of both and the ratio for single-event messages, and events/s of the glassbox worker on
batched messages (500 events each, 20 numeric + 5 categorical features). Each consumer runs in its own
process and its own consumer group; the clock runs from its first to its last message (joins excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
import uuid

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

T0 = 1_700_000_000_000
NUM = [f"n{i}" for i in range(20)]
CAT = [f"c{i}" for i in range(5)]


def produce(bootstrap: str, prefix: str, single: int, batches: int, batch_size: int = 500) -> None:
    from stream.producer import Producer

    rng = np.random.default_rng(0)
    with Producer(bootstrap, topic_prefix=prefix) as p:
        for i in range(single):
            feats = {k: float(v) for k, v in zip(NUM, rng.normal(size=20), strict=True)}
            feats |= {k: "abcd"[int(v)] for k, v in zip(CAT, rng.integers(0, 4, 5), strict=True)}
            p.send_prediction(prediction_id=f"s{i}", model="bench", timestamp=T0 + i, features=feats,
                              prediction=float(rng.random()))
        for b in range(batches):
            n = batch_size
            feats = {k: rng.normal(size=n).round(6).tolist() for k in NUM}
            feats |= {k: [("abcd"[j]) for j in rng.integers(0, 4, n)] for k in CAT}
            p.send_prediction_batch(model="bench", prediction_ids=[f"b{b}-{i}" for i in range(n)],
                                    timestamps=[T0 + single + b * n + i for i in range(n)], features=feats,
                                    predictions=rng.random(n).round(6).tolist())
        p.flush()


def run_role(role: str, bootstrap: str, prefix: str, topic: str, expect: int) -> None:
    """Consume ``expect`` events from ``topic`` and print 'first_ts last_ts' (monotonic seconds)."""
    import faust

    from stream.app import make_app
    from stream.settings import Settings
    from stream.worker import build_pipeline, register_monitor

    settings = Settings(kafka={"bootstrap": bootstrap, "topic_prefix": prefix},
                        worker={"session_timeout_s": 3.0, "rebalance_timeout_s": 3.0, "heartbeat_interval_s": 0.5})
    app = make_app(settings, bootstrap=bootstrap, app_id=f"bench-{role}-{uuid.uuid4().hex[:6]}", web_enabled=False)
    marks: dict[str, float] = {}
    count = [0]

    def done() -> None:
        os.write(1, f"{marks['first']} {time.monotonic()}\n".encode())  # Faust redirects print to logging
        os._exit(0)

    if role == "bare":
        t = app.topic(topic, value_serializer="raw")

        @app.agent(t)
        async def bare(stream):  # noqa: ANN001, ANN202
            async for _ in stream:
                if not count[0]:
                    marks["first"] = time.monotonic()
                count[0] += 1
                if count[0] >= expect:
                    done()
    else:
        pipeline = build_pipeline(settings)
        orig = pipeline.on_predictions

        def timed(msgs):  # noqa: ANN001, ANN202
            marks.setdefault("first", time.monotonic())
            out = orig(msgs)
            if pipeline.counters.events >= expect:
                done()
            return out

        pipeline.on_predictions = timed  # type: ignore[method-assign]
        register_monitor(app, settings, pipeline)
    faust.Worker(app, loglevel=os.environ.get("BENCH_LOG", "ERROR"), quiet=True).execute_from_commandline()


def measure(role: str, bootstrap: str, prefix: str, topic: str, expect: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--role", role, "--bootstrap", bootstrap, "--prefix", prefix,
                          "--topic", topic, "--expect", str(expect)], capture_output=True, text=True, timeout=600)
    try:
        first, last = map(float, re.findall(r"(\d+\.\d+) (\d+\.\d+)", out.stdout)[-1])
    except ValueError:
        raise SystemExit(f"{role} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}") from None
    return expect / (last - first)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", type=int, default=60_000)
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--role")
    ap.add_argument("--bootstrap")
    ap.add_argument("--prefix")
    ap.add_argument("--topic")
    ap.add_argument("--expect", type=int)
    a = ap.parse_args()
    if a.role:
        asyncio.set_event_loop(asyncio.new_event_loop())
        return run_role(a.role, a.bootstrap, a.prefix, a.topic, a.expect)

    from stream.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        single_prefix, batch_prefix = "single.", "batch."
        produce(broker.bootstrap, single_prefix, a.single, 0)
        produce(broker.bootstrap, batch_prefix, 0, a.batches)
        bare = measure("bare", broker.bootstrap, single_prefix, f"{single_prefix}predictions", a.single)
        ours = measure("glassbox", broker.bootstrap, single_prefix, f"{single_prefix}predictions", a.single)
        batched = measure("glassbox", broker.bootstrap, batch_prefix, f"{batch_prefix}predictions", a.batches * 500)
    print(f"single-event messages ({a.single:,}): bare Faust agent {bare:,.0f} msg/s, "
          f"glassbox validation {ours:,.0f} msg/s, ratio {ours / bare:.2f} (target >= 0.8)")
    print(f"batched messages ({a.batches} x 500 events, 20 numeric + 5 categorical): "
          f"glassbox {batched:,.0f} events/s (target >= 200,000)")


if __name__ == "__main__":
    main()

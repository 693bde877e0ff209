"""Worker throughput against a bare Faust agent that only counts, on the same topic, same run.

    uv run python bench/bench_worker.py [--single 60000] [--batches 400]

Prints events/s of the bare agent and of the glassbox worker on single-event messages, validation only
(discovery mode) and with detection on (the model monitored against a reference), with their ratios, and
events/s of both glassbox modes on batched messages (500 events each, 20 numeric + 5 categorical
features). Each consumer runs in its own process and consumer group; the clock runs from its first to its
last message (group joins excluded).

Durability (issue 16), same run: the detecting worker without state (the figures above), with its state topic
at ``acks=1`` and ``acks=all``, and with the durable label join (the joinlog) on top; and the producer SDK's
send rate at ``acks=1`` and ``acks=all``. The load average is printed: other processes share the machine.
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


def produce(bootstrap: str, prefix: str, single: int, batches: int, batch_size: int = 500, acks: str = "all") -> float:
    """Produce the stream; returns the producer SDK's events/s (sends and flush)."""
    from stream.kafka.config import KafkaConfig
    from stream.producer import Producer

    rng = np.random.default_rng(0)
    with Producer(bootstrap, topic_prefix=prefix, kafka=KafkaConfig(acks=acks)) as p:
        t0 = time.perf_counter()
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
        return (single + batches * batch_size) / (time.perf_counter() - t0)


def reference(path: str, n: int = 20_000) -> str:
    """A reference table drawn from the same distributions as the benchmark stream."""
    import pandas as pd

    rng = np.random.default_rng(1)
    df = pd.DataFrame({k: rng.normal(size=n) for k in NUM})
    for k in CAT:
        df[k] = np.array(list("abcd"))[rng.integers(0, 4, n)]
    df["prediction"] = rng.random(n).round(6)
    df.to_parquet(path)
    return path


def run_role(role: str, bootstrap: str, prefix: str, topic: str, expect: int, ref: str | None = None,
             durability: str = "none") -> None:
    """Consume ``expect`` events from ``topic`` and print 'first_ts last_ts' (monotonic seconds)."""
    import faust

    from stream.kafka.faust_app import make_app
    from stream.settings import Settings
    from stream.worker.agents import build_pipeline, register_monitor, tune_gc

    acks, _, kept = durability.partition(":")  # "none", "1:state", "all:state", "all:journal"
    settings = Settings(kafka={"bootstrap": bootstrap, "topic_prefix": prefix, "acks": acks if kept else "all"},
                        worker={"session_timeout_s": 3.0, "rebalance_timeout_s": 3.0, "heartbeat_interval_s": 0.5,
                                "models": {"bench": ref} if ref else {}})
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
        from stream.kafka.state_topic import TopicState

        state = TopicState(settings, bootstrap, journals=kept == "journal") if kept else None
        pipeline = build_pipeline(settings, state)
        if ref:
            pipeline.monitors.get("bench")  # profile + calibration before the clock starts
        orig = pipeline.on_predictions

        def timed(msgs):  # noqa: ANN001, ANN202
            marks.setdefault("first", time.monotonic())
            out = orig(msgs)
            if pipeline.counters.events >= expect:
                done()
            return out

        pipeline.on_predictions = timed  # type: ignore[method-assign]
        register_monitor(app, settings, pipeline)
    if role.startswith("glassbox"):
        tune_gc()  # as `glassbox worker` does
    faust.Worker(app, loglevel=os.environ.get("BENCH_LOG", "ERROR"), quiet=True).execute_from_commandline()


def measure(role: str, bootstrap: str, prefix: str, topic: str, expect: int, ref: str | None = None,
            durability: str = "none") -> float:
    out = subprocess.run([sys.executable, __file__, "--role", role, "--bootstrap", bootstrap, "--prefix", prefix,
                          "--topic", topic, "--expect", str(expect), "--durability", durability,
                          *(["--ref", ref] if ref else [])],
                         capture_output=True, text=True, timeout=600)
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
    ap.add_argument("--ref")
    ap.add_argument("--durability", default="none")
    a = ap.parse_args()
    if a.role:
        asyncio.set_event_loop(asyncio.new_event_loop())
        return run_role(a.role, a.bootstrap, a.prefix, a.topic, a.expect, a.ref, a.durability)

    import tempfile

    from stream.kafka.broker import EmbeddedBroker

    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        ref = reference(os.path.join(tmp, "reference.parquet"))
        sp, bp = "single.", "batch."
        from stream.kafka.topics import ensure_topics
        from stream.settings import Settings

        for prefix in (sp, bp):
            ensure_topics(Settings(kafka={"bootstrap": broker.bootstrap, "topic_prefix": prefix}), broker.bootstrap)
        sdk = {acks: produce(broker.bootstrap, f"sdk{acks}.", a.single, 0, acks=acks) for acks in ("1", "all")}
        produce(broker.bootstrap, sp, a.single, 0)
        produce(broker.bootstrap, bp, 0, a.batches)
        n_b = a.batches * 500
        bare = measure("bare", broker.bootstrap, sp, f"{sp}predictions", a.single)
        valid = measure("glassbox", broker.bootstrap, sp, f"{sp}predictions", a.single)
        detect = measure("glassbox", broker.bootstrap, sp, f"{sp}predictions", a.single, ref)
        b_valid = measure("glassbox", broker.bootstrap, bp, f"{bp}predictions", n_b)
        b_detect = measure("glassbox", broker.bootstrap, bp, f"{bp}predictions", n_b, ref)
        durable = {}
        for d in ("1:state", "all:state", "all:journal"):  # each its own topics: a state topic is restored
            dsp, dbp = f"{d.replace(':', '-')}.{sp}", f"{d.replace(':', '-')}.{bp}"
            for prefix in (dsp, dbp):
                ensure_topics(Settings(kafka={"bootstrap": broker.bootstrap, "topic_prefix": prefix}),
                              broker.bootstrap)
            produce(broker.bootstrap, dsp, a.single, 0)
            produce(broker.bootstrap, dbp, 0, a.batches)
            durable[d] = (measure("glassbox", broker.bootstrap, dsp, f"{dsp}predictions", a.single, ref, d),
                          measure("glassbox", broker.bootstrap, dbp, f"{dbp}predictions", n_b, ref, d))
    print(f"single-event messages ({a.single:,}): bare Faust agent {bare:,.0f} msg/s; glassbox validation "
          f"{valid:,.0f} msg/s, ratio {valid / bare:.2f} (target >= 0.8); with detection {detect:,.0f} msg/s, "
          f"ratio {detect / bare:.2f} (target >= 0.7)")
    print(f"batched messages ({a.batches} x 500 events, 20 numeric + 5 categorical): glassbox validation "
          f"{b_valid:,.0f} events/s (target >= 200,000); with detection {b_detect:,.0f} events/s "
          f"(target >= 150,000)")
    print(f"producer SDK, {a.single:,} single events: acks=1 {sdk['1']:,.0f} events/s, acks=all {sdk['all']:,.0f} "
          f"events/s, ratio {sdk['all'] / sdk['1']:.2f}")
    print(f"durability, with detection (single msg/s | batched events/s, ratio to no state {detect:,.0f} | "
          f"{b_detect:,.0f}):")
    for d, (one, many) in durable.items():
        print(f"  state acks={d.split(':')[0]:<3} {'+ durable join' if d.endswith('journal') else '':14} "
              f"{one:,.0f} ({one / detect:.2f}) | {many:,.0f} ({many / b_detect:.2f})")
    print(f"load average {os.getloadavg()[0]:.1f} (2 cores shared with other processes: figures are noisy)")


if __name__ == "__main__":
    main()

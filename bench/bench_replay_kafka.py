"""Benchmark of ``glassbox replay kafka://``: replay throughput against a bare aiokafka read of the same topic.

On the embedded broker, a predictions topic is filled with the synthetic stream (20 numeric + 5 categorical
features), then, in the same run and alternating:

- baseline: a bare aiokafka consumer (no group) assigned to every partition, ``getmany`` until the high
  watermark, ``orjson.loads`` of every value (nothing else), timed from creating the consumer;
- replay: :func:`stream.backtest.topic_replay.replay_topic` over the same topic through the worker's ``Pipeline``
  (validation, columnar batches, windows, calibrated thresholds, alerts), timed from starting its reader
  process.

Two shapes are measured: prediction batches (``--batch`` events per message, what a busy model sends) and
one event per message. Target: replay >= 0.5x the baseline (median of ``--repeats``), in messages/s.

Run: ``uv run python bench/bench_replay_kafka.py [--events 1000000] [--single 100000] [--batch 500]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import synth  # noqa: E402

from stream.backtest.topic_replay import replay_topic  # noqa: E402
from stream.events import PREDICTION_BATCH_SCHEMA, prediction_event  # noqa: E402
from stream.kafka.broker import EmbeddedBroker  # noqa: E402
from stream.pipeline.pipeline import RawMessage, StepOutput  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.worker.agents import build_pipeline  # noqa: E402

T0 = 1_700_000_000_000


async def produce(bootstrap: str, topic: str, events: int, batch: int) -> int:
    """Fill ``topic`` with the synthetic stream (model ``m``); returns the number of messages."""
    from aiokafka import AIOKafkaProducer

    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                            max_request_size=16 << 20)
    await prod.start()
    sent = 0
    try:
        chunk = 100_000
        for a in range(0, events, chunk):
            df = synth.frame(min(chunk, events - a), seed=7 + a // chunk)
            cols = {k: [None if v != v else v for v in df[k].tolist()] for k in synth.FEATURES}
            preds = df["prediction"].tolist()
            futs = []
            for b in range(0, len(df), batch):
                e = min(b + batch, len(df))
                ts = [T0 + (a + i) * 10 for i in range(b, e)]
                if batch == 1:
                    value = orjson.dumps(prediction_event(
                        prediction_id=f"p{a + b}", model="m", timestamp=ts[0],
                        features={k: cols[k][b] for k in synth.FEATURES}, prediction=preds[b]))
                else:
                    value = orjson.dumps({
                        "schema": PREDICTION_BATCH_SCHEMA, "model": "m",
                        "prediction_id": [f"p{a + i}" for i in range(b, e)], "timestamp": ts,
                        "features": {k: cols[k][b:e] for k in synth.FEATURES}, "prediction": preds[b:e]})
                futs.append(await prod.send(topic, value, key=b"m", timestamp_ms=ts[-1]))
                sent += 1
            await asyncio.gather(*futs)
    finally:
        await prod.stop()
    return sent


async def bare_read(bootstrap: str, topic: str) -> tuple[int, float]:
    """(messages, seconds): getmany over every partition until its high watermark, orjson.loads each value."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    t0 = time.perf_counter()  # connecting counts, as it does for the replay
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", fetch_max_bytes=64 << 20, max_partition_fetch_bytes=8 << 20)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        n, done, empty = 0, set(), 0
        loads = orjson.loads
        while len(done) < len(tps):
            res = await c.getmany(timeout_ms=500, max_records=20_000)
            for recs in res.values():
                for r in recs:
                    loads(r.value)
                n += len(recs)
            empty = 0 if res else empty + 1
            for tp in tps:
                hw = c.highwater(tp)
                if hw is not None and await c.position(tp) >= hw or empty >= 2:
                    done.add(tp)
        return n, time.perf_counter() - t0
    finally:
        await c.stop()


class ReadOnly:
    """A stand-in pipeline that detects nothing: the replay machinery alone (direct partition reads, merge,
    parsing in the reader process, hand-over of parsed steps) against the bare read."""

    max_message_bytes = 8 << 20
    counters = SimpleNamespace(labels=0)  # what replay_topic reads of a pipeline's counters
    monitors = SimpleNamespace(keep_records=lambda keep: None)  # and asks of its monitors

    def on_parsed(self, step: object) -> StepOutput:
        return StepOutput()

    def on_labels(self, messages: list[RawMessage]) -> StepOutput:
        return StepOutput()


def replay_once(settings: Settings, bootstrap: str, topic: str, pipeline: object | None = None
                ) -> tuple[int, int, float, int]:
    """(messages, events, seconds, alerts) of a topic replay; the reference profile is loaded before timing."""
    pipe = pipeline
    if pipe is None:
        pipe = build_pipeline(settings)
        pipe.monitors.get("m")
    res = replay_topic([pipe], bootstrap=bootstrap, kafka=settings.kafka, predictions=topic, labels=None,
                       step_messages=settings.worker.batch_max, keep_windows=False)
    return res.stats.messages, res.runs[0].events, res.seconds, len(res.runs[0].alerts)


def pipeline_only(settings: Settings, bootstrap: str, topic: str) -> float:
    """Seconds for the worker's Pipeline alone on the topic's messages, already in memory."""
    from tests.kafka_util import read_topic

    msgs = [RawMessage(r.topic, r.partition, r.offset, r.value, r.timestamp, r.key)
            for r in read_topic(bootstrap, topic, idle_s=1.0)]
    pipe = build_pipeline(settings)
    pipe.monitors.keep_records(False)  # as the replay: no window records kept
    pipe.monitors.get("m")
    step = settings.worker.batch_max
    t0 = time.perf_counter()
    for a in range(0, len(msgs), step):
        pipe.on_predictions(msgs[a:a + step])
    return time.perf_counter() - t0


def measure(settings: Settings, bootstrap: str, topic: str, repeats: int, label: str) -> float:
    base_rates, rep_rates, dec_rates = [], [], []
    ev_rate = 0.0
    for _ in range(repeats):
        n, dt = asyncio.run(bare_read(bootstrap, topic))
        base_rates.append(n / dt)
        m, _, dt1, _ = replay_once(settings, bootstrap, topic, ReadOnly())
        dec_rates.append(m / dt1)
        m, ev, dt2, alerts = replay_once(settings, bootstrap, topic)
        assert m == n, (m, n)
        rep_rates.append(m / dt2)
        ev_rate = max(ev_rate, ev / dt2)
    pipe_rate = n / pipeline_only(settings, bootstrap, topic)
    base, rep, dec = (statistics.median(x) for x in (base_rates, rep_rates, dec_rates))
    ratio = rep / base
    load = os.getloadavg()
    print(f"{label}: {n:,} messages (median of {repeats}; load average {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f} on {os.cpu_count()} cores: other processes share them)")
    print(f"  bare aiokafka getmany + orjson.loads        : {base:>10,.0f} messages/s")
    print(f"  replay reading + parsing (no detection)     : {dec:>10,.0f} messages/s  ({dec / base:.2f}x bare)")
    print(f"  glassbox replay kafka:// (worker Pipeline)  : {rep:>10,.0f} messages/s  ({ev_rate:,.0f} events/s, "
          f"{alerts} alerts)")
    print(f"  the Pipeline alone, messages in memory      : {pipe_rate:>10,.0f} messages/s  (ceiling: "
          f"{pipe_rate / base:.2f}x bare)")
    print(f"  ratio replay / bare                         : {ratio:.2f}x  (target >= 0.5x: "
          f"{'PASS' if ratio >= 0.5 else 'FAIL'})")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the batched topic")
    ap.add_argument("--batch", type=int, default=500, help="events per message in the batched topic")
    ap.add_argument("--single", type=int, default=100_000, help="events in the one-event-per-message topic")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        ref = Path(tmp) / "reference.parquet"
        synth.frame(20_000, seed=1).drop(columns=["score"]).to_parquet(ref)
        bs = broker.bootstrap
        settings = Settings(kafka={"bootstrap": bs, "topic_prefix": "bench."}, worker={"models": {"m": str(ref)}},
                            home=Path(tmp))
        ok = True
        if args.events:
            t0 = time.perf_counter()
            msgs = asyncio.run(produce(bs, "bench.batched", args.events, args.batch))
            print(f"produced {args.events:,} events in {msgs:,} messages of {args.batch} "
                  f"({time.perf_counter() - t0:.1f} s)")
            ok &= measure(settings, bs, "bench.batched", args.repeats, f"batches of {args.batch}") >= 0.5
        if args.single:
            t0 = time.perf_counter()
            asyncio.run(produce(bs, "bench.single", args.single, 1))
            print(f"produced {args.single:,} single-event messages ({time.perf_counter() - t0:.1f} s)")
            ok &= measure(settings, bs, "bench.single", args.repeats, "one event per message") >= 0.5
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

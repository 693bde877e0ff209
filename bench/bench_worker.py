"""Worker throughput against a bare Faust agent, and what durability and estimation cost, in one run.

    uv run python bench/bench_worker.py [--single 20000] [--batches 200] [--repeats 1]

The stream is a binary classifier's predictions with scores (20 numeric + 5 categorical features, prediction
= score > 0.5, drawn like the reference, whose labels let the estimated-performance monitor run). It is
published twice per variant: one ``prediction/v1`` message per event (``--single``) and ``--batches`` columnar
messages of 500 events. Each consumer runs in its own process and consumer group; its clock runs from its
first to its last message (group joins and the state restore excluded; so are two one-off costs a worker pays
once per model, done before the clock: the calibration of the longer horizons, about 1 s, and the import of
River's detectors by the first state save, 1-2 s). Variants:

- a bare Faust agent that only counts messages (the baseline: Faust's own per-message cost);
- the glassbox worker with detection, no state topic, estimation on and off (``detection.estimation_metrics``);
- with its state topic and producers at ``acks=1``, durable label join (joinlog) on;
- at ``acks=all``, durable join off; and at ``acks=all`` with the durable join (the worker's defaults);
- no state and the defaults again with steps of at most 5 messages (``worker.batch_max``): a worker that keeps up
  with its input takes a few messages per step, where per-step costs (such as saving state) show, while the backlog
  the other variants read gives steps of hundreds of messages.

Then, for the default variant: the restore time of the state and joinlog it wrote (all four partitions, as a
worker that takes them over reads them; median of 3), the joinlog and state bytes per 1,000 predictions; and
the producer SDK's send rate at ``acks=1`` and ``acks=all``. Ratios are against the same run's bare agent
(messages/s; for batches its messages/s x 500) and no-state worker. The load average is printed next to each
figure: other processes share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
import uuid

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

T0 = 1_700_000_000_000
NUM = [f"n{i}" for i in range(20)]
CAT = [f"c{i}" for i in range(5)]
BATCH = 500
ROLE_TIMEOUT_S = 240  # a role that has not finished by then is reported as stalled, with its log
EXIT_AFTER_S = 3.0  # a worker role exits this long after its last event, once its state and joinlog are out


def _columns(rng: np.random.Generator, n: int) -> tuple[dict[str, list], list[int], list[float]]:
    """``n`` events: feature columns, predictions (0/1) and the class-1 scores."""
    feats: dict[str, list] = {k: rng.normal(size=n).round(6).tolist() for k in NUM}
    feats |= {k: np.array(list("abcd"))[rng.integers(0, 4, n)].tolist() for k in CAT}
    score = rng.random(n).round(6)
    return feats, (score > 0.5).astype(int).tolist(), score.tolist()


def produce(bootstrap: str, prefix: str, single: int, batches: int, acks: str = "all", sdk_batching: bool = False
            ) -> float:
    """Publish ``single`` one-event messages (or SDK-batched events) then ``batches`` 500-event messages; returns
    the producer SDK's events/s (sends and flush)."""
    from stream.kafka.config import KafkaConfig
    from stream.producer import Producer

    rng = np.random.default_rng(0)
    with Producer(bootstrap, topic_prefix=prefix, kafka=KafkaConfig(acks=acks),
                  batch_events=BATCH if sdk_batching else 1) as p:
        feats, preds, scores = _columns(rng, single)
        t0 = time.perf_counter()
        for i in range(single):
            p.send_prediction(prediction_id=f"s{i}", model="bench", timestamp=T0 + i,
                              features={k: v[i] for k, v in feats.items()}, prediction=preds[i],
                              scores={"1": scores[i]})
        for b in range(batches):
            feats, preds, scores = _columns(rng, BATCH)
            p.send_prediction_batch(model="bench", prediction_ids=[f"b{b}-{i}" for i in range(BATCH)],
                                    timestamps=[T0 + single + b * BATCH + i for i in range(BATCH)], features=feats,
                                    predictions=preds, scores={"1": scores})
        p.flush()
        return (single + batches * BATCH) / (time.perf_counter() - t0)


def reference(path: str, n: int = 20_000) -> str:
    """A reference table drawn from the same distributions as the benchmark stream (``bench_scale`` uses it)."""
    import pandas as pd

    rng = np.random.default_rng(1)
    df = pd.DataFrame({k: rng.normal(size=n) for k in NUM})
    for k in CAT:
        df[k] = np.array(list("abcd"))[rng.integers(0, 4, n)]
    df["prediction"] = rng.random(n).round(6)
    df.to_parquet(path)
    return path


def scored_reference(path: str, n: int = 20_000) -> str:
    """A classifier's reference (features, prediction, class-1 score, label) and its profile beside it, with the
    score column declared, so the worker runs the estimated-performance monitor."""
    import pandas as pd

    from detectors.profile import build_profile

    rng = np.random.default_rng(1)
    feats, preds, scores = _columns(rng, n)
    df = pd.DataFrame(feats)
    df["prediction"], df["1"] = preds, scores
    df["label"] = (rng.random(n) < np.asarray(scores)).astype(int)
    df.to_parquet(path)
    with open(path + ".profile.json", "w") as f:
        f.write(build_profile(df, prediction="prediction", label="label", scores=["1"]).to_json())
    return path


def run_role(role: str, bootstrap: str, prefix: str, topic: str, expect: int, ref: str | None = None,
             durability: str = "none", estimation: bool = True, batch_max: int = 1000) -> None:
    """Consume ``expect`` events from ``topic`` and print 'first_ts last_ts' (monotonic seconds)."""
    import faust

    from stream.kafka.faust_app import make_app
    from stream.settings import Settings
    from stream.worker.agents import build_pipeline, register_monitor, tune_gc

    acks, _, kept = durability.partition(":")  # "none", "1:state", "all:state", "all:journal"
    settings = Settings(kafka={"bootstrap": bootstrap, "topic_prefix": prefix, "acks": acks if kept else "all"},
                        worker={"session_timeout_s": 3.0, "rebalance_timeout_s": 3.0, "heartbeat_interval_s": 0.5,
                                "models": {"bench": ref} if ref else {}, "batch_max": batch_max},
                        detection={} if estimation else {"estimation_metrics": []})
    app = make_app(settings, bootstrap=bootstrap, app_id=f"bench-{role}-{uuid.uuid4().hex[:6]}", web_enabled=False)
    marks: dict[str, float] = {}
    count = [0, 0]  # messages (bare) and steps (glassbox)

    def done() -> None:
        out = f"{marks['first']} {marks['last']} {marks['cpu_last'] - marks['cpu_first']} {count[1]}\n"
        os.write(1, out.encode())  # Faust redirects print to logging
        os._exit(0)

    if role == "bare":
        t = app.topic(topic, value_serializer="raw")

        @app.agent(t)
        async def bare(stream):  # noqa: ANN001, ANN202
            async for _ in stream:
                if not count[0]:
                    marks["first"], marks["cpu_first"] = time.monotonic(), time.process_time()
                count[0] += 1
                if count[0] >= expect:
                    marks["last"], marks["cpu_last"] = time.monotonic(), time.process_time()
                    done()
    else:
        from stream.kafka.state_topic import TopicState

        state = TopicState(settings, bootstrap, journals=kept == "journal") if kept else None
        pipeline = build_pipeline(settings, state)
        if ref:
            monitor = pipeline.monitors.get("bench")  # profile + calibration before the clock starts,
            for h in monitor.tests.horizons:  # with the one-off calibration of each longer horizon (~1 s)
                monitor.tests.limits(h * monitor.config.window)
            monitor.to_state()  # and the one-off import of River's detectors (~1-2 s) that the first save pays
        orig = pipeline.on_predictions

        def timed(msgs):  # noqa: ANN001, ANN202
            if "first" not in marks:
                marks["first"], marks["cpu_first"] = time.monotonic(), time.process_time()
            out = orig(msgs)
            count[1] += "last" not in marks
            if pipeline.counters.events >= expect and "last" not in marks:
                marks["last"], marks["cpu_last"] = time.monotonic(), time.process_time()
                asyncio.get_running_loop().call_later(EXIT_AFTER_S, done)  # the clock stops now
            return out

        pipeline.on_predictions = timed  # type: ignore[method-assign]
        register_monitor(app, settings, pipeline)
    if role.startswith("glassbox"):
        tune_gc()  # as `glassbox worker` does
    faust.Worker(app, loglevel=os.environ.get("BENCH_LOG", "ERROR"), quiet=True).execute_from_commandline()


def measure(role: str, bootstrap: str, prefix: str, topic: str, expect: int, ref: str | None = None,
            durability: str = "none", estimation: bool = True, batch_max: int = 1000) -> float:
    """Run one role in its own process; its rate (``expect`` per second of its clock)."""
    return measure_cpu(role, bootstrap, prefix, topic, expect, ref, durability, estimation, batch_max)[0]


def measure_cpu(role: str, bootstrap: str, prefix: str, topic: str, expect: int, ref: str | None = None,
                durability: str = "none", estimation: bool = True, batch_max: int = 1000) -> tuple[float, float, int]:
    """:func:`measure`, the CPU time of the role's process (all its threads) per unit of ``expect`` in us (steadier
    than the rate when other processes share the cores), and the pipeline steps it took (0 for the bare agent)."""
    cmd = [sys.executable, __file__, "--role", role, "--bootstrap", bootstrap, "--prefix", prefix, "--topic", topic,
           "--expect", str(expect), "--durability", durability, *(["--ref", ref] if ref else []),
           *([] if estimation else ["--no-estimation"]), "--batch-max", str(batch_max)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=ROLE_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:  # the child is killed by subprocess.run
        tail = lambda b: (b or b"")[-3000:].decode(errors="replace")  # noqa: E731
        raise SystemExit(f"{role} {durability} on {topic} stalled: no result after {ROLE_TIMEOUT_S} s\n"
                         f"{tail(err.stdout)}\n{tail(err.stderr)}") from None
    marks = re.findall(r"(\d+\.\d+) (\d+\.\d+) (\d+\.\d+) (\d+)", out.stdout)
    if not marks:
        raise SystemExit(f"{role} {durability} on {topic} failed (exit {out.returncode}):\n"
                         f"{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    first, last, cpu, steps = map(float, marks[-1])
    return expect / (last - first), cpu / expect * 1e6, int(steps)


def topic_bytes(bootstrap: str, topic: str) -> int:
    """Bytes of keys and values on ``topic`` (every partition)."""
    from stream.kafka.state_topic import read_partition
    from stream.settings import Settings

    async def read() -> int:
        settings = Settings(kafka={"bootstrap": bootstrap})
        parts = await asyncio.gather(*(read_partition(settings, bootstrap, topic, p) for p in range(4)))
        return sum(len(r.key or b"") + len(r.value or b"") for recs in parts for r in recs)

    return asyncio.run(read())


def restore_s(bootstrap: str, prefix: str, runs: int = 3) -> tuple[float, int]:
    """Median time to restore the state and joinlog of all four partitions, as a worker taking them over; records."""
    from stream.kafka.state_topic import TopicState
    from stream.settings import Settings

    settings = Settings(kafka={"bootstrap": bootstrap, "topic_prefix": prefix})
    times, n = [], 0
    for _ in range(runs):
        state = TopicState(settings, bootstrap)
        t0 = time.perf_counter()
        n = asyncio.run(state.load({0, 1, 2, 3}))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


SMALL = 5  # messages per step of a worker that keeps up with its input (a backlog gives steps of hundreds)
VARIANTS = {  # name: (durability, estimation, messages per step at most)
    "no state": ("none", True, 1000),
    "no state, estimation off": ("none", False, 1000),
    "state acks=1 + durable join": ("1:journal", True, 1000),
    "state acks=all, join off": ("all:state", True, 1000),
    "state acks=all + durable join": ("all:journal", True, 1000),  # the worker's defaults
    f"no state, steps of {SMALL}": ("none", True, SMALL),
    f"state acks=all + durable join, steps of {SMALL}": ("all:journal", True, SMALL),
}
DEFAULT = "state acks=all + durable join"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", type=int, default=20_000, help="one-event messages per variant")
    ap.add_argument("--batches", type=int, default=200, help="500-event messages per variant")
    ap.add_argument("--repeats", type=int, default=1, help="runs per variant, interleaved; the best counts")
    ap.add_argument("--role")
    ap.add_argument("--bootstrap")
    ap.add_argument("--prefix")
    ap.add_argument("--topic")
    ap.add_argument("--expect", type=int)
    ap.add_argument("--ref")
    ap.add_argument("--durability", default="none")
    ap.add_argument("--no-estimation", action="store_true")
    ap.add_argument("--batch-max", type=int, default=1000)
    a = ap.parse_args()
    if a.role:
        asyncio.set_event_loop(asyncio.new_event_loop())
        return run_role(a.role, a.bootstrap, a.prefix, a.topic, a.expect, a.ref, a.durability, not a.no_estimation,
                        a.batch_max)

    import tempfile

    from stream.kafka.broker import EmbeddedBroker
    from stream.kafka.topics import ensure_topics
    from stream.settings import Settings

    n_b = a.batches * BATCH
    t_start = time.monotonic()
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        boot = broker.bootstrap
        ref = scored_reference(os.path.join(tmp, "reference.parquet"))
        sdk = {acks: produce(boot, f"sdk{acks}.", a.single, 0, acks=acks, sdk_batching=True) for acks in ("1", "all")}

        def fresh(tag: str) -> tuple[str, str]:
            """Prefixes of a new single-event and a new batched copy of the stream (each with its own state)."""
            sp, bp = f"{tag}.s.", f"{tag}.b."
            for prefix in (sp, bp):
                ensure_topics(Settings(kafka={"bootstrap": boot, "topic_prefix": prefix}), boot)
            produce(boot, sp, a.single, 0)
            produce(boot, bp, 0, a.batches)
            return sp, bp

        runs: dict[tuple[str, str], list[tuple[float, float, float]]] = {}  # (name, kind): [(rate, cpu us, load)]
        plain = fresh("plain")  # the stateless variants share one copy: they write nothing back
        prefixes: dict[str, tuple[str, str]] = {}
        names = ["bare", *VARIANTS]
        for r in range(a.repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                if name == "bare":
                    pair, args, kw = plain, ("bare", boot), {}
                else:
                    durability, estimation, batch_max = VARIANTS[name]
                    # a state topic is restored at start: every run of a durable variant reads a fresh copy
                    pair = plain if durability == "none" else fresh(f"v{r}-{names.index(name)}")
                    prefixes[name] = pair
                    args, kw = ("glassbox", boot), {"ref": ref, "durability": durability, "estimation": estimation,
                                                    "batch_max": batch_max}
                for kind, prefix in zip(("single", "batched"), pair, strict=True):
                    load = os.getloadavg()[0]
                    per = BATCH if name == "bare" and kind == "batched" else 1  # the bare agent counts messages
                    expect = a.single if kind == "single" else n_b // per
                    rate, cpu, steps = measure_cpu(*args, prefix, f"{prefix}predictions", expect, **kw)
                    runs.setdefault((name, kind), []).append((rate * per, cpu / per, load))
                    print(f"  {name}, {kind}: {rate * per:,.0f} events/s, {cpu / per:.1f} CPU us/event (load "
                          f"{load:.1f}){f', {steps} steps' if steps else ''}", file=sys.stderr, flush=True)
        sp, bp = prefixes[DEFAULT]
        restores = {"single": restore_s(boot, sp), "batched": restore_s(boot, bp)}
        journal = {"single": topic_bytes(boot, f"{sp}joinlog") / a.single * 1000,
                   "batched": topic_bytes(boot, f"{bp}joinlog") / n_b * 1000}
        states = {"single": topic_bytes(boot, f"{sp}state") / a.single * 1000,
                  "batched": topic_bytes(boot, f"{bp}state") / n_b * 1000}

    rate = {k: max(v)[0] for k, v in runs.items()}  # best of the repeats: the least disturbed
    cpu = {k: min(c for _, c, _ in v) for k, v in runs.items()}
    load = {k: max(v)[2] for k, v in runs.items()}  # the load average when the best run started
    print(f"worker, {a.single:,} one-event messages | {a.batches} x {BATCH}-event messages, best of {a.repeats}: "
          f"events/s (load average at its start), its ratio to the bare Faust agent and to the no-state worker; "
          f"CPU us per event (least of {a.repeats}):")
    for name in names:
        cols = []
        for kind in ("single", "batched"):
            k = (name, kind)
            ratios = "" if name == "bare" else (f" {rate[k] / rate['bare', kind]:.2f} bare, "
                                                f"{rate[k] / rate['no state', kind]:.2f} no-state")
            cols.append(f"{rate[k]:>9,.0f}/s (load {load[k]:4.1f}){ratios}, {cpu[k]:6.1f} us")
        print(f"  {name + (' (defaults)' if name == DEFAULT else ''):38} {' | '.join(cols)}")

    def cost(a: str, b: str, kind: str) -> str:
        """Time per event of variant ``a`` against ``b``: by rate, and by CPU."""
        return (f"{(rate[b, kind] / rate[a, kind] - 1) * 100:+.0f}% by rate, "
                f"{(cpu[a, kind] / cpu[b, kind] - 1) * 100:+.0f}% by CPU")

    for label, a_, b_ in (("estimation on vs off (no state; target <= +10%)", "no state", "no state, estimation off"),
                          ("durable join on vs off (acks=all)", DEFAULT, "state acks=all, join off"),
                          ("acks=all vs acks=1 (durable join on)", DEFAULT, "state acks=1 + durable join"),
                          ("defaults vs no state", DEFAULT, "no state"),
                          (f"defaults vs no state, steps of {SMALL} messages",
                           f"state acks=all + durable join, steps of {SMALL}", f"no state, steps of {SMALL}")):
        print(f"{label}: time per event {cost(a_, b_, 'single')} (one-event messages); "
              f"{cost(a_, b_, 'batched')} (batched)")
    for kind in ("single", "batched"):
        t, n = restores[kind]
        print(f"defaults, {kind} stream: restore of all 4 partitions {t * 1000:.0f} ms ({n} state records, median "
              f"of 3); joinlog {journal[kind]:,.0f} bytes and state topic {states[kind]:,.0f} bytes per 1,000 "
              f"predictions")
    print(f"producer SDK (batching on), {a.single:,} events: acks=1 {sdk['1']:,.0f} events/s, acks=all "
          f"{sdk['all']:,.0f} events/s, ratio {sdk['all'] / sdk['1']:.2f}")
    avg = os.getloadavg()
    print(f"load average {avg[0]:.1f} {avg[1]:.1f} {avg[2]:.1f} (2 cores shared with other processes); "
          f"run time {time.monotonic() - t_start:.0f} s")


if __name__ == "__main__":
    main()

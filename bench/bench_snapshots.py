"""Live worker throughput with Evidently snapshots every N windows against the same worker without them,
alternating in one run.

    uv run python bench/bench_snapshots.py [--single 60000] [--batches 1000] [--window 1000] [--every 10]
                                           [--repeats 3] [--variants mlflow,snapshots,bare]

Each variant is a real Faust worker (``stream.kafka.faust_app.make_app`` +
``stream.worker.agents.register_monitor``) in its own process and consumer group,
consuming the same topic of the embedded broker, with a file reference
(20 numeric + 5 categorical features, as bench/bench_worker.py) and a drift injected half-way (``n0`` moves
by one standard deviation), so detectors fire and alert snapshots come on top of the periodic ones:

- ``snapshots``: ``Evidence`` with an MLflow monitoring run (sqlite store in a temp dir, system metrics on)
  and Evidently every ``--every`` windows and on every alert, rendered in the process executor (SCHED_IDLE,
  nice 19, periodic reports within ``evidently.render_duty``);
- ``mlflow``: the same ``Evidence`` and MLflow run with ``evidently.enabled=false``: the baseline;
- ``bare``: no ``Evidence`` at all (printed for reference).

Variants may carry options: ``snapshots@nice10`` (render process at nice 10, no SCHED_IDLE),
``snapshots@duty1`` (``render_duty=1``: no CPU budget), ``mlflow@log0.5`` (``mlflow.window_log_duty=0.5``);
combine them as ``snapshots@duty1@nice10``. Each line shows the 1-minute load average when the variant started
(the machine is shared), the window metrics logged / thinned (``mlflow.window_log_duty``) and, for snapshots,
reports rendered, skipped (max_pending), skipped for the CPU budget, and seconds (wall and CPU) per report.

The clock runs from the first to the last message of the stream (group joins, MLflow run creation and the
executor's Evidently import excluded: the worker waits for them before consuming). Snapshots still rendering
when the last message is processed are waited for afterwards, outside the clock, so the counts are complete.
Both single-event messages and batched messages (500 events each) are measured; the figure is the median of
``--repeats`` runs, the variants alternating in a rotating order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench_worker import CAT, NUM, T0, reference  # noqa: E402  (the same stream shape and reference)

VARIANTS = ("mlflow", "snapshots", "bare")  # --variants may add snapshots@NICE (render process priority)


def produce(bootstrap: str, prefix: str, single: int, batches: int, batch_size: int = 500) -> None:
    """The stream: ``single`` one-event messages, then ``batches`` messages of ``batch_size`` events; ``n0``
    shifts by +1 from the middle of the stream on."""
    from stream.producer import Producer

    rng = np.random.default_rng(0)
    total = single + batches * batch_size
    with Producer(bootstrap, topic_prefix=prefix) as p:
        for i in range(single):
            feats = {k: float(v) for k, v in zip(NUM, rng.normal(size=20), strict=True)}
            feats |= {k: "abcd"[int(v)] for k, v in zip(CAT, rng.integers(0, 4, 5), strict=True)}
            feats["n0"] += 1.0 if i >= total // 2 else 0.0
            p.send_prediction(prediction_id=f"s{i}", model="bench", timestamp=T0 + i, features=feats,
                              prediction=float(rng.random()))
        for b in range(batches):
            n, at = batch_size, single + b * batch_size
            feats = {k: rng.normal(size=n).round(6) for k in NUM}
            feats["n0"] = feats["n0"] + (np.arange(at, at + n) >= total // 2)
            feats = {k: v.tolist() for k, v in feats.items()}
            feats |= {k: [("abcd"[j]) for j in rng.integers(0, 4, n)] for k in CAT}
            p.send_prediction_batch(model="bench", prediction_ids=[f"b{b}-{i}" for i in range(n)],
                                    timestamps=[T0 + at + i for i in range(n)], features=feats,
                                    predictions=rng.random(n).round(6).tolist())
        p.flush()


def run_role(a: argparse.Namespace) -> None:
    """One worker: consume ``a.expect`` events of ``a.topic``; print 'first last' (monotonic s) and stats."""
    import faust

    from stream.kafka.faust_app import make_app
    from stream.settings import Settings
    from stream.worker.agents import build_pipeline, register_monitor, tune_gc

    home = os.path.join(a.tmp, f"home-{a.role.replace('@', '-')}")
    opts = dict(re.findall(r"@([a-z]+)([0-9.]+)", a.role))
    settings = Settings(
        home=home, kafka={"bootstrap": a.bootstrap, "topic_prefix": a.prefix},
        worker={"session_timeout_s": 3.0, "rebalance_timeout_s": 3.0, "heartbeat_interval_s": 0.5,
                "models": {"bench": a.ref}},
        detection={"window": a.window},
        mlflow={"tracking_uri": f"sqlite:///{a.tmp}/mlflow.db", "artifact_root": os.path.join(a.tmp, "mlartifacts"),
                **({"window_log_duty": float(opts["log"])} if "log" in opts else {})},
        evidently={"enabled": a.role.startswith("snapshots"), "every_n_windows": a.every,
                   "workspace": os.path.join(a.tmp, "evidently"),
                   **({"render_duty": float(opts["duty"])} if "duty" in opts else {})},
    )
    app = make_app(settings, bootstrap=a.bootstrap, app_id=f"bench-{a.role}-{uuid.uuid4().hex[:6]}",
                   web_enabled=False)
    pipeline = build_pipeline(settings)
    pipeline.monitors.get("bench")  # profile + calibration before the clock starts
    evidence = None
    if a.role != "bare":
        from stream.evidence import idle_pool
        from stream.evidence.recorder import Evidence

        if "nice" in opts:  # snapshots@niceN: the render process at nice N, without SCHED_IDLE
            idle_pool.NICE, idle_pool.IDLE = int(float(opts["nice"])), False

        evidence = Evidence(settings, pipeline.monitors, source={"bench": a.role})
        if evidence.snapshots is not None:
            evidence.snapshots.ready(timeout=120)  # Evidently imported in the executor before the clock
    marks: dict[str, float] = {}
    spent = {"pipeline_s": 0.0, "evidence_s": 0.0, "steps": 0, "alerts": 0}
    cpu0 = [0.0]
    threads0: dict[str, float] = {}

    def done() -> None:
        marks["last"] = time.monotonic()
        wall = marks["last"] - marks["first"]
        stats: dict = {"events": pipeline.counters.events, **spent, "wall_s": wall,
                       "cpu_s": time.process_time() - cpu0[0],
                       "threads": {k: round(v - threads0.get(k, 0.0), 2) for k, v in thread_cpu().items()}}
        if evidence is not None:
            stats["windows"] = evidence.window_log.stats()  # at the end of the clock
        if evidence is not None and evidence.snapshots is not None:
            evidence.snapshots.wait(timeout=300)
            stats["snapshots"] = evidence.snapshots.stats.as_dict()
            stats["triggers"] = {}
            for o in evidence.snapshots.outcomes:
                stats["triggers"][str(o.window_index)] = o.ok
        os.write(1, f"TIMES {marks['first']} {marks['last']}\nSTATS {json.dumps(stats)}\n".encode())
        os._exit(0)  # Faust redirects print to logging; skip its shutdown

    orig = pipeline.on_predictions

    def timed(msgs):  # noqa: ANN001, ANN202
        if "first" not in marks:
            marks["first"], cpu0[0] = time.monotonic(), time.process_time()
            threads0.update(thread_cpu())
        t = time.perf_counter()
        out = orig(msgs)
        spent["pipeline_s"] += time.perf_counter() - t
        spent["steps"] += 1
        spent["alerts"] += len(out.alerts)
        if evidence is None and pipeline.counters.events >= a.expect:
            done()
        return out

    pipeline.on_predictions = timed  # type: ignore[method-assign]
    if evidence is not None:
        observe = evidence.observe

        def observed(out):  # noqa: ANN001, ANN202
            t = time.perf_counter()
            alerts = observe(out)
            spent["evidence_s"] += time.perf_counter() - t
            if pipeline.counters.events >= a.expect:
                done()
            return alerts

        evidence.observe = observed  # type: ignore[method-assign]
    register_monitor(app, settings, pipeline, evidence)
    tune_gc()  # as `glassbox worker` does
    faust.Worker(app, loglevel=os.environ.get("BENCH_LOG", "ERROR"), quiet=True).execute_from_commandline()


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process (Linux /proc), by thread name."""
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for t in threading.enumerate():
        try:
            f = open(f"/proc/self/task/{t.native_id}/stat").read().rsplit(") ", 1)[1].split()  # noqa: SIM115
        except (OSError, IndexError):
            continue
        out[t.name] = out.get(t.name, 0.0) + round((int(f[11]) + int(f[12])) / tick, 2)
    return out


def measure(role: str, a: argparse.Namespace, prefix: str, expect: int, tmp: str, ref: str) -> tuple[float, dict]:
    load = os.getloadavg()[0]
    cmd = [sys.executable, __file__, "--role", role, "--bootstrap", a.bootstrap, "--prefix", prefix,
           "--topic", f"{prefix}predictions", "--expect", str(expect), "--ref", ref, "--tmp", tmp,
           "--window", str(a.window), "--every", str(a.every)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    times = re.findall(r"TIMES (\d+\.\d+) (\d+\.\d+)", out.stdout)
    stats = re.findall(r"STATS (.*)", out.stdout)
    if not times or not stats:
        raise SystemExit(f"{role} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    first, last = map(float, times[-1])
    return expect / (last - first), {**json.loads(stats[-1]), "load": load}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", type=int, default=60_000)
    ap.add_argument("--batches", type=int, default=1000)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="e.g. mlflow,snapshots,bare,snapshots@duty1,snapshots@nice10 (see the docstring)")
    ap.add_argument("--role")
    ap.add_argument("--bootstrap")
    ap.add_argument("--prefix")
    ap.add_argument("--topic")
    ap.add_argument("--expect", type=int)
    ap.add_argument("--ref")
    ap.add_argument("--tmp")
    a = ap.parse_args()
    if a.role:
        asyncio.set_event_loop(asyncio.new_event_loop())
        return run_role(a)

    from stream.kafka.broker import EmbeddedBroker

    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        a.bootstrap = broker.bootstrap
        ref = reference(os.path.join(tmp, "reference.parquet"))
        streams = []
        if a.single:
            produce(broker.bootstrap, "single.", a.single, 0)
            streams.append(("single-event messages", "single.", a.single))
        if a.batches:
            produce(broker.bootstrap, "batch.", 0, a.batches)
            streams.append((f"batched messages ({a.batches} x 500 events)", "batch.", a.batches * 500))
        for title, prefix, n in streams:
            variants = tuple(a.variants.split(","))
            rates: dict[str, list[float]] = {v: [] for v in variants}
            runs: dict[str, list[dict]] = {v: [] for v in variants}
            for r in range(a.repeats):
                for v in variants[r % len(variants):] + variants[:r % len(variants)]:
                    rate, stats = measure(v, a, prefix, n, tmp, ref)
                    rates[v].append(rate)
                    runs[v].append(stats)
                    line = (f"  [{title} #{r + 1}] {v:12s} {rate:10,.0f} events/s  load {stats['load']:.2f}  "
                            f"alerts {stats['alerts']}  wall {stats['wall_s']:.2f}s cpu {stats['cpu_s']:.2f}s "
                            f"pipeline {stats['pipeline_s']:.2f}s evidence {stats['evidence_s']:.3f}s "
                            f"steps {stats['steps']}")
                    if "windows" in stats:
                        w = stats["windows"]
                        line += (f"  windows logged {w['logged']} thinned {w['thinned']} pending {w['pending']} "
                                 f"(MLflow {w['log_s']:.2f}s in {w['batches']} batches)")
                    if "snapshots" in stats:
                        sn = stats["snapshots"]
                        line += (f"  snapshots rendered {sn['completed']} skipped {sn['skipped']} "
                                 f"budget-skipped {sn['skipped_budget']} failed {sn['failed'] + sn['timed_out']} "
                                 f"p50 {sn['p50_s'] or 0:.2f}s wall {sn['p50_cpu_s'] or 0:.2f}s cpu")
                    print(line, flush=True)
                    if os.environ.get("BENCH_THREADS"):
                        print("    CPU s per thread during the clock:", stats["threads"], flush=True)
            med = {v: statistics.median(x) for v, x in rates.items()}
            print(f"{title}, {n:,} events, window {a.window} ({n // a.window} windows), snapshot every "
                  f"{a.every} windows + on alerts; median of {a.repeats}:")
            print("  " + "; ".join(f"{v} {med[v]:,.0f} events/s" for v in variants)
                  + "  (bare: no Evidence; mlflow: MLflow run, evidently.enabled=false)")
            if "mlflow" in med and "bare" in med:
                print(f"  ratio mlflow / bare: {med['mlflow'] / med['bare']:.2f}x; per repeat: "
                      + ", ".join(f"{m / b:.2f}" for m, b in zip(rates["mlflow"], rates["bare"], strict=True)))
            for v in (v for v in variants if v.startswith("snapshots")):
                if "mlflow" in med:
                    print(f"  ratio {v} / mlflow: {med[v] / med['mlflow']:.2f}x (target >= 0.9); per repeat: "
                          + ", ".join(f"{s / m:.2f}" for s, m in zip(rates[v], rates["mlflow"], strict=True))
                          + (f"; {v} / bare: {med[v] / med['bare']:.2f}x" if "bare" in med else ""))
                done = [s["snapshots"] for s in runs[v]]
                print(f"  {v} per run: rendered {[s['completed'] for s in done]}, skipped "
                      f"{[s['skipped'] for s in done]}, budget-skipped {[s['skipped_budget'] for s in done]}, "
                      f"failed {[s['failed'] + s['timed_out'] for s in done]}, "
                      f"p50 s/snapshot {[round(s['p50_s'] or 0, 2) for s in done]} wall, "
                      f"{[round(s['p50_cpu_s'] or 0, 2) for s in done]} cpu", flush=True)
            for v in (v for v in variants if v != "bare"):
                print(f"  {v} windows thinned per run: {[s['windows']['thinned'] for s in runs[v]]} "
                      f"(logged {[s['windows']['logged'] for s in runs[v]]})", flush=True)
            print("  load average (1 min) at each run: "
                  + "; ".join(f"{v} {[round(s['load'], 2) for s in runs[v]]}" for v in variants), flush=True)

if __name__ == "__main__":
    main()

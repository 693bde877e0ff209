"""Worker throughput with SHAP sampling on vs off (same run), and the SHAP cost per window.

    uv run python bench/bench_shap.py [--events 300000] [--single 100000] [--window 1000] [--k 200] [--repeats 5]

The model is the demo's churn model (examples/train_reference.py: one-hot + scaling + a 60-tree random
forest, 8 features, three of them categorical); events come from the same generator. The measured step is
the worker's own: ``stream.pipeline.pipeline.Pipeline.on_predictions`` on prediction messages (JSON parsing and
validation, the detection core's ``ModelMonitor.observe``, the label join), without Kafka, in rounds of
``--step`` messages, as the Faust agent hands them over. Modes, interleaved in each repeat:

- ``off``: the worker step as it is;
- ``reservoir``: plus ``AttributionMonitor.collect`` (the hot-path part: the seeded reservoir) with no SHAP;
- ``process``: plus SHAP on every closed window in a one-process ``ProcessPoolExecutor`` at the lowest CPU
  priority (SCHED_IDLE, nice 19), as the worker's ``stream.evidence.shap_service`` runs it (the same child
  functions: every ``--every``-th window also gets its bar plot, beeswarm and table drawn in the child; windows
  arriving while ``max_pending`` are in flight are skipped as backlog and counted);
- ``thread``: the same with a thread executor (shows that shap's C extension holds the GIL).

Ratios: of medians; ``paired``, the median over repeats of each run against the ``off`` run of the same
repeat (runs are seconds apart: the fairest on a shared machine); of the best runs; of hot-path CPU time.

Separately: the reference SHAP at log time (what ``stream.evidence.reference.log_reference`` stores, shap imported
already), the monitor's start with and without that stored record, the hot-path ``collect()`` cost per event,
and the SHAP and plot cost per window (sequential, this process).
"""

from __future__ import annotations

import argparse
import functools
import gc
import multiprocessing
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
warnings.filterwarnings("ignore", category=UserWarning)

T0 = 1_700_000_000_000
MODEL = "churn"

def _explain_in_process(sample: Any, every: int = 10) -> Any:
    from stream.evidence.shap_service import _explain

    result, files, error = _explain(sample, (sample.index + 1) % every == 0)
    assert error is None, error
    return result


class Registry:
    """The one monitored model, as the pipeline's MonitorRegistry would hand it out."""

    discovery = False

    def __init__(self, monitor: Any):
        self.monitor = monitor

    def accepts(self, model: str) -> bool:
        return model == MODEL

    def get(self, model: str, model_version: str | None = None) -> Any:
        return self.monitor


class WithAttribution:
    """The hook the worker needs: the core monitor plus the attribution monitor, SHAP in an executor."""

    def __init__(self, core: Any, attribution: Any, executor: Executor | None, explain: Any):
        self.core, self.attr, self.executor, self.explain = core, attribution, executor, explain
        self.profile = core.profile
        self.futures: list[Future] = []
        self.alerts = 0

    def observe(self, batch: Any) -> list[dict[str, Any]]:
        alerts = self.core.observe(batch)
        for sample in self.attr.collect(batch):
            if self.executor is not None:
                self.futures.append(self.executor.submit(self.explain, sample))
        alerts += self.poll()
        return alerts

    def poll(self, wait: bool = False) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        keep = []
        for f in self.futures:
            if wait or f.done():
                alerts += self.attr.decide(f.result())
            else:
                keep.append(f)
        self.futures = keep
        self.alerts += len(alerts)
        return alerts

    def drain_windows(self) -> list[dict[str, Any]]:
        return self.core.drain_windows() + self.attr.drain_windows()

    def observe_outcomes(self, batch: Any) -> list[dict[str, Any]]:
        return self.core.observe_outcomes(batch)


def messages(n_events: int, per_message: int, seed: int) -> list[Any]:
    from stream.demo.training import FEATURES, make_dataset
    from stream.pipeline.pipeline import RawMessage

    df = make_dataset(n_events, seed, shift={"tenure_months": 1.0} if seed else None)
    out = []
    for i, lo in enumerate(range(0, n_events, per_message)):
        part = df.iloc[lo:lo + per_message]
        n = len(part)
        if per_message == 1:
            doc = {"schema": "glassbox.prediction/v1", "prediction_id": f"p{lo}", "model": MODEL,
                   "timestamp": T0 + lo, "features": {f: part[f].iloc[0].item() if hasattr(part[f].iloc[0], "item")
                                                      else part[f].iloc[0] for f in FEATURES},
                   "prediction": int(part["churn"].iloc[0])}
        else:
            doc = {"schema": "glassbox.prediction-batch/v1", "prediction_id": [f"p{lo + j}" for j in range(n)],
                   "model": MODEL, "timestamp": [T0 + lo + j for j in range(n)],
                   "features": {f: part[f].tolist() for f in FEATURES}, "prediction": part["churn"].tolist()}
        out.append(RawMessage(topic="glassbox.predictions", partition=0, offset=i, value=orjson.dumps(doc)))
    return out


def run(msgs: list[Any], make_monitor: Any, step: int) -> tuple[float, float, Any]:
    """Events per second of wall time and of the hot path's own CPU time (this thread only)."""
    from stream.pipeline.pipeline import Pipeline

    monitor = make_monitor()
    pipe = Pipeline(Registry(monitor), label_ttl_ms=3_600_000, max_message_bytes=16 * 1024 * 1024)
    t, c = time.perf_counter(), time.thread_time()
    for lo in range(0, len(msgs), step):
        out = pipe.on_predictions(msgs[lo:lo + step])
        assert not out.deadletters, out.deadletters[:1]
    elapsed, cpu = time.perf_counter() - t, time.thread_time() - c
    if isinstance(monitor, WithAttribution):
        monitor.poll(wait=True)
    n = pipe.counters.events
    return n / elapsed, n / max(cpu, 1e-9), monitor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--single", type=int, default=100_000, help="events sent one per message (0: skip)")
    ap.add_argument("--batch", type=int, default=500, help="events per batched message")
    ap.add_argument("--step", type=int, default=4, help="batched messages per worker step (single: x100)")
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--every", type=int, default=10, help="plot every N-th explained window (in the child)")
    a = ap.parse_args(argv)
    import shap  # noqa: F401 - imported before timing the reference SHAP

    from detectors.attribution import reference_attributions
    from detectors.attribution_monitor import AttributionConfig, AttributionMonitor, AttributionResult
    from detectors.config import DetectionConfig
    from detectors.monitor import ModelMonitor
    from detectors.profile import build_profile
    from stream.demo.training import CATEGORICAL, FEATURES, LABEL, build_pipeline, make_dataset

    train, ref = make_dataset(4000, 0), make_dataset(2000, 1)
    model = build_pipeline("random_forest", 42, {"n_estimators": 60, "max_depth": 8, "min_samples_leaf": 5})
    model.fit(train[FEATURES], train[LABEL])
    ref["prediction"] = model.predict(ref[FEATURES])
    profile = build_profile(ref[[*FEATURES, "prediction"]], prediction="prediction", categorical=CATEGORICAL)
    det = DetectionConfig(window=a.window)
    cfg = AttributionConfig(k=a.k, budget_s=5.0)
    t = time.perf_counter()
    record = reference_attributions(model, ref, FEATURES, seed=42, max_rows=500)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    proto = AttributionMonitor(model, record, ref, FEATURES, cfg, MODEL, 42, window=a.window)
    proto.limits(a.k)
    t_setup = time.perf_counter() - t
    assert proto.reference_source == "stored"
    t = time.perf_counter()
    AttributionMonitor(model, None, ref, FEATURES, cfg, MODEL, 42, window=a.window).limits(a.k)
    t_setup_computed = time.perf_counter() - t

    def attribution() -> AttributionMonitor:
        mon = AttributionMonitor(model, record, ref, FEATURES, cfg, MODEL, 42, window=a.window,
                                 explainer=proto.explainer)
        mon._limits = proto._limits  # same reference: reuse the calibration (setup is timed separately)
        return mon

    from stream.evidence.shap_service import _init_process

    ctx = multiprocessing.get_context("forkserver")
    pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_process,
                               initargs=(proto.window_explainer, MODEL))
    pool.submit(time.sleep, 0).result()  # started before timing
    threads = ThreadPoolExecutor(1)
    proto.limits(a.k)

    modes = {
        "off": lambda: ModelMonitor(profile, det, model=MODEL),
        "reservoir": lambda: WithAttribution(ModelMonitor(profile, det, model=MODEL), attribution(), None, None),
        "process": lambda: WithAttribution(ModelMonitor(profile, det, model=MODEL), attribution(), pool,
                                           functools.partial(_explain_in_process, every=a.every)),
        "thread": lambda: WithAttribution(ModelMonitor(profile, det, model=MODEL), attribution(), threads,
                                          proto.window_explainer),
    }
    workloads = [("batched", messages(a.events, a.batch, 3), a.step)]
    if a.single:
        workloads.append(("single", messages(a.single, 1, 3), a.step * 100))
    print(f"model: demo churn pipeline (one-hot + RF 60 trees), {len(FEATURES)} features; window {a.window}, "
          f"K={a.k}; {os.cpu_count()} cores")
    print(f"reference attributions at log time (500 rows, stored in attributions.json): {t_ref * 1000:.0f} ms; "
          f"monitor start incl. calibration: {t_setup * 1000:.0f} ms with the stored record, "
          f"{t_setup_computed * 1000:.0f} ms without (reference explained at start)")
    for name, msgs, step in workloads:
        events = sum(1 for _ in msgs) if name == "single" else a.events
        wall: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        last: dict[str, Any] = {}
        run(msgs[: max(1, len(msgs) // 10)], modes["off"], step)  # warm-up
        names = list(modes)
        for rep in range(a.repeats):
            for mode in names[rep % len(names):] + names[: rep % len(names)]:  # rotate: no order effect
                gc.collect()
                w, c, mon = run(msgs, modes[mode], step)
                wall[mode].append(w)
                cpu[mode].append(c)
                last[mode] = mon
        base_w, base_c = statistics.median(wall["off"]), statistics.median(cpu["off"])
        best_w = max(wall["off"])
        print(f"\n{name} messages ({events} events, {'1 event' if name == 'single' else f'{a.batch} events'} "
              f"per message, {step} messages per step), {a.repeats} repeats (best: least disturbed by other load)")
        print(f"  {'mode':<10} {'median events/s':>15} {'ratio':>6} {'paired':>6} {'best events/s':>14} {'ratio':>6} "
              f"{'hot-path CPU events/s':>22} {'ratio':>6}")
        for mode in modes:
            w, c, b = statistics.median(wall[mode]), statistics.median(cpu[mode]), max(wall[mode])
            extra = ""
            mon = last[mode]
            if isinstance(mon, WithAttribution) and mode != "reservoir":
                extra = (f"  explained {mon.attr.explained}/{mon.attr.windows} windows, skipped "
                         f"{dict(mon.attr.skipped) or 0}")
            paired = statistics.median(x / o for x, o in zip(wall[mode], wall["off"], strict=True))
            print(f"  {mode:<10} {w:>15,.0f} {w / base_w:>6.3f} {paired:>6.3f} {b:>14,.0f} {b / best_w:>6.3f} "
                  f"{c:>22,.0f} {c / base_c:>6.3f}{extra}")

    # the hot-path part alone: collect() per event, on worker-sized batches, this thread's CPU time
    from detectors.batch import EventBatch

    df = make_dataset(20 * a.window, 5)
    big = EventBatch.from_columns(
        ids=[str(i) for i in range(len(df))], timestamps=np.arange(len(df)),
        features={f: df[f].to_numpy() for f in FEATURES}, prediction=df[LABEL].to_numpy())
    print()
    for size in (1, 100, a.batch * a.step):
        mon = attribution()
        parts = [EventBatch.from_columns(ids=big.ids[lo:lo + size], timestamps=big.timestamps[lo:lo + size],
                                         features={f: c[lo:lo + size] for f, c in big.features.items()},
                                         prediction=big.prediction[lo:lo + size])
                 for lo in range(0, min(len(big), 2000 * size), size)]
        c = time.thread_time()
        for b in parts:
            for sample in mon.collect(b):  # no SHAP here: answer each window at once as skipped
                mon.decide(AttributionResult(index=sample.index, window=sample.window, src=sample.src,
                                             rows=len(sample), skipped=True, reason="bench"))
        per_event = (time.thread_time() - c) / sum(len(b) for b in parts) * 1e9
        print(f"reservoir collect(): {per_event:,.0f} ns per event in batches of {size} events")

    # SHAP cost per window, sequential, this process
    mon = attribution()
    mon.config = cfg.model_copy(update={"max_pending": 10_000})
    samples = mon.collect(big)
    costs: list[float] = []
    plots: list[float] = []
    for s in samples:
        t = time.perf_counter()
        res = mon.explain_window(s)
        costs.append((time.perf_counter() - t) * 1000)
        assert not res.skipped, res.reason
        if len(costs) <= 5:
            from stream.evidence.shap_plots import artifact_bytes

            t = time.perf_counter()
            artifact_bytes(res.attribution, title="bench")
            plots.append((time.perf_counter() - t) * 1000)
    costs.sort()
    print(f"\nSHAP cost per window ({len(costs)} windows of {a.window} events, K={a.k} rows, "
          f"{proto.explainer.kind} explainer): median {statistics.median(costs):.1f} ms, "
          f"p95 {costs[int(0.95 * (len(costs) - 1))]:.1f} ms, max {costs[-1]:.1f} ms")
    print(f"plots + table per plotted window (bar, beeswarm PNG, CSV; in the child): median "
          f"{statistics.median(plots[1:]):.0f} ms (first, with the matplotlib import: {plots[0]:.0f} ms)")
    pool.shutdown()
    threads.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

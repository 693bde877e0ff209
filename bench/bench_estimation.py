"""Benchmark of estimated performance (CBPE): glassbox's streaming estimate against NannyML's CBPE algorithm.

NannyML runs as itself, in its own throwaway environment: every release requires ``python-dateutil<3`` while
the project's lock has 4.0.0 (through pandas, matplotlib, croniter), and it brings LightGBM, XGBoost, s3fs and
Segment's analytics client, so it is not a project dependency. ``bench/nannyml_cbpe.py`` runs through ``uv run
--no-project --with nannyml==0.13.1`` (PyPI must be reachable, or uv's cache warm) on the same streams, with
chunks of the window size and NannyML's default thresholds, estimating without the streams' labels.

Streams (logistic model on ``x1``, scores calibrated; reference 5,000 rows, streams of 20,000 events, change at
10,000, windows of 1,000):

- ``unsure``: ``x1`` concentrates near the decision boundary (sd 1 -> 0.3): accuracy about 0.83 -> 0.65;
- ``mild``: sd 1 -> 0.6: accuracy about 0.83 -> 0.76;
- ``slight``: sd 1 -> 0.8: a drop of a few points (the issue's "3 points or more");
- ``none``: no change (false alarms over ``--seeds`` streams).

Regression (direct loss estimation, :mod:`detectors.estimation_regression`; no baseline): a model of ``x1`` whose
errors are larger where ``x2 > 1``, ``x2`` moved up by 0.6, 0.3 and 0 sd: the realized MAE's rise, the estimate's
error relative to the MAE, streams with an alert and the delay; and the overhead on a regression replay.

Printed: mean absolute estimate error against the realized accuracy per window, delay (events after the change)
to the first degradation alert, streams with a false alarm, and throughput of the estimation itself; then the
overhead of estimation on a file replay (``replay_frames``, 25 features + prediction, score, label; the same
data with ``estimation_metrics`` on and off, interleaved, best of ``--repeats``).

Run: ``uv run python bench/bench_estimation.py [--seeds 20] [--rows 200000] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.batch import EventBatch, OutcomeBatch  # noqa: E402
from detectors.config import DetectionConfig  # noqa: E402
from detectors.monitor import ModelMonitor  # noqa: E402
from detectors.profile import ReferenceProfile, build_profile  # noqa: E402
from stream.backtest.event_columns import ReplayOptions  # noqa: E402
from stream.backtest.file_replay import replay_frames  # noqa: E402
from tests import synth  # noqa: E402

WINDOW, N, AT, N_REF = 1000, 20_000, 10_000, 5000
SPREAD = {"none": 1.0, "slight": 0.8, "mild": 0.6, "unsure": 0.3}


def model(x1: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = 1 / (1 + np.exp(-3 * x1))
    return s, (s > 0.5).astype(int), (rng.random(len(x1)) < s).astype(int)


def stream(seed: int, scenario: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=N_REF)
    s, p, y = model(x1, rng)
    ref = pd.DataFrame({"x1": x1, "x2": rng.normal(size=N_REF), "prediction": p, "label": y, "1": s})
    x1 = np.r_[rng.normal(size=AT), rng.normal(0, SPREAD[scenario], N - AT)]
    s, p, y = model(x1, rng)
    cur = pd.DataFrame({"x1": x1, "x2": rng.normal(size=N), "prediction": p, "label": y, "1": s})
    return ref, cur


def realized(cur: pd.DataFrame) -> np.ndarray:
    ok = (cur["prediction"] == cur["label"]).to_numpy()
    return ok.reshape(-1, WINDOW).mean(axis=1)


def glassbox(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    mon = ModelMonitor(build_profile(ref, label="label", scores=["1"]), DetectionConfig(window=WINDOW))
    t = np.arange(N)
    sc = {"1": cur["1"].to_numpy()}
    batch = EventBatch.from_columns(ids=t.astype(str), timestamps=t, features={"x1": cur["x1"], "x2": cur["x2"]},
                                    prediction=cur["prediction"].to_numpy(), scores=sc)
    alerts = mon.observe(batch)
    alerts += mon.observe_outcomes(OutcomeBatch(ids=t.astype(str).astype(object), timestamps=t,
                                                label_timestamps=t, prediction=cur["prediction"].to_numpy(float),
                                                label=cur["label"].to_numpy(float), scores=sc))
    est = np.array([r["estimated"]["accuracy"] for r in mon.drain_windows() if r["kind"] == "estimation"])
    fired = [a["row"] for a in alerts if a["monitor"] == "estimated_performance" and a["status"] == "firing"
             and a["direction"] == "degradation"]
    return {"estimate": est, "first_alert": min(fired) if fired else None}


NANNYML = ["uv", "run", "--quiet", "--no-project", "--python", "3.11", "--with", "nannyml==0.13.1",
           "--with", "statsmodels", "--with", "pyarrow", "python", str(Path(__file__).with_name("nannyml_cbpe.py"))]


def nannyml_cbpe(pairs: list[tuple[pd.DataFrame, pd.DataFrame]], repeats: int = 1) -> list[dict[str, Any]]:
    """NannyML's own CBPE (``bench/nannyml_cbpe.py`` in its own uv environment) on each (reference, stream)
    pair, chunks of the window size, NannyML's default thresholds; estimate without the stream's labels."""
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for i, (ref, cur) in enumerate(pairs):
            paths = {k: f"{tmp}/{k}-{i}.parquet" for k in ("reference", "analysis")}
            ref[["1", "prediction", "label"]].to_parquet(paths["reference"])
            cur[["1", "prediction", "label"]].to_parquet(paths["analysis"])
            jobs.append({**paths, "chunk_size": WINDOW, "repeats": repeats})
        Path(f"{tmp}/jobs.json").write_text(json.dumps(jobs))
        out = subprocess.run([*NANNYML, f"{tmp}/jobs.json"], capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"NannyML's CBPE did not run ({' '.join(NANNYML[:9])}): {out.stderr.strip().splitlines()[-1:]}")
    results = json.loads(out.stdout)
    for r in results:
        est = np.array(r["estimate"])
        deg = np.flatnonzero(est < r["lower_threshold"])
        r.update(estimate=est, alerts=int(sum(r["alert"])),
                 first_alert=int(deg[0]) * WINDOW + WINDOW - 1 if len(deg) else None)
    return results


def throughput(ref: pd.DataFrame, cur: pd.DataFrame, repeats: int = 5) -> tuple[float, float]:
    """Events/s of glassbox's estimation alone (the core's add per window) and of NannyML's ``estimate``."""
    from detectors.estimation import EstimationMonitor

    prof = build_profile(ref, label="label", scores=["1"])
    est = EstimationMonitor(prof, DetectionConfig(window=WINDOW), alpha=1e-6)
    t = np.arange(N)
    batch = EventBatch.from_columns(ids=t.astype(str), timestamps=t, features={},
                                    prediction=cur["prediction"].to_numpy(), scores={"1": cur["1"].to_numpy()})
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        cols = est.columns([batch])
        for a in range(0, N, WINDOW):
            est.add(cols, a, a + WINDOW)
            est._reset()
        best = min(best, time.perf_counter() - t0)
    return N / best, N / nannyml_cbpe([(ref, cur)], repeats)[0]["seconds"]


def replay_inputs(rows: int, task: str) -> tuple[pd.DataFrame, ReferenceProfile, list[str]]:
    """The events to replay, the reference's profile and the score columns of a binary or regression task."""
    if task == "regression":
        ref, events = synth.regression_frame(20_000, seed=1), synth.regression_frame(rows, seed=2)
        return events, build_profile(ref, label="label", task="regression"), []
    ref, events = synth.frame(20_000, seed=1), synth.frame(rows, seed=2)
    return events, build_profile(ref, label="label", scores=["score"]), ["score"]


def replay_overhead(rows: int, repeats: int, task: str = "binary") -> tuple[dict[bool, tuple[float, float]], float]:
    """Best (wall s, CPU s) of the replay with estimation on (True) and off (False), interleaved (the order
    alternating), and the median over the pairs of CPU on / CPU off (a pair shares the machine's load)."""
    events, prof, scores = replay_inputs(rows, task)
    wall: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    replay_frames(events[:5000], prof, ReplayOptions(score_cols=scores, keep_windows=False))  # imports
    for i in range(repeats):
        for on in (True, False) if i % 2 else (False, True):
            cfg = DetectionConfig(window=WINDOW, estimation_metrics=["accuracy"] if on else [])
            t0, c0 = time.perf_counter(), time.process_time()
            replay_frames(events, prof, ReplayOptions(score_cols=scores, keep_windows=False, config=cfg))
            wall[on].append(time.perf_counter() - t0)
            cpu[on].append(time.process_time() - c0)
    pairs = sorted(a / b for a, b in zip(cpu[True], cpu[False], strict=True))
    return {on: (min(wall[on]), min(cpu[on])) for on in (True, False)}, pairs[len(pairs) // 2]


class _Registry:
    """The one monitored model, as the pipeline's MonitorRegistry hands it out."""

    discovery = False

    def __init__(self, monitor: ModelMonitor):
        self.monitor = monitor

    def accepts(self, model: str) -> bool:
        return model == "m"

    def get(self, model: str, model_version: str | None = None) -> ModelMonitor:
        return self.monitor


def worker_overhead(rows: int, repeats: int, per_message: int = 500,
                    step: int = 4) -> tuple[dict[bool, float], float]:
    """The worker's own step (``stream.pipeline.Pipeline``: parse, dedup, label join, monitor; no Kafka, no
    Faust) on batched prediction messages with scores, each followed by the labels of the message before it:
    best CPU seconds with estimation on (True) and off (False), interleaved, and the median paired ratio."""
    import orjson

    from stream.pipeline.pipeline import Pipeline, RawMessage

    ref, events = synth.frame(20_000, seed=1), synth.frame(rows, seed=2)
    prof = build_profile(ref, label="label", scores=["score"])
    feats = [c for c in events.columns if c not in ("prediction", "label", "score")]
    preds, labels = [], []
    for i, lo in enumerate(range(0, rows, per_message)):
        part = events.iloc[lo:lo + per_message]
        ids = [f"p{lo + j}" for j in range(len(part))]
        ts = [1_767_225_600_000 + lo + j for j in range(len(part))]
        preds.append(RawMessage("glassbox.predictions", 0, i, orjson.dumps({
            "schema": "glassbox.prediction-batch/v1", "model": "m", "prediction_id": ids, "timestamp": ts,
            "features": {f: part[f].tolist() for f in feats}, "prediction": part["prediction"].tolist(),
            "scores": {"score": part["score"].tolist()}})))
        labels.append(RawMessage("glassbox.labels", 0, i, orjson.dumps({
            "schema": "glassbox.label-batch/v1", "model": "m", "prediction_id": ids, "timestamp": ts,
            "label": part["label"].tolist()})))
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for i in range(repeats):
        for on in (True, False) if i % 2 else (False, True):
            cfg = DetectionConfig(window=WINDOW, estimation_metrics=["accuracy"] if on else [])
            pipe = Pipeline(_Registry(ModelMonitor(prof, cfg, model="m")), label_ttl_ms=3_600_000_000,
                            max_message_bytes=16 * 1024 * 1024)
            c0 = time.process_time()
            for lo in range(0, len(preds), step):
                pipe.on_predictions(preds[lo:lo + step])
                if lo:
                    pipe.on_labels(labels[lo - step:lo])
            cpu[on].append(time.process_time() - c0)
    pairs = sorted(a / b for a, b in zip(cpu[True], cpu[False], strict=True))
    return {on: min(v) for on, v in cpu.items()}, pairs[len(pairs) // 2]


def estimation_share(rows: int, repeats: int, task: str = "binary") -> tuple[float, float]:
    """(seconds inside the estimation monitor, seconds of the whole replay), best of ``repeats``: the share is
    measured within one run, so load from other processes inflates both alike."""
    from detectors import estimation, estimation_regression

    spent = [0.0]

    def timed(fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.process_time() - t0
        return wrapper

    cls: Any = estimation_regression.RegressionEstimationMonitor if task == "regression" else \
        estimation.EstimationMonitor
    saved = {name: getattr(cls, name) for name in ("__init__", "columns", "add", "close", "observe_outcomes")}
    for name, fn in saved.items():
        setattr(cls, name, timed(fn))
    try:
        events, prof, scores = replay_inputs(rows, task)
        shares = []
        for _ in range(repeats):
            spent[0] = 0.0
            c0 = time.process_time()
            replay_frames(events, prof, ReplayOptions(score_cols=scores, keep_windows=False,
                                                      config=DetectionConfig(window=WINDOW)))
            total = time.process_time() - c0
            shares.append((spent[0], total))
        return min(shares, key=lambda x: x[0] / x[1])
    finally:
        for name, fn in saved.items():
            setattr(cls, name, fn)


def regression_stream(seed: int, shift: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Direct loss estimation on a model of ``x1`` whose errors are larger where ``x2 > 1``; ``x2`` moves up by
    ``shift`` sd at AT. Returns the estimated_performance alerts and the window records (labels joined)."""
    rng = np.random.default_rng(seed)

    def frame(x: np.ndarray) -> pd.DataFrame:
        noise = rng.normal(size=len(x)) * np.where(x[:, 1] > 1, 1.5, 0.4)
        return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "prediction": x[:, 0], "label": x[:, 0] + noise})

    ref = frame(rng.normal(size=(N_REF, 2)))
    mon = ModelMonitor(build_profile(ref, label="label", task="regression"), DetectionConfig(window=WINDOW))
    x = rng.normal(size=(N, 2))
    x[AT:, 1] += shift
    cur = frame(x)
    t = np.arange(N)
    p = cur["prediction"].to_numpy()
    alerts = mon.observe(EventBatch.from_columns(ids=t.astype(str), timestamps=t,
                                                 features={"x1": cur["x1"], "x2": cur["x2"]}, prediction=p))
    alerts += mon.observe_outcomes(OutcomeBatch(ids=t.astype(str).astype(object), timestamps=t, label_timestamps=t,
                                                prediction=p, label=cur["label"].to_numpy()))
    return [a for a in alerts if a["monitor"] == "estimated_performance"], mon.drain_windows()


def regression_figures(seeds: int) -> None:
    """Estimate error, delay and false alarms of the estimated MAE (no baseline: NannyML is not installed)."""
    for shift in (0.6, 0.3, 0.0):
        errs, rise, delays, fired = [], [], [], 0
        for seed in range(seeds):
            alerts, recs = regression_stream(200 + seed, shift)
            real = [r for r in recs if r["kind"] == "estimation_realized"]
            errs += [abs(r["error"]["mae"]) / r["realized"]["mae"] for r in real]
            mae = np.array([r["realized"]["mae"] for r in real])
            rise.append(mae[AT // WINDOW:].mean() / mae[: AT // WINDOW].mean() - 1)
            first = [a["row"] for a in alerts if a["status"] == "firing" and a["direction"] == "degradation"]
            fired += bool(alerts)
            if first:
                delays.append(first[0] - AT + 1)
        print(f"  x2 +{shift} sd: realized MAE {100 * np.mean(rise):+.0f}%; mean |estimate - realized| "
              f"{100 * np.mean(errs):.1f}% of the MAE; streams with an alert {fired}/{seeds}"
              + (f"; median delay {np.median(delays):.0f} events" if delays else "")
              + ("; before the shift: " + str(sum(d <= 0 for d in delays)) if delays else ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()} (2 cores shared with other work: figures are noisy)")
    scenarios = ("unsure", "mild", "slight")
    runs = [(scenario, seed) for scenario in scenarios for seed in range(args.seeds)]
    runs += [("none", seed) for seed in range(100, 100 + args.seeds)]
    streams = [stream(seed, scenario) for scenario, seed in runs]
    nannyml = nannyml_cbpe(streams)
    res: dict[str, dict[str, list[dict[str, Any]]]] = {s: {"glassbox": [], "nannyml-cbpe": []} for s, _ in runs}
    for (scenario, _), (ref, cur), nm in zip(runs, streams, nannyml, strict=True):
        res[scenario]["glassbox"].append(glassbox(ref, cur))
        res[scenario]["nannyml-cbpe"].append(nm)
    for scenario in scenarios:
        real = [realized(cur) for (sc, _), (_, cur) in zip(runs, streams, strict=True) if sc == scenario]
        drop = [r[: AT // WINDOW].mean() - r[AT // WINDOW:].mean() for r in real]
        print(f"\n{scenario}: realized accuracy drop {np.mean(drop):.3f} (mean over {args.seeds} seeds)")
        for name, results in res[scenario].items():
            err = [float(np.mean(np.abs(r["estimate"] - x))) for r, x in zip(results, real, strict=True)]
            d = np.array([np.nan if r["first_alert"] is None else r["first_alert"] - AT + 1 for r in results])
            print(f"  {name:13s} mean |estimate - realized| {np.mean(err):.4f}; detected {np.sum(~np.isnan(d))}"
                  f"/{len(d)}; median delay {np.nanmedian(d) if np.any(~np.isnan(d)) else float('nan'):.0f} events")
    fa = {"glassbox": sum(r["first_alert"] is not None for r in res["none"]["glassbox"]),
          "nannyml-cbpe": sum(r["alerts"] > 0 for r in res["none"]["nannyml-cbpe"])}
    print(f"\nno-change streams with any alert (of {args.seeds}, 20 windows each): "
          + ", ".join(f"{k} {v}" for k, v in fa.items()))
    print(f"\nregression (direct loss estimation, {args.seeds} seeds, 20 windows of {WINDOW}):")
    regression_figures(args.seeds)
    ref, cur = stream(0, "none")
    g, b = throughput(ref, cur)
    print(f"\nthroughput of the estimate: glassbox {g:,.0f} events/s (streaming, per window); "
          f"NannyML's CBPE.estimate {b:,.0f} events/s (whole stream at once); ratio {g / b:.2f}")
    t, median = replay_overhead(args.rows, args.repeats)
    (on_w, on_c), (off_w, off_c) = t[True], t[False]
    print(f"\nfile replay, {args.rows:,} events x 25 features, labels joined at once (best of {args.repeats}, "
          f"interleaved): estimation on {on_w:.2f} s wall / {on_c:.2f} s CPU, off {off_w:.2f} s / {off_c:.2f} s; "
          f"overhead {100 * (on_w / off_w - 1):+.1f}% wall, {100 * (on_c / off_c - 1):+.1f}% CPU; median of the "
          f"paired CPU ratios {100 * (median - 1):+.1f}% (load average {os.getloadavg()[0]:.2f})")
    t, median = replay_overhead(args.rows, args.repeats, task="regression")
    print(f"regression replay (synth.regression_frame, 10 numeric features): estimation on {t[True][1]:.2f} s CPU, "
          f"off {t[False][1]:.2f} s; overhead {100 * (t[True][1] / t[False][1] - 1):+.1f}% (best of "
          f"{args.repeats}), median paired {100 * (median - 1):+.1f}% (load average {os.getloadavg()[0]:.2f})")
    w, median = worker_overhead(args.rows, args.repeats)
    print(f"worker step (Pipeline on 500-event batch messages with scores, then their labels; no Kafka/Faust): "
          f"estimation on {w[True]:.2f} s CPU, off {w[False]:.2f} s; overhead {100 * (w[True] / w[False] - 1):+.1f}% "
          f"(best of {args.repeats}), median paired {100 * (median - 1):+.1f}% (load average {os.getloadavg()[0]:.2f})")
    for task in ("binary", "regression"):
        est, total = estimation_share(args.rows, args.repeats, task)
        print(f"time inside the estimation monitor during a {task} replay: {est:.3f} of {total:.2f} CPU s "
              f"({100 * est / (total - est):.1f}% added to the rest; same run, lowest of {args.repeats})")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()

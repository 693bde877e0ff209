"""Detection power and false alarms of glassbox at its defaults (and of Evidently's DataDriftPreset).

Power: for each shift of ``tests/shifts.py`` (mean 0.1-0.5 sd, spread 10-50%, one category's share 3-10 points),
``--reps`` streams of the issue-3 synthetic data (20 numeric + 5 categorical features, a fresh 20,000-row
reference per repetition) change at row 5,000 and run 20,000 events more; the figure is the number of events
from the change to the first firing alert on the changed feature (median over the repetitions that detected)
and the miss rate within 20,000 events. Evidently's DataDriftPreset (its defaults: normed Wasserstein /
Jensen-Shannon at 0.1) judges the changed column on consecutive 1,000- and 5,000-row windows after the change.

False alarms: ``--streams`` no-change streams of 100,000 events (reference seed 5000+s, stream 6000+s: the first
20 are ``tests/test_detect_false_alarms.py``'s); firing alerts per 100,000 events per feature, and the largest
decision statistic over its threshold per horizon (glassbox's ``effect``).

    uv run python bench/bench_power.py [--reps 20] [--streams 120] [--evidently-reps 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import shifts  # noqa: E402
import synth  # noqa: E402

from detectors.profile import ReferenceProfile, build_profile  # noqa: E402
from stream.backtest.file_replay import ReplayOptions, replay_frames  # noqa: E402

AT = 5_000
AFTER = 20_000
SCENARIOS = [("mean", s) for s in (0.1, 0.15, 0.2, 0.3, 0.5)] + [("spread", s) for s in (0.1, 0.2, 0.5)] + [
    ("category", s) for s in (0.03, 0.05, 0.1)]


def label(kind: str, size: float) -> str:
    names = {"mean": f"mean +{size:g} sd", "spread": f"spread +{size:.0%}", "category": f"category +{size * 100:g} pt"}
    return names[kind]


def reference(rep: int) -> pd.DataFrame:
    return synth.frame(20_000, seed=3000 + rep)


def glassbox_delay(prof: ReferenceProfile, kind: str, size: float, rep: int) -> tuple[int | None, bool]:
    """(events from the change to the first alert on the changed feature or None, any alert before it)."""
    events = shifts.shifted(synth.frame(AT + AFTER, seed=4000 + rep), kind, size, at=AT, seed=rep)
    res = replay_frames(events, prof, ReplayOptions(score_cols=["score"], keep_windows=False))
    fired = [a for a in res.alerts if a["status"] == "firing"]
    hits = [a["row"] for a in fired if a["feature"] == shifts.feature(kind) and a["row"] >= AT]
    return (min(hits) - AT + 1 if hits else None), any(a["row"] < AT for a in fired)


def evidently_delay(ref: pd.DataFrame, kind: str, size: float, rep: int, window: int) -> int | None:
    """Events from the change to the end of the first window in which Evidently finds the column drifted."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    col = shifts.feature(kind)
    numeric = kind != "category"
    dd = DataDefinition(numerical_columns=[col] if numeric else [], categorical_columns=[] if numeric else [col])
    rds = Dataset.from_pandas(ref[[col]], data_definition=dd)
    events = shifts.shifted(synth.frame(AT + AFTER, seed=4000 + rep), kind, size, at=AT, seed=rep)
    for start in range(AT, AT + AFTER, window):
        cur = events[[col]].iloc[start:start + window]
        snap = Report([DataDriftPreset(columns=[col])]).run(
            current_data=Dataset.from_pandas(cur, data_definition=dd), reference_data=rds).dict()
        if _drifted(snap, col):
            return start + window - AT
    return None


def _drifted(snap: dict[str, Any], col: str) -> bool:
    for m in snap["metrics"]:
        if m.get("metric_name", "").startswith("ValueDrift") and f"column={col}" in m["metric_name"]:
            return bool(m["value"] >= m["config"].get("threshold", 0.1)) if m["config"].get("method", "").find(
                "p_value") < 0 else bool(m["value"] < m["config"].get("threshold", 0.05))
    raise KeyError(f"no ValueDrift result for {col!r}")


def evidently_false_alarms(streams: int, window: int) -> float:
    """Columns Evidently finds drifted per 100,000 events per feature on no-change windows of ``window`` rows."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    dd = DataDefinition(numerical_columns=synth.NUM, categorical_columns=synth.CAT)
    drifted = events = 0
    for s in range(streams):
        rds = Dataset.from_pandas(synth.frame(20_000, seed=5000 + s)[synth.FEATURES], data_definition=dd)
        stream = synth.frame(20_000, seed=6000 + s)[synth.FEATURES]
        for start in range(0, len(stream), window):
            snap = Report([DataDriftPreset()]).run(
                current_data=Dataset.from_pandas(stream.iloc[start:start + window], data_definition=dd),
                reference_data=rds).dict()
            drifted += sum(_drifted(snap, c) for c in synth.FEATURES)
            events += window
    return drifted / (events / 100_000) / len(synth.FEATURES)


def summarise(delays: list[int | None]) -> dict[str, Any]:
    hit = [d for d in delays if d is not None]
    return {"median_events": statistics.median(hit) if hit else None, "miss_rate": 1 - len(hit) / len(delays),
            "runs": len(delays)}


def false_alarms(streams: int, first: int = 0) -> dict[str, Any]:
    alerts, by_horizon = [], {}
    quality_max = {"domain_rate": 0.0, "out_of_range_rate": 0.0}
    features = len(synth.FEATURES)
    for s in range(first, first + streams):
        prof = build_profile(synth.frame(20_000, seed=5000 + s), label="label", scores=["score"])
        res = replay_frames(synth.frame(100_000, seed=6000 + s), prof, ReplayOptions(score_cols=["score"]))
        alerts += [(s, a["monitor"], a["feature"], a["row"]) for a in res.alerts if a["status"] == "firing"]
        for w in res.windows:
            if w["kind"] != "predictions":
                continue
            for c in w["columns"].values():
                for h in c.get("horizons") or [{"windows": 1, "value": c["value"], "threshold": c["threshold"]}]:
                    e = h.get("effect", h["value"] / h["threshold"] if h["threshold"] else 0.0)
                    by_horizon[h["windows"]] = max(by_horizon.get(h["windows"], 0.0), e)
                for q in quality_max:
                    quality_max[q] = max(quality_max[q], c.get(q, 0.0))
    feature_alerts = [a for a in alerts if a[2] in synth.FEATURES]
    return {"streams": streams, "events": streams * 100_000, "firing": alerts,
            "per_100k_events_per_feature": len(feature_alerts) / (streams * features),
            "max_effect_by_horizon": dict(sorted(by_horizon.items())), "max_quality_rates": quality_max}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--streams", type=int, default=120)
    ap.add_argument("--evidently-reps", type=int, default=10)
    ap.add_argument("--first-stream", type=int, default=0, help="seed offset of the no-change streams")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict[str, Any] = {"power": {}, "evidently_1000": {}, "evidently_5000": {}}
    t0 = time.time()
    refs = [reference(r) for r in range(max(args.reps, args.evidently_reps))]
    profs = [build_profile(r, label="label", scores=["score"]) for r in refs[:args.reps]]
    early = 0
    for kind, size in SCENARIOS if args.reps else ():
        runs = [glassbox_delay(profs[r], kind, size, r) for r in range(args.reps)]
        early += sum(b for _, b in runs)
        out["power"][label(kind, size)] = summarise([d for d, _ in runs])
        print(label(kind, size), out["power"][label(kind, size)], f"{time.time() - t0:.0f} s", flush=True)
    out["alerts_before_change"] = early
    for window in (1000, 5000) if args.evidently_reps else ():
        for kind, size in SCENARIOS:
            d = [evidently_delay(refs[r], kind, size, r, window) for r in range(args.evidently_reps)]
            out[f"evidently_{window}"][label(kind, size)] = summarise(d)
            print("evidently", window, label(kind, size), out[f"evidently_{window}"][label(kind, size)], flush=True)
        fa = evidently_false_alarms(args.evidently_reps, window)
        out[f"evidently_{window}_false_alarms_per_100k_per_feature"] = fa
        print("evidently", window, "false alarms per 100k events per feature", fa, flush=True)
    if args.streams:
        out["false_alarms"] = false_alarms(args.streams, args.first_stream)
        print({k: v for k, v in out["false_alarms"].items() if k != "firing"}, out["false_alarms"]["firing"])
    out["loadavg"] = os.getloadavg()
    print(table(out))
    print(f"load average {out['loadavg'][0]:.1f} / {out['loadavg'][1]:.1f} / {out['loadavg'][2]:.1f} "
          f"(2 cores shared with other jobs: counts of events are unaffected, only the run time)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


def table(out: dict[str, Any]) -> str:
    """The power table as markdown: median events to the first alert (miss rate within 20,000 events)."""
    def cell(s: dict[str, Any] | None) -> str:
        if not s:
            return "-"
        med = "never" if s["median_events"] is None else f"{s['median_events']:,.0f}"
        return f"{med} ({s['miss_rate']:.0%})"

    rows = ["| shift | glassbox | Evidently, 1,000-row windows | Evidently, 5,000-row windows |",
            "| --- | --- | --- | --- |"]
    for name in out["power"] or out["evidently_1000"]:
        s = out["power"].get(name)
        rows.append(f"| {name} | {cell(s)} | {cell(out['evidently_1000'].get(name))} | "
                    f"{cell(out['evidently_5000'].get(name))} |")
    return "\n".join(rows)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

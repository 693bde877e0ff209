"""Benchmark of ``glassbox replay`` start-up: wall time of the whole command on a small file.

A 60,000-row parquet file (``tests/synth.py``: 20 numeric + 5 categorical features, prediction, score, label)
and its 20,000-row reference are written to a temporary directory; one replay warms the profile and calibration
caches (:mod:`stream.backtest.replay_cache`, ``GLASSBOX_CACHE_DIR`` in the same directory), as a user's second
backtest finds them, and writes the bytecode of every module imported (``PYTHONPYCACHEPREFIX`` there too, so the
project's own modules are compiled as an installed wheel's are, whatever ``PYTHONDONTWRITEBYTECODE`` says). Then N
fresh processes of the real entry point (the installed ``glassbox`` script, else ``python -m stream.cli``) run
``glassbox replay EVENTS --reference REF --alerts-out ...`` with the default options, once on the file with labels
and once on the same file without its label column, interleaved. Wall time and the process's CPU time (user +
system, less sensitive to other load on a shared machine) are both printed.

Baseline, measured in the same run: a bare ``python -c "import numpy, pyarrow"`` (the interpreter and the
imports no replay can avoid). Target (issue 17): the replay with labels in < 1 s of wall time (best of N on an
idle machine with bytecode compiled).

Run: ``uv run python bench/bench_startup.py [--repeats 7] [--rows 60000]``; with ``PYTHONPATH=DIR`` (``stream/`` and
``detectors/`` of another commit, e.g. from ``git archive``) it measures that version the same way. The last line is
``startup: labels_best_s=B labels_median_s=M nolabels_best_s=B nolabels_median_s=M baseline_best_s=B
labels_cpu_median_s=C nolabels_cpu_median_s=C``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import synth  # noqa: E402

TARGET_S = 1.0


def entry_point() -> list[str]:
    """The ``glassbox`` console script next to this interpreter, else ``python -m stream.cli``."""
    script = Path(sys.executable).parent / "glassbox"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "stream.cli"]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU time of one fresh process running ``cmd`` (which must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def summary(name: str, times: list[tuple[float, float]]) -> str:
    wall, cpu = [t[0] for t in times], [t[1] for t in times]
    return (f"{name:<22} wall best {min(wall):6.3f} s  median {statistics.median(wall):6.3f} s   "
            f"cpu best {min(cpu):6.3f} s  median {statistics.median(cpu):6.3f} s  (n={len(times)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--rows", type=int, default=60_000)
    args = ap.parse_args()

    d = Path(tempfile.mkdtemp(prefix="glassbox-startup-"))
    try:
        ref, ev = synth.frame(20_000, seed=1), synth.frame(args.rows, seed=2, scenario="mean_shift", at=30_000)
        ref.to_parquet(d / "ref.parquet")
        ev.to_parquet(d / "labels.parquet")
        ev.drop(columns=["label"]).to_parquet(d / "nolabels.parquet")
        # bytecode compiled: the warm-up run writes it (ours too, which an editable install does not compile)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"GLASSBOX_CACHE_DIR": str(d / "cache"), "PYTHONPYCACHEPREFIX": str(d / "pycache")}
        base = entry_point()

        def replay(events: str) -> list[str]:
            return [*base, "replay", str(d / f"{events}.parquet"), "--reference", str(d / "ref.parquet"),
                    "--alerts-out", str(d / f"{events}.alerts.jsonl")]

        runs = {"replay, labels": replay("labels"), "replay, no labels": replay("nolabels"),
                "python + numpy,pyarrow": [sys.executable, "-c", "import numpy, pyarrow"]}
        for cmd in runs.values():  # warm the caches (profile, calibration) and the OS page cache
            timed(cmd, env)
        load0 = os.getloadavg()
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, cmd in runs.items():
                times[name].append(timed(cmd, env))
        load = os.getloadavg()
    finally:
        shutil.rmtree(d, ignore_errors=True)

    print(f"glassbox replay start-up: {args.rows:,} rows, {' '.join(base)}; load average "
          f"{' '.join(f'{x:.2f}' for x in load0)} before, {' '.join(f'{x:.2f}' for x in load)} after the runs, "
          f"{os.cpu_count()} CPUs")
    for name, t in times.items():
        print(summary(name, t))
    lab, nol, bare = (min(w for w, _ in t) for t in times.values())
    print(f"over the baseline (best): labels +{lab - bare:.3f} s, no labels +{nol - bare:.3f} s")
    verdict = "met" if lab < TARGET_S and nol < TARGET_S else "NOT met"
    print(f"target < {TARGET_S:.0f} s (best, with and without labels): {verdict}")
    med = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    print(f"startup: labels_best_s={lab:.3f} labels_median_s={med['replay, labels']:.3f} "
          f"nolabels_best_s={nol:.3f} nolabels_median_s={med['replay, no labels']:.3f} baseline_best_s={bare:.3f} "
          f"labels_cpu_median_s={cpu['replay, labels']:.3f} nolabels_cpu_median_s={cpu['replay, no labels']:.3f}")


if __name__ == "__main__":
    main()

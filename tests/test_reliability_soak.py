"""Memory soaks (slow: ``uv run pytest -m slow`` or ``just soak``): RSS of a worker over 2M events and of a
replay over 5M events stays within a fixed band after warm-up. The figures come from ``bench/bench_soak.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_soak.py"
BAND_MB = 100.0  # measured: about 25 MB for both
SLOPE_MB_PER_M = 10.0  # measured: within +-1 MB per million events


def bench():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("bench_soak", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_replay_rss_is_flat_over_5m_events() -> None:
    f, seconds = bench().soak_replay(5_000_000)
    print(f"\nreplay {f}")
    assert f["band_mb"] < BAND_MB and abs(f["slope_mb_per_m"]) < SLOPE_MB_PER_M, f


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_worker_rss_is_flat_over_2m_events() -> None:
    f, seconds = bench().soak_worker(2_000_000)
    print(f"\nworker {f}")
    assert f["band_mb"] < BAND_MB and abs(f["slope_mb_per_m"]) < SLOPE_MB_PER_M, f

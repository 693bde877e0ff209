"""Estimated performance where it shows: a file replay without labels still estimates (the reference's labels
calibrate), and the timeline draws estimated and realized accuracy in one panel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stream.backtest.event_columns import ReplayOptions
from stream.backtest.file_replay import replay_frames
from stream.backtest.timeline import ESTIMATED, build_timeline, write_png

N, AT = 12_000, 6000


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)

    def rows(x1: np.ndarray) -> pd.DataFrame:
        s = 1 / (1 + np.exp(-3 * x1))
        return pd.DataFrame({"x1": x1, "x2": rng.normal(size=len(x1)), "prediction": (s > 0.5).astype(int),
                             "label": (rng.random(len(x1)) < s).astype(int), "1": s})

    return rows(rng.normal(size=5000)), rows(np.r_[rng.normal(size=AT), rng.normal(0, 0.3, N - AT)])


def test_replay_without_labels_estimates(tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = tables
    res = replay_frames(cur.drop(columns=["label"]), ref, ReplayOptions(score_cols=["1"]))
    est = [a for a in res.alerts if a["monitor"] == "estimated_performance"]
    assert [(a["status"], a["direction"], a["row"]) for a in est] == [("firing", "degradation", AT + 999)]
    assert sum(r["kind"] == "estimation" for r in res.windows) == N // 1000
    assert not any(r["kind"] in ("outcomes", "estimation_realized") for r in res.windows)


def test_timeline_draws_estimated_and_realized(tables: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    ref, cur = tables
    res = replay_frames(cur, ref, ReplayOptions(score_cols=["1"], label_delay=2000))
    tl = build_timeline(res.windows, res.alerts)
    panel = next(p for p in tl.panels if p.name == ESTIMATED)
    assert len(panel.x) == N // 1000 and len(panel.realized) >= N // 1000 - 2
    assert [s.monitor for s in panel.spans] == ["estimated_performance"]
    assert panel.spans[0].start == AT + 999
    est = dict(zip(panel.x, panel.value, strict=True))
    for x, real in panel.realized:  # estimate and realized agree before the shift and after it
        assert abs(est[x] - real) < 0.06
    perf = next(p for p in tl.panels if p.name == "performance")
    assert perf.spans and perf.spans[0].start > panel.spans[0].start  # the estimate comes before the labels
    png = write_png(tl, tmp_path / "t.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

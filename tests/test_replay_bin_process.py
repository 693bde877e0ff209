"""A file replay whose window slices a child process counts (:mod:`stream.backtest.bin_process`) gives the
same alerts and records as one that counts everything itself, and survives a child that fails or is left
behind by an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synth

from detectors.config import DetectionConfig
from detectors.profile import build_profile
from stream.backtest.arrow_chunks import iter_arrow_chunks
from stream.backtest.bin_process import BinProcess
from stream.backtest.chunk_batches import ChunkColumns
from stream.backtest.event_columns import ReplayError, resolve_roles
from stream.backtest.file_replay import ReplayOptions, dumps_alerts, replay_frames

CHUNK = 3_000


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("binproc")
    synth.frame(20_000, seed=40).to_parquet(d / "ref.parquet")
    ev = pd.concat([synth.frame(12_000, seed=41, scenario="mean_shift", at=5_000),
                    synth.frame(12_000, seed=42, scenario="new_category", at=4_000)], ignore_index=True)
    ev.to_parquet(d / "events.parquet", row_group_size=5_000)  # chunks cut by row groups too
    return d / "ref.parquet", d / "events.parquet"


def _replay(files: tuple[Path, Path], ahead: bool, **opts) -> tuple[bytes, list, dict]:
    ref, ev = files
    o = ReplayOptions(score_cols=["score"], chunk_rows=CHUNK, **opts)
    res = replay_frames(iter_arrow_chunks(ev, CHUNK), pd.read_parquet(ref), o, count_ahead=ev if ahead else None)
    return dumps_alerts(res.alerts), res.windows, res.summary


@pytest.mark.parametrize("window", [1000, 700])
def test_counting_ahead_gives_the_same_alerts_and_records(files, monkeypatch, window: int) -> None:
    monkeypatch.setattr(BinProcess, "patience", 60.0)  # take every chunk from the child
    alone, records, summary = _replay(files, ahead=False, window=window)
    ahead, records_ahead, summary_ahead = _replay(files, ahead=True, window=window)
    assert b'"data_drift"' in alone and b"firing" in alone  # the drifts are found at all
    assert ahead == alone
    assert records_ahead == records
    assert summary["chunks_counted_ahead"] == 0
    assert summary_ahead["chunks_counted_ahead"] == len(list(iter_arrow_chunks(files[1], CHUNK)))  # every one


def test_a_child_that_fails_leaves_the_counting_to_the_replay(files, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(BinProcess, "patience", 60.0)
    ref, ev = files
    prof = build_profile(pd.read_parquet(ref), label="label", scores=["score"])
    roles = resolve_roles(list(pd.read_parquet(ev).columns), ReplayOptions(score_cols=["score"]))
    with BinProcess(tmp_path / "gone.parquet", CHUNK, ChunkColumns.of(roles, None, prof), prof,
                    DetectionConfig()) as child:
        assert child.take(0, CHUNK) is None
        assert child.take(CHUNK, CHUNK) is None
    assert child.failed is not None and "gone.parquet" in child.failed, child.failed
    assert (child.counted, child.missed) == (0, 2)


def test_an_error_in_the_replay_stops_the_child(files, monkeypatch, tmp_path: Path) -> None:
    ref, ev = files
    frame = pd.read_parquet(ev)
    frame.iloc[: 4 * CHUNK].to_parquet(tmp_path / "a.parquet")
    frame.iloc[4 * CHUNK:].drop(columns=["num_3"]).to_parquet(tmp_path / "b.parquet")
    started: list[BinProcess] = []
    enter = BinProcess.__enter__

    def remember(self: BinProcess) -> BinProcess:
        started.append(self)
        return enter(self)

    monkeypatch.setattr(BinProcess, "__enter__", remember)
    chunks = [*iter_arrow_chunks(tmp_path / "a.parquet", CHUNK), *iter_arrow_chunks(tmp_path / "b.parquet", CHUNK)]
    with pytest.raises(ReplayError, match="lack columns: num_3"):
        replay_frames(chunks, pd.read_parquet(ref), ReplayOptions(score_cols=["score"], chunk_rows=CHUNK),
                      count_ahead=tmp_path / "a.parquet")
    [child] = started
    assert child._proc.exitcode is not None  # killed and reaped, not left running


def test_window_cuts_follow_the_rows_not_the_chunks() -> None:
    from stream.backtest.bin_process import window_cuts

    cuts = [window_cuts(a, 3_000, 1_000) + a for a in range(0, 9_000, 3_000)]
    assert np.unique(np.concatenate(cuts)).tolist() == list(range(0, 9_001, 1_000))
    assert window_cuts(2_500, 3_000, 1_000).tolist() == [0, 500, 1_500, 2_500, 3_000]


def test_a_fold_of_counted_and_uncounted_batches_gives_the_same_alerts(files) -> None:
    from detectors.batch import EventBatch
    from detectors.binning import Binner
    from detectors.monitor import ModelMonitor
    from stream.backtest.bin_process import window_cuts

    ref, ev = files
    frame = pd.read_parquet(ev)
    prof = build_profile(pd.read_parquet(ref), label="label", scores=["score"])
    cfg = DetectionConfig(window=1_000)
    feats = [c for c in frame.columns if c.startswith(("num_", "cat_"))]

    def batches(counted: bool) -> list[EventBatch]:
        binner, out = Binner(ModelMonitor(prof, cfg).tests), []
        for i, a in enumerate(range(0, len(frame), 300)):  # 300-event batches: folds of several
            part = frame.iloc[a:a + 300]
            rows = range(a, a + len(part))
            b = EventBatch.from_columns(ids=[str(r) for r in rows], timestamps=rows,
                                        features={f: part[f].to_numpy() for f in feats},
                                        prediction=part["prediction"].to_numpy(),
                                        scores={"score": part["score"].to_numpy()})
            if counted and i % 3:  # two batches in three counted elsewhere, without their features
                b.binned = binner.batch_counts(b, window_cuts(a, len(part), 1_000))
                b.features = {}
            out.append(b)
        return out

    def alerts(bs: list[EventBatch]) -> bytes:
        mon = ModelMonitor(prof, cfg)
        return dumps_alerts([a for b in bs for a in mon.observe(b)])

    plain = alerts(batches(False))
    assert b'"data_drift"' in plain
    assert alerts(batches(True)) == plain

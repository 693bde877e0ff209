"""Calibrated limits cached on disk are the computed ones, bit for bit; a bad cache file is ignored with a warning."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import synth

from detectors.config import DetectionConfig
from detectors.profile import build_profile
from detectors.window_tests import WindowTests, calibration_key, forget_limits, known_limits
from stream.backtest.file_replay import ReplayOptions, dumps_alerts, replay_file, replay_frames
from stream.backtest.replay_cache import ENV, CalibrationCache, default_dir

CFG = DetectionConfig(window=300, horizons=[1, 2, 4])


@pytest.fixture
def frames() -> tuple:
    ref = synth.frame(4_000, seed=11).drop(columns=["label"])  # no labels: no River to import
    ev = synth.frame(6_000, seed=12, scenario="mean_shift", at=3_000).drop(columns=["label"])
    return ref, ev, build_profile(ref, scores=["score"])


def _same(a: WindowTests, b: WindowTests, n: int) -> None:
    la, lb = a.limits(n), b.limits(n)
    for f in dataclasses.fields(la):
        x, y = getattr(la, f.name), getattr(lb, f.name)
        assert (x == y) if isinstance(x, str) else np.array_equal(x, y), f.name


def test_cached_limits_and_alerts_equal_computed_ones(tmp_path: Path, frames: tuple,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ref, ev, prof = frames
    monkeypatch.setenv(ENV, str(tmp_path))
    opts = ReplayOptions(score_cols=["score"], config=CFG)
    forget_limits()
    cold = replay_frames(ev, ref, opts)
    computed = WindowTests(prof, CFG)
    assert sorted(known_limits(computed.key)) == [300, 600, 1200]
    files = list((tmp_path / "calibration").glob("*.npz"))
    assert [f.stem for f in files] == [calibration_key(prof, CFG)]

    forget_limits()
    assert CalibrationCache(tmp_path).load(calibration_key(prof, CFG), prof) == 3
    cached = WindowTests(prof, CFG)  # finds the loaded limits
    forget_limits()
    fresh = WindowTests(prof, CFG)  # computes them again
    for n in (300, 600, 1200):
        _same(cached, fresh, n)

    forget_limits()
    warm = replay_frames(ev, ref, opts)
    assert cold.alerts and dumps_alerts(warm.alerts) == dumps_alerts(cold.alerts)


def test_corrupt_or_stale_cache_is_ignored_with_a_warning(tmp_path: Path, frames: tuple) -> None:
    _, _, prof = frames
    cache, key = CalibrationCache(tmp_path), calibration_key(prof, CFG)
    forget_limits()
    WindowTests(prof, CFG).limits(300)
    assert cache.save(key) == 1
    path = tmp_path / "calibration" / f"{key}.npz"

    path.write_bytes(path.read_bytes()[:100])  # truncated
    forget_limits()
    with pytest.warns(RuntimeWarning, match="ignoring the calibration cache"):
        assert CalibrationCache(tmp_path).load(key, prof) == 0
    assert known_limits(key) == {}

    other = CFG.model_copy(update={"seed": 7})  # another key's file under this key's name: stale
    WindowTests(prof, other).limits(300)
    CalibrationCache(tmp_path).save(calibration_key(prof, other))
    (tmp_path / "calibration" / f"{calibration_key(prof, other)}.npz").replace(path)
    forget_limits()
    with pytest.warns(RuntimeWarning, match="holds the limits of key"):
        assert CalibrationCache(tmp_path).load(key, prof) == 0


def test_cache_dir_is_the_users_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_dir() == tmp_path / "glassbox"
    monkeypatch.setenv(ENV, "")
    assert default_dir() is None and CalibrationCache.default().directory is None


def test_profile_of_a_reference_file_is_cached_and_a_corrupt_one_ignored(tmp_path: Path, frames: tuple,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ref, ev, _ = frames
    monkeypatch.setenv(ENV, str(tmp_path / "cache"))
    ref.to_parquet(tmp_path / "ref.parquet")
    ev.to_parquet(tmp_path / "ev.parquet")
    opts = ReplayOptions(score_cols=["score"], config=CFG)
    first = replay_file(tmp_path / "ev.parquet", tmp_path / "ref.parquet", opts)
    [cached] = (tmp_path / "cache" / "profiles").glob("*.json")
    again = replay_file(tmp_path / "ev.parquet", tmp_path / "ref.parquet", opts)
    assert first.alerts and dumps_alerts(again.alerts) == dumps_alerts(first.alerts)
    assert again.summary["reference_digest"] == first.summary["reference_digest"]

    cached.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="ignoring the profile cache"):
        third = replay_file(tmp_path / "ev.parquet", tmp_path / "ref.parquet", opts)
    assert dumps_alerts(third.alerts) == dumps_alerts(first.alerts)
    ref.iloc[:3_000].to_parquet(tmp_path / "ref.parquet")  # other bytes: profiled again, not the stale profile
    other = replay_file(tmp_path / "ev.parquet", tmp_path / "ref.parquet", opts)
    assert other.summary["reference_digest"] != first.summary["reference_digest"]

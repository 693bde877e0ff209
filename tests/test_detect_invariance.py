"""Results depend on the events only: not on how they are chunked, not on restarts (state round trip)."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest
import synth

from detectors.batch import EventBatch, OutcomeBatch
from detectors.config import DetectionConfig
from detectors.monitor import ModelMonitor
from detectors.profile import ReferenceProfile, build_profile

N = 24_000


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return build_profile(synth.frame(20_000, seed=3000), label="label", scores=["score"])


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    """Several changes at once: concept flip at 8,000; num_10 shift, cat_1 unseen values, num_3 missing
    and a type error burst from 14,000."""
    df = synth.frame(N, seed=31, scenario="concept_flip", at=8_000)
    late = np.arange(N) >= 14_000
    rng = np.random.default_rng(0)
    df.loc[late, "num_10"] += 3.0
    df.loc[late & (rng.random(N) < 0.4), "prediction"] = 1  # the model's outputs drift too
    df.loc[late, "score"] = np.sqrt(df.loc[late, "score"])
    df["cat_1"] = np.where(late & (rng.random(N) < 0.1), "brand_new", df["cat_1"])
    df.loc[late & (rng.random(N) < 0.3), "num_3"] = np.nan
    df["num_7"] = df["num_7"].astype(object)
    df.loc[late & (rng.random(N) < 0.05), "num_7"] = "oops"
    df["timestamp"] = 1_700_000_000_000 + np.arange(N) * 10
    return df


_ARRAYS: dict[int, dict] = {}


def _arrays(df: pd.DataFrame) -> dict:
    key = id(df)
    if key not in _ARRAYS:
        _ARRAYS[key] = {
            "ids": np.array([f"p{i}" for i in range(len(df))], dtype=object),
            "ts": df["timestamp"].to_numpy(np.int64),
            "features": {c: _as_core(df[c].to_numpy()) for c in synth.FEATURES},
            "prediction": df["prediction"].to_numpy(np.float64),
            "score": df["score"].to_numpy(np.float64),
            "label": df["label"].to_numpy(np.float64),
            "rows": np.arange(len(df), dtype=np.int64),
        }
    return _ARRAYS[key]


def _cols(df: pd.DataFrame, a: int, b: int) -> dict:
    x = _arrays(df)
    return {
        "ids": x["ids"][a:b], "ts": x["ts"][a:b], "features": {k: v[a:b] for k, v in x["features"].items()},
        "prediction": x["prediction"][a:b], "scores": {"score": x["score"][a:b]}, "label": x["label"][a:b],
        "rows": x["rows"][a:b],
    }


def feed(mon: ModelMonitor, df: pd.DataFrame, size: int, start: int = 0, stop: int | None = None,
         partition: int = -1) -> tuple[list[dict], list[dict]]:
    """Feed rows ``start:stop`` in batches of ``size``; labels joined at once. Returns (prediction alerts,
    outcome alerts) in emission order."""
    stop = len(df) if stop is None else stop
    pa, oa = [], []
    for a in range(start, stop, size):
        b = min(a + size, stop)
        c = _cols(df, a, b)
        parts = np.full(b - a, partition, np.int64)
        eb = EventBatch(ids=c["ids"], timestamps=c["ts"], features=c["features"],
                        prediction=c["prediction"], scores=c["scores"], partitions=parts, offsets=c["rows"])
        pa += mon.observe(eb)
        ob = OutcomeBatch(ids=c["ids"], timestamps=c["ts"], label_timestamps=c["ts"], prediction=c["prediction"],
                          label=c["label"], scores=c["scores"], partitions=parts, offsets=c["rows"])
        oa += mon.observe_outcomes(ob)
    return pa, oa


def _as_core(v: np.ndarray) -> np.ndarray:
    if v.dtype.kind in "fiub":
        return v.astype(np.float64)
    return v


def _monitors(alerts: list[dict]) -> set[str]:
    return {a["monitor"] for a in alerts}


@pytest.mark.parametrize("window_ms", [None, 5_000])
def test_alerts_do_not_depend_on_batch_size(profile, events, window_ms):
    cfg = DetectionConfig(window=500, window_ms=window_ms)
    runs = {}
    for size in (1, 7, 5_000):
        mon = ModelMonitor(profile, cfg, model="churn", model_version="3")
        runs[size] = feed(mon, events, size)
    pa, oa = runs[5_000]
    assert {"data_drift", "data_quality", "prediction_drift"} <= _monitors(pa)
    assert {"concept_drift", "performance"} <= _monitors(oa)
    assert runs[1] == runs[7] == runs[5_000]
    q = [a for a in pa if a["monitor"] == "data_quality"]
    assert {a["feature"] for a in q} >= {"cat_1", "num_3", "num_7"}
    if window_ms:
        assert all(a["window"]["end"] - a["window"]["start"] == window_ms - 1 for a in pa)


@pytest.mark.parametrize("size,split", [(7, 11_111), (5_000, 15_000), (1, 8_031)])
def test_state_round_trip_continues_exactly(profile, events, size, split):
    cfg = DetectionConfig(window=500)
    whole = feed(ModelMonitor(profile, cfg, model="churn"), events, size)
    first = ModelMonitor(profile, cfg, model="churn")
    pa, oa = feed(first, events, size, 0, split)
    state = orjson.loads(orjson.dumps(first.to_state()))
    second = ModelMonitor.from_state(profile, cfg, "churn", None, state)
    pb, ob = feed(second, events, size, split)
    assert (pa + pb, oa + ob) == whole


def test_state_with_other_detectors_and_dynamic_thresholds(profile, events):
    for detector in ("ddm", "hddm_w", "hddm_a"):
        cfg = DetectionConfig(window=500, concept_detector=detector, threshold="dynamic")
        whole = feed(ModelMonitor(profile, cfg, model="m"), events, 1_000)
        first = ModelMonitor(profile, cfg, model="m")
        pa, oa = feed(first, events, 1_000, 0, 12_500)
        second = ModelMonitor.from_state(profile, cfg, "m", None, orjson.loads(orjson.dumps(first.to_state())))
        pb, ob = feed(second, events, 1_000, 12_500)
        assert (pa + pb, oa + ob) == whole
        assert any(a["monitor"] == "concept_drift" for a in whole[1]), detector
        assert any(a["threshold_kind"] == "dynamic" and a["monitor"] == "data_drift" for a in whole[0])


def test_state_refuses_another_profile(profile):
    mon = ModelMonitor(profile, DetectionConfig(window=500), model="m")
    other = build_profile(synth.frame(5_000, seed=9), label="label")
    with pytest.raises(ValueError, match="different reference profile"):
        ModelMonitor.from_state(other, DetectionConfig(window=500), "m", None, mon.to_state())


def test_live_sources_carry_partition_and_offsets(profile, events):
    mon = ModelMonitor(profile, DetectionConfig(window=500), model="churn")
    pa, oa = feed(mon, events, 250, partition=3)
    a = pa[0]
    assert a["row"] is None and a["source"]["partition"] == 3
    assert a["source"]["offset_end"] - a["source"]["offset_start"] == 499
    assert a["source"]["offset_end"] == a["window"]["index"] * 500 + 499
    assert all(x["source"]["partition"] == 3 for x in oa)
    windows = mon.drain_windows()
    assert {w["kind"] for w in windows} == {"predictions", "outcomes", "estimation", "estimation_realized"}
    assert mon.drain_windows() == []
    w = next(w for w in windows if w["kind"] == "predictions")
    assert set(w["columns"]) == set(profile.monitored)
    assert {"wasserstein", "psi", "jensenshannon", "ks_pvalue", "threshold", "drift"} <= set(w["columns"]["num_0"])

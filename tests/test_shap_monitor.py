"""Attribution drift on the stream: fires after the model's reliance shifts and not before, stays quiet on a
stable stream, names the shifted feature among its top SHAP movers, and is deterministic whatever the
chunking, the executor order or a restart in between."""

from __future__ import annotations

import itertools
import json
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from detectors.alert import fingerprint
from detectors.attribution import reference_attributions
from detectors.attribution_monitor import AttributionConfig, AttributionMonitor
from detectors.batch import EventBatch

F = ["a", "b", "c", "d"]
WINDOW = 1000
SEED = 7

warnings.filterwarnings("ignore", category=UserWarning)


def data(n: int, seed: int, sd_a: float = 1.0, sd_b: float = 0.25, mean_c: float = 0.0) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    return pd.DataFrame({"a": r.normal(0, sd_a, n), "b": r.normal(0, sd_b, n), "c": r.normal(mean_c, 1, n),
                         "d": r.normal(0, 1, n)})


@pytest.fixture(scope="module")
def model() -> RandomForestClassifier:
    """Trained where a, b (and a little c) all matter; d is noise."""
    train = data(4000, 0, sd_a=1.5, sd_b=1.5)
    noise = np.random.default_rng(1).normal(0, 0.3, len(train))
    y = ((train.a + train.b + 0.5 * train.c + noise) > 0).astype(int)
    return RandomForestClassifier(60, max_depth=6, random_state=0, n_jobs=1).fit(train[F], y)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return data(2000, 2)  # production-like: a drives the predictions, b barely varies


@pytest.fixture(scope="module")
def ref_record(model: RandomForestClassifier, reference: pd.DataFrame) -> dict:
    return reference_attributions(model, reference, F, seed=SEED, max_rows=500)


def batch(df: pd.DataFrame, start: int = 0, partition: int = 0) -> EventBatch:
    n = len(df)
    return EventBatch.from_columns(
        ids=[f"p{start + i}" for i in range(n)], timestamps=1_700_000_000_000 + np.arange(start, start + n) * 10,
        features={f: df[f].to_numpy() for f in F}, prediction=np.zeros(n),
        partitions=np.full(n, partition), offsets=np.arange(start, start + n))


def monitor(model: RandomForestClassifier, reference: pd.DataFrame, ref_record: dict,
            **cfg: object) -> AttributionMonitor:
    return AttributionMonitor(model, ref_record, reference, F, AttributionConfig(**cfg), "churn", SEED,
                              window=WINDOW, reference_info={"name": "churn-reference", "digest": "abc"})


def reliance_shift_stream(n_before: int, n_after: int) -> pd.DataFrame:
    """From row ``n_before`` on, a's variance collapses and b's grows: the model now leans on b."""
    return pd.concat([data(n_before, 3), data(n_after, 4, sd_a=0.25, sd_b=1.0)], ignore_index=True)


def test_fires_after_the_reliance_shift_and_not_before(model, reference, ref_record) -> None:
    n = 5500  # mid-window: window 5 is half changed
    stream = reliance_shift_stream(n, 4500)
    mon = monitor(model, reference, ref_record)
    alerts = []
    for lo in range(0, len(stream), 700):
        alerts += [(lo, a) for a in mon.observe(batch(stream.iloc[lo:lo + 700], lo))]
    assert alerts, "attribution_drift never fired"
    firing = [a for _, a in alerts if a["status"] == "firing"]
    assert len(firing) == 1 and len(alerts) == 1  # fires once, stays firing
    a = firing[0]
    assert a["monitor"] == "attribution_drift" and a["feature"] is None
    assert a["fingerprint"] == fingerprint("churn", "attribution_drift", None)
    assert a["threshold_kind"] == "calibrated" and a["value"] > a["threshold"]
    first_row = a["window"]["index"] * WINDOW
    last_row = first_row + a["window"]["events"] - 1
    assert last_row >= n, "fired before the change"
    assert a["window"]["index"] <= 6, "fired more than one full window after the change"
    assert a["source"] == {"partition": 0, "offset_start": first_row, "offset_end": last_row}
    movers = [m["feature"] for m in a["evidence"]["top_movers"]]
    assert set(movers[:2]) == {"a", "b"}
    assert a["evidence"]["reference"]["digest"] == "abc"
    records = mon.drain_windows()
    assert [r["index"] for r in records] == list(range(10))
    assert not any(r["drift"] for r in records[:5])
    assert all(r["drift"] for r in records[6:])


def test_no_change_no_alert(model, reference, ref_record) -> None:
    stream = data(12_000, 11)
    mon = monitor(model, reference, ref_record)
    alerts = mon.observe(batch(stream))
    assert alerts == []
    assert mon.explained == 12 and not mon.skipped
    distances = [r["attribution_distance"] for r in mon.drain_windows()]
    assert max(distances) < mon.limits(200)[0]


def test_injected_shift_names_the_shifted_feature(model, reference, ref_record) -> None:
    stream = pd.concat([data(3000, 5), data(3000, 6, mean_c=2.0)], ignore_index=True)
    mon = monitor(model, reference, ref_record)
    alerts = mon.observe(batch(stream))
    assert [a["status"] for a in alerts] == ["firing"]
    assert alerts[0]["window"]["index"] == 3
    assert alerts[0]["evidence"]["top_movers"][0]["feature"] == "c"
    assert "'c'" in alerts[0]["summary"]
    movers = mon.top_movers()
    assert movers[0]["feature"] == "c"
    assert movers[0]["window_mean_abs_shap"] > 1.5 * movers[0]["reference_mean_abs_shap"]
    before = mon.top_movers(window_index=1)  # kept: the movers of an earlier window, all small
    assert abs(before[0]["change"]) < abs(movers[0]["change"]) / 2


def _run_chunked(model, reference, ref_record, stream: pd.DataFrame, sizes) -> tuple[list, list]:
    mon = monitor(model, reference, ref_record)
    alerts, lo = [], 0
    sizes = itertools.cycle(sizes)
    while lo < len(stream):
        m = next(sizes)
        alerts += mon.observe(batch(stream.iloc[lo:lo + m], lo))
        lo += m
    return alerts, mon.drain_windows()


def test_results_do_not_depend_on_chunking(model, reference, ref_record) -> None:
    stream = reliance_shift_stream(3000, 2000)
    a1, r1 = _run_chunked(model, reference, ref_record, stream, [5000])
    a2, r2 = _run_chunked(model, reference, ref_record, stream, [1, 3, 250, 999, 17, 1000, 730])
    assert json.dumps(a1, sort_keys=True) == json.dumps(a2, sort_keys=True)
    assert json.dumps(r1, sort_keys=True) == json.dumps(r2, sort_keys=True)


def test_executor_path_matches_inline(model, reference, ref_record) -> None:
    stream = reliance_shift_stream(3000, 3000)
    inline = monitor(model, reference, ref_record).observe(batch(stream))
    mon = monitor(model, reference, ref_record, max_pending=8)
    samples = mon.collect(batch(stream))  # the hot path: only the reservoir
    assert [s.index for s in samples] == list(range(6)) and all(len(s) == 200 for s in samples)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(mon.explain_window, samples))
    alerts = []
    for r in reversed(results):  # results may come back in any order
        alerts += mon.decide(r)
    assert json.dumps(alerts, sort_keys=True) == json.dumps(inline, sort_keys=True)
    assert mon.decide(results[0]) == []  # a duplicate is ignored


def test_state_round_trip_with_windows_in_flight(model, reference, ref_record) -> None:
    stream = reliance_shift_stream(3000, 3000)
    expected = monitor(model, reference, ref_record).observe(batch(stream))
    mon = monitor(model, reference, ref_record)
    alerts = mon.observe(batch(stream.iloc[:2500]))
    mon.collect(batch(stream.iloc[2500:4100], 2500))  # windows 2 and 3 closed but not explained yet
    assert mon.collect(batch(stream.iloc[4100:4200], 4100)) == []  # buffered, folded into the state
    state = json.loads(json.dumps(mon.to_state()))
    restored = AttributionMonitor.from_state(state, model, ref_record, reference, F, AttributionConfig(), "churn",
                                             SEED, reference_info={"name": "churn-reference", "digest": "abc"})
    assert [s.index for s in restored.pending_samples()] == [2, 3]
    for s in restored.pending_samples():
        alerts += restored.decide(restored.explain_window(s))
    alerts += restored.observe(batch(stream.iloc[4200:], 4200))
    assert json.dumps(alerts, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_over_budget_windows_are_skipped_and_counted(model, reference, ref_record) -> None:
    ticks = itertools.count(step=10.0)  # a clock that jumps 10 s per reading
    mon = AttributionMonitor(model, ref_record, reference, F, AttributionConfig(budget_s=1.0), "churn", SEED,
                             window=WINDOW, clock=lambda: next(ticks))
    alerts = mon.observe(batch(reliance_shift_stream(2000, 3000)))
    assert alerts == [] and mon.skipped == {"budget": 5} and mon.explained == 0
    assert all(r["skipped"] and r["reason"] == "budget" for r in mon.drain_windows())
    assert mon.top_movers() == []


def test_static_thresholds_and_disabled(model, reference, ref_record) -> None:
    stream = reliance_shift_stream(2000, 2000)
    static = monitor(model, reference, ref_record, threshold="static", static_distance=0.25)
    alerts = static.observe(batch(stream))
    assert [(a["window"]["index"], a["threshold_kind"], a["threshold"]) for a in alerts] == [(2, "static", 0.25)]
    off = monitor(model, reference, ref_record, enabled=False)
    assert off.observe(batch(stream)) == [] and off.windows == 0


def test_backlog_skips_windows_instead_of_queueing(model, reference, ref_record) -> None:
    mon = monitor(model, reference, ref_record, max_pending=2)
    stream = data(5000, 12)
    samples = mon.collect(batch(stream))  # 5 windows close while the executor has answered none
    assert [s.index for s in samples] == [0, 1]
    state = json.loads(json.dumps(mon.to_state()))
    restored = AttributionMonitor.from_state(state, model, ref_record, reference, F,
                                             AttributionConfig(max_pending=2), "churn", SEED)
    for m in (mon, restored):
        for s in reversed(m.pending_samples()):
            assert m.decide(m.explain_window(s)) == []
        assert m.skipped == {"backlog": 3} and m.explained == 2
        assert [r["index"] for r in m.drain_windows()] == [0, 1, 2, 3, 4]


def test_other_alerts_carry_the_top_shap_movers_of_their_window(model, reference, ref_record) -> None:
    from detectors.config import DetectionConfig
    from detectors.monitor import ModelMonitor
    from detectors.profile import build_profile

    ref = reference.assign(prediction=model.predict(reference[F]))
    core = ModelMonitor(build_profile(ref, prediction="prediction"), DetectionConfig(window=WINDOW), model="churn")
    attr = monitor(model, reference, ref_record)
    stream = pd.concat([data(3000, 5), data(3000, 6, mean_c=2.0)], ignore_index=True)
    stream["prediction"] = model.predict(stream[F])
    alerts = []
    for lo in range(0, len(stream), 500):
        b = batch(stream.iloc[lo:lo + 500], lo)
        b.prediction = stream["prediction"].to_numpy()[lo:lo + 500].astype(float)
        attr_alerts = attr.observe(b)  # attribution first: the window's movers are ready for the core's alerts
        alerts += attr.attach_movers(core.observe(b)) + attr_alerts
    drift = [a for a in alerts if a["monitor"] == "data_drift" and a["feature"] == "c"]
    assert drift and drift[0]["window"]["index"] == 3
    movers = drift[0]["evidence"]["shap_movers"]
    assert movers["window"] == 3 and movers["movers"][0]["feature"] == "c"
    assert {"feature", "reference_mean_abs_shap", "window_mean_abs_shap"} <= set(movers["movers"][0])

"""Monitoring the monitor: the worker's ``/metrics`` and its ``pipeline`` alerts, scraped from a real worker
process on the embedded broker, and the checks' hysteresis in process."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from detectors.alert import fingerprint
from stream.producer import Producer
from stream.settings import Settings
from stream.worker.health import HealthSample, PipelineHealth, PipelineHealthConfig
from stream.worker.prometheus import OTHER, WorkerMetrics, compute_lag
from tests.kafka_util import WorkerProcess, read_json
from tests.synth import FEATURES, frame

T0 = 1_700_000_000_000  # November 2023: years behind the wall clock

QUIET = {  # nothing heavy in the worker: these tests are about the pipeline, not MLflow/Evidently/SHAP
    "GLASSBOX_MLFLOW__ENABLED": "false",
    "GLASSBOX_EVIDENTLY__ENABLED": "false",
    "GLASSBOX_ATTRIBUTION__ENABLED": "false",
}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: dict, name: str, **labels: str) -> float | None:
    return m.get((name, tuple(sorted(labels.items()))))


def total(m: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in m.items() if n == name and want <= set(lab))


def wait_metric(worker: WorkerProcess, pred, timeout_s: float = 30.0, what: str = "") -> dict:
    deadline = time.monotonic() + timeout_s
    m: dict = {}
    while time.monotonic() < deadline:
        try:
            m = scrape(worker.web_port)
        except OSError:
            m = {}
        if m and pred(m):
            return m
        time.sleep(0.2)
    firing = {k: v for k, v in m.items() if k[0] == "glassbox_pipeline_check_firing"}
    raise AssertionError(f"metric condition {what!r} not met in {timeout_s} s; firing gauges {firing}\n"
                         f"{worker.log()[-2000:]}")


def firing(check: str, model: str):
    return lambda m: value(m, "glassbox_pipeline_check_firing", check=check, model=model) == 1


def cleared(check: str, model: str):
    return lambda m: value(m, "glassbox_pipeline_check_firing", check=check, model=model) == 0


def event(i: int, row, ts: int) -> dict:
    feats = {c: (None if v != v else v) for c, v in zip(FEATURES, row[: len(FEATURES)], strict=True)}
    return {"prediction_id": f"p{i}", "model": "m", "timestamp": ts, "features": feats,
            "prediction": int(row[len(FEATURES)])}


@pytest.mark.system
@pytest.mark.timeout(180)
def test_metrics_and_pipeline_alerts_from_a_real_worker(kafka_bootstrap: str, topic_prefix: str,
                                                        tmp_path: Path) -> None:
    ref_path = tmp_path / "reference.parquet"
    frame(4000, seed=1).drop(columns=["score"]).to_parquet(ref_path)
    rows = list(frame(1300, seed=2)[FEATURES + ["prediction"]].itertuples(index=False))
    app_id = f"{topic_prefix}health"
    env = {
        **QUIET,
        "GLASSBOX_WORKER__LABEL_TTL_S": "1",
        "GLASSBOX_HEALTH__INTERVAL_S": "0.25",
        "GLASSBOX_HEALTH__WINDOW_S": "2",
        "GLASSBOX_HEALTH__MIN_MESSAGES": "50",
        "GLASSBOX_HEALTH__STALE_AFTER_S": "3",
        "GLASSBOX_HEALTH__RESOLVE_AFTER": "2",
        "GLASSBOX_HEALTH__MAX_DEADLETTER_RATE": "0.2",
        "GLASSBOX_HEALTH__MAX_EVENT_SKEW_S": "3600",
        "GLASSBOX_HEALTH__MIN_LABEL_COVERAGE": "0.5",
        "GLASSBOX_HEALTH__MAX_LATE_LABEL_RATE": "0.3",
        "GLASSBOX_HEALTH__MAX_LAG": "2000",
    }
    worker = WorkerProcess(kafka_bootstrap, topic_prefix, app_id=app_id, home=tmp_path / "w",
                           models={"m": str(ref_path)}, audit=False, extra_env=env)
    with worker, Producer(kafka_bootstrap, topic_prefix=topic_prefix, batch_events=1) as prod:  # counts messages
        worker.wait_ready()
        # 1. nothing arrives: the stream is stale
        wait_metric(worker, firing("stale_stream", app_id), what="stale fires")
        # 2. old events (skew of years) with 25% garbage: dead-letter rate and skew fire, staleness clears
        for i in range(600):
            prod.send_prediction(**event(i, rows[i], T0 + i * 10))
            if i % 3 == 0:
                prod.send_raw(prod.predictions_topic, b'\xff{"schema": not json' + str(i).encode(), key="m")
        prod.flush()
        m = wait_metric(worker, lambda m: firing("deadletter_rate", app_id)(m)
                        and firing("event_time_skew", app_id)(m) and cleared("stale_stream", app_id)(m),
                        what="dead letters and skew fire, stale resolves")
        assert value(m, "glassbox_event_time_skew_seconds", topic="predictions") > 3 * 365 * 86400 * 0.9
        # 3. current events, no garbage, for 3 s: both resolve; the old predictions expire unlabelled
        t_now = int(time.time() * 1000)
        for i in range(600, 1200):
            prod.send_prediction(**event(i, rows[i], t_now + (i - 600) * 5))
            if i % 50 == 0:
                prod.flush()
                time.sleep(0.25)
        prod.flush()
        wait_metric(worker, lambda m: cleared("deadletter_rate", app_id)(m) and cleared("event_time_skew", app_id)(m),
                    what="dead letters and skew resolve")
        # 4. labels for long-expired predictions: too late to join; coverage of matured predictions is 0
        for i in range(100):
            prod.send_label(prediction_id=f"p{i}", model="m", label=1, timestamp=T0 + i * 10 + 5)
        prod.flush()
        m = wait_metric(worker, lambda m: firing("late_label_rate", "m")(m) and firing("label_coverage", "m")(m),
                        what="late labels and coverage fire")
        assert value(m, "glassbox_late_label_rate", model="m") == 1.0
        assert value(m, "glassbox_label_coverage", model="m") == 0.0
        # 5. a burst far beyond max_lag: the lag check fires and resolves once the worker caught up
        burst = 30_000
        for i in range(burst):
            prod.send_prediction(**event(1200 + i, rows[i % 1300], int(time.time() * 1000)))
        prod.flush()
        wait_metric(worker, firing("consumer_lag", app_id), timeout_s=30, what="lag fires")
        m = wait_metric(worker, lambda m: cleared("consumer_lag", app_id)(m)
                        and value(m, "glassbox_events_total", model="m") == 1200 + burst
                        and value(m, "glassbox_consumer_lag_total") == 0,  # the gauge is sampled: it may trail
                        timeout_s=60, what="lag resolves")
        # the counters add up exactly
        assert value(m, "glassbox_messages_total", topic="predictions") == 1400 + burst
        assert total(m, "glassbox_deadletters_total", topic="predictions") == 200
        assert value(m, "glassbox_deadletters_total", topic="predictions", reason="bad_json") == 200
        assert value(m, "glassbox_messages_total", topic="labels") == 100
        assert value(m, "glassbox_step_seconds_count", topic="predictions") >= 1
        assert value(m, "glassbox_consumer_lag_total") == 0
        assert total(m, "glassbox_consumer_lag") == 0
        assert value(m, "process_resident_memory_bytes") > 10e6
        assert value(m, "glassbox_seconds_since_last_event") < 60
    alerts = [a for a in read_json(kafka_bootstrap, f"{topic_prefix}alerts") if a["monitor"] == "pipeline"]
    seen = {(a["feature"], a["status"]) for a in alerts}
    for check in ("stale_stream", "deadletter_rate", "event_time_skew", "consumer_lag"):
        assert {(check, "firing"), (check, "resolved")} <= seen, (check, seen)
    assert {("late_label_rate", "firing"), ("label_coverage", "firing")} <= seen, seen
    for a in alerts:
        owner = "m" if a["feature"] in ("late_label_rate", "label_coverage") else app_id
        assert a["model"] == owner and a["fingerprint"] == fingerprint(owner, "pipeline", a["feature"])
        assert a["schema"] == "glassbox.alert/v1" and a["severity"] == "critical"
        assert a["threshold_kind"] == "static" and a["threshold"] is not None and a["summary"]
        assert a["source"]["worker"] and a["event_time"] > T0
    firsts = [a for a in alerts if a["feature"] == "deadletter_rate" and a["status"] == "firing"]
    assert firsts[0]["value"] > 0.2 and "dead-lettered" in firsts[0]["summary"]


# in process: the checks and their hysteresis ------------------------------------------------------------------

def run(h: PipelineHealth, samples: list[HealthSample]) -> list[tuple[float, str, str, str]]:
    return [(s.now, a["feature"], a["model"], a["status"]) for s in samples for a in h.evaluate(s)]


def test_rate_checks_need_enough_data_and_use_the_window() -> None:
    cfg = PipelineHealthConfig(window_s=10, min_messages=100, max_deadletter_rate=0.1, resolve_after=2,
                               stale_after_s=None)
    h = PipelineHealth(cfg, name="w")
    s = [
        HealthSample(now=0, last_event_at=0, messages=0, deadletters=0),
        HealthSample(now=5, last_event_at=5, messages=50, deadletters=50),  # 100% but only 50 messages
        HealthSample(now=10, last_event_at=10, messages=150, deadletters=60),  # 40% of 150: fires
        HealthSample(now=15, last_event_at=15, messages=1150, deadletters=60),  # window 5..15: 1% : clear 1
        HealthSample(now=20, last_event_at=20, messages=2150, deadletters=61),  # clear 2: resolves
    ]
    assert run(h, s) == [(10, "deadletter_rate", "w", "firing"), (20, "deadletter_rate", "w", "resolved")]
    assert h.results[("deadletter_rate", "w")].value == pytest.approx(1 / 2000)


def test_every_check_fires_and_resolves_with_hysteresis() -> None:
    cfg = PipelineHealthConfig(stale_after_s=30, max_lag=1000, max_event_skew_s=60, max_step_s=2,
                               max_deadletter_rate=None, max_late_label_rate=0.2, min_label_coverage=0.5,
                               min_messages=10, window_s=100, fire_after=2, resolve_after=2)
    h = PipelineHealth(cfg, name="w")
    bad = dict(lag=5000, skew_s=600.0, step_s=5.0)
    good = dict(lag=10, skew_s=1.0, step_s=0.01)
    j_bad = {"m": {"matched": 10, "expired_predictions": 90, "unmatched_labels": 40}}
    j_good = {"m": {"matched": 1000, "expired_predictions": 100, "unmatched_labels": 41}}
    zero = {"m": {"matched": 0, "expired_predictions": 0, "unmatched_labels": 0}}
    seq = [HealthSample(now=99, last_event_at=99, joins=zero, **good),
           HealthSample(now=100, last_event_at=50, joins=j_bad, **bad),  # one failing check: not yet
           HealthSample(now=101, last_event_at=50, joins=j_bad, **bad),  # two: everything fires
           HealthSample(now=102, last_event_at=102, joins=j_good, **good),
           HealthSample(now=300, last_event_at=300, joins=j_good, **good)]
    got = run(h, seq)
    fired = {(c, m) for t, c, m, s in got if s == "firing" and t == 101}
    assert fired == {("stale_stream", "w"), ("consumer_lag", "w"), ("event_time_skew", "w"), ("step_latency", "w"),
                     ("late_label_rate", "m"), ("label_coverage", "m")}
    # at 102 the window still holds the bad counts; at 300 the rates have no data left (no verdict)
    resolved = {(c, m) for t, c, m, s in got if s == "resolved"}
    assert {("stale_stream", "w"), ("consumer_lag", "w"), ("event_time_skew", "w"), ("step_latency", "w")} <= resolved
    assert not [g for g in got if g[0] in (99, 100)]


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLASSBOX_HEALTH__STALE_AFTER_S", "7.5")
    monkeypatch.setenv("GLASSBOX_HEALTH__MAX_LAG", "null")
    cfg = Settings().health
    assert cfg.stale_after_s == 7.5 and cfg.max_lag is None and cfg.max_deadletter_rate == 0.05


def test_lag_and_model_label_cardinality() -> None:
    assigned = [("p", 0), ("p", 1), ("p", 2)]
    hw = {("p", 0): 100, ("p", 1): 50}
    lags = compute_lag(assigned, lambda t, p: hw.get((t, p)), {("p", 0): 90}, lambda t, p: 20)
    assert lags == {("p", 0): 10, ("p", 1): 30}
    m = WorkerMetrics(max_models=3)
    assert [m.model_label(f"m{i}") for i in range(5)] == ["m0", "m1", "m2", OTHER, OTHER]
    assert m.set_lag(lags) == 40 and m.set_lag({("p", 0): 1}) == 1
    text = m.render()[0].decode()
    assert 'glassbox_consumer_lag{partition="0",topic="p"} 1.0' in text and 'partition="1"' not in text


def test_pipeline_alerts_are_valid_alert_records() -> None:
    h = PipelineHealth(PipelineHealthConfig(stale_after_s=1, resolve_after=1), name="grp", worker="host:1")
    [a] = h.evaluate(HealthSample(now=10.0, last_event_at=0.0))
    assert orjson.loads(orjson.dumps(a)) == a
    assert (a["monitor"], a["feature"], a["statistic"], a["status"]) == ("pipeline", "stale_stream", "event_gap",
                                                                         "firing")
    assert a["value"] == 10.0 and a["threshold"] == 1.0 and a["event_time"] == 10_000
    [b] = h.evaluate(HealthSample(now=11.0, last_event_at=10.5))
    assert b["status"] == "resolved" and b["fingerprint"] == a["fingerprint"] and b["alert_id"] != a["alert_id"]

"""The durable label join: predictions whose worker was SIGKILLed still join labels that arrive after the restart.

The expected outcome is the same pipeline fed, in process and without a crash, the very records the workers
consumed (read back from the predictions and labels topics): same joined outcomes, same concept-drift and
performance alerts.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from stream.pipeline.pipeline import RawMessage
from stream.producer import Producer
from stream.settings import Settings
from stream.worker.agents import build_pipeline
from tests.kafka_util import WorkerProcess, read_topic
from tests.synth import FEATURES, frame

T0 = 1_700_000_000_000
QUIET = {"GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_EVIDENTLY__ENABLED": "false",
         "GLASSBOX_ATTRIBUTION__ENABLED": "false"}
N, AT = 8000, 4000


def raw(records: list) -> list[RawMessage]:
    return [RawMessage(r.topic, r.partition, r.offset, r.value, r.timestamp, r.key) for r in records]


def outcome_alerts(bootstrap: str, prefix: str) -> list[dict]:
    """Distinct alerts raised from outcomes (repeats of an alert_id are at-least-once duplicates)."""
    by_id = {}
    for r in read_topic(bootstrap, f"{prefix}alerts"):
        a = orjson.loads(r.value)
        if a["monitor"] != "pipeline":
            by_id[a["alert_id"]] = a
    return sorted(by_id.values(), key=lambda a: a["alert_id"])


def last_state(bootstrap: str, prefix: str, model: str) -> dict:
    recs = [r for r in read_topic(bootstrap, f"{prefix}state", idle_s=0.5) if r.key == model.encode()]
    return orjson.loads(recs[-1].value) if recs else {}


@pytest.mark.system
@pytest.mark.timeout(300)
def test_labels_after_a_sigkill_join_the_predictions_of_the_killed_worker(kafka_bootstrap: str, topic_prefix: str,
                                                                          tmp_path: Path) -> None:
    ref = tmp_path / "reference.parquet"
    frame(8000, seed=1).drop(columns=["score"]).to_parquet(ref)
    events = frame(N, seed=3, scenario="concept_flip", at=AT)
    ids = [f"p{i}" for i in range(N)]
    models = {"m": str(ref)}

    def worker(tag: str) -> WorkerProcess:
        return WorkerProcess(kafka_bootstrap, topic_prefix, app_id=f"{topic_prefix}join", home=tmp_path / tag,
                             models=models, audit=False, extra_env=QUIET).start()

    first = worker("first")
    try:
        first.wait_ready()
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for lo in range(0, N, 400):
                part = events.iloc[lo:lo + 400]
                prod.send_prediction_batch(
                    model="m", prediction_ids=ids[lo:lo + 400], timestamps=[T0 + i * 10 for i in range(lo, lo + 400)],
                    features={c: [None if v != v else v for v in part[c].tolist()] for c in FEATURES},
                    predictions=part["prediction"].tolist())
        first.wait_for(lambda s: s["events"] == N, timeout_s=90)
        deadline = time.monotonic() + 30
        while last_state(kafka_bootstrap, topic_prefix, "m").get("monitor", {}).get("events") != N:
            assert time.monotonic() < deadline, "the state of all predictions was never written"
            time.sleep(0.5)
    finally:
        first.kill()  # SIGKILL: the pending predictions were only in its memory and its journal
    t_kill = time.monotonic()
    second = worker("second")
    try:
        second.wait_ready()
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for i, label in enumerate(events["label"].tolist()):
                prod.send_label(prediction_id=ids[i], model="m", label=int(label), timestamp=T0 + i * 10 + 5)
        stats = second.wait_for(lambda s: s["labels"] == N, timeout_s=120)
        restart_s = time.monotonic() - t_kill
        second.wait_for(lambda s: s["per_model"].get("m", {}).get("outcomes", 0) >= N, timeout_s=10)
        stats = second.stats() or stats
    finally:
        second.stop()
    join = stats["joins"]["m"]
    assert join["matched"] == N and join["unmatched_labels"] == 0 and join["pending_labels"] == 0, join

    settings = Settings(home=tmp_path / "base", worker={"models": models}, mlflow={"enabled": False})
    pipe = build_pipeline(settings)
    expected = pipe.on_predictions(raw(read_topic(kafka_bootstrap, f"{topic_prefix}predictions"))).alerts
    expected += pipe.on_labels(raw(read_topic(kafka_bootstrap, f"{topic_prefix}labels"))).alerts
    assert pipe.counters.per_model["m"]["outcomes"] == N
    live = outcome_alerts(kafka_bootstrap, topic_prefix)
    from_outcomes = [a for a in expected if a["monitor"] not in ("data_drift", "prediction_drift")]
    assert from_outcomes, f"the scenario must raise concept-drift or performance alerts: {expected}"
    assert live == sorted(expected, key=lambda a: a["alert_id"])
    journal = read_topic(kafka_bootstrap, f"{topic_prefix}joinlog")
    size = {k: sum(len(r.value) + len(r.key or b"") for r in journal if orjson.loads(r.value)["k"] == k)
            for k in ("p", "l")}
    restores = [ln.split("glassbox.state: ")[1] for ln in second.log().splitlines() if "glassbox.state: restored" in ln]
    print(f"\nrestores of the second worker: {restores}")
    print(f"\nSIGKILL then labels: {N} outcomes joined, {len(live)} alerts as uninterrupted "
          f"({sorted({a['monitor'] for a in live})}); kill -> all labels consumed {restart_s:.1f} s; joinlog "
          f"{len(journal)} records, {size['p'] * 1000 / N:.0f} bytes per 1,000 predictions, "
          f"{size['l'] * 1000 / N:.0f} per 1,000 labels")


@pytest.mark.system
@pytest.mark.timeout(400)
def test_labels_after_a_rebalance_join_on_the_worker_that_took_the_partition(kafka_bootstrap: str,
                                                                              topic_prefix: str,
                                                                              tmp_path: Path) -> None:
    ref = tmp_path / "reference.parquet"
    frame(8000, seed=1).drop(columns=["score"]).to_parquet(ref)
    names = ["m0", "m1", "m2", "m3", "m4", "m5"]
    models = {m: str(ref) for m in names}
    n = 3000
    frames = {m: frame(n, seed=20 + k, scenario="concept_flip", at=n // 2) for k, m in enumerate(names)}

    def worker(tag: str) -> WorkerProcess:
        return WorkerProcess(kafka_bootstrap, topic_prefix, app_id=f"{topic_prefix}moves", home=tmp_path / tag,
                             models=models, audit=False, extra_env=QUIET).start()

    a = worker("a")
    b = None
    try:
        a.wait_ready()
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for m, f in frames.items():
                for lo in range(0, n, 500):
                    part = f.iloc[lo:lo + 500]
                    prod.send_prediction_batch(
                        model=m, prediction_ids=[f"{m}-{i}" for i in range(lo, lo + 500)],
                        timestamps=[T0 + i * 10 for i in range(lo, lo + 500)],
                        features={c: [None if v != v else v for v in part[c].tolist()] for c in FEATURES},
                        predictions=part["prediction"].tolist())
        a.wait_for(lambda s: s["events"] == n * len(names), timeout_s=90)
        deadline = time.monotonic() + 30
        while any(last_state(kafka_bootstrap, topic_prefix, m).get("monitor", {}).get("events") != n for m in names):
            assert time.monotonic() < deadline, "the states were never written"
            time.sleep(0.5)
        b = worker("b")  # joins: the group rebalances and b takes partitions (and their pending predictions) over
        b.wait_ready()
        for w in (a, b):
            w.wait_for(lambda s: 0 < len([p for p in s["assignment"] if "labels" in p]) < 4, timeout_s=60)
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for m, f in frames.items():
                for i, label in enumerate(f["label"].tolist()):
                    prod.send_label(prediction_id=f"{m}-{i}", model=m, label=int(label), timestamp=T0 + i * 10 + 5)
        deadline = time.monotonic() + 120
        while True:
            stats = [w.stats() or {} for w in (a, b)]
            if sum(s.get("labels", 0) for s in stats) >= n * len(names) or time.monotonic() > deadline:
                break
            time.sleep(1)
        joins = {m: j for s in stats for m, j in s.get("joins", {}).items() if j["matched"] or j["pending_labels"]}
    finally:
        a.stop()
        if b is not None:
            b.stop()
    assert {m: joins[m]["matched"] for m in names} == dict.fromkeys(names, n), joins
    assert all(s.get("joins") for s in stats), "both workers joined labels"
    settings = Settings(home=tmp_path / "base", worker={"models": models}, mlflow={"enabled": False})
    pipe = build_pipeline(settings)
    expected = pipe.on_predictions(raw(read_topic(kafka_bootstrap, f"{topic_prefix}predictions"))).alerts
    expected += pipe.on_labels(raw(read_topic(kafka_bootstrap, f"{topic_prefix}labels"))).alerts
    assert any(a["monitor"] in ("concept_drift", "performance") for a in expected)
    assert outcome_alerts(kafka_bootstrap, topic_prefix) == sorted(expected, key=lambda a: a["alert_id"])

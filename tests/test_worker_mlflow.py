"""The live worker with a registered reference: detection, an MLflow monitoring run, Evidently snapshots,
and alerts whose links resolve to files that exist."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stream.evidence.monitoring_run import MonitoringRun, local_path
from stream.evidence.window_logger import WindowLogger
from stream.evidence.window_spool import read_window_records
from stream.producer import Producer
from tests.kafka_util import WorkerProcess, read_json

T0 = 1_700_000_000_000


@pytest.mark.system
@pytest.mark.timeout(300)
def test_worker_with_registered_reference(kafka_bootstrap: str, topic_prefix: str, tmp_path) -> None:
    from mlflow import MlflowClient

    from stream.demo.training import make_dataset, train_and_register
    from stream.evidence.reference import load_reference

    home = tmp_path / "home"
    uri = f"sqlite:///{home}/mlflow.db"
    home.mkdir()
    train_and_register(uri, "churn", seed=3, alias="champion", n_rows=2400,
                       artifact_root=str(home / "mlartifacts"))
    ref = load_reference("models:/churn@champion", tracking_uri=uri, load_model=True)
    n, at = 8000, 4000
    events = make_dataset(n, seed=11)
    shifted = make_dataset(n, seed=11, shift={"monthly_charges": 1.5})
    events.loc[at:, "monthly_charges"] = shifted.loc[at:, "monthly_charges"]
    events["prediction"] = ref.model.predict(events[ref.features])
    with WorkerProcess(kafka_bootstrap, topic_prefix, app_id=f"{topic_prefix}ml", home=home,
                       models={"churn": "models:/churn@champion"}, audit=False,
                       extra_env={"GLASSBOX_EVIDENTLY__EVERY_N_WINDOWS": "3",
                                  "GLASSBOX_EVIDENTLY__SAMPLE_SIZE": "500",
                                  "GLASSBOX_EVIDENTLY__MAX_PENDING": "8",
                                  "GLASSBOX_EVIDENTLY__RENDER_DUTY": "1",  # every due report (no CPU budget)
                                  "GLASSBOX_MLFLOW__WINDOW_ARTIFACT_INTERVAL_S": "1",
                                  "GLASSBOX_DETECTION__WINDOW": "500"}) as worker:
        worker.wait_ready(timeout_s=90)
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for lo in range(0, n, 250):
                if lo == at:  # let SHAP catch up on the clean windows, so alerts carry movers
                    prod.flush()
                    worker.wait_for(lambda s: s["events"] == at and s["attribution"]["pending"] == 0, timeout_s=120)
                part = events.iloc[lo:lo + 250]
                prod.send_prediction_batch(
                    model="churn", prediction_ids=[f"c{i}" for i in part.index],
                    timestamps=[T0 + i * 100 for i in part.index],
                    features={c: part[c].tolist() for c in ref.features}, predictions=part["prediction"].tolist())
        worker.wait_for(lambda s: s["events"] == n, timeout_s=120)
        worker.wait_for(lambda s: s.get("snapshots", {}).get("completed", 0) >= 3, timeout_s=120)
        shap = worker.wait_for(lambda s: s["attribution"]["pending"] == 0, timeout_s=120)["attribution"]
        assert shap["models"] == ["churn"] and shap["failed"] == 0
        running = MlflowClient(tracking_uri=uri).search_runs(
            [MlflowClient(tracking_uri=uri).get_experiment_by_name("glassbox-monitoring").experiment_id])
        assert json.loads(running[0].data.tags["source.kafka_offsets"]), "offsets recorded as the worker goes"
    assert worker.proc.returncode == 0, worker.log()[-3000:]

    alerts = read_json(kafka_bootstrap, f"{topic_prefix}alerts")
    drift = [a for a in alerts if a["monitor"] == "data_drift" and a["status"] == "firing"]
    assert [a["feature"] for a in drift] == ["monthly_charges"], [(a["monitor"], a["feature"]) for a in alerts]
    first = drift[0]
    assert first["window"]["start"] >= T0 + at * 100 - 500 * 100, "no alert before the change"
    assert first["window"]["end"] <= T0 + (at + 3 * 500) * 100, "detected within 3 windows"
    assert first["evidence"]["reference_digest"] == ref.info.digest and first["evidence"]["git_commit"]
    movers = first["evidence"]["shap_movers"]  # SHAP runs off the hot path: the latest explained window's
    assert movers["window"] <= first["window"]["index"]
    assert {m["feature"] for m in movers["movers"]} <= set(ref.features)

    # the monitoring run holds window metrics, the alerts table and the snapshots the alert links to
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("glassbox-monitoring")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert "churn/predictions/columns/monthly_charges/value" in run.data.metrics
    assert "churn/predictions/drift_share" in run.data.metrics
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"alerts.json", "alerts.jsonl", "snapshots", "windows"} <= artifacts
    records = list(read_window_records(local_path(run.info.artifact_uri), "churn"))  # every window, in full
    assert [r["index"] for r in records] == list(range(n // 500)) and "wasserstein" in records[0]["columns"][
        "monthly_charges"]
    m = run.data.metrics
    assert m["windows"] == n // 500 and m["windows_logged"] + m["windows_thinned"] == n // 500
    assert run.data.tags["windows_thinned"] == str(int(m["windows_thinned"]))
    # the Kafka input it consumed: first and last offset per partition, every message of the stream
    offsets = json.loads(run.data.tags["source.kafka_offsets"])
    assert offsets and all(k.startswith(f"{topic_prefix}predictions:") for k in offsets)
    assert sum(last - first + 1 for first, last in offsets.values()) == n // 250
    for key in ("report", "mlflow_run", "dashboard"):
        path = local_path(first["links"][key])
        assert path is not None and path.exists(), (key, first["links"][key])
    snap = json.loads(local_path(first["links"]["report_json"]).read_text())
    assert "monthly_charges" in snap["glassbox"]["drifted_columns"]


def window_record(i: int, n_cols: int = 25, drift: bool = False) -> dict:
    cols = {f"x{j}": {"wasserstein": 0.01 * j, "psi": 0.02, "missing_rate": 0.001 * j, "out_of_range_rate": 0.0,
                      "type_error_rate": 0.0, "events": 1000, "statistic": "wasserstein", "value": 0.01 * j + i,
                      "threshold": 0.2, "drift": drift and j == 0, "quality_failed": 0} for j in range(n_cols)}
    return {"kind": "predictions", "index": i, "start": i * 1000, "end": i * 1000 + 999, "events": 1000,
            "tested": True, "columns": cols, "drifted": ["x0"] if drift else [], "quality": {}}


def test_window_logger_thins_a_fast_stream_keeps_alert_windows_and_loses_no_record(tmp_path) -> None:
    """Windows closing faster than MLflow takes them: the metrics are thinned (alert windows and the latest
    kept, the rest evenly), the queue stays bounded, the count is recorded, and every record is in the
    ``windows/`` artifact; a replay (``log_windows``) logs every window."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run = MonitoringRun(uri, artifact_root=tmp_path / "art", system_metrics=False).start()
    wl = WindowLogger(run, duty=0.25, max_metrics=400, max_pending=100, artifact_interval_s=0.2)
    n, alert_at = 600, 333
    most_pending = 0
    for i in range(0, n, 3):
        recs = [window_record(k, drift=k == alert_at) for k in range(i, i + 3)]
        wl.add("m", recs, keep={("predictions", alert_at)} if alert_at in range(i, i + 3) else ())
        most_pending = max(most_pending, wl.stats()["pending"])
        time.sleep(0.005)
    wl.close()
    stats = wl.stats()
    run.finish()
    assert most_pending <= 100 and stats["pending"] == 0 and stats["received"] == n
    assert 0 < stats["thinned"] < n and stats["logged"] + stats["thinned"] == n
    hist = run.client.get_metric_history(run.run_id, "m/predictions/columns/x3/value")
    steps = [h.step for h in hist]
    assert alert_at in steps and n - 1 in steps and len(steps) == stats["logged"]
    assert {h.step: h.value for h in hist}[alert_at] == pytest.approx(0.03 + alert_at)
    assert run.client.get_metric_history(run.run_id, "m/predictions/columns/x0/drift")[0].value in (0.0, 1.0)
    data = run.client.get_run(run.run_id).data
    assert data.tags["windows_thinned"] == str(stats["thinned"]) and data.metrics["windows"] == n
    parts = {f.path for f in run.client.list_artifacts(run.run_id, "windows/m")}
    assert len(parts) >= 2, parts  # uploaded periodically, then the rest at the end
    assert [r["index"] for r in read_window_records(local_path(run.artifact_uri), "m")] == list(range(n))

    replay = MonitoringRun(uri, artifact_root=tmp_path / "art", kind="replay", system_metrics=False).start()
    replay.log_windows("m", [window_record(k) for k in range(40)])
    replay.finish()
    hist = replay.client.get_metric_history(replay.run_id, "m/predictions/drift_share")
    assert [h.step for h in hist] == list(range(40)) and replay.windows_thinned == 0
    assert len(replay.client.get_run(replay.run_id).data.metrics) < 3 * 25 + 20  # compact, not 13 per column


def test_a_long_replay_logs_metrics_within_its_budget_and_every_record(tmp_path) -> None:
    """A replay's window metrics stay within the metric budget (MLflow's store takes ~1 ms a value): the alert
    window and the last are kept, the rest evenly spaced and counted; every record is in ``windows/``."""
    from types import SimpleNamespace

    from stream.evidence.replay_run import log_replay

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    n, alert_at = 120, 77
    result = SimpleNamespace(
        windows=[window_record(k, drift=k == alert_at) for k in range(n)],
        alerts=[{"model": "m", "monitor": "data_drift", "window": {"index": alert_at}}], summary={"model": "m"})
    run = MonitoringRun(uri, artifact_root=tmp_path / "art", kind="replay", system_metrics=False).start()
    logged = log_replay(run, result, budget=20 * (3 * 25 + 9))
    run.finish()
    steps = [h.step for h in run.client.get_metric_history(run.run_id, "m/predictions/columns/x3/value")]
    assert len(steps) == 20 and alert_at in steps and n - 1 in steps and run.windows_thinned == n - 20
    assert 0 < logged <= 20 * (3 * 25 + 9)
    assert run.client.get_run(run.run_id).data.tags["windows_thinned"] == str(n - 20)
    assert [r["index"] for r in read_window_records(local_path(run.artifact_uri), "m")] == list(range(n))


QUICK = {"GLASSBOX_EVIDENTLY__ENABLED": "false", "GLASSBOX_ATTRIBUTION__ENABLED": "false",
         "GLASSBOX_MLFLOW__WINDOW_ARTIFACT_INTERVAL_S": "0.5"}  # the offsets tests need no reports


def _offsets_setup(tmp_path: Path) -> tuple[Path, Path]:
    """The worker's home and the model's reference (no score column) of the offsets tests."""
    import synth

    ref = tmp_path / "ref.parquet"
    synth.frame(5000, seed=1).drop(columns=["score"]).to_parquet(ref)
    return tmp_path / "home", ref


@pytest.mark.system
@pytest.mark.timeout(300)
def test_worker_run_records_the_kafka_offsets_it_consumed(kafka_bootstrap: str, topic_prefix: str, tmp_path) -> None:
    """``source.kafka_offsets``: first and last offset per predictions partition, from events and dead letters,
    set while the worker runs and final when it stops: every message produced, from offset 0."""
    import synth
    from mlflow import MlflowClient

    home, ref = _offsets_setup(tmp_path)
    df = synth.frame(4000, seed=2)
    uri = f"sqlite:///{home}/mlflow.db"

    def produce(prod: Producer, lo: int, hi: int) -> None:
        for a in range(lo, hi, 200):
            c = df.iloc[a:a + 200]
            prod.send_prediction_batch(
                model="m", prediction_ids=[f"p{i}" for i in range(a, a + len(c))],
                timestamps=[T0 + i * 100 for i in range(a, a + len(c))],
                features={k: [None if v != v else v for v in c[k].tolist()] for k in synth.FEATURES},
                predictions=c["prediction"].tolist())

    with WorkerProcess(kafka_bootstrap, topic_prefix, app_id=f"{topic_prefix}offsets", home=home,
                       models={"m": str(ref)}, audit=False, extra_env=QUICK) as worker:
        worker.wait_ready(timeout_s=90)
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            produce(prod, 0, 2000)
            for key in ("a", "b", "c"):  # dead letters, on whichever partitions these keys hash to
                prod.send_raw(prod.predictions_topic, b"not json", key=key)
        worker.wait_for(lambda s: s["events"] == 2000 and s["deadlettered"] == 3, timeout_s=60)
        time.sleep(1.0)
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            produce(prod, 2000, 4000)
        worker.wait_for(lambda s: s["events"] == 4000, timeout_s=60)
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("glassbox-monitoring")
        deadline = time.monotonic() + 30
        while True:  # recorded as it goes (at most every 0.5 s, when a step arrives)
            (running,) = client.search_runs([exp.experiment_id])
            seen = json.loads(running.data.tags.get("source.kafka_offsets", "{}"))
            if seen or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert running.info.status == "RUNNING" and seen, running.data.tags
    assert worker.proc.returncode == 0, worker.log()[-3000:]

    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    final = json.loads(run.data.tags["source.kafka_offsets"])
    assert all(k.startswith(f"{topic_prefix}predictions:") for k in final), final
    assert all(first == 0 for first, _ in final.values()), final
    assert sum(last - first + 1 for first, last in final.values()) == 4000 // 200 + 3  # every message


@pytest.mark.system
@pytest.mark.timeout(300)
def test_worker_run_records_the_labels_offsets_it_consumed(kafka_bootstrap: str, topic_prefix: str, tmp_path) -> None:
    """``source.kafka_offsets`` holds the labels topic's partitions too: first and last offset of the label
    messages joined and dead-lettered, as the predictions': every label message, from offset 0."""
    import synth
    from mlflow import MlflowClient

    from tests.kafka_util import read_topic

    home, ref = _offsets_setup(tmp_path)
    df = synth.frame(1000, seed=2)
    with WorkerProcess(kafka_bootstrap, topic_prefix, app_id=f"{topic_prefix}labeloffsets", home=home,
                       models={"m": str(ref)}, audit=False, extra_env=QUICK) as worker:
        worker.wait_ready(timeout_s=90)
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            prod.send_prediction_batch(
                model="m", prediction_ids=[f"p{i}" for i in range(len(df))],
                timestamps=[T0 + i * 100 for i in range(len(df))],
                features={k: [None if v != v else v for v in df[k].tolist()] for k in synth.FEATURES},
                predictions=df["prediction"].tolist())
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix, batch_events=1) as prod:  # a message per label
            for i in range(0, len(df), 10):
                prod.send_label(prediction_id=f"p{i}", model="m", label=int(df["label"][i]), timestamp=T0 + i * 100)
            for key in ("a", "b", "c"):  # dead letters of the labels topic
                prod.send_raw(prod.labels_topic, b"not json", key=key)
        worker.wait_for(lambda s: s["labels"] == 100 and s["deadlettered"] == 3, timeout_s=60)
    assert worker.proc.returncode == 0, worker.log()[-3000:]

    expected: dict[str, list[int]] = {}
    for rec in read_topic(kafka_bootstrap, f"{topic_prefix}labels"):
        span = expected.setdefault(f"{topic_prefix}labels:{rec.partition}", [rec.offset, rec.offset])
        span[0], span[1] = min(span[0], rec.offset), max(span[1], rec.offset)
    client = MlflowClient(tracking_uri=f"sqlite:///{home}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("glassbox-monitoring").experiment_id])
    final = json.loads(run.data.tags["source.kafka_offsets"])
    assert {k: v for k, v in final.items() if k.startswith(f"{topic_prefix}labels:")} == expected
    assert all(first == 0 for first, _ in expected.values()) and sum(b - a + 1 for a, b in expected.values()) == 103
    assert any(k.startswith(f"{topic_prefix}predictions:") for k in final), final

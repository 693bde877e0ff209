"""The live worker with a registered reference: detection, an MLflow monitoring run, Evidently snapshots,
and alerts whose links resolve to files that exist."""

from __future__ import annotations

import json

import pytest

from stream.monitoring_run import local_path
from stream.producer import Producer
from tests.kafka_util import WorkerProcess, read_json

T0 = 1_700_000_000_000


@pytest.mark.timeout(300)
def test_worker_with_registered_reference(kafka_bootstrap: str, topic_prefix: str, tmp_path) -> None:
    from mlflow import MlflowClient

    from examples.train_reference import make_dataset, train_and_register
    from stream.reference import load_reference

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
    assert any(k.startswith("churn/") for k in run.data.metrics)
    artifacts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"alerts.json", "alerts.jsonl", "snapshots"} <= artifacts
    for key in ("report", "mlflow_run", "dashboard"):
        path = local_path(first["links"][key])
        assert path is not None and path.exists(), (key, first["links"][key])
    snap = json.loads(local_path(first["links"]["report_json"]).read_text())
    assert "monthly_charges" in snap["glassbox"]["drifted_columns"]

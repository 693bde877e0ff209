"""The glass box on a real sqlite MLflow store: training + gate, reference logging/loading, monitoring runs,
snapshots and alert links, reproducible replays. No Kafka: the core is driven by the file replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient

from stream.evidence import lineage
from stream.evidence.alert_links import AlertContext, enrich_alert
from stream.evidence.monitoring_run import MonitoringRun, local_path
from stream.evidence.reference import ReferenceNotFound, default_cache, load_reference, log_reference
from stream.evidence.replay_run import log_replay
from stream.evidence.snapshots import SnapshotService, project_id_for

REPO = Path(__file__).resolve().parents[1]


from stream.demo import training as tr  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("glassbox")
    uri = f"sqlite:///{root}/mlflow.db"
    result = tr.train_and_register(uri, "churn", seed=7, n_rows=2400, artifact_root=root / "mlartifacts")
    return {"root": root, "uri": uri, "artifacts": root / "mlartifacts", "trained": result,
            "client": MlflowClient(uri)}


# ------------------------------------------------------------------------------------------------ training
def test_training_registers_a_gated_model_with_lineage_reference_and_alias(store: dict[str, Any]) -> None:
    r, client = store["trained"], store["client"]
    assert r.version == "1" and r.alias == "champion"
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    run = client.get_run(r.run_id)
    tags, metrics = run.data.tags, run.data.metrics
    for t in ("project", "env", "user", "instance_type", "uv_lock_sha256"):
        assert tags[t], t
    if lineage.git_commit(REPO):
        assert tags["git_commit"] == lineage.git_commit(REPO)
    assert tags["gate"] == "passed"
    assert run.data.params["seed"] == "7" and run.data.params["preprocess.numeric"] == "StandardScaler"
    assert metrics["roc_auc"] >= 0.75 and 0 < metrics["accuracy_score"] <= 1  # evaluation metrics
    assert metrics["run_time_s"] > 0 and metrics["system/process_cpu_seconds"] > 0
    assert {k for k in metrics if k.startswith("importance/")} == {f"importance/{f}" for f in tr.FEATURES}
    contexts = {i.dataset.name: (i.dataset.digest, [t.value for t in i.tags]) for i in run.inputs.dataset_inputs}
    assert contexts["churn-train"][1] == ["training"] and contexts["churn-test"][1] == ["evaluation"]
    assert contexts["churn-reference"] == (r.reference.digest, ["reference"])
    # the versioned data files are artifacts, named by the digest their dataset input carries
    files = {Path(f.path).name for f in client.list_artifacts(r.run_id, "datasets")}
    assert f"churn-train-{contexts['churn-train'][0]}.parquet" in files
    ref_files = {Path(f.path).name for f in client.list_artifacts(r.run_id, "reference")}
    assert ref_files == {"data.parquet", "profile.json", "reference.json", "attributions.json"}
    mv = client.get_model_version("churn", "1")
    assert mv.tags["glassbox.reference.digest"] == r.reference.digest
    local = local_path(run.info.artifact_uri) / "reference" / "data.parquet"
    assert lineage.short_digest(local) == r.reference.digest


def test_system_metrics_are_sampled_when_psutil_is_installed(store: dict[str, Any]) -> None:
    pytest.importorskip("psutil", reason="MLflow samples system metrics with psutil (not in the lock yet)")
    metrics = store["client"].get_run(store["trained"].run_id).data.metrics
    assert any(k.startswith("system/cpu") for k in metrics)


def test_a_model_below_the_gate_is_not_registered(store: dict[str, Any]) -> None:
    client = store["client"]
    with pytest.raises(tr.GateFailed, match=r"not registered: roc_auc = 0\.5000 is below the gate 0\.75") as err:
        tr.train_and_register(store["uri"], "churn", estimator="dummy", n_rows=1200,
                              artifact_root=store["artifacts"])
    assert [str(v.version) for v in client.search_model_versions("name='churn'")] == ["1"]
    assert client.get_run(err.value.run_id).data.tags["gate"] == "failed"
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"


# ---------------------------------------------------------------------------------------------- reference
def test_reference_loads_by_alias_and_version_cached_per_version(store: dict[str, Any]) -> None:
    default_cache.clear()
    by_alias = load_reference("models:/churn@champion", tracking_uri=store["uri"])
    assert by_alias.info.model_version == "1" and by_alias.info.digest == store["trained"].reference.digest
    assert by_alias.features == tr.FEATURES and by_alias.task == "binary"
    assert len(by_alias.data) == store["trained"].reference.rows
    assert by_alias.model.predict(by_alias.data[tr.FEATURES].head(5)).shape == (5,)
    again = load_reference("models:/churn/1", tracking_uri=store["uri"])
    assert again is by_alias  # one load per model version


def _register_copy(store: dict[str, Any]) -> str:
    client = store["client"]
    src = client.get_model_version("churn", "1")
    run = client.create_run(client.get_experiment_by_name("glassbox-training").experiment_id)
    client.set_terminated(run.info.run_id)
    mv = client.create_model_version("churn", src.source, run_id=run.info.run_id)
    return mv.version


def test_missing_and_incomplete_references_name_what_is_missing(store: dict[str, Any]) -> None:
    version = _register_copy(store)
    uri = f"models:/churn/{version}"
    with pytest.raises(ReferenceNotFound) as err:
        load_reference(uri, tracking_uri=store["uri"])
    msg = str(err.value)
    assert msg.startswith(f"{uri}: no reference in run ")
    for part in ("reference data (reference/data.parquet)", "reference profile (reference/profile.json)",
                 "glassbox reference log --model-uri"):
        assert part in msg
    data = load_reference("models:/churn/1", tracking_uri=store["uri"]).data
    log_reference(uri, data, tracking_uri=store["uri"], targets="churn", scores=["score"],
                  categorical=tr.CATEGORICAL, features=tr.FEATURES)
    assert load_reference(uri, tracking_uri=store["uri"], cache=None).info.rows == len(data)
    run_id = store["client"].get_model_version("churn", version).run_id
    art = local_path(store["client"].get_run(run_id).info.artifact_uri)
    (art / "reference" / "profile.json").unlink()
    with pytest.raises(ReferenceNotFound, match=r"incomplete reference .*missing reference profile "
                                                r"\(reference/profile\.json\); attach one"):
        load_reference(uri, tracking_uri=store["uri"], cache=None)
    with pytest.raises(ReferenceNotFound, match="no alias 'nope'"):
        load_reference("models:/churn@nope", tracking_uri=store["uri"])


def test_cli_reference_log_and_show(store: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stream.cli.reference import reference_app

    version = _register_copy(store)
    ref = load_reference("models:/churn/1", tracking_uri=store["uri"]).data
    path = tmp_path / "ref.parquet"
    ref.to_parquet(path, index=False)
    res = CliRunner().invoke(reference_app, ["log", "--model-uri", f"models:/churn/{version}", "--data", str(path),
                                             "--targets", "churn", "--scores", "score",
                                             "--tracking-uri", store["uri"]])
    assert res.exit_code == 0, res.output
    assert f"digest {lineage.short_digest(path)}" in res.output
    res = CliRunner().invoke(reference_app, ["show", f"models:/churn/{version}", "--tracking-uri", store["uri"]])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["digest"] == lineage.short_digest(path) and shown["label"] == "churn"


def test_reference_from_a_file(tmp_path: Path) -> None:
    df = tr.make_dataset(500, seed=3).assign(prediction=0)
    path = tmp_path / "ref.parquet"
    df.to_parquet(path)
    ref = load_reference(path, label="churn")
    assert ref.info.digest == lineage.short_digest(path) and ref.model is None
    assert set(ref.features) == set(tr.FEATURES)
    with pytest.raises(ReferenceNotFound, match="missing reference data"):
        load_reference(tmp_path / "absent.parquet")


# ------------------------------------------------------------------------------ monitoring: the whole chain
DRIFT_ROW = 4000
WINDOW = 500


def production(ref: Any, seed: int = 11) -> pd.DataFrame:
    """8,000 predictions of the registered model; monthly_charges shifts by 1.5 sd from row 4,000."""
    events = pd.concat([tr.make_dataset(DRIFT_ROW, seed=seed),
                        tr.make_dataset(DRIFT_ROW, seed=seed + 1, shift={"monthly_charges": 1.5})],
                       ignore_index=True)
    pipe = ref.model.get_raw_model()
    events["prediction"] = pipe.predict(events[tr.FEATURES]).astype(int)
    events["score"] = pipe.predict_proba(events[tr.FEATURES])[:, 1].round(6)
    return events


def replay_options(ref: Any) -> Any:
    from detectors.config import DetectionConfig
    from stream.backtest.file_replay import ReplayOptions

    return ReplayOptions(model="churn", model_version=ref.info.model_version, label_col="churn",
                         score_cols=["score"], categorical=tr.CATEGORICAL,
                         config=DetectionConfig(window=WINDOW, seed=5))


@pytest.mark.system
def test_reference_from_mlflow_to_alert_with_links_snapshots_and_run(store: dict[str, Any]) -> None:
    from stream.backtest.file_replay import replay_frames

    ref = load_reference("models:/churn@champion", tracking_uri=store["uri"])
    events = production(ref)
    ws = store["root"] / "evidently"
    with MonitoringRun(store["uri"], artifact_root=store["artifacts"], kind="replay",
                       config={"detection": {"window": WINDOW}}, source={"input": "synthetic", "rows": len(events)},
                       system_metrics_interval_s=1) as run:
        run.add_model("churn", ref.info.model_version, reference_name=ref.info.name,
                      reference_digest=ref.info.digest, reference_uri=ref.info.uri)
        svc = SnapshotService(workspace=ws, run=run, every_n_windows=4, sample_size=500, seed=5,
                              max_pending=32)  # the replay requests all at once
        result = replay_frames(events, ref.profile, replay_options(ref))
        fired = {a["window"]["index"] for a in result.alerts if a["status"] == "firing"}
        for rec in result.windows:
            if rec.get("kind", "predictions") == "predictions" and svc.should_snapshot(rec["index"],
                                                                                     fired=rec["index"] in fired):
                svc.request(model="churn", window_index=rec["index"], window_end_ms=rec["end"],
                            current=events.iloc[rec["start"]:rec["end"] + 1], reference=ref.data,
                            features=ref.features, label="churn", task=ref.task, categorical=tr.CATEGORICAL,
                            model_version=ref.info.model_version,
                            trigger="alert" if rec["index"] in fired else "periodic")
        assert svc.wait(60)
        ctx = AlertContext(run=run, snapshots=svc, references={"churn": ref.info})
        alerts = [enrich_alert(a, ctx) for a in result.alerts]
        log_replay(run, type(result)(alerts=alerts, windows=result.windows, summary=result.summary))
        svc.close()
    assert svc.stats.failed == 0 and svc.stats.completed >= 4

    # the drift is detected after it starts, within three windows, and not before
    drift = [a for a in alerts if a["feature"] == "monthly_charges" and a["monitor"] == "data_drift"
             and a["status"] == "firing"]
    assert drift and DRIFT_ROW <= drift[0]["row"] < DRIFT_ROW + 3 * WINDOW
    alert = drift[0]

    # the alert links to files that exist and carries its lineage
    for key in ("report", "mlflow_run", "dashboard"):
        path = local_path(alert["links"][key])
        assert path is not None and path.exists(), (key, alert["links"][key])
    assert "<html" in local_path(alert["links"]["report"]).read_text()[:200]
    snap = json.loads(local_path(alert["links"]["report_json"]).read_text())
    assert "monthly_charges" in snap["glassbox"]["drifted_columns"]
    assert alert["links"]["dashboard"].endswith(str(project_id_for("churn")))
    assert alert["evidence"]["reference_digest"] == ref.info.digest
    assert alert["evidence"]["reference_dataset"] == "churn-reference"
    assert alert["evidence"]["git_commit"] == lineage.git_commit(REPO)

    # the monitoring run: tags, window metrics (step = window index), alerts table, snapshots
    client = store["client"]
    mrun = client.get_run(run.run_id)
    assert mrun.info.status == "FINISHED"
    tags = mrun.data.tags
    assert tags["model"] == "churn" and tags["model_version"] == "1" and tags["glassbox.kind"] == "replay"
    assert tags["reference_digest"] == ref.info.digest and tags["uv_lock_sha256"] == lineage.lock_digest()
    hist = client.get_metric_history(run.run_id, "churn/predictions/columns/monthly_charges/value")
    assert [m.step for m in hist] == list(range(len(events) // WINDOW))
    assert client.get_metric_history(run.run_id, "churn/evidently/drift_share")
    table = json.loads((local_path(run.artifact_uri) / "alerts.json").read_text())
    assert len(table["data"]) == len(alerts) and "report" in table["columns"]
    snaps = {Path(f.path).name for f in client.list_artifacts(run.run_id, "snapshots/churn")}
    assert f"w{alert['window']['index']:06d}.html" in snaps and f"w{alert['window']['index']:06d}.json" in snaps
    assert mrun.data.params["config.detection.window"] == str(WINDOW)


def test_replaying_the_same_data_twice_logs_identical_window_metrics(store: dict[str, Any]) -> None:
    from stream.backtest.file_replay import replay_frames

    ref = load_reference("models:/churn@champion", tracking_uri=store["uri"])
    events = production(ref, seed=21)
    run_ids = []
    for _ in range(2):
        with MonitoringRun(store["uri"], artifact_root=store["artifacts"], kind="replay",
                           source={"input_sha256": "same"}) as run:
            run.add_model("churn", ref.info.model_version, reference_digest=ref.info.digest)
            log_replay(run, replay_frames(events, ref.profile, replay_options(ref)))
        run_ids.append(run.run_id)
    client = store["client"]

    def series(run_id: str) -> dict[str, list[tuple[int, int, float]]]:
        keys = [k for k in client.get_run(run_id).data.metrics if k.startswith("churn/")]
        return {k: [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}

    one, two = series(run_ids[0]), series(run_ids[1])
    assert len(one) > 20 and one == two
    alerts = [json.loads((local_path(client.get_run(r).info.artifact_uri) / "alerts.jsonl").read_text()
                         .splitlines()[0]) for r in run_ids]
    assert alerts[0] == alerts[1]


def test_monitoring_run_failure_is_recorded(store: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError), MonitoringRun(store["uri"], artifact_root=store["artifacts"]) as run:
        raise RuntimeError("boom")
    assert store["client"].get_run(run.run_id).info.status == "FAILED"

"""Reference attributions stored at log time (real sqlite MLflow store, real sklearn forest): the driving
feature tops them, loading brings them back, ``glassbox reference show`` lists them, the worker's attribution
service uses them without explaining the reference again, and explained windows leave valid SHAP plots and
tables in the monitoring run."""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from stream.evidence.monitoring_run import local_path
from tests.test_shap_monitor import F, data
from tests.test_shap_plots import _check_png  # PNG signature, > 5 KB, Pillow verifies it, drawn (not blank)

warnings.filterwarnings("ignore", category=UserWarning)
SKOPS_TRUSTED = ["sklearn.tree._tree.Tree"]
T0 = 1_700_000_000_000
WINDOW = 500


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``churn`` v1: a forest where ``a`` drives the prediction, reference logged (attributions stored);
    ``opaque`` v1: a version whose model cannot be loaded, reference logged without attributions."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from stream.evidence.reference import log_reference

    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("shap-reference", artifact_location=(tmp / "artifacts").as_uri())
    train = data(3000, 0, sd_b=1.0)
    noise = np.random.default_rng(1).normal(0, 0.3, len(train))
    y = ((2.0 * train.a + 0.4 * train.b + 0.2 * train.c + noise) > 0).astype(int)
    model = RandomForestClassifier(40, max_depth=6, random_state=0, n_jobs=1).fit(train[F], y)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=exp):
        mlflow.sklearn.log_model(model, name="model", registered_model_name="churn", pip_requirements=["scikit-learn"],
                                 signature=infer_signature(train[F].head(20), model.predict(train[F].head(20))),
                                 skops_trusted_types=SKOPS_TRUSTED)
    reference = data(1500, 2, sd_b=1.0)
    reference["prediction"] = model.predict(reference[F])
    t = time.perf_counter()
    info = log_reference("models:/churn/1", reference, tracking_uri=uri, features=F)
    log_seconds = time.perf_counter() - t
    with mlflow.start_run(experiment_id=exp) as run:  # a version whose source holds no model
        client.create_registered_model("opaque")
        client.create_model_version("opaque", f"runs:/{run.info.run_id}/missing", run.info.run_id)
    return {"uri": uri, "tmp": tmp, "client": client, "model": model, "reference": reference, "info": info,
            "log_seconds": log_seconds}


def _stored(store: dict[str, Any]) -> dict[str, Any]:
    run = store["client"].get_run(store["info"].run_id)
    return json.loads((local_path(run.info.artifact_uri) / "reference" / "attributions.json").read_text())


def test_log_reference_stores_attributions_led_by_the_driving_feature(store: dict[str, Any]) -> None:
    info, client = store["info"], store["client"]
    assert info.attributions == "tree"
    assert client.get_model_version("churn", "1").tags["glassbox.reference.attributions"] == "tree"
    rec = _stored(store)
    assert rec["schema"] == "glassbox.attributions/v1" and rec["explainer"] == "tree"
    assert rec["rows"] == 500 and rec["seed"] == 42 and rec["features"] == F
    assert list(rec["mean_abs_shap"]) == F
    assert max(rec["mean_abs_shap"], key=rec["mean_abs_shap"].get) == "a"
    assert sorted(rec["mean_abs_shap_per_output"]) == ["0", "1"]  # per class
    for per_class in rec["mean_abs_shap_per_output"].values():
        assert list(per_class) == F and max(per_class, key=per_class.get) == "a"
    assert rec["model_importance_kind"] == "feature_importances_"
    imp = rec["model_importance"]
    assert list(imp) == F and max(imp, key=imp.get) == "a"
    np.testing.assert_allclose(list(imp.values()), store["model"].feature_importances_)
    assert np.asarray(rec["abs_shap_rows"]).shape == (500, len(F))
    np.testing.assert_allclose(np.asarray(rec["abs_shap_rows"]).mean(axis=0), list(rec["mean_abs_shap"].values()))


def test_load_reference_reads_them_into_extras(store: dict[str, Any]) -> None:
    from stream.evidence.reference import load_reference

    ref = load_reference("models:/churn/1", tracking_uri=store["uri"], load_model=False, cache=None)
    assert ref.extras["attributions"] == _stored(store)
    assert ref.info.attributions == "tree"


def test_unexplainable_model_logs_the_reference_without_them(store: dict[str, Any], caplog) -> None:
    from stream.evidence.reference import load_reference, log_reference

    with caplog.at_level(logging.WARNING, logger="glassbox.reference"):
        info = log_reference("models:/opaque/1", store["reference"], tracking_uri=store["uri"], features=F)
    assert info.attributions.startswith("unavailable: ")
    assert any("without attributions" in r.getMessage() for r in caplog.records)
    files = {Path(f.path).name for f in store["client"].list_artifacts(info.run_id, "reference")}
    assert files == {"data.parquet", "profile.json", "reference.json"}
    ref = load_reference("models:/opaque/1", tracking_uri=store["uri"], load_model=False, cache=None)
    assert ref.extras == {} and ref.info.attributions.startswith("unavailable: ")


def test_reference_show_lists_the_top_features(store: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from stream.cli.reference import reference_app

    res = CliRunner().invoke(reference_app, ["show", "models:/churn/1", "--tracking-uri", store["uri"],
                                             "--top", "3"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    shown = body["reference_attributions"]
    assert shown["explainer"] == "tree" and shown["rows"] == 500
    assert [t["feature"] for t in shown["top_features"]][0] == "a" and len(shown["top_features"]) == 3
    assert abs(sum(t["share"] for t in shown["top_features"]) - 1.0) < 0.2
    bare = CliRunner().invoke(reference_app, ["show", "models:/opaque/1", "--tracking-uri", store["uri"]])
    assert bare.exit_code == 0 and "reference_attributions" not in json.loads(bare.output)


def test_reference_log_cli_says_what_it_stored(store: dict[str, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stream.cli.reference import reference_app

    table = tmp_path / "ref.parquet"
    store["reference"].to_parquet(table, index=False)
    args = ["log", "--data", str(table), "--tracking-uri", store["uri"]]
    res = CliRunner().invoke(reference_app, [*args, "--model-uri", "models:/churn/1"])
    assert res.exit_code == 0 and res.output.rstrip().endswith("attributions: tree"), res.output
    assert _stored(store)["rows"] == 500  # logged again: the same seeded sample
    res = CliRunner().invoke(reference_app, [*args, "--model-uri", "models:/opaque/1", "--no-attributions"])
    assert res.exit_code == 0 and res.output.rstrip().endswith("attributions: not computed"), res.output


# ------------------------------------------------------------------------------------------ the service
def _settings(store: dict[str, Any], tmp: Path, **attribution: Any) -> Any:
    from stream.settings import Settings

    return Settings(home=tmp, worker={"models": {"churn": "models:/churn/1"}},
                    mlflow={"tracking_uri": store["uri"], "artifact_root": str(tmp / "mlartifacts")},
                    detection={"window": WINDOW}, evidently={"every_n_windows": 4},
                    attribution={"k": 120, "budget_s": None, "max_pending": 16, **attribution})


def test_service_uses_the_stored_record_without_explaining_the_reference(store: dict[str, Any], tmp_path,
                                                                         monkeypatch) -> None:
    from detectors.attribution import ModelExplainer
    from stream.evidence.shap_service import AttributionService
    from stream.worker.agents import build_pipeline

    calls = []
    real = ModelExplainer.explain
    monkeypatch.setattr(ModelExplainer, "explain", lambda self, frame, **kw: calls.append(len(frame))
                        or real(self, frame, **kw))
    settings = _settings(store, tmp_path)
    svc = AttributionService(settings, build_pipeline(settings).monitors)
    try:
        t = time.perf_counter()
        assert svc.prepare() == ["churn"]
        prepared_s = time.perf_counter() - t
        mon = svc.monitors["churn"]
        assert calls == [], "the reference was explained again at start"
        assert mon.reference_source == "stored" and svc.stats()["reference"] == {"churn": "stored"}
        assert mon.reference == _stored(store)
        np.testing.assert_allclose(mon.ref_vec, list(_stored(store)["mean_abs_shap"].values()))
        # without the stored record the same monitor explains the reference: 500 rows at start
        from detectors.attribution_monitor import AttributionMonitor

        again = AttributionMonitor(store["model"], None, store["reference"], F, settings.attribution, "churn",
                                   settings.detection.seed, window=WINDOW)
        assert again.reference_source == "computed" and sum(calls) == 500
        np.testing.assert_allclose(again.ref_vec, mon.ref_vec)  # same seed and rows: same reference
    finally:
        svc.close()
    print(f"\nreference SHAP at log time incl. model load: {store['log_seconds']:.2f} s (whole log_reference); "
          f"service prepare: {prepared_s:.2f} s")


def _messages(df: pd.DataFrame, per_message: int = 250) -> list[Any]:
    from stream.pipeline.pipeline import RawMessage

    out = []
    for i, lo in enumerate(range(0, len(df), per_message)):
        part = df.iloc[lo:lo + per_message]
        doc = {"schema": "glassbox.prediction-batch/v1", "prediction_id": [f"p{j}" for j in part.index],
               "model": "churn", "timestamp": [T0 + j * 100 for j in part.index],
               "features": {f: part[f].tolist() for f in F}, "prediction": part["prediction"].tolist()}
        out.append(RawMessage(topic="glassbox.predictions", partition=0, offset=i, value=orjson.dumps(doc)))
    return out


@pytest.mark.timeout(180)
def test_explained_windows_leave_shap_plots_and_tables_in_the_monitoring_run(store: dict[str, Any],
                                                                            tmp_path) -> None:
    """The worker's step (the real pipeline on prediction messages, no Kafka) with the attribution service
    and a monitoring run: periodic and alerting windows get a bar plot, a beeswarm and a table."""
    from stream.evidence.monitoring_run import MonitoringRun
    from stream.evidence.shap_service import AttributionService, artifact_dir
    from stream.worker.agents import build_pipeline

    settings = _settings(store, tmp_path)
    pipeline = build_pipeline(settings)
    run = MonitoringRun(store["uri"], artifact_root=tmp_path / "mlartifacts", system_metrics=False).start()
    svc = AttributionService(settings, pipeline.monitors, run)
    assert svc.prepare() == ["churn"]
    n, at = 6000, 3000  # 12 windows; c's mean moves from row 3000 (window 6): data_drift fires there
    events = pd.concat([data(at, 5, sd_b=1.0), data(n - at, 6, sd_b=1.0, mean_c=2.0)], ignore_index=True)
    events["prediction"] = store["model"].predict(events[F])
    alerts: list[dict[str, Any]] = []
    try:
        for msg in _messages(events):
            out = pipeline.on_predictions([msg])
            alerts += svc.observe(out, out.alerts) + svc.poll()
        deadline = time.monotonic() + 120
        while svc.stats()["pending"] or svc.stats()["artifacts"]["pending"]:
            assert time.monotonic() < deadline, svc.stats()
            alerts += svc.poll()
            time.sleep(0.05)
        stats = svc.stats()
    finally:
        svc.close()
        run.finish()
    assert stats["failed"] == 0 and stats["artifacts"]["failed"] == 0, stats
    assert svc.monitors["churn"].explained == n // WINDOW and not svc.monitors["churn"].skipped
    drift = [a for a in alerts if a["monitor"] == "data_drift" and a["status"] == "firing"]
    assert drift and {a["feature"] for a in drift} == {"c"}, [(a["monitor"], a["feature"]) for a in alerts]
    fired = {a["window"]["index"] for a in alerts if a["status"] == "firing"}  # data_drift, attribution_drift
    root = local_path(run.artifact_uri)
    shap_dirs = sorted(p.name for p in (root / "snapshots" / "churn").iterdir())
    expected = sorted({3, 7, 11} | fired)  # every 4th window (as the Evidently snapshots) and the alerting ones
    assert shap_dirs == [Path(artifact_dir("churn", i)).name for i in expected]
    assert stats["artifacts"]["windows"] == len(expected) and stats["artifacts"]["files"] == 3 * len(expected)
    for i in expected:
        folder = root / artifact_dir("churn", i)
        _check_png(folder / "shap_summary_bar.png")
        _check_png(folder / "shap_beeswarm.png")
        table = pd.read_csv(folder / "shap_values.csv")
        assert list(table.columns) == F and len(table) == settings.attribution.k
    plots = drift[0]["evidence"]["shap_plots"]  # the alert links its window's SHAP artifacts
    assert plots["window"] == drift[0]["window"]["index"]
    for key in ("bar", "beeswarm", "table"):
        assert local_path(plots[key]).is_file(), plots[key]


def test_stale_attributions_of_other_reference_data_are_not_read(store: dict[str, Any], caplog) -> None:
    """Logging other data without attributions leaves the old file in the run: it is ignored, by digest."""
    from stream.evidence.reference import load_reference, log_reference

    other = store["reference"].iloc[:700]
    try:
        info = log_reference("models:/churn/1", other, tracking_uri=store["uri"], features=F, attributions=False)
        assert info.attributions is None and _stored(store)["reference_digest"] != info.digest
        with caplog.at_level(logging.WARNING, logger="glassbox.reference"):
            ref = load_reference("models:/churn/1", tracking_uri=store["uri"], load_model=False, cache=None)
        assert ref.extras == {} and any("other reference data" in r.getMessage() for r in caplog.records)
    finally:
        log_reference("models:/churn/1", store["reference"], tracking_uri=store["uri"], features=F)
    ref = load_reference("models:/churn/1", tracking_uri=store["uri"], load_model=False, cache=None)
    assert ref.extras["attributions"]["reference_digest"] == ref.info.digest == store["info"].digest

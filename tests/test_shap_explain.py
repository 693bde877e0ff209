"""``glassbox explain``: one prediction's contributions add up with the base value to the model output, for
a tree model registered in a real (sqlite) MLflow store, through the function and through the CLI."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from typer.testing import CliRunner

from stream.cli.explain import explain_command, explain_prediction, load_model_for_explain, read_event

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
warnings.filterwarnings("ignore", category=UserWarning)

NUM = ["tenure", "charges", "calls"]
FEATURES = [*NUM, "contract"]
SKOPS_TRUSTED = ["sklearn.tree._tree.Tree"]


def _data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"tenure": rng.gamma(2, 14, n), "charges": rng.normal(70, 20, n),
                       "calls": rng.poisson(1.5, n).astype(float),
                       "contract": rng.choice(["monthly", "yearly", "two-year"], n)})
    logit = (-0.05 * (df.tenure - 28) + 0.04 * (df.charges - 70) + 0.7 * (df.calls - 1.5)
             + 1.5 * (df.contract == "monthly"))
    df["churn"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A sqlite MLflow store with ``churn`` v1 (alias champion, reference attached) and v2 (alias bare, none)."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from stream.evidence.reference import log_reference

    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = client.create_experiment("explain-test", artifact_location=(tmp / "artifacts").as_uri())
    train = _data(1500, 0)
    pre = ColumnTransformer([("num", StandardScaler(), NUM),
                             ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["contract"])])
    model = Pipeline([("pre", pre), ("model", RandomForestClassifier(40, max_depth=6, random_state=0))])
    model.fit(train[FEATURES], train.churn)
    sig = infer_signature(train[FEATURES].head(20), model.predict(train[FEATURES].head(20)))
    for version in (1, 2):
        with mlflow.start_run(experiment_id=exp):
            mlflow.sklearn.log_model(model, name="model", registered_model_name="churn", signature=sig,
                                     skops_trusted_types=SKOPS_TRUSTED, pip_requirements=["scikit-learn"])
        client.set_registered_model_alias("churn", "champion" if version == 1 else "bare", str(version))
    ref = _data(400, 1)
    ref["prediction"] = model.predict(ref[FEATURES])
    log_reference("models:/churn/1", ref, tracking_uri=uri, targets="churn", features=FEATURES,
                  categorical=["contract"])
    rows = _data(30, 2)
    table = tmp / "rows.parquet"
    rows.to_parquet(table, index=False)
    local = tmp / "local-model"
    mlflow.sklearn.save_model(model, str(local), signature=sig, skops_trusted_types=SKOPS_TRUSTED,
                              pip_requirements=["scikit-learn"])
    return {"uri": uri, "model": model, "rows": rows, "table": table, "local": local, "tmp": tmp}


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("explain")(explain_command)

    @app.command("noop", hidden=True)
    def _noop() -> None:  # a second command keeps "explain" a named subcommand
        pass

    return app


def _expected(model: Pipeline, row: pd.DataFrame) -> tuple[str, float]:
    proba = model.predict_proba(row[FEATURES])[0]
    k = int(np.argmax(proba))
    return str(model.classes_[k]), float(proba[k])


def test_function_contributions_add_up_to_the_model_output(registry: dict) -> None:
    est, features, background = load_model_for_explain("models:/churn@champion", tracking_uri=registry["uri"])
    assert features == FEATURES and background is not None and len(background) == 400
    for i in (0, 5, 17):
        row = read_event(data=registry["table"], row=i)
        res = explain_prediction(est, features, row)
        assert res["explainer"] == "tree" and res["output_space"] == "probability"
        total = res["base_value"] + sum(c["contribution"] for c in res["contributions"])
        assert abs(total - res["model_output"]) < 1e-6
        label, proba = _expected(registry["model"], registry["rows"].iloc[[i]])
        assert res["output"] == label and abs(res["model_output"] - proba) < 1e-12
        assert [c["feature"] for c in res["contributions"]] == sorted(
            FEATURES, key=lambda f: -abs(next(c["contribution"] for c in res["contributions"] if c["feature"] == f)))


def test_cli_row_of_a_file(registry: dict, cli: typer.Typer) -> None:
    runner = CliRunner()
    args = ["explain", "--model-uri", "models:/churn@champion", "--tracking-uri", registry["uri"],
            "--data", str(registry["table"]), "--row", "3"]
    res = runner.invoke(cli, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    total = out["base_value"] + sum(c["contribution"] for c in out["contributions"])
    label, proba = _expected(registry["model"], registry["rows"].iloc[[3]])
    assert abs(total - proba) < 1e-6 and out["output"] == label
    assert {c["feature"]: c["value"] for c in out["contributions"]} == pytest.approx(
        registry["rows"].iloc[3][FEATURES].to_dict())
    table = runner.invoke(cli, args)
    assert table.exit_code == 0, table.output
    text = table.stdout
    positions = [text.index(f" {c['feature']} ") for c in out["contributions"]]
    assert positions == sorted(positions)  # largest |contribution| first
    assert "base value" in text and "model output" in text and f"{proba:.6g}" in text


def test_cli_event_json_without_a_reference(registry: dict, cli: typer.Typer, tmp_path: Path) -> None:
    row = registry["rows"].iloc[8]
    event = {"schema": "glassbox.prediction/v1", "prediction_id": "p8", "model": "churn", "timestamp": 0,
             "features": {f: (row[f].item() if hasattr(row[f], "item") else row[f]) for f in FEATURES},
             "prediction": 1}
    runner = CliRunner()
    res = runner.invoke(cli, ["explain", "--model-uri", "models:/churn@bare", "--tracking-uri", registry["uri"],
                              "--event", json.dumps(event), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert abs(out["base_value"] + sum(c["contribution"] for c in out["contributions"]) - out["model_output"]) < 1e-6
    assert out["model_output"] == pytest.approx(_expected(registry["model"], registry["rows"].iloc[[8]])[1])
    f = tmp_path / "event.json"
    f.write_text(json.dumps(event["features"]))
    local = runner.invoke(cli, ["explain", "--model", str(registry["local"]), "--event-file", str(f), "--json"])
    assert local.exit_code == 0, local.output
    assert json.loads(local.stdout)["contributions"] == out["contributions"]


@pytest.mark.parametrize(("args", "message"), [
    (["--event", "{not json"], "is not valid JSON"),
    (["--event", '{"features": {"tenure": 3}}'], "lacks feature(s)"),
    (["--data", "ROWS", "--row", "99"], "has 30 rows"),
    (["--data", "ROWS"], "needs --row"),
    (["--event", "{}", "--data", "ROWS", "--row", "1"], "exactly one of"),
])
def test_cli_bad_input_is_one_line(registry: dict, cli: typer.Typer, args: list[str], message: str) -> None:
    args = [str(registry["table"]) if a == "ROWS" else a for a in args]
    res = CliRunner().invoke(cli, ["explain", "--model-uri", "models:/churn@champion", "--tracking-uri",
                                   registry["uri"], *args])
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("glassbox: error:") and message in res.stderr


def test_cli_refuses_pickled_files_and_unknown_models(registry: dict, cli: typer.Typer) -> None:
    import joblib

    pkl = registry["tmp"] / "model.joblib"
    joblib.dump(registry["model"], pkl)
    runner = CliRunner()
    res = runner.invoke(cli, ["explain", "--model", str(pkl), "--data", str(registry["table"]), "--row", "0"])
    assert res.exit_code == 2 and "not an MLflow model directory" in res.stderr
    res = runner.invoke(cli, ["explain", "--model-uri", "models:/nope@champion", "--tracking-uri", registry["uri"],
                              "--data", str(registry["table"]), "--row", "0"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "nope" in res.stderr

"""A complete glass-box training run: the model glassbox monitors, and its reference.

What it records in MLflow (one run, ``log_system_metrics=True``):

- seeds (random, numpy, torch/tensorflow when installed) and the data generator's parameters;
- dataset lineage: train and test sets written as versioned parquet files (``datasets/<name>-<digest>``),
  logged as artifacts and as MLflow datasets (``from_pandas`` + ``log_input``, contexts ``training`` and
  ``evaluation``, digest = the file's sha256 prefix);
- preprocessing parameters and model hyperparameters;
- global feature importance (permutation importance on the test set: table, metrics and a bar chart);
- evaluation with ``mlflow.models.evaluate`` gated by ``mlflow.validate_evaluation_results``: a model below
  the gate is NOT registered and :class:`GateFailed` says why;
- tags ``project``, ``env``, ``user``, git commit, lock digest, instance type; ``run_time_s``;
- registration, the reference (test set with the model's predictions and labels, its profile and digest,
  via :func:`stream.evidence.reference.log_reference`) and, last, the alias (so ``@champion`` always has a reference).

The data is synthetic (a telecom churn table: numbers and categories), generated from a seed, so the demo can
produce production traffic from the same generator and shift chosen features.

Run it: ``python -m stream.demo.training --tracking-uri sqlite:///.glassbox/mlflow.db`` (or
``examples/train_reference.py``, a thin script over this module).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stream.evidence import lineage

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

NUMERIC = ["age", "tenure_months", "monthly_charges", "support_calls", "data_usage_gb"]
CATEGORICAL = ["contract", "payment_method", "region"]
FEATURES = NUMERIC + CATEGORICAL
LABEL = "churn"
PREDICTION = "prediction"
TRAINING_EXPERIMENT = "glassbox-training"
SKOPS_TRUSTED = ["sklearn.tree._tree.Tree"]


class GateFailed(RuntimeError):
    """The candidate missed the evaluation gate and was not registered."""

    def __init__(self, message: str, run_id: str, metrics: Mapping[str, float]):
        super().__init__(message)
        self.run_id = run_id
        self.metrics = dict(metrics)


@dataclass
class TrainResult:
    model_name: str
    version: str
    alias: str | None
    run_id: str
    model_uri: str  # models:/NAME/VERSION
    metrics: dict[str, float]
    reference: Any  # stream.evidence.reference.ReferenceInfo


def make_dataset(n: int = 4000, seed: int = 0, shift: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Synthetic churn data with a learnable label; ``shift`` adds to numeric features (in their std units)
    or, for a categorical feature, moves that share of rows to its rarest category."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.normal(45, 12, n).clip(18, 90).round(0),
        "tenure_months": rng.gamma(2.0, 14.0, n).round(0),
        "monthly_charges": rng.normal(70, 20, n).clip(10, 150).round(2),
        "support_calls": rng.poisson(1.5, n).astype(float),
        "data_usage_gb": rng.lognormal(2.5, 0.6, n).round(2),
        "contract": rng.choice(["month-to-month", "one-year", "two-year"], n, p=[0.55, 0.25, 0.20]),
        "payment_method": rng.choice(["card", "bank", "check"], n, p=[0.5, 0.3, 0.2]),
        "region": rng.choice(["north", "south", "east", "west"], n),
    })
    for col, amount in (shift or {}).items():
        if col in NUMERIC:
            df[col] = df[col] + amount * df[col].std()
        elif col in CATEGORICAL:
            rare = df[col].value_counts().index[-1]
            df.loc[rng.random(n) < amount, col] = rare
    logit = (-1.6 + 1.8 * (df.contract == "month-to-month") - 0.06 * (df.tenure_months - 28)
             + 0.05 * (df.monthly_charges - 70) + 0.8 * (df.support_calls - 1.5)
             + 0.8 * (df.payment_method == "check") - 0.02 * (df.age - 45))
    df[LABEL] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df


def build_pipeline(estimator: str, seed: int, params: dict[str, Any]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer([
        ("num", StandardScaler(), NUMERIC),
        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL),
    ])
    if estimator == "random_forest":
        clf = RandomForestClassifier(n_estimators=params["n_estimators"], max_depth=params["max_depth"],
                                     min_samples_leaf=params["min_samples_leaf"], random_state=seed, n_jobs=1)
    elif estimator == "logistic_regression":
        clf = LogisticRegression(max_iter=500, random_state=seed)
    elif estimator == "dummy":  # predicts the majority class: the model a gate must stop
        clf = DummyClassifier(strategy="most_frequent")
    else:
        raise ValueError(f"unknown estimator {estimator!r}: random_forest, logistic_regression or dummy")
    return Pipeline([("preprocess", pre), ("model", clf)])


def _log_dataset(df: pd.DataFrame, name: str, context: str, folder: Path) -> str:
    """Write a versioned parquet file, log it as an artifact and as a run input; returns its digest."""
    import mlflow

    tmp = folder / f"{name}.parquet"
    df.to_parquet(tmp, index=False)
    digest = lineage.short_digest(tmp)
    versioned = folder / f"{name}-{digest}.parquet"
    tmp.rename(versioned)
    mlflow.log_artifact(str(versioned), "datasets")
    source = f"{mlflow.get_artifact_uri('datasets')}/{versioned.name}"
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": both are artifacts
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_pandas(df, source=source, targets=LABEL, name=name, digest=digest)
    mlflow.log_input(ds, context=context)
    return digest


def _log_importance(pipe: Any, test: pd.DataFrame, seed: int, folder: Path) -> dict[str, float]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from sklearn.inspection import permutation_importance

    imp = permutation_importance(pipe, test[FEATURES], test[LABEL], n_repeats=3, random_state=seed,
                                 scoring="roc_auc", n_jobs=1)
    table = pd.DataFrame({"feature": FEATURES, "importance_mean": imp.importances_mean,
                          "importance_std": imp.importances_std}).sort_values("importance_mean", ascending=False)
    mlflow.log_table(table, "feature_importance.json")
    mlflow.log_metrics({f"importance/{r.feature}": float(r.importance_mean) for r in table.itertuples()})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.barh(table.feature[::-1], table.importance_mean[::-1], xerr=table.importance_std[::-1])
    ax.set_xlabel("permutation importance (ROC AUC drop)")
    fig.tight_layout()
    mlflow.log_figure(fig, "feature_importance.png")
    plt.close(fig)
    return dict(zip(table.feature, table.importance_mean.astype(float), strict=True))


def train_and_register(
    tracking_uri: str,
    model_name: str = "churn",
    *,
    seed: int = 42,
    alias: str | None = "champion",
    gate: float = 0.75,
    gate_metric: str = "roc_auc",
    estimator: str = "random_forest",
    n_rows: int = 4000,
    experiment: str = TRAINING_EXPERIMENT,
    artifact_root: str | os.PathLike[str] | None = None,
    project: str = "glassbox",
    env: str = "dev",
    params: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train, evaluate, gate, register and attach the reference. Returns the registered version.

    Raises :class:`GateFailed` (nothing registered) when ``gate_metric`` (an ``mlflow.models.evaluate``
    classifier metric such as ``roc_auc``, ``accuracy_score`` or ``f1_score``) is below ``gate``.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.models import MetricThreshold, infer_signature
    from sklearn.model_selection import train_test_split

    from stream.evidence.monitoring_run import ensure_experiment
    from stream.evidence.reference import log_reference

    t0 = time.perf_counter()
    seeded = lineage.seed_everything(seed)
    hyper = {"n_estimators": 60, "max_depth": 8, "min_samples_leaf": 5, **(params or {})}
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    exp_id = ensure_experiment(client, experiment, artifact_root)
    tags = {**lineage.lineage_tags(project=project, env=env), "model": model_name, "glassbox.kind": "training"}

    # MLflow refuses log_system_metrics=True without psutil: then the run says so in a tag and still
    # records the process's CPU time and peak memory (lineage.process_metrics).
    system_metrics = lineage.system_metrics_available()
    # MLflow 3.17's system-metrics thread builds an MlflowClient every few seconds; without a registry URI that
    # probes `import pyspark` through MLflow's import hooks, which deadlocks with an import in this thread (seen
    # here: hangs inside log_model and evaluate). A registry URI skips the probe; importing what training imports
    # lazily, before the thread starts, closes the window too.
    # The registry URI is put back as it was by lineage.mlflow_store below.
    import mlflow.models.evaluation.default_evaluator  # noqa: F401
    import mlflow.pyfunc  # noqa: F401
    import mlflow.sklearn  # noqa: F401
    import sklearn.inspection  # noqa: F401

    if system_metrics:  # a short training run still gets samples
        mlflow.set_system_metrics_sampling_interval(1)
        mlflow.set_system_metrics_samples_before_logging(1)
    with lineage.mlflow_store(tracking_uri), \
            mlflow.start_run(experiment_id=exp_id, run_name=f"train-{model_name}-{estimator}", tags=tags,
                             log_system_metrics=system_metrics) as run, tempfile.TemporaryDirectory() as tmpdir:
        folder = Path(tmpdir)
        run_id = run.info.run_id
        if not system_metrics:
            mlflow.set_tag("log_system_metrics", "unavailable (psutil missing)")
        df = make_dataset(n_rows, seed)
        train, test = train_test_split(df, test_size=0.3, random_state=seed, stratify=df[LABEL])
        train, test = train.reset_index(drop=True), test.reset_index(drop=True)
        mlflow.log_params({
            "seed": seed, "seeded": ",".join(k for k, v in seeded.items() if v is True),
            "data.generator": "stream.demo.training.make_dataset", "data.rows": n_rows, "data.test_size": 0.3,
            "preprocess.numeric": "StandardScaler", "preprocess.categorical": "OneHotEncoder(handle_unknown=ignore)",
            "preprocess.numeric_features": ",".join(NUMERIC), "preprocess.categorical_features": ",".join(CATEGORICAL),
            "estimator": estimator, **{f"model.{k}": v for k, v in hyper.items()},
            "gate.metric": gate_metric, "gate.threshold": gate,
        })
        train_digest = _log_dataset(train, f"{model_name}-train", "training", folder)
        _log_dataset(test, f"{model_name}-test", "evaluation", folder)

        pipe = build_pipeline(estimator, seed, hyper).fit(train[FEATURES], train[LABEL])
        signature = infer_signature(train[FEATURES].head(50), pipe.predict(train[FEATURES].head(50)))
        info = mlflow.sklearn.log_model(
            pipe, name="model", signature=signature, input_example=train[FEATURES].head(3),
            skops_trusted_types=SKOPS_TRUSTED, pip_requirements=_requirements(),
        )
        importance = _log_importance(pipe, test, seed, folder) if estimator != "dummy" else {}

        result = mlflow.models.evaluate(
            info.model_uri, test[FEATURES + [LABEL]], targets=LABEL, model_type="classifier",
            evaluator_config={"log_model_explainability": False},
        )
        metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
        try:
            mlflow.validate_evaluation_results(
                {gate_metric: MetricThreshold(threshold=gate, greater_is_better=True)}, candidate_result=result)
        except MlflowException as err:
            got = metrics.get(gate_metric)
            mlflow.set_tags({"gate": "failed", "gate.reason": str(err)[:5000]})
            mlflow.log_metric("run_time_s", round(time.perf_counter() - t0, 3))
            raise GateFailed(
                f"model {model_name!r} ({estimator}) not registered: {gate_metric} = "
                f"{'n/a' if got is None else f'{got:.4f}'} is below the gate {gate} (run {run_id})",
                run_id, metrics) from None
        mlflow.set_tag("gate", "passed")

        reference = test.copy()
        reference[PREDICTION] = pipe.predict(test[FEATURES]).astype(int)
        proba = pipe.predict_proba(test[FEATURES])
        reference["score"] = proba[:, 1].round(6)
        mlflow.log_metrics({"train_rows": len(train), "reference_rows": len(reference),
                            **lineage.process_metrics()})

        mv = mlflow.register_model(info.model_uri, model_name, tags={"git_commit": tags.get("git_commit", ""),
                                                                     "train_digest": train_digest})
        ref_info = log_reference(f"models:/{model_name}/{mv.version}", reference, tracking_uri=tracking_uri,
                                 targets=LABEL, prediction_col=PREDICTION, categorical=CATEGORICAL,
                                 features=FEATURES, scores=["score"], name=f"{model_name}-reference")
        if alias:
            client.set_registered_model_alias(model_name, alias, mv.version)
        mlflow.log_metric("run_time_s", round(time.perf_counter() - t0, 3))
    metrics.update({f"importance/{k}": v for k, v in importance.items()})
    return TrainResult(model_name=model_name, version=str(mv.version), alias=alias, run_id=run_id,
                       model_uri=f"models:/{model_name}/{mv.version}", metrics=metrics, reference=ref_info)


def _requirements() -> list[str]:
    """Explicit requirements: with ``uv`` on PATH MLflow would otherwise copy the whole lock."""
    v = lineage.package_versions(["mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops"])
    return [f"{k}=={v[k]}" for k in ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops") if k in v]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracking-uri", default="sqlite:///.glassbox/mlflow.db")
    ap.add_argument("--artifact-root", default=".glassbox/mlartifacts")
    ap.add_argument("--model-name", default="churn")
    ap.add_argument("--estimator", default="random_forest")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--gate", type=float, default=0.75)
    ap.add_argument("--gate-metric", default="roc_auc")
    ap.add_argument("--alias", default="champion")
    ap.add_argument("--rows", type=int, default=4000)
    a = ap.parse_args(argv)
    if a.tracking_uri.startswith("sqlite:///"):
        Path(a.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        r = train_and_register(a.tracking_uri, a.model_name, seed=a.seed, alias=a.alias, gate=a.gate,
                               gate_metric=a.gate_metric, estimator=a.estimator, n_rows=a.rows,
                               artifact_root=a.artifact_root)
    except GateFailed as err:
        print(f"gate failed: {err}", file=sys.stderr)
        return 1
    print(f"registered {r.model_uri} (alias {r.alias}), run {r.run_id}, {a.gate_metric}="
          f"{r.metrics.get(a.gate_metric, float('nan')):.4f}, reference {r.reference.name} digest {r.reference.digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

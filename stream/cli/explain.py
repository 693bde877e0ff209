"""``glassbox explain``: why the registered model predicted what it did for one event.

The event is a prediction event as JSON (``--event '{"features": {...}}'``, or just the features object),
a JSON file (``--event-file``), or a row of a table (``--data FILE --row N``). The model comes from the MLflow
registry (``--model-uri models:/NAME@alias``, with its reference as the background of non-tree models) or a
local MLflow model directory (``--model DIR``). Pickle, joblib or skops files are never loaded directly.
Prints each feature's contribution (SHAP value), largest |value| first, the base value and the model output;
the contributions add up with the base value to the output.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stream.cli.options import ConfigOpt
from stream.errors import UserError

if TYPE_CHECKING:
    import pandas as pd



def _tracking_uri(config: Path | None, tracking_uri: str | None) -> str:
    if tracking_uri:
        return tracking_uri
    from stream.settings import load_settings

    return load_settings(config).mlflow.tracking_uri


def _features_of(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def _signature_features(uri: str) -> list[str] | None:
    try:
        from mlflow.models import get_model_info

        sig = get_model_info(uri).signature
        return list(sig.inputs.input_names()) if sig is not None and sig.inputs is not None else None
    except Exception:  # noqa: BLE001 - no signature: the caller says what is missing
        return None


def load_model_for_explain(model_uri: str | None = None, model_path: str | os.PathLike[str] | None = None, *,
                           tracking_uri: str | None = None) -> tuple[Any, list[str], pd.DataFrame | None]:
    """The estimator to explain, its input features and a background frame (the reference, when known).

    ``model_uri`` is ``models:/NAME/VERSION`` or ``models:/NAME@alias`` (its reference is used when one is
    attached); ``model_path`` a local MLflow model directory. Raises :class:`UserError` with one line.
    """
    from detectors.attribution import unwrap_model

    if (model_uri is None) == (model_path is None):
        raise UserError("give exactly one of --model-uri models:/NAME@alias or --model DIR (an MLflow model)")
    background: pd.DataFrame | None = None
    features: list[str] | None = None
    if model_uri is not None:
        from stream.evidence.reference import ReferenceNotFound, is_model_uri, load_reference, resolve_model_version

        if not is_model_uri(model_uri):
            raise UserError(f"--model-uri {model_uri!r}: expected models:/NAME/VERSION or models:/NAME@alias")
        try:
            ref = load_reference(model_uri, tracking_uri=tracking_uri)
            model = ref.model
            features = ref.features or None
            background = ref.data
        except ReferenceNotFound:  # no reference attached: the model alone (tree models need no background)
            import mlflow
            import mlflow.sklearn
            from mlflow import MlflowClient

            try:
                mv = resolve_model_version(MlflowClient(tracking_uri=tracking_uri), model_uri)
            except ReferenceNotFound as err:
                raise UserError(str(err)) from None
            mlflow.set_tracking_uri(tracking_uri)
            uri = f"models:/{mv.name}/{mv.version}"
            try:
                model = mlflow.sklearn.load_model(uri)
            except Exception as err:  # noqa: BLE001 - one line for the user
                raise UserError(f"{model_uri}: cannot load the model as scikit-learn: "
                                f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from None
            features = _signature_features(uri)
    else:
        import mlflow.sklearn

        p = Path(model_path)
        if not (p / "MLmodel").is_file():
            raise UserError(f"--model {p}: not an MLflow model directory (no MLmodel file); pickle, joblib and "
                            f"skops files are not loaded: log the model with mlflow.sklearn first")
        try:
            model = mlflow.sklearn.load_model(str(p))
        except Exception as err:  # noqa: BLE001
            raise UserError(f"--model {p}: cannot load the model as scikit-learn: "
                            f"{type(err).__name__}: {str(err).splitlines()[0][:200]}") from None
        features = _signature_features(str(p))
    est = unwrap_model(model)
    features = _features_of(est) or features
    if not features:
        raise UserError("cannot tell the model's input features (no feature_names_in_, signature or reference)")
    return est, features, background


def read_event(event: str | None = None, event_file: str | os.PathLike[str] | None = None,
               data: str | os.PathLike[str] | None = None, row: int | None = None) -> pd.DataFrame:
    """The one row to explain, as a frame (from JSON text, a JSON file, or a table row)."""
    given = sum(x is not None for x in (event, event_file, data))
    if given != 1:
        raise UserError("give exactly one of --event JSON, --event-file FILE or --data FILE --row N")
    if data is not None:
        if row is None:
            raise UserError("--data needs --row N (0-based)")
        from stream.backtest.table_files import TableError, read_table

        p = Path(data)
        try:
            df = read_table(p)
        except TableError as err:
            raise UserError(f"--data: {err}") from None
        except Exception as err:  # noqa: BLE001 - a corrupt file: one line
            raise UserError(f"--data {p}: cannot read it: {type(err).__name__}: {err}") from None
        if not 0 <= row < len(df):
            raise UserError(f"--row {row}: {p} has {len(df)} rows (0-based)")
        return df.iloc[[row]].reset_index(drop=True)
    if row is not None:
        raise UserError("--row goes with --data")
    if event_file is not None:
        p = Path(event_file)
        if not p.is_file():
            raise UserError(f"--event-file {p}: no such file")
        event, what = p.read_text(), f"--event-file {p}"
    else:
        what = "--event"
    try:
        obj = json.loads(event)
    except json.JSONDecodeError as err:
        raise UserError(f"{what} is not valid JSON: {err}") from None
    if isinstance(obj, dict) and isinstance(obj.get("features"), dict):
        obj = obj["features"]
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"{what}: expected a prediction event with a 'features' object, or a features object")
    import pandas as pd

    return pd.DataFrame([{k: (math.nan if v is None else v) for k, v in obj.items()}])


def explain_prediction(model: Any, features: list[str], row: pd.DataFrame, *, background: pd.DataFrame | None = None,
                       output: str | None = None, seed: int = 42) -> dict[str, Any]:
    """Contributions of each feature to one prediction (see :func:`detectors.attribution.explain_one`)."""
    from detectors.attribution import ModelExplainer, explain_one

    missing = [f for f in features if f not in row.columns]
    if missing:
        raise UserError(f"the event lacks feature(s) {missing}; the model needs {features}")
    try:
        explainer = ModelExplainer(model, features, background, seed=seed)
    except ValueError as err:
        raise UserError(str(err)) from None
    try:
        return explain_one(explainer, row[features], output)
    except ValueError as err:
        raise UserError(str(err)) from None


def _print(result: dict[str, Any], top: int | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, Console().width), highlight=False)
    rows = result["contributions"][:top] if top else result["contributions"]
    table = Table(title=f"contributions to {result['output_space']} of {result['output']!r} "
                        f"({result['explainer']} SHAP), largest first")
    table.add_column("feature")
    table.add_column("value", justify="right")
    table.add_column("contribution", justify="right")
    for c in rows:
        v = c["value"]
        table.add_row(str(c["feature"]), f"{v:.6g}" if isinstance(v, float) else str(v), f"{c['contribution']:+.6g}")
    console.print(table)
    rest = len(result["contributions"]) - len(rows)
    if rest > 0:
        console.print(f"... {rest} more feature(s) with smaller contributions")
    console.print(f"base value      {result['base_value']:.6g}")
    console.print(f"+ contributions {result['explained_output'] - result['base_value']:+.6g}")
    console.print(f"= model output  {result['model_output']:.6g}  ({result['output_space']} of {result['output']!r}; "
                  f"additivity error {result['additivity_error']:.2g})")


def explain_command(
    model_uri: Annotated[str | None, typer.Option("--model-uri", help="models:/NAME/VERSION or NAME@alias")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="a local MLflow model directory (with MLmodel)")] = None,
    event: Annotated[str | None, typer.Option("--event", help="prediction event (or features object) as JSON")] = None,
    event_file: Annotated[Path | None, typer.Option("--event-file", help="file holding the event JSON")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="table (parquet, CSV, JSONL) holding the row")] = None,
    row: Annotated[int | None, typer.Option("--row", help="0-based row of --data")] = None,
    output: Annotated[str | None, typer.Option("--class", help="class to explain (default: the predicted one)")] = None,
    top: Annotated[int | None, typer.Option("--top", min=1, help="show only the largest N contributions")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the explanation as JSON")] = False,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI")] = None,
    config: ConfigOpt = None,
) -> None:
    """Explain one prediction: each feature's SHAP contribution, largest first, the base value and the output."""
    from stream.evidence.lineage import quiet_store_logs

    quiet_store_logs()
    try:
        frame = read_event(event, event_file, data, row)
        uri = _tracking_uri(config, tracking_uri) if model_uri is not None else tracking_uri
        est, features, background = load_model_for_explain(model_uri, model, tracking_uri=uri)
        result = explain_prediction(est, features, frame, background=background, output=output)
    except UserError as err:  # here too, not only in main(): the command also runs inside other Typer apps
        typer.echo(f"glassbox: error: {err}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        _print(result, top)

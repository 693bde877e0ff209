"""``glassbox reference``: attach a reference to a registered model version, show what one holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stream.cli.options import ConfigOpt
from stream.errors import UserError

reference_app = typer.Typer(help="Reference data of registered models (MLflow).", no_args_is_help=True,
                            add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

TrackingOpt = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default: settings)")]


def _tracking_uri(config: Path | None, tracking_uri: str | None) -> str:
    from stream.evidence.lineage import quiet_store_logs

    quiet_store_logs()
    if tracking_uri:
        return tracking_uri
    from stream.settings import load_settings

    uri = load_settings(config).mlflow.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


@reference_app.command("log")
def log_command(
    model_uri: Annotated[str, typer.Option("--model-uri", help="models:/NAME/VERSION or models:/NAME@alias")],
    data: Annotated[Path, typer.Option("--data", help="reference table: parquet, CSV or JSON lines",
                                       exists=True, dir_okay=False, readable=True)],
    targets: Annotated[str | None, typer.Option("--targets", help="label column, when the data has labels")] = None,
    prediction_col: Annotated[str, typer.Option("--prediction-col",
                                                help="the model's prediction column")] = "prediction",
    scores: Annotated[list[str] | None, typer.Option("--scores", help="class-probability column (repeatable)")] = None,
    categorical: Annotated[list[str] | None, typer.Option("--categorical", help="force a column categorical "
                                                                                  "(repeatable)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="dataset name (default NAME-vVERSION-reference)")] = None,
    attributions: Annotated[bool, typer.Option("--attributions/--no-attributions",
                                               help="store SHAP of the model on a sample of the data")] = True,
    tracking_uri: TrackingOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Attach REF data, its profile, dataset input and digest (and the model's SHAP attributions on it) to an
    existing model version."""
    from stream.evidence.reference import log_reference

    uri = _tracking_uri(config, tracking_uri)
    try:
        info = log_reference(model_uri, data, tracking_uri=uri, targets=targets, prediction_col=prediction_col,
                             scores=scores or None, categorical=categorical or None, name=name,
                             attributions=attributions)
    except ValueError as err:
        raise UserError(f"{data}: {err}") from None
    typer.echo(f"reference {info.name} ({info.rows} rows, digest {info.digest}, task {info.task}) attached to "
               f"models:/{info.model_name}/{info.model_version} in run {info.run_id}; attributions: "
               f"{info.attributions or 'not computed'}")


@reference_app.command("show")
def show_command(
    uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION, models:/NAME@alias or a data file")],
    top: Annotated[int, typer.Option("--top", min=1, help="features listed by reference mean |SHAP|")] = 10,
    tracking_uri: TrackingOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print a reference's lineage facts and, when stored, its top features by mean |SHAP| (fails naming what
    is missing)."""
    import json

    from stream.evidence.reference import load_reference

    ref = load_reference(uri, tracking_uri=_tracking_uri(config, tracking_uri), load_model=False, cache=None)
    body = {**ref.info.to_dict(), "features": ref.features}
    record = ref.extras.get("attributions")
    if record:
        from detectors.attribution import top_features

        body["reference_attributions"] = {
            "explainer": record.get("explainer"), "output_space": record.get("output_space"),
            "rows": record.get("rows"), "seed": record.get("seed"),
            "model_importance_kind": record.get("model_importance_kind"),
            "top_features": top_features(record, top),
        }
    typer.echo(json.dumps(body, indent=2))

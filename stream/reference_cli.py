"""``glassbox reference``: attach a reference to a registered model version, show what one holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stream.errors import UserError

reference_app = typer.Typer(help="Reference data of registered models (MLflow).", no_args_is_help=True,
                            add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="glassbox.toml to read")]
TrackingOpt = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default: settings)")]


def _tracking_uri(config: Path | None, tracking_uri: str | None) -> str:
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
    tracking_uri: TrackingOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Attach REF data, its profile, dataset input and digest to an existing model version."""
    from stream.reference import log_reference

    uri = _tracking_uri(config, tracking_uri)
    try:
        info = log_reference(model_uri, data, tracking_uri=uri, targets=targets, prediction_col=prediction_col,
                             scores=scores or None, categorical=categorical or None, name=name)
    except ValueError as err:
        raise UserError(f"{data}: {err}") from None
    typer.echo(f"reference {info.name} ({info.rows} rows, digest {info.digest}, task {info.task}) attached to "
               f"models:/{info.model_name}/{info.model_version} in run {info.run_id}")


@reference_app.command("show")
def show_command(
    uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION, models:/NAME@alias or a data file")],
    tracking_uri: TrackingOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print a reference's lineage facts (fails naming what is missing)."""
    import json

    from stream.reference import load_reference

    ref = load_reference(uri, tracking_uri=_tracking_uri(config, tracking_uri), load_model=False, cache=None)
    typer.echo(json.dumps({**ref.info.to_dict(), "features": ref.features}, indent=2))

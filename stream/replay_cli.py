"""``glassbox replay``: replay a table of predictions through the detection core and write its alerts.

Registered by ``stream.cli`` as ``app.command("replay")(replay_command)``. Bad paths, flags or columns
print one line on stderr and exit with code 2, without a traceback.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from detectors.config import DetectionConfig
from stream.replay import ReplayError, ReplayOptions, ReplayResult, replay_file, write_alerts
from stream.tables import TableError


def _fail(msg: str) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(2)


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items


def load_detection_config(path: Path | None) -> DetectionConfig:
    """The ``[detection]`` table of a glassbox TOML file as a :class:`DetectionConfig` (defaults if absent)."""
    if path is None:
        return DetectionConfig()
    if not path.exists():
        raise ReplayError(f"no such config file: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ReplayError(f"{path} is not valid TOML: {err}") from None
    table = data.get("detection", {})
    if not isinstance(table, dict):
        raise ReplayError(f"{path}: [detection] must be a table")
    try:
        return DetectionConfig(**table)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise ReplayError(f"{path}: [detection] {where}: {first.get('msg')}") from None


def replay_command(
    events: Annotated[Path, typer.Argument(help="events table (.parquet, .csv, .jsonl), one row per prediction")],
    reference: Annotated[Path, typer.Option("--reference", help="reference table the events are compared with")],
    alerts_out: Annotated[Path, typer.Option("--alerts-out", help="where to write the alerts (JSON lines)")] = Path(
        "alerts.jsonl"),
    config: Annotated[Path | None, typer.Option("--config", help="glassbox.toml; its [detection] table")] = None,
    timestamp_col: Annotated[str | None, typer.Option(
        "--timestamp-col", help="event time column (default: 'timestamp' if present, else row order)")] = None,
    id_col: Annotated[str | None, typer.Option(
        "--id-col", help="prediction id column (default: 'prediction_id' if present, else the row number)")] = None,
    prediction_col: Annotated[str | None, typer.Option(
        "--prediction-col", help="prediction column (default: 'prediction' if present)")] = None,
    score_col: Annotated[list[str] | None, typer.Option(
        "--score-col", help="score (class probability) column; repeat or comma-separate")] = None,
    label_col: Annotated[str | None, typer.Option(
        "--label-col", help="label column (default: 'label' if present)")] = None,
    label_delay: Annotated[int, typer.Option("--label-delay", help="labels arrive this many rows later")] = 0,
    task: Annotated[str | None, typer.Option(
        "--task", help="binary | multiclass | regression (default: inferred)")] = None,
    features: Annotated[str | None, typer.Option(
        "--features", help="A,B,...: feature columns (default: every column without a role)")] = None,
    categorical: Annotated[str | None, typer.Option(
        "--categorical", help="A,B,...: features to treat as categorical")] = None,
    window: Annotated[int | None, typer.Option("--window", help="events per window (default: config or 1000)")] = None,
) -> None:
    """Replay EVENTS against REFERENCE through the detection core; write alerts and print a summary."""
    try:
        if task is not None and task not in ("binary", "multiclass", "regression"):
            raise ReplayError(f"--task must be binary, multiclass or regression, not {task!r}")
        if window is not None and window < 10:
            raise ReplayError("--window must be at least 10")
        if label_delay < 0:
            raise ReplayError("--label-delay must be >= 0")
        cfg = load_detection_config(config)
        scores: list[str] = []
        for s in score_col or []:
            scores += _split(s) or []
        opts = ReplayOptions(
            timestamp_col=timestamp_col, id_col=id_col, prediction_col=prediction_col, score_cols=scores,
            label_col=label_col, label_delay=label_delay, task=task, features=_split(features),
            categorical=_split(categorical), window=window, config=cfg, keep_windows=False,
        )
        result = replay_file(events, reference, opts)
        out = write_alerts(result.alerts, alerts_out)
    except (ReplayError, TableError) as err:
        raise _fail(str(err)) from None
    except OSError as err:
        raise _fail(f"{getattr(err, 'filename', None) or ''} {err.strerror or err}".strip()) from None
    print_summary(result, out)


def print_summary(result: ReplayResult, alerts_path: Path | None = None) -> None:
    """A one-screen summary of a replay (rich)."""
    from rich.console import Console
    from rich.table import Table

    s: dict[str, Any] = result.summary
    console = Console(file=sys.stdout, width=100)
    rate = s.get("events_per_second")
    head = (f"[bold]{s['model']}[/] ({s['task']}, {s['features']} features): {s['rows']:,} events, "
            f"{s['windows']:,} windows of {s['window']}"
            + (f", {rate:,.0f} events/s" if rate else ""))
    console.print(head)
    if s["labels_joined"] or s["labels_dropped"]:
        console.print(f"labels joined: {s['labels_joined']:,} ({s['label_coverage']:.1%} coverage), "
                      f"without usable label: {s['labels_dropped']:,}")
    if s["open_window_events"]:
        console.print(f"[dim]{s['open_window_events']:,} events in the last, unclosed window were not tested[/]")
    if not result.alerts:
        console.print("[green]no alerts[/]")
    else:
        t = Table(title=f"{len(result.alerts)} alert transitions", title_justify="left")
        for col in ("row", "status", "severity", "monitor", "feature", "statistic", "value", "threshold"):
            t.add_column(col, justify="right" if col in ("row", "value", "threshold") else "left")
        shown = result.alerts[:15]
        for a in shown:
            t.add_row(str(a["row"]), a["status"], a["severity"], a["monitor"], a["feature"] or "-", a["statistic"],
                      "-" if a["value"] is None else f"{a['value']:.4g}",
                      "-" if a["threshold"] is None else f"{a['threshold']:.4g}")
        console.print(t)
        if len(result.alerts) > len(shown):
            console.print(f"[dim]... and {len(result.alerts) - len(shown)} more[/]")
    if alerts_path is not None:
        console.print(f"alerts written to {alerts_path}")

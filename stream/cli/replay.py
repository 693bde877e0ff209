"""``glassbox replay``: backtests over a file or a Kafka topic, with what-if, scoring, a timeline and an MLflow run.

``EVENTS`` is a table file (.parquet, .csv, .jsonl; replayed by :mod:`stream.backtest.file_replay`) or ``kafka://TOPIC``
(``kafka://HOST:PORT/TOPIC``), replayed by :mod:`stream.backtest.topic_replay` through the live worker's pipeline.
On top of either:

- ``--compare other.toml``: the same history under a second rule set; prints alert counts per monitor side
  by side and the alerts that only one rule set raised.
- ``--truth truth.json``: scores the alerts against known change points (:mod:`detectors.scoring`); prints
  the table and writes it as JSON (``--score-out``, default next to the alerts file).
- ``--plot out.html`` / ``--plot out.png``: the timeline (:mod:`stream.backtest.timeline`).
- ``--mlflow``: an MLflow monitoring run of ``kind=replay`` records the input (file and digest, or topic and
  offsets), the reference, the configuration, the alerts and the window metrics (:mod:`stream.evidence.replay_run`)
  in ``[mlflow]``'s store. Only when asked (``--no-mlflow``, the default, records none): a quick backtest imports
  and pays for no MLflow.

The options become one :class:`~stream.backtest.outcomes.ReplayRequest` (what to replay) and one
:class:`ReplayOutputs` (what to write). Anything the user can fix (a path, a flag, a topic, an empty range, a
malformed truth file) raises a :class:`~stream.errors.UserError`, which the CLI prints as one
``glassbox: error: ...`` line with exit code 2.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from stream.backtest.outcomes import FileColumns, Outcome, ReplayRequest, TopicRange
from stream.backtest.rule_sets import BacktestError, load_truth
from stream.cli.options import ConfigOpt
from stream.cli.replay_print import console


@dataclass(frozen=True)
class ReplayOutputs:
    """What a replay writes and shows besides the alerts table."""

    alerts_out: Path = Path("alerts.jsonl")
    truth: Path | None = None
    score_out: Path | None = None
    plots: tuple[Path, ...] = ()
    progress: bool | None = None  # topic replays: None = when stderr is a terminal
    mlflow: bool = False  # record an MLflow monitoring run


def _split(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


def replay_command(
    events: Annotated[str, typer.Argument(
        help="events table (.parquet, .csv, .jsonl) or kafka://TOPIC (kafka://HOST:PORT/TOPIC)")],
    reference: Annotated[str | None, typer.Option(
        "--reference", help="reference table (or models:/ URI for topics); topics default to [worker.models]")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="model name (file: names the stream; topic: the model --reference is for, "
        "default every model)")] = None,
    alerts_out: Annotated[Path, typer.Option("--alerts-out", help="where to write the alerts (JSON lines)")] = Path(
        "alerts.jsonl"),
    config: ConfigOpt = None,
    compare: Annotated[Path | None, typer.Option(
        "--compare", help="a second glassbox.toml (rule set B): alert counts side by side and differences")] = None,
    truth: Annotated[Path | None, typer.Option(
        "--truth", help="JSON change points to score the alerts against")] = None,
    score_out: Annotated[Path | None, typer.Option(
        "--score-out", help="where to write the score (default: ALERTS_OUT with .score.json)")] = None,
    plot: Annotated[list[Path] | None, typer.Option(
        "--plot", help="timeline: out.html and/or out.png (repeat for both)")] = None,
    window: Annotated[int | None, typer.Option("--window", help="events per window (overrides the config)")] = None,
    labels: Annotated[str | None, typer.Option(
        "--labels", help="topic: labels topic (default: the sibling *labels topic if it exists; 'none': skip)")] = None,
    from_offset: Annotated[str | None, typer.Option(
        "--from-offset", help="topic: first offset, N or P:N,P:N (inclusive)")] = None,
    to_offset: Annotated[str | None, typer.Option(
        "--to-offset", help="topic: end offset, N or P:N,P:N (exclusive)")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="topic: first event time, RFC 3339 or epoch ms (inclusive)")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="topic: end event time, RFC 3339 or epoch ms (exclusive)")] = None,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="topic: progress bar (default: when stderr is a terminal)")] = None,
    timestamp_col: Annotated[str | None, typer.Option("--timestamp-col", help="file: event time column")] = None,
    id_col: Annotated[str | None, typer.Option("--id-col", help="file: prediction id column")] = None,
    prediction_col: Annotated[str | None, typer.Option("--prediction-col", help="file: prediction column")] = None,
    score_col: Annotated[list[str] | None, typer.Option("--score-col", help="file: score column(s)")] = None,
    label_col: Annotated[str | None, typer.Option("--label-col", help="file: label column")] = None,
    label_delay: Annotated[int, typer.Option("--label-delay", help="file: labels arrive this many rows later")] = 0,
    task: Annotated[str | None, typer.Option("--task", help="file: binary | multiclass | regression")] = None,
    features: Annotated[str | None, typer.Option("--features", help="file: A,B,...: feature columns")] = None,
    categorical: Annotated[str | None, typer.Option("--categorical", help="file: A,B,...: categorical")] = None,
    mlflow: Annotated[bool, typer.Option(
        "--mlflow/--no-mlflow", help="record an MLflow monitoring run (default: none)")] = False,
) -> None:
    """Replay a file or a Kafka topic through the detection core; what-if, score, plot and record the result."""
    scores = tuple(x for s in score_col or [] for x in (_split(s) or ()))
    request = ReplayRequest(
        events=events, reference=reference, model=model, config=config, compare=compare, window=window,
        topic=TopicRange(labels=labels, from_offset=from_offset, to_offset=to_offset, since=since, until=until),
        columns=FileColumns(timestamp_col=timestamp_col, id_col=id_col, prediction_col=prediction_col,
                            score_cols=scores, label_col=label_col, label_delay=label_delay, task=task,
                            features=_split(features), categorical=_split(categorical)))
    outputs = ReplayOutputs(alerts_out=alerts_out, truth=truth, score_out=score_out, plots=tuple(plot or ()),
                            progress=progress, mlflow=mlflow)
    run_replay(request, outputs)


def _validate(req: ReplayRequest, outputs: ReplayOutputs, kafka: bool) -> None:
    if req.window is not None and req.window < 10:
        raise BacktestError("--window must be at least 10")
    for p in outputs.plots:
        if p.suffix.lower() not in (".html", ".htm", ".png"):
            raise BacktestError(f"--plot {p}: expected a .html or .png path")
    for p, what in ((req.config, "--config"), (req.compare, "--compare")):
        if p is not None and not p.is_file():
            raise BacktestError(f"{what}: no such config file: {p}")
    if kafka:
        used = [k for k, v in req.columns.flags().items() if v]
        if used:
            raise BacktestError(f"{', '.join(used)} only apply to file replays, not to kafka://")
        return
    used = [k for k, v in req.topic.flags().items() if v is not None]
    if used:
        raise BacktestError(f"{', '.join(used)} only apply to kafka:// replays")
    if req.columns.task is not None and req.columns.task not in ("binary", "multiclass", "regression"):
        raise BacktestError(f"--task must be binary, multiclass or regression, not {req.columns.task!r}")
    if req.columns.label_delay < 0:
        raise BacktestError("--label-delay must be >= 0")




def run_replay(req: ReplayRequest, outputs: ReplayOutputs) -> list[Outcome]:
    """Replay, print, write the alerts (score, plots) and record the MLflow run; returns the outcomes."""
    from stream.backtest.outcomes import replay_file_outcomes, replay_kafka_outcomes
    from stream.backtest.topic_range import is_kafka_uri
    from stream.cli.replay_print import ProgressBar, print_kafka_summary

    kafka = is_kafka_uri(req.events)
    _validate(req, outputs, kafka)
    changes = load_truth(outputs.truth) if outputs.truth is not None else []
    keep = bool(changes or outputs.plots or outputs.mlflow)
    req = replace(req, keep_windows=keep, record=outputs.mlflow)
    if kafka:
        show = sys.stderr.isatty() if outputs.progress is None else outputs.progress
        outs = replay_kafka_outcomes(req, ProgressBar if show else None)
        print_kafka_summary(outs[0].summary)
    else:
        outs = replay_file_outcomes(req)
        s = outs[0].summary
        rate = s.get("events_per_second")
        console().print(f"[bold]{s['model']}[/] ({s['task']}, {s['features']} features): {s['rows']:,} events, "
                        f"{s['windows']:,} windows of {s['window']}" + (f", {rate:,.0f} events/s" if rate else ""))
    _report(req, outputs, outs, changes)
    if outputs.mlflow:  # the settings after the replay, which reports a bad config in its own words
        from stream.cli.options import settings_from
        from stream.evidence.replay_run import record_replay

        run = record_replay(settings_from(req.config), outs[0], request=_request_record(req, outputs),
                            compare=outs[1] if len(outs) > 1 else None)
        console().print(f"MLflow run {run.run_id}: {run.link}")
    return outs


def _request_record(req: ReplayRequest, outputs: ReplayOutputs) -> dict[str, Any]:
    """The replay's options as plain JSON values (the run's ``config.replay``)."""
    options = {k: v for k, v in asdict(req).items() if k != "record"}
    return orjson.loads(orjson.dumps({**options, "alerts_out": outputs.alerts_out, "truth": outputs.truth},
                                     default=str))


def _report(req: ReplayRequest, outputs: ReplayOutputs, outs: list[Outcome], changes: list[Any]) -> None:
    from stream.backtest.file_replay import write_alerts
    from stream.backtest.outcomes import score_outcome
    from stream.cli.replay_print import compare_table, print_alerts, print_score

    main = outs[0]
    print_alerts(main.alerts)
    console().print(f"alerts written to {write_alerts(main.alerts, outputs.alerts_out)}")
    if req.compare is not None:
        compare_table(outs[0], outs[1])
        write_alerts(outs[1].alerts, outputs.alerts_out.with_suffix(".compare.jsonl"))
    if changes:
        report: dict[str, Any] = {}
        for o in outs:
            sc = score_outcome(o, changes)
            print_score(sc, o.name if len(outs) > 1 else None)
            report[o.name] = sc.to_dict()
        dest = outputs.score_out or outputs.alerts_out.with_suffix(".score.json")
        dest.parent.mkdir(parents=True, exist_ok=True)
        body = report[main.name] if len(outs) == 1 else report
        dest.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        console().print(f"score written to {dest}")
    for p in outputs.plots:
        from stream.backtest.timeline import write_plot

        written = write_plot(main.windows, main.alerts, changes, p, title=f"glassbox backtest: {req.events}")
        console().print(f"timeline written to {written}")

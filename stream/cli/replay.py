"""``glassbox replay``: backtests over a file or a Kafka topic, with what-if, scoring and a timeline.

``EVENTS`` is a table file (.parquet, .csv, .jsonl; replayed by :mod:`stream.backtest.file_replay`) or ``kafka://TOPIC``
(``kafka://HOST:PORT/TOPIC``), replayed by :mod:`stream.backtest.topic_replay` through the live worker's pipeline.
On top of either:

- ``--compare other.toml``: the same history under a second rule set; prints alert counts per monitor side
  by side and the alerts that only one rule set raised.
- ``--truth truth.json``: scores the alerts against known change points (:mod:`detectors.scoring`); prints
  the table and writes it as JSON (``--score-out``, default next to the alerts file).
- ``--plot out.html`` / ``--plot out.png``: the timeline (:mod:`stream.backtest.timeline`).

Anything the user can fix (a path, a flag, a topic, an empty range, a malformed truth file) is a
:class:`~stream.errors.UserError`, printed as one line (``error: ...``) on stderr with exit code 2, as the file
replay always did.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from detectors.scoring import BacktestScore, ChangePoint, EventClock, TruthError, parse_truth, score
from stream.errors import UserError
from stream.pipeline.monitors import MonitorRegistry


class BacktestError(UserError, ValueError):
    """A backtest that cannot run as asked."""


@dataclass
class Outcome:
    """One rule set's result: alerts, window records and a summary, whatever the source."""

    name: str
    alerts: list[dict[str, Any]]
    windows: list[dict[str, Any]]
    summary: dict[str, Any]


# truth --------------------------------------------------------------------------------------------------------
def load_truth(path: Path) -> list[ChangePoint]:
    """Change points from a JSON file; one-line :class:`BacktestError` when it cannot be used."""
    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise BacktestError(f"no such truth file: {path}") from None
    except OSError as err:
        raise BacktestError(f"cannot read truth file {path}: {err.strerror or err}") from None
    except orjson.JSONDecodeError as err:
        raise BacktestError(f"truth file {path} is not valid JSON: {err}") from None
    try:
        changes = parse_truth(doc)
    except TruthError as err:
        raise BacktestError(f"truth file {path}: {err}") from None
    if not changes:
        raise BacktestError(f"truth file {path} lists no change points")
    return changes


# kafka --------------------------------------------------------------------------------------------------------
async def _list_topics(bootstrap: str, kafka: Any) -> set[str]:
    from aiokafka import AIOKafkaClient

    from stream.kafka.clients import aiokafka_kwargs

    kw = aiokafka_kwargs(kafka, bootstrap)
    client = AIOKafkaClient(**kw)
    try:
        await asyncio.wait_for(client.bootstrap(), kafka.connect_timeout_s + 5)
        md = await client.fetch_all_metadata()
        return set(md.topics())
    except Exception as err:  # noqa: BLE001 - any failure to talk to the broker is the user's to fix
        raise BacktestError(f"cannot list the topics of Kafka at {bootstrap} ({type(err).__name__})") from None
    finally:
        await client.close()


def _resolve_topic(name: str, topics: set[str], prefix: str, what: str, bootstrap: str) -> str:
    for cand in (name, f"{prefix}{name}"):
        if cand in topics:
            return cand
    shown = sorted(t for t in topics if not t.startswith("__"))
    hint = f" (topics: {', '.join(shown[:8])}{' ...' if len(shown) > 8 else ''})" if shown else " (it has no topics)"
    raise BacktestError(f"{what} topic {name!r} does not exist on {bootstrap}{hint}")


def _kafka_pipelines(settings_list: list[Any], reference: str | None, model: str | None) -> list[Any]:
    from stream.evidence.reference import load_reference_for
    from stream.worker.agents import build_pipeline

    pipes = []
    for s in settings_list:
        if not s.worker.models and reference is None:
            raise BacktestError("nothing to monitor: pass --reference REF (and --model NAME), or configure "
                                "[worker.models] in the config")
        pipe = build_pipeline(s)
        if reference is not None and model is None:
            pipe.monitors = EveryModel(reference, s.detection, lambda ref, _s=s: load_reference_for(ref, _s))
        pipes.append(pipe)
    return pipes


class EveryModel(MonitorRegistry):
    """Every model found in the topic is monitored against the one ``--reference``."""

    def __init__(self, reference: str, config: Any, loader: Any):
        super().__init__({}, config, loader)
        self._ref = reference

    @property
    def discovery(self) -> bool:
        return False

    def accepts(self, model: str) -> bool:
        self.references.setdefault(model, self._ref)
        return True


def _toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise BacktestError(f"cannot read config {path}: {err}") from None


def overlay_detection(base: Any, path: Path) -> Any:
    """Rule set B: ``base`` (A's detection config) with the keys of ``path``'s ``[detection]`` table replaced."""
    from pydantic import ValidationError

    from detectors.config import DetectionConfig

    table = _toml(path).get("detection", {})
    if not isinstance(table, dict):
        raise BacktestError(f"{path}: [detection] must be a table")
    try:
        return DetectionConfig.model_validate({**base.model_dump(), **table})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise BacktestError(f"{path}: [detection] {where}: {first.get('msg')}") from None


def _settings_for(config: Path | None, window: int | None, reference: str | None, model: str | None) -> Any:
    from stream.settings import load_settings

    s = load_settings(config)
    upd: dict[str, Any] = {}
    if window is not None:
        upd["detection"] = s.detection.model_copy(update={"window": window})
    if reference is not None and model is not None:
        upd["worker"] = s.worker.model_copy(update={"models": {**s.worker.models, model: reference}})
    return s.model_copy(update=upd) if upd else s


def _compare_settings(a: Any, compare: Path) -> Any:
    """Rule set B for a topic: A's settings with B's ``[detection]`` keys, and B's ``[worker.models]`` if any."""
    b = a.model_copy(update={"detection": overlay_detection(a.detection, compare)})
    models = (_toml(compare).get("worker") or {}).get("models")
    if models:
        b = b.model_copy(update={"worker": a.worker.model_copy(update={"models": dict(models)})})
    return b


def replay_kafka_outcomes(
    events: str, *, config: Path | None, compare: Path | None, reference: str | None, model: str | None,
    window: int | None, labels: str | None, from_offset: str | None, to_offset: str | None, since: str | None,
    until: str | None, keep_windows: bool, progress: bool,
) -> tuple[list[Outcome], dict[str, Any]]:
    """Replay a topic under one or two rule sets (one read, the same steps to each pipeline)."""
    from stream.backtest.topic_replay import ReplayRange, parse_kafka_uri, parse_offsets, parse_time, replay_topic
    from stream.kafka.broker import check_reachable

    target = parse_kafka_uri(events)
    s1 = _settings_for(config, window, reference, model)
    settings = [s1] + ([_compare_settings(s1, compare)] if compare is not None else [])
    bootstrap = target.bootstrap or s1.kafka.bootstrap
    if not bootstrap:
        raise BacktestError("kafka:// replay needs a Kafka: set kafka.bootstrap (or GLASSBOX_KAFKA__BOOTSTRAP), or "
                            "write kafka://HOST:PORT/TOPIC (the embedded broker keeps no topics between runs)")
    rng = ReplayRange(parse_offsets(from_offset), parse_offsets(to_offset), parse_time(since, "--since"),
                      parse_time(until, "--until"))
    rng.validate()
    check_reachable(bootstrap, s1.kafka.connect_timeout_s)
    topics = asyncio.run(_list_topics(bootstrap, s1.kafka))
    prefix = s1.kafka.topic_prefix
    pred_topic = _resolve_topic(target.topic, topics, prefix, "predictions", bootstrap)
    if labels is None:  # the worker's labels topic, when it exists
        sib = pred_topic[: -len("predictions")] + "labels" if pred_topic.endswith("predictions") else None
        label_topic = sib if sib in topics else None
    elif labels.lower() in ("none", "-", ""):
        label_topic = None
    else:
        label_topic = _resolve_topic(labels.removeprefix("kafka://"), topics, prefix, "labels", bootstrap)
    pipes = _kafka_pipelines(settings, reference, model)
    bar = _Progress(f"{pred_topic}" + (f" + {label_topic}" if label_topic else "")) if progress else None
    try:
        res = replay_topic(pipes, bootstrap=bootstrap, kafka=s1.kafka, predictions=pred_topic, labels=label_topic,
                           rng=rng, step_messages=s1.worker.batch_max,
                           label_horizon_ms=int(s1.worker.label_ttl_s * 1000), keep_windows=keep_windows,
                           progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    base = res.summary()
    base.update({"source": f"kafka://{pred_topic}", "labels_topic": label_topic, "range": rng.describe(),
                 "bootstrap": bootstrap})
    outs = []
    for i, (run, name) in enumerate(zip(res.runs, [str(config or "defaults"), str(compare)], strict=False)):
        summ = dict(base) if i == 0 else {**base, "alerts": len(run.alerts), "deadlettered": run.deadletters}
        outs.append(Outcome(name, run.alerts, run.windows, summ))
    return outs, base


class _Progress:
    """A rich progress bar on stderr: records read of the range, events/s and ETA."""

    def __init__(self, what: str):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>12} events/s"), TimeRemainingColumn(),
            console=Console(file=sys.stderr), transient=False, refresh_per_second=4,
        )
        self.task = self.progress.add_task(what, total=None, rate="-")
        self.progress.start()
        import time

        self._t0 = time.perf_counter()
        self._clock = time.perf_counter

    def update(self, stats: Any, events: int) -> None:
        dt = max(self._clock() - self._t0, 1e-9)
        self.progress.update(self.task, completed=stats.messages + stats.skipped, total=stats.total(),
                             rate=f"{events / dt:,.0f}")

    def close(self) -> None:
        self.progress.stop()


# files --------------------------------------------------------------------------------------------------------
def replay_file_outcomes(events: Path, *, reference: Path | None, config: Path | None, compare: Path | None,
                         keep_windows: bool, **file_opts: Any) -> list[Outcome]:
    from stream.backtest.file_replay import ReplayError, ReplayOptions, load_detection_config, replay_file
    from stream.backtest.table_files import TableError

    if reference is None:
        raise BacktestError("replaying a file needs --reference REF (the table the events are compared with)")
    outs = []
    base = None
    for cfg_path in [config] + ([compare] if compare is not None else []):
        try:
            cfg = load_detection_config(cfg_path) if base is None else overlay_detection(base, cfg_path)
            base = base or cfg
            opts = ReplayOptions(config=cfg, keep_windows=keep_windows, **file_opts)
            res = replay_file(events, reference, opts)
        except (ReplayError, TableError) as err:
            raise BacktestError(str(err)) from None
        except OSError as err:
            raise BacktestError(f"{getattr(err, 'filename', None) or ''} {err.strerror or err}".strip()) from None
        outs.append(Outcome(str(cfg_path or "defaults"), res.alerts, res.windows, res.summary))
    return outs


# reporting ----------------------------------------------------------------------------------------------------
def _console() -> Any:
    from rich.console import Console

    return Console(file=sys.stdout, width=132, highlight=False)


def print_alerts(alerts: list[dict[str, Any]], limit: int = 15) -> None:
    from rich.table import Table

    c = _console()
    if not alerts:
        c.print("[green]no alerts[/]")
        return
    t = Table(title=f"{len(alerts)} alert transitions", title_justify="left")
    for col in ("event time", "where", "status", "monitor", "feature", "statistic", "value", "threshold"):
        t.add_column(col, justify="right" if col in ("value", "threshold") else "left")
    for a in alerts[:limit]:
        src = a.get("source") or {}
        where = f"row {a['row']}" if a.get("row") is not None else (
            f"p{src.get('partition')}@{src.get('offset_end')}" if src else "-")
        t.add_row(_when(a["event_time"]), where, a["status"], a["monitor"], a["feature"] or "-", a["statistic"],
                  "-" if a["value"] is None else f"{a['value']:.4g}",
                  "-" if a["threshold"] is None else f"{a['threshold']:.4g}")
    c.print(t)
    if len(alerts) > limit:
        c.print(f"[dim]... and {len(alerts) - limit} more[/]")


def print_kafka_summary(s: dict[str, Any]) -> None:
    c = _console()
    c.print(f"[bold]{s['source']}[/]" + (f" + {s['labels_topic']}" if s.get("labels_topic") else "")
            + f" ({s['range']}, {s['method']}): {s['messages']:,} messages, {s['events']:,} events, "
            f"{s['labels']:,} labels in {s['seconds']:.2f} s ({s['events_per_second']:,.0f} events/s)")
    if s.get("deadlettered"):
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["deadletter_reasons"].items()))
        c.print(f"[yellow]{s['deadlettered']:,} messages would be dead-lettered[/] ({reasons})")
    spans = ", ".join(f"{k} {a}..{b}" for k, (a, b) in sorted(s["partitions"].items()))
    c.print(f"[dim]offsets replayed: {spans}[/]")


def _when(t: int | None) -> str:
    """Event time for people: ISO 8601 for real epochs, the raw number for row-based times."""
    if t is None:
        return "-"
    if t >= 631_152_000_000:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return str(t)


def _history(alerts: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[tuple[str, int]]]:
    out: dict[tuple[Any, ...], list[tuple[str, int]]] = {}
    for a in alerts:
        out.setdefault((a.get("model"), a["monitor"], a.get("feature")), []).append((a["status"], a["event_time"]))
    return out


def _fmt_history(h: list[tuple[str, int]], limit: int = 3) -> str:
    if not h:
        return "never"
    s = ", ".join(f"{st} {_when(t)}" for st, t in h[:limit])
    return s + (f" (+{len(h) - limit})" if len(h) > limit else "")


def compare_table(a: Outcome, b: Outcome, limit: int = 20) -> dict[str, Any]:
    """Print alert counts per monitor for two rule sets side by side, and the conditions (model, monitor,
    feature) whose alert history differs between them."""
    from rich.table import Table

    c = _console()
    ca = Counter((x["monitor"], x["status"]) for x in a.alerts)
    cb = Counter((x["monitor"], x["status"]) for x in b.alerts)
    monitors = sorted({m for m, _ in ca} | {m for m, _ in cb})
    t = Table(title="alerts per monitor (firing / resolved)", title_justify="left")
    t.add_column("monitor")
    t.add_column(f"A: {a.name}", justify="right")
    t.add_column(f"B: {b.name}", justify="right")
    t.add_column("B - A (firing)", justify="right")
    rows = {}
    for m in monitors:
        fa, fb = ca[(m, "firing")], cb[(m, "firing")]
        rows[m] = {"a": {"firing": fa, "resolved": ca[(m, "resolved")]},
                   "b": {"firing": fb, "resolved": cb[(m, "resolved")]}}
        t.add_row(m, f"{fa} / {ca[(m, 'resolved')]}", f"{fb} / {cb[(m, 'resolved')]}",
                  f"{fb - fa:+d}" if fb != fa else "=")
    c.print(t)
    ha, hb = _history(a.alerts), _history(b.alerts)
    keys = sorted(set(ha) | set(hb), key=lambda k: tuple("" if x is None else str(x) for x in k))
    differ = [k for k in keys if ha.get(k, []) != hb.get(k, [])]
    if not differ:
        c.print("[green]both rule sets raise the same alerts at the same event times[/]")
    else:
        d = Table(title=f"where they differ ({len(differ)} conditions)", title_justify="left")
        for col in ("monitor", "feature", "A", "B"):
            d.add_column(col)
        first = {k: min([t for _, t in ha.get(k, []) + hb.get(k, [])] or [0]) for k in differ}
        for k in sorted(differ, key=lambda k: first[k])[:limit]:
            d.add_row(k[1], k[2] or "-", _fmt_history(ha.get(k, [])), _fmt_history(hb.get(k, [])))
        c.print(d)
        if len(differ) > limit:
            c.print(f"[dim]... and {len(differ) - limit} more[/]")
    return {"monitors": rows, "differ": [list(k) for k in differ]}


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 86_400_000:
        return f"{v / 86_400_000:.2f} d"
    if a >= 3_600_000:
        return f"{v / 3_600_000:.2f} h"
    if a >= 60_000:
        return f"{v / 60_000:.1f} min"
    if a >= 1000:
        return f"{v / 1000:.1f} s"
    return f"{v:.0f} ms"


def _fmt_rows(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def print_score(sc: BacktestScore, name: str | None = None) -> None:
    """The scoring table: one row per monitor (and ``all``)."""
    from rich.table import Table

    c = _console()
    t = Table(title="score against the truth" + (f" ({name})" if name else ""), title_justify="left")
    t.add_column("monitor", no_wrap=True, min_width=16)
    for col in ("changes", "detected", "missed", "false alarms", "delay rows", "delay time", "MTBFA rows",
                "MTBFA time"):
        t.add_column(col, justify="right", no_wrap=True)
    for m in sc.monitors:
        t.add_row(m.monitor, str(m.changes), str(m.detections), str(m.missed), str(m.false_alarms),
                  _fmt_rows(m.mean_delay_rows), _fmt_ms(m.mean_delay_ms), _fmt_rows(m.mtbfa_rows),
                  _fmt_ms(m.mtbfa_ms))
    c.print(t)
    for m in sc.monitors:
        for d in m.matches:
            c.print(f"  {m.monitor}: {d.change} detected by {d.monitor}"
                    + (f"/{d.feature}" if d.feature else "")
                    + f" after {_fmt_rows(d.delay_rows)} rows, {_fmt_ms(d.delay_ms)}")


def score_outcome(o: Outcome, changes: list[ChangePoint]) -> BacktestScore:
    clock = EventClock.from_windows(o.windows)
    rows = o.summary.get("rows") if o.summary.get("rows") else None
    return score(o.alerts, changes, clock=clock, span_rows=rows)


# the command --------------------------------------------------------------------------------------------------
def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


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
    config: Annotated[Path | None, typer.Option("--config", "-c", help="glassbox.toml (rule set A)")] = None,
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
) -> None:
    """Replay a file or a Kafka topic through the detection core; what-if, score and plot the result."""
    args = dict(locals())
    try:
        _replay(**args)
    except UserError as err:  # one line on stderr, exit code 2, as every replay error
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def _replay(
    events: str, reference: str | None, model: str | None, alerts_out: Path, config: Path | None,
    compare: Path | None, truth: Path | None, score_out: Path | None, plot: list[Path] | None, window: int | None,
    labels: str | None, from_offset: str | None, to_offset: str | None, since: str | None, until: str | None,
    progress: bool | None, timestamp_col: str | None, id_col: str | None, prediction_col: str | None,
    score_col: list[str] | None, label_col: str | None, label_delay: int, task: str | None, features: str | None,
    categorical: str | None,
) -> None:
    from stream.backtest.file_replay import write_alerts
    from stream.backtest.topic_replay import is_kafka_uri

    if window is not None and window < 10:
        raise BacktestError("--window must be at least 10")
    for p in plot or []:
        if p.suffix.lower() not in (".html", ".htm", ".png"):
            raise BacktestError(f"--plot {p}: expected a .html or .png path")
    for p, what in ((config, "--config"), (compare, "--compare")):
        if p is not None and not p.is_file():
            raise BacktestError(f"{what}: no such config file: {p}")
    changes = load_truth(truth) if truth is not None else []
    keep = bool(truth or plot)
    kafka = is_kafka_uri(events)
    if kafka:
        file_only = {"--timestamp-col": timestamp_col, "--id-col": id_col, "--prediction-col": prediction_col,
                     "--score-col": score_col, "--label-col": label_col, "--task": task, "--features": features,
                     "--categorical": categorical, "--label-delay": label_delay or None}
        used = [k for k, v in file_only.items() if v]
        if used:
            raise BacktestError(f"{', '.join(used)} only apply to file replays, not to kafka://")
        show = sys.stderr.isatty() if progress is None else progress
        outs, _ = replay_kafka_outcomes(events, config=config, compare=compare, reference=reference, model=model,
                                        window=window, labels=labels, from_offset=from_offset, to_offset=to_offset,
                                        since=since, until=until, keep_windows=keep, progress=show)
        print_kafka_summary(outs[0].summary)
    else:
        topic_only = {"--labels": labels, "--from-offset": from_offset, "--to-offset": to_offset, "--since": since,
                      "--until": until}
        used = [k for k, v in topic_only.items() if v is not None]
        if used:
            raise BacktestError(f"{', '.join(used)} only apply to kafka:// replays")
        if task is not None and task not in ("binary", "multiclass", "regression"):
            raise BacktestError(f"--task must be binary, multiclass or regression, not {task!r}")
        if label_delay < 0:
            raise BacktestError("--label-delay must be >= 0")
        scores = [x for s in score_col or [] for x in (_split(s) or [])]
        outs = replay_file_outcomes(
            Path(events), reference=Path(reference) if reference else None, config=config, compare=compare,
            keep_windows=keep, timestamp_col=timestamp_col, id_col=id_col, prediction_col=prediction_col,
            score_cols=scores, label_col=label_col, label_delay=label_delay, task=task,
            features=_split(features), categorical=_split(categorical), window=window, model=model,
        )
        s = outs[0].summary
        rate = s.get("events_per_second")
        _console().print(f"[bold]{s['model']}[/] ({s['task']}, {s['features']} features): {s['rows']:,} events, "
                         f"{s['windows']:,} windows of {s['window']}" + (f", {rate:,.0f} events/s" if rate else ""))
    main = outs[0]
    print_alerts(main.alerts)
    out = write_alerts(main.alerts, alerts_out)
    _console().print(f"alerts written to {out}")
    if compare is not None:
        compare_table(outs[0], outs[1])
        write_alerts(outs[1].alerts, alerts_out.with_suffix(".compare.jsonl"))
    if changes:
        report: dict[str, Any] = {}
        for o in outs:
            sc = score_outcome(o, changes)
            print_score(sc, o.name if len(outs) > 1 else None)
            report[o.name] = sc.to_dict()
        dest = score_out or alerts_out.with_suffix(".score.json")
        dest.parent.mkdir(parents=True, exist_ok=True)
        body = report[main.name] if len(outs) == 1 else report
        dest.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        _console().print(f"score written to {dest}")
    for p in plot or []:
        from stream.backtest.timeline import write_plot

        title = f"glassbox backtest: {events}"
        written = write_plot(main.windows, main.alerts, changes, p, title=title)
        _console().print(f"timeline written to {written}")

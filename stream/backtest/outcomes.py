"""A backtest as asked (:class:`ReplayRequest`), run under one or two rule sets: the :class:`Outcome` of each.

A file goes through :mod:`stream.backtest.file_replay`, a ``kafka://`` topic through
:mod:`stream.backtest.topic_replay` (one read, the same steps to every rule set's pipeline). Whatever the source,
an outcome holds the alerts, the window records, a summary, and what the replay read (``inputs``) and compared
against (``references``) for the monitoring run (a file replay: when the request says ``record``, for the file
digests cost a pass over both files).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from stream.backtest.rule_sets import (
    BacktestError,
    compare_settings,
    kafka_pipelines,
    overlay_detection,
    settings_for,
)

if TYPE_CHECKING:
    from detectors.scoring import BacktestScore, ChangePoint

ProgressFactory = Callable[[str], Any]  # what -> an object with update(stats, events) and close()


@dataclass(frozen=True)
class TopicRange:
    """``kafka://`` only: the labels topic and the range to read."""

    labels: str | None = None
    from_offset: str | None = None
    to_offset: str | None = None
    since: str | None = None
    until: str | None = None

    def flags(self) -> dict[str, Any]:
        return {"--labels": self.labels, "--from-offset": self.from_offset, "--to-offset": self.to_offset,
                "--since": self.since, "--until": self.until}


@dataclass(frozen=True)
class FileColumns:
    """File replays only: which columns play which role, and how labels arrive."""

    timestamp_col: str | None = None
    id_col: str | None = None
    prediction_col: str | None = None
    score_cols: tuple[str, ...] = ()
    label_col: str | None = None
    label_delay: int = 0
    task: str | None = None
    features: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None

    def flags(self) -> dict[str, Any]:
        return {"--timestamp-col": self.timestamp_col, "--id-col": self.id_col,
                "--prediction-col": self.prediction_col, "--score-col": self.score_cols,
                "--label-col": self.label_col, "--task": self.task, "--features": self.features,
                "--categorical": self.categorical, "--label-delay": self.label_delay or None}


@dataclass(frozen=True)
class ReplayRequest:
    """One backtest: the events, the reference, the rule sets and the source-specific options."""

    events: str
    reference: str | None = None
    model: str | None = None
    config: Path | None = None
    compare: Path | None = None
    window: int | None = None
    keep_windows: bool = False
    record: bool = False  # the outcomes carry what a monitoring run records (a file's digest)
    topic: TopicRange = field(default_factory=TopicRange)
    columns: FileColumns = field(default_factory=FileColumns)


@dataclass
class Outcome:
    """One rule set's result: alerts, window records and a summary, whatever the source."""

    name: str
    alerts: list[dict[str, Any]]
    windows: list[dict[str, Any]]
    summary: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)  # file path and digest, or topic and offsets
    references: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> uri, name, digest


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    from stream.backtest.replay_cache import sha256_file  # pandas: not in the SDK-only install

    return f"sha256:{sha256_file(path)}"


def score_outcome(o: Outcome, changes: list[ChangePoint]) -> BacktestScore:
    """The outcome's alerts scored against known change points."""
    from detectors.scoring import EventClock, score

    clock = EventClock.from_windows(o.windows)
    rows = o.summary.get("rows") if o.summary.get("rows") else None
    return score(o.alerts, changes, clock=clock, span_rows=rows)


# files ------------------------------------------------------------------------------------------------------
def _alert_links(config: Path | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What adds an alert's links (runbook, dashboard) under the ``[alerting]`` of ``config``, as the worker does."""
    from stream.alerting.config import AlertingConfig

    if config is None or not config.exists():
        return AlertingConfig().with_links
    try:
        table = tomllib.loads(config.read_text()).get("alerting", {})
        return AlertingConfig(**table).with_links
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, TypeError, ValidationError) as err:
        raise BacktestError(f"{config}: [alerting]: {err}") from None


def replay_file_outcomes(req: ReplayRequest) -> list[Outcome]:
    """Replay a table file under rule set A (and B with ``compare``)."""
    from stream.backtest.file_replay import ReplayError, ReplayOptions, load_detection_config, replay_file
    from stream.backtest.table_files import TableError

    if req.reference is None:
        raise BacktestError("replaying a file needs --reference REF (the table the events are compared with)")
    events, reference = Path(req.events), Path(req.reference)
    c = req.columns
    outs = []
    base = None
    links = _alert_links(req.config)
    for cfg_path in [req.config] + ([req.compare] if req.compare is not None else []):
        try:
            cfg = load_detection_config(cfg_path) if base is None else overlay_detection(base, cfg_path)
            base = base or cfg
            opts = ReplayOptions(
                config=cfg, keep_windows=req.keep_windows, timestamp_col=c.timestamp_col, id_col=c.id_col,
                prediction_col=c.prediction_col, score_cols=list(c.score_cols), label_col=c.label_col,
                label_delay=c.label_delay, task=c.task, features=None if c.features is None else list(c.features),
                categorical=None if c.categorical is None else list(c.categorical), window=req.window,
                model=req.model, links=links)
            res = replay_file(events, reference, opts)
        except (ReplayError, TableError) as err:
            raise BacktestError(str(err)) from None
        except OSError as err:
            raise BacktestError(f"{getattr(err, 'filename', None) or ''} {err.strerror or err}".strip()) from None
        outs.append(Outcome(str(cfg_path or "defaults"), res.alerts, res.windows, res.summary))
    if req.record:
        _file_record(outs, events, reference)
    return outs


def _file_record(outs: list[Outcome], events: Path, reference: Path) -> None:
    """What the monitoring run of a file replay records: the files (path, digest) and the reference's profile."""
    inputs = {"file": str(events.resolve()), "digest": file_digest(events), "bytes": events.stat().st_size,
              "rows": outs[0].summary.get("rows")}
    refs = {outs[0].summary.get("model", "model"): {
        "uri": str(reference.resolve()), "name": reference.name, "digest": outs[0].summary.get("reference_digest"),
        "file_digest": file_digest(reference)}}
    for o in outs:
        o.inputs, o.references = inputs, refs


# kafka ------------------------------------------------------------------------------------------------------
async def _list_topics(bootstrap: str, kafka: Any) -> set[str]:
    import asyncio

    from aiokafka import AIOKafkaClient

    from stream.kafka.clients import aiokafka_kwargs

    client = AIOKafkaClient(**aiokafka_kwargs(kafka, bootstrap))
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


def _label_topic(labels: str | None, pred_topic: str, topics: set[str], prefix: str, bootstrap: str) -> str | None:
    if labels is None:  # the worker's labels topic, when it exists
        sib = pred_topic[: -len("predictions")] + "labels" if pred_topic.endswith("predictions") else None
        return sib if sib in topics else None
    if labels.lower() in ("none", "-", ""):
        return None
    return _resolve_topic(labels.removeprefix("kafka://"), topics, prefix, "labels", bootstrap)


def _references(pipe: Any) -> dict[str, dict[str, Any]]:
    """Per monitored model: the reference's URI, dataset name, digest and model version."""
    out = {}
    for model in sorted(pipe.monitors.references):
        try:
            info = getattr(pipe.monitors.reference(model), "info", None)  # loaded (and cached) by the replay
        except Exception:  # noqa: BLE001 - a configured model the topic never had: its URI is all there is
            info = None
        out[model] = {"uri": getattr(info, "uri", None) or pipe.monitors.references[model],
                      "name": getattr(info, "name", None), "digest": getattr(info, "digest", None),
                      "model_version": getattr(info, "model_version", None)}
    return out


def replay_kafka_outcomes(req: ReplayRequest, progress: ProgressFactory | None = None) -> list[Outcome]:
    """Replay a topic under one or two rule sets (one read, the same steps to each pipeline)."""
    import asyncio

    from stream.backtest.topic_replay import ReplayRange, parse_kafka_uri, parse_offsets, parse_time, replay_topic
    from stream.kafka.broker import check_reachable

    target = parse_kafka_uri(req.events)
    s1 = settings_for(req.config, req.window, req.reference, req.model)
    settings = [s1] + ([compare_settings(s1, req.compare)] if req.compare is not None else [])
    bootstrap = target.bootstrap or s1.kafka.bootstrap
    if not bootstrap:
        raise BacktestError("kafka:// replay needs a Kafka: set kafka.bootstrap (or GLASSBOX_KAFKA__BOOTSTRAP), or "
                            "write kafka://HOST:PORT/TOPIC (the embedded broker keeps no topics between runs)")
    t = req.topic
    rng = ReplayRange(parse_offsets(t.from_offset), parse_offsets(t.to_offset), parse_time(t.since, "--since"),
                      parse_time(t.until, "--until"))
    rng.validate()
    check_reachable(bootstrap, s1.kafka.connect_timeout_s)
    topics = asyncio.run(_list_topics(bootstrap, s1.kafka))
    prefix = s1.kafka.topic_prefix
    pred_topic = _resolve_topic(target.topic, topics, prefix, "predictions", bootstrap)
    label_topic = _label_topic(t.labels, pred_topic, topics, prefix, bootstrap)
    pipes = kafka_pipelines(settings, req.reference, req.model)
    bar = progress(pred_topic + (f" + {label_topic}" if label_topic else "")) if progress else None
    try:
        res = replay_topic(pipes, bootstrap=bootstrap, kafka=s1.kafka, predictions=pred_topic, labels=label_topic,
                           rng=rng, step_messages=s1.worker.batch_max,
                           label_horizon_ms=int(s1.worker.label_ttl_s * 1000), keep_windows=req.keep_windows,
                           progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    base = res.summary()
    base.update({"source": f"kafka://{pred_topic}", "labels_topic": label_topic, "range": rng.describe(),
                 "bootstrap": bootstrap})
    inputs = {"bootstrap": bootstrap, "topic": pred_topic, "labels_topic": label_topic, "range": rng.describe(),
              "offsets": base["partitions"]}
    outs = []
    names = [str(req.config or "defaults"), str(req.compare)]
    for i, (run, name) in enumerate(zip(res.runs, names, strict=False)):
        summ = dict(base) if i == 0 else {**base, "alerts": len(run.alerts), "deadlettered": run.deadletters}
        outs.append(Outcome(name, run.alerts, run.windows, summ, inputs, _references(pipes[i])))
    return outs

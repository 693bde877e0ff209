"""Replay Kafka topics through the live worker's :class:`~stream.pipeline.pipeline.Pipeline`.

:mod:`stream.backtest.topic_reader` reads the partitions over the range asked for and merges them in event-time
order, in a reader process; here every step goes through each pipeline (several with ``--compare``, all
fed the same steps from one read) and the alerts, windows and dead letters are collected.

>>> parse_kafka_uri("kafka://glassbox.predictions"), parse_kafka_uri("kafka://10.0.0.5:9092/preds")
(KafkaTarget(bootstrap=None, topic='glassbox.predictions'), KafkaTarget(bootstrap='10.0.0.5:9092', topic='preds'))
>>> parse_offsets("1200"), parse_offsets("0:10,3:250")
(1200, {0: 10, 3: 250})
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream.backtest.heap import keep_freed_memory
from stream.backtest.processes import fewer_collections
from stream.backtest.reader_process import ReaderProcess
from stream.backtest.shard_replay import ShardReplay
from stream.backtest.topic_range import (
    KAFKA_SCHEME,
    PREDICTIONS,
    KafkaReplayError,
    ReadStats,
    ReplayRange,
    is_kafka_uri,
)
from stream.pipeline.parse_step import parse_step
from stream.pipeline.pipeline import Pipeline, RawMessage
from stream.settings import KafkaConfig

__all__ = ["KafkaReplayError", "ReplayRange", "replay_topic", "parse_kafka_uri", "parse_offsets", "parse_time"]

@dataclass(frozen=True)
class KafkaTarget:
    bootstrap: str | None  # None: the configured kafka.bootstrap
    topic: str


def parse_kafka_uri(uri: str) -> KafkaTarget:
    """``kafka://TOPIC`` or ``kafka://HOST:PORT[,HOST:PORT]/TOPIC``."""
    if not is_kafka_uri(uri):
        raise KafkaReplayError(f"{uri!r} is not a kafka:// address")
    rest = uri[len(KAFKA_SCHEME):]
    bootstrap, sep, topic = rest.rpartition("/")
    if not sep:
        bootstrap, topic = "", rest
    if not topic or any(c.isspace() for c in topic):
        raise KafkaReplayError(f"{uri!r}: expected kafka://TOPIC or kafka://HOST:PORT/TOPIC")
    return KafkaTarget(bootstrap or None, topic)


def parse_offsets(spec: str | int | None) -> int | dict[int, int] | None:
    """An offset for every partition (``"1200"``) or per partition (``"0:10,3:250"``)."""
    if spec is None or isinstance(spec, int):
        return spec
    s = spec.strip()
    try:
        if ":" not in s:
            v = int(s)
            if v < 0:
                raise ValueError
            return v
        out: dict[int, int] = {}
        for item in s.split(","):
            p, _, o = item.strip().partition(":")
            out[int(p)] = int(o)
            if out[int(p)] < 0 or int(p) < 0:
                raise ValueError
        return out
    except ValueError:
        raise KafkaReplayError(f"offset {spec!r}: expected N or PARTITION:N[,PARTITION:N...] (N >= 0)") from None


def parse_time(spec: str | int | None, what: str = "time") -> int | None:
    """Epoch milliseconds from epoch ms or RFC 3339 (``2026-11-02T10:00:00Z``)."""
    if spec is None or isinstance(spec, int):
        return spec
    from stream.events import InvalidEvent, parse_timestamp

    s = spec.strip()
    try:
        return parse_timestamp(int(s) if s.lstrip("-").isdigit() else s.replace("z", "Z"), what)
    except InvalidEvent as err:
        raise KafkaReplayError(f"{what} {spec!r}: {err.detail}") from None


# the driver -----------------------------------------------------------------------------------------------
@dataclass
class PipelineRun:
    """What one pipeline produced over the replay."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    deadletters: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    events: int = 0


@dataclass
class KafkaReplayResult:
    runs: list[PipelineRun]
    stats: ReadStats
    seconds: float
    labels: int = 0

    @property
    def events_per_second(self) -> float:
        return self.runs[0].events / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        run = self.runs[0]
        preds = [p for p in self.stats.plans if p.rank == PREDICTIONS]
        return {
            "messages": self.stats.messages, "events": run.events, "labels": self.labels,
            "deadlettered": run.deadletters, "deadletter_reasons": run.reasons, "alerts": len(run.alerts),
            "seconds": self.seconds, "events_per_second": self.events_per_second,
            "method": self.stats.method, "skipped_out_of_range": self.stats.skipped,
            "partitions": {f"{p.topic}:{p.partition}": [p.first, p.last] for p in self.stats.plans if p.read},
            "prediction_partitions": len(preds),
        }


def replay_topic(
    pipelines: Sequence[Pipeline | ShardReplay],
    *,
    bootstrap: str,
    kafka: KafkaConfig,
    predictions: str,
    labels: str | None = None,
    rng: ReplayRange | None = None,
    step_messages: int = 1000,
    label_horizon_ms: int | None = None,
    keep_windows: bool = True,
    progress: Callable[[ReadStats, int], None] | None = None,
) -> KafkaReplayResult:
    """Replay ``predictions`` (and ``labels``) through every pipeline; the same steps reach each one.

    Reading and merging run in a reader process while this one detects, so the two overlap on two cores;
    the parsing of each prediction step is shared between them (see :class:`ReaderProcess`).
    ``progress(stats, events)`` is called after every step. Raises :class:`KafkaReplayError` for a topic that
    does not exist or a range with no record in it.
    """
    rng = rng or ReplayRange()
    rng.validate()
    runs = [PipelineRun() for _ in pipelines]
    for pipe in pipelines:
        pipe.monitors.keep_records(keep_windows)
    keep_freed_memory()
    n_labels = 0
    stats = ReadStats()
    t0 = time.perf_counter()
    with fewer_collections(), ReaderProcess(
            bootstrap, kafka, predictions, labels, rng, step_messages=step_messages, label_horizon_ms=label_horizon_ms,
            max_bytes=pipelines[0].max_message_bytes if pipelines else kafka.max_message_bytes) as reader:
        for rank, (parsed, records), stats in reader.steps():
            msgs = [RawMessage(*m) for m in records]
            if rank == PREDICTIONS and parsed is None:
                parsed = parse_step(msgs, reader.max_bytes)
            labels_before = pipelines[0].counters.labels if pipelines else 0
            for pipe, run in zip(pipelines, runs, strict=True):
                _collect(run, pipe.on_parsed(parsed) if rank == PREDICTIONS else pipe.on_labels(msgs), keep_windows)
            if rank != PREDICTIONS:  # labels, not messages: a label-batch message holds many
                n_labels += pipelines[0].counters.labels - labels_before if pipelines else len(msgs)
            if progress is not None:
                progress(stats, runs[0].events)
        stats = reader.stats
    for pipe, run in zip(pipelines, runs, strict=True):  # sharded models: windows their lateness lets close
        if isinstance(pipe, ShardReplay):
            _collect(run, pipe.finish(), keep_windows)
    seconds = time.perf_counter() - t0
    if stats.messages == 0:
        raise KafkaReplayError(f"no record of {predictions!r} in {rng.describe()} "
                               f"(partitions hold offsets {_spans(stats)})")
    return KafkaReplayResult(runs=runs, stats=stats, seconds=seconds, labels=n_labels)


def _collect(run: PipelineRun, out: Any, keep_windows: bool) -> None:
    if out.alerts:
        run.alerts.extend(out.alerts)
    if keep_windows and out.windows:
        run.windows.extend({**w, "model": model} for model, w in out.windows)
    run.events += out.events
    for d in out.deadletters:
        run.deadletters += 1
        run.reasons[d["reason"]] = run.reasons.get(d["reason"], 0) + 1


def _spans(stats: ReadStats) -> str:
    spans = [f"{p.partition}:{p.start}..{p.end}" for p in stats.plans if p.rank == PREDICTIONS]
    return ", ".join(spans) or "none"

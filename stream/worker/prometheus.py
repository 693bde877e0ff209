"""Prometheus metrics of one monitoring worker, served on its web server at ``/metrics``.

A :class:`WorkerMetrics` owns a registry of its own (several workers or tests in one process never share
series). The agents call :meth:`WorkerMetrics.observe_step` once per batch; everything else (consumer lag,
label coverage, the pipeline checks) is set by the health timer (:mod:`stream.worker.health`). Nothing here touches
the detection core, and nothing is computed per event: a step costs a few dictionary updates.

Series (all prefixed ``glassbox_``):

- ``messages_total{topic}``, ``events_total{model}``, ``deadletters_total{topic,reason}``,
  ``alerts_total{monitor,severity,status}``, ``redelivered_total`` (skipped after a restart)
- ``step_seconds{topic}`` (histogram: one pipeline step plus publishing its output)
- ``consumer_lag{topic,partition}`` and ``consumer_lag_total`` (messages behind the highwater)
- ``event_time_skew_seconds{topic}`` (processing time minus the newest event time of the last step)
- ``seconds_since_last_event`` (wall clock since the last prediction message)
- ``label_coverage{model}``, ``late_label_rate{model}``, ``deadletter_rate`` (over the health window)
- ``labels_pending{model}``, ``predictions_pending{model}`` (label join state, bounded by its TTL)
- ``pipeline_check_value{check,model}``, ``pipeline_check_firing{check,model}``
- ``window_statistic{model,column,statistic}`` and ``window_threshold{model,column,statistic}``: each monitored
  column's drift statistic in the latest closed window and the bound it is tested against (no threshold series
  while the bound is dynamic); at most ``max_columns`` columns per model
- ``state_restore_seconds`` and ``state_restored_records`` (the latest restore of model state)
- ``process_resident_memory_bytes`` and the other ``process_*`` series of prometheus-client

Model labels are capped (``max_models``): in discovery mode the stream decides the model names, so the
first ``max_models`` get a series each and the rest share ``model="_other"``; events of models that are
counted but not monitored (discovery mode) are ``model="_unmonitored"``. Window series are kept only for
models with a label of their own, so they stay within ``max_models * max_columns``.

>>> m = WorkerMetrics()
>>> m.observe_step("predictions", [], None, 0.002)
>>> b"glassbox_step_seconds_count" in m.render()[0]
True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OTHER = "_other"
UNMONITORED = "_unmonitored"


class WorkerMetrics:
    """The worker's series and the raw totals the pipeline health checks read."""

    def __init__(self, *, max_models: int = 100, max_columns: int = 200, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.max_models = max_models
        self.max_columns = max_columns
        self.registry = reg = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=reg)
        self.messages = Counter("glassbox_messages", "Kafka messages consumed", ["topic"], registry=reg)
        self.events = Counter("glassbox_events", "valid prediction events processed", ["model"], registry=reg)
        self.deadletters = Counter("glassbox_deadletters", "messages dead-lettered", ["topic", "reason"],
                                   registry=reg)
        self.alerts = Counter("glassbox_alerts", "alert transitions published", ["monitor", "severity", "status"],
                              registry=reg)
        self.redelivered = Counter("glassbox_redelivered", "redelivered messages skipped after a restart",
                                   registry=reg)
        self.step_seconds = Histogram("glassbox_step_seconds", "one batch: pipeline step and publishing",
                                      ["topic"], buckets=STEP_BUCKETS, registry=reg)
        self.lag = Gauge("glassbox_consumer_lag", "messages behind the partition's highwater",
                         ["topic", "partition"], registry=reg)
        self.lag_total = Gauge("glassbox_consumer_lag_total", "consumer lag summed over assigned partitions",
                               registry=reg)
        self.skew = Gauge("glassbox_event_time_skew_seconds", "processing time minus newest event time",
                          ["topic"], registry=reg)
        self.since_last = Gauge("glassbox_seconds_since_last_event", "wall-clock seconds since the last "
                                "prediction message", registry=reg)
        self.since_last.set_function(lambda: self.clock() - self.last_event_at)
        self.coverage = Gauge("glassbox_label_coverage", "share of matured predictions that got a label",
                              ["model"], registry=reg)
        self.late_rate = Gauge("glassbox_late_label_rate", "share of labels that came too late to join",
                               ["model"], registry=reg)
        self.deadletter_rate = Gauge("glassbox_deadletter_rate", "dead letters per message (health window)",
                                     registry=reg)
        self.labels_pending = Gauge("glassbox_labels_pending", "labels waiting for their prediction", ["model"],
                                    registry=reg)
        self.predictions_pending = Gauge("glassbox_predictions_pending", "predictions waiting for a label",
                                         ["model"], registry=reg)
        self.check_value = Gauge("glassbox_pipeline_check_value", "last value of a pipeline health check",
                                 ["check", "model"], registry=reg)
        self.check_firing = Gauge("glassbox_pipeline_check_firing", "1 while a pipeline alert fires",
                                  ["check", "model"], registry=reg)
        self.window_stat = Gauge("glassbox_window_statistic", "drift statistic of the latest closed window",
                                 ["model", "column", "statistic"], registry=reg)
        self.window_threshold = Gauge("glassbox_window_threshold", "bound the window statistic is tested against",
                                      ["model", "column", "statistic"], registry=reg)
        self.restore_seconds = Gauge("glassbox_state_restore_seconds", "duration of the latest state restore",
                                     registry=reg)
        self.restored_records = Gauge("glassbox_state_restored_records", "state records read by the latest restore",
                                      registry=reg)
        # raw figures for the health checks (cumulative, plain ints)
        self.started_at = self.clock()
        self.last_event_at = self.started_at
        self.total_messages = 0
        self.total_deadletters = 0
        self.total_events = 0
        self.steps = 0
        self.positions: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to process
        self.last_skew_s: float | None = None  # of the newest prediction step since the health tick
        self.max_step_s: float | None = None  # slowest step since the health tick
        self._models: set[str] = set()
        self._lag_keys: set[tuple[str, int]] = set()
        self._redelivered_seen = 0
        self._window_keys: dict[tuple[str, str], str] = {}  # (model, column) -> statistic of its series
        self._threshold_keys: set[tuple[str, str, str]] = set()

    def model_label(self, model: str) -> str:
        """``model`` itself for the first ``max_models`` models, else ``"_other"`` (bounded cardinality)."""
        if model in self._models:
            return model
        if len(self._models) < self.max_models:
            self._models.add(model)
            return model
        return OTHER

    def observe_step(self, kind: str, messages: Sequence[Any], out: Any, seconds: float) -> None:
        """Record one agent step: ``kind`` is ``predictions`` or ``labels``, ``messages`` the
        :class:`stream.pipeline.pipeline.RawMessage` list, ``out`` its :class:`stream.pipeline.pipeline.StepOutput`."""
        now = self.clock()
        self.steps += 1
        self.step_seconds.labels(kind).observe(seconds)
        self.max_step_s = seconds if self.max_step_s is None else max(self.max_step_s, seconds)
        if not messages:
            return
        self.messages.labels(kind).inc(len(messages))
        self.total_messages += len(messages)
        if kind == "predictions":
            self.last_event_at = now
        pos = self.positions
        for m in messages:
            key = (m.topic, m.partition)
            if m.offset + 1 > pos.get(key, -1):
                pos[key] = m.offset + 1
        # event time: of the valid events of monitored models when there are some, else the Kafka timestamps
        # (which the producer SDK sets to the event time)
        if out is None:
            return
        newest: int | None = None
        monitored = 0
        for model, batch in out.batches:
            if len(batch.timestamps):
                t = int(batch.timestamps.max())
                newest = t if newest is None else max(newest, t)
            self.events.labels(self.model_label(model)).inc(len(batch))
            monitored += len(batch)
        if out.events > monitored:  # models counted but not monitored (discovery mode)
            self.events.labels(UNMONITORED).inc(out.events - monitored)
        if newest is None:
            newest = max((m.timestamp for m in messages if m.timestamp is not None), default=None)
        self.observe_windows(out.windows)
        self.total_events += out.events
        for d in out.deadletters:
            self.deadletters.labels(kind, d["reason"]).inc()
        self.total_deadletters += len(out.deadletters)
        self.count_alerts(out.alerts)
        if newest is not None:
            skew = now - newest / 1000.0
            self.skew.labels(kind).set(skew)
            if kind == "predictions":
                self.last_skew_s = skew

    def count_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        for a in alerts:
            self.alerts.labels(a.get("monitor", "?"), a.get("severity", "?"), a.get("status", "?")).inc()

    def observe_windows(self, windows: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Set the window gauges from closed prediction windows (``StepOutput.windows``); untested windows
        (too few events) and models beyond ``max_models`` are skipped."""
        for model, w in windows:
            if w.get("kind") != "predictions" or not w.get("tested", True) or self.model_label(model) != model:
                continue
            for column, c in w.get("columns", {}).items():
                key, stat = (model, column), str(c.get("statistic"))
                old = self._window_keys.get(key)
                if old is None and sum(k[0] == model for k in self._window_keys) >= self.max_columns:
                    continue
                if old is not None and old != stat:
                    self.window_stat.remove(model, column, old)
                    if (model, column, old) in self._threshold_keys:
                        self.window_threshold.remove(model, column, old)
                        self._threshold_keys.discard((model, column, old))
                self._window_keys[key] = stat
                if c.get("value") is not None:
                    self.window_stat.labels(model, column, stat).set(c["value"])
                t = c.get("threshold")
                if t is not None:
                    self.window_threshold.labels(model, column, stat).set(t)
                    self._threshold_keys.add((model, column, stat))
                elif (model, column, stat) in self._threshold_keys:  # dynamic bound: no fixed threshold
                    self.window_threshold.remove(model, column, stat)
                    self._threshold_keys.discard((model, column, stat))

    def set_restore(self, seconds: float, records: int) -> None:
        """Publish the latest state restore (:class:`stream.kafka.state_topic.TopicState`)."""
        self.restore_seconds.set(seconds)
        self.restored_records.set(records)

    def set_redelivered(self, total: int) -> None:
        """Catch the counter up with the pipeline's own count (it only grows)."""
        if total > self._redelivered_seen:
            self.redelivered.inc(total - self._redelivered_seen)
            self._redelivered_seen = total

    def set_lag(self, lags: dict[tuple[str, int], int]) -> int:
        """Publish per-partition lag; partitions no longer given are removed. Returns the total."""
        for key in list(self._lag_keys - lags.keys()):
            self.lag.remove(key[0], str(key[1]))
        for (topic, part), v in lags.items():
            self.lag.labels(topic, str(part)).set(v)
        self._lag_keys = set(lags)
        total = sum(lags.values())
        self.lag_total.set(total)
        return total

    def take_tick(self) -> tuple[float | None, float | None]:
        """(skew of the newest prediction step, slowest step) since the previous call; resets both."""
        out = (self.last_skew_s, self.max_step_s)
        self.last_skew_s = self.max_step_s = None
        return out

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def compute_lag(assigned: Sequence[tuple[str, int]], highwater: Callable[[str, int], int | None],
                positions: dict[tuple[str, int], int], committed: Callable[[str, int], int | None]) -> \
        dict[tuple[str, int], int]:
    """Messages behind the highwater per assigned partition: highwater minus the next offset to process
    (the offset after the last processed message, else the committed offset). Partitions whose highwater
    or position is unknown yet are left out.

    >>> compute_lag([("p", 0), ("p", 1)], lambda t, p: 100, {("p", 0): 40}, lambda t, p: None)
    {('p', 0): 60}
    """
    out: dict[tuple[str, int], int] = {}
    for topic, part in assigned:
        hw = highwater(topic, part)
        if hw is None:
            continue
        nxt = positions.get((topic, part))
        if nxt is None:
            nxt = committed(topic, part)
        if nxt is None:
            continue
        out[(topic, part)] = max(0, int(hw) - int(nxt))
    return out

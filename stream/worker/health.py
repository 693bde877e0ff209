"""Monitoring the monitor: ``pipeline`` alerts when the worker itself is unhealthy.

A timer on the worker samples its figures every ``interval_s`` seconds and checks them against bounds:

==================  ====================  =============================================================
check (feature)     statistic             condition
==================  ====================  =============================================================
stale_stream        event_gap             no prediction message for ``stale_after_s`` seconds
consumer_lag        lag                   messages behind the highwater above ``max_lag``
event_time_skew     event_time_skew       processing time minus newest event time above the bound
step_latency        step_seconds          slowest batch since the last check above ``max_step_s``
deadletter_rate     deadletter_rate       dead letters per message over ``window_s`` above the bound
late_label_rate     late_label_rate       labels too late to join (per model) above the bound
label_coverage      label_coverage        matured predictions with a label (per model) below the bound
==================  ====================  =============================================================

Each check has its own :class:`detectors.hysteresis.Hysteresis`: it fires after ``fire_after`` failing
checks and resolves after ``resolve_after`` passing ones. A rate with fewer than ``min_messages`` behind it
gives no verdict (the state is kept). Wall-clock time is right here: these alerts are about the pipeline,
not the data, so unlike the detection core they depend on when things happen.

Worker-wide checks carry ``model`` = the worker's app id (its consumer group); the label checks carry the
monitored model.

>>> h = PipelineHealth(PipelineHealthConfig(stale_after_s=10, resolve_after=1), name="grp")
>>> h.evaluate(HealthSample(now=5.0, last_event_at=0.0))
[]
>>> [(a["feature"], a["status"]) for a in h.evaluate(HealthSample(now=12.0, last_event_at=0.0))]
[('stale_stream', 'firing')]
>>> [(a["feature"], a["status"]) for a in h.evaluate(HealthSample(now=13.0, last_event_at=12.5))]
[('stale_stream', 'resolved')]
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from detectors.alert import make_alert
from detectors.hysteresis import Hysteresis
from stream.alerting.announce import log_alert
from stream.worker.prometheus import WorkerMetrics, compute_lag

log = logging.getLogger("glassbox.health")

CHECKS = ("stale_stream", "consumer_lag", "event_time_skew", "step_latency", "deadletter_rate",
          "late_label_rate", "label_coverage")
_STATISTIC = {"stale_stream": "event_gap", "consumer_lag": "lag", "event_time_skew": "event_time_skew",
              "step_latency": "step_seconds", "deadletter_rate": "deadletter_rate",
              "late_label_rate": "late_label_rate", "label_coverage": "label_coverage"}


class PipelineHealthConfig(BaseModel):
    """Bounds of the ``pipeline`` checks; ``None`` turns a check off.

    Event-time skew is off by default: replays and backfills through the live topics are legitimate and
    carry old event times. Label checks are off by default: how many labels come back, and when, is a
    property of each model's business.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="run the checks and publish pipeline alerts")
    interval_s: float = Field(5.0, gt=0, description="seconds between checks")
    window_s: float = Field(60.0, gt=0, description="trailing window of the rate checks, seconds")
    min_messages: int = Field(100, ge=1, description="messages (or labels) a rate needs behind it")
    stale_after_s: float | None = Field(300.0, gt=0, description="no prediction message for this long")
    max_lag: int | None = Field(100_000, ge=0, description="messages behind the highwater (all partitions)")
    max_event_skew_s: float | None = Field(None, gt=0, description="processing time - newest event time")
    max_step_s: float | None = Field(30.0, gt=0, description="slowest batch (step and publishing)")
    max_deadletter_rate: float | None = Field(0.05, ge=0, le=1, description="dead letters per message")
    max_late_label_rate: float | None = Field(None, ge=0, le=1, description="labels too late to join")
    min_label_coverage: float | None = Field(None, ge=0, le=1, description="matured predictions with a label")
    fire_after: int = Field(1, ge=1, description="consecutive failing checks before an alert fires")
    resolve_after: int = Field(3, ge=1, description="consecutive passing checks before it resolves")
    severity: Literal["critical", "warning", "info"] = "critical"
    max_model_labels: int = Field(100, ge=1, description="models with their own metric series")
    stuck_after_s: float | None = Field(300.0, gt=0, description="/live fails: lag but nothing consumed this long")
    unassigned_after_s: float | None = Field(600.0, gt=0, description="/live fails: no input partition this long")


@dataclass
class HealthSample:
    """The worker's figures at one check. Times are wall-clock seconds; counts are cumulative."""

    now: float
    last_event_at: float
    messages: int = 0
    deadletters: int = 0
    lag: int | None = None
    skew_s: float | None = None  # of the newest prediction step since the previous check
    step_s: float | None = None  # slowest step since the previous check
    joins: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # model -> LabelJoin.counters()


@dataclass
class CheckResult:
    check: str
    model: str
    value: float | None
    threshold: float
    condition: bool | None  # None: no verdict (too little data)
    events: int = 0


class PipelineHealth:
    """The checks of one worker and their hysteresis; :meth:`evaluate` returns alert transitions."""

    def __init__(self, config: PipelineHealthConfig, *, name: str, worker: str | None = None):
        self.config = config
        self.name = name
        self.worker = worker or f"{os.uname().nodename}:{os.getpid()}"
        self.ticks = 0
        self.results: dict[tuple[str, str], CheckResult] = {}
        self._hyst: dict[tuple[str, str], Hysteresis] = {}
        self._history: deque[HealthSample] = deque()

    def firing(self) -> list[tuple[str, str]]:
        """(check, model) pairs whose alert is firing."""
        return sorted(k for k, h in self._hyst.items() if h.firing)

    def _base(self, s: HealthSample) -> HealthSample:
        """The oldest sample within the rate window (the current one when there is none)."""
        hist = self._history
        hist.append(s)
        while len(hist) > 2 and hist[1].now <= s.now - self.config.window_s:
            hist.popleft()
        return hist[0]

    def _results(self, s: HealthSample, base: HealthSample) -> list[CheckResult]:
        cfg, name = self.config, self.name
        out: list[CheckResult] = []
        msgs = max(0, s.messages - base.messages)
        if cfg.stale_after_s is not None:
            gap = max(0.0, s.now - s.last_event_at)
            out.append(CheckResult("stale_stream", name, gap, cfg.stale_after_s, gap > cfg.stale_after_s))
        if cfg.max_lag is not None and s.lag is not None:
            out.append(CheckResult("consumer_lag", name, s.lag, cfg.max_lag, s.lag > cfg.max_lag))
        if cfg.max_event_skew_s is not None and s.skew_s is not None:
            out.append(CheckResult("event_time_skew", name, s.skew_s, cfg.max_event_skew_s,
                                   s.skew_s > cfg.max_event_skew_s))
        if cfg.max_step_s is not None and s.step_s is not None:
            out.append(CheckResult("step_latency", name, s.step_s, cfg.max_step_s, s.step_s > cfg.max_step_s))
        if cfg.max_deadletter_rate is not None:
            dead = max(0, s.deadletters - base.deadletters)
            rate = dead / msgs if msgs else None
            verdict = None if msgs < cfg.min_messages or rate is None else rate > cfg.max_deadletter_rate
            out.append(CheckResult("deadletter_rate", name, rate, cfg.max_deadletter_rate, verdict, msgs))
        for model, cur in s.joins.items():
            old = base.joins.get(model, {})

            def delta(key: str, cur: Mapping[str, int] = cur, old: Mapping[str, int] = old) -> int:
                c, o = int(cur.get(key, 0)), int(old.get(key, 0))
                return c - o if c >= o else c  # a forgotten and rebuilt join starts again from zero

            matched, expired, late = delta("matched"), delta("expired_predictions"), delta("unmatched_labels")
            if cfg.max_late_label_rate is not None:
                n = matched + late
                rate = late / n if n else None
                verdict = None if n < cfg.min_messages or rate is None else rate > cfg.max_late_label_rate
                out.append(CheckResult("late_label_rate", model, rate, cfg.max_late_label_rate, verdict, n))
            if cfg.min_label_coverage is not None:
                n = matched + expired
                cov = matched / n if n else None
                verdict = None if n < cfg.min_messages or cov is None else cov < cfg.min_label_coverage
                out.append(CheckResult("label_coverage", model, cov, cfg.min_label_coverage, verdict, n))
        return out

    def evaluate(self, sample: HealthSample) -> list[dict[str, Any]]:
        """Run every enabled check on ``sample``; returns the ``pipeline`` alerts that fire or resolve."""
        base = self._base(sample)
        self.ticks += 1
        alerts: list[dict[str, Any]] = []
        for r in self._results(sample, base):
            key = (r.check, r.model)
            self.results[key] = r
            if r.condition is None:
                continue
            h = self._hyst.get(key)
            if h is None:
                h = self._hyst[key] = Hysteresis(self.config.fire_after, self.config.resolve_after)
            status = h.update(r.condition)
            if status is not None:
                alerts.append(self._alert(r, status, base, sample))
        return alerts

    def _alert(self, r: CheckResult, status: str, base: HealthSample, s: HealthSample) -> dict[str, Any]:
        now_ms = int(s.now * 1000)
        window = {"index": self.ticks, "start": int(base.now * 1000), "end": now_ms,
                  "events": max(0, s.messages - base.messages)}
        return make_alert(
            model=r.model, monitor="pipeline", feature=r.check, status=status, severity=self.config.severity,
            detector="pipeline_health", statistic=_STATISTIC[r.check], value=r.value, threshold=r.threshold,
            threshold_kind="static", window=window, event_time=now_ms, summary=_summary(r, status, self.config),
            source={"worker": self.worker}, direction=None,
            evidence={"check": r.check, "worker": self.worker, "window_s": self.config.window_s,
                      "counted": r.events},
        )


def _fmt(check: str, v: float | None) -> str:
    if v is None:
        return "n/a"
    if check in ("deadletter_rate", "late_label_rate", "label_coverage"):
        return f"{v:.1%}"
    if check == "consumer_lag":
        return f"{v:.0f} messages"
    return f"{v:.1f} s"


def _summary(r: CheckResult, status: str, cfg: PipelineHealthConfig) -> str:
    v, t = _fmt(r.check, r.value), _fmt(r.check, r.threshold)
    if status == "resolved":
        return f"pipeline {r.check.replace('_', ' ')} of {r.model!r} back within bound ({v}, bound {t})"
    what = {
        "stale_stream": f"no prediction events for {v} (bound {t})",
        "consumer_lag": f"consumer lag {v} above {t}",
        "event_time_skew": f"newest event {v} behind processing time (bound {t})",
        "step_latency": f"slowest batch took {v} (bound {t})",
        "deadletter_rate": f"{v} of messages dead-lettered over the last {cfg.window_s:g} s (bound {t})",
        "late_label_rate": f"{v} of labels came too late to join (bound {t})",
        "label_coverage": f"only {v} of matured predictions got a label (bound {t})",
    }[r.check]
    return f"pipeline {r.model!r}: {what}"


class WorkerObservability:
    """What the worker's agents and timer call: metrics per step, checks per tick."""

    def __init__(self, config: PipelineHealthConfig, *, name: str, pipeline: Any = None,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.pipeline = pipeline
        self.metrics = WorkerMetrics(max_models=config.max_model_labels, clock=clock)
        self.health = PipelineHealth(config, name=name)
        self.clock = clock
        self.lag: int | None = None  # total consumer lag at the last tick (None: unknown)

    def step(self, kind: str, messages: Any, out: Any, seconds: float) -> None:
        self.metrics.observe_step(kind, messages, out, seconds)

    def sample(self, lag: int | None = None) -> HealthSample:
        m, p = self.metrics, self.pipeline
        joins = {mod: j.counters() for mod, j in p.joins.items()} if p is not None else {}
        skew, step = m.take_tick()
        return HealthSample(now=self.clock(), last_event_at=m.last_event_at, messages=m.total_messages,
                            deadletters=m.total_deadletters, lag=lag, skew_s=skew, step_s=step, joins=joins)

    def tick(self, lag: int | None = None) -> list[dict[str, Any]]:
        """One check: update the gauges and return the pipeline alerts to publish."""
        sample = self.sample(lag)
        alerts = self.health.evaluate(sample) if self.config.enabled else []
        m = self.metrics
        if self.pipeline is not None:
            m.set_redelivered(self.pipeline.counters.redelivered)
            if hasattr(state := getattr(self.pipeline, "state", None), "restore_s"):  # a TopicState
                m.set_restore(state.restore_s, state.restored_records)
        for mod, c in sample.joins.items():
            label = m.model_label(mod)
            m.labels_pending.labels(label).set(c.get("pending_labels", 0))
            m.predictions_pending.labels(label).set(c.get("pending_predictions", 0))
        for (check, model), r in self.health.results.items():
            label = model if check not in ("late_label_rate", "label_coverage") else m.model_label(model)
            if r.value is not None:
                m.check_value.labels(check, label).set(r.value)
                if check == "deadletter_rate":
                    m.deadletter_rate.set(r.value)
                elif check == "label_coverage":
                    m.coverage.labels(label).set(r.value)
                elif check == "late_label_rate":
                    m.late_rate.labels(label).set(r.value)
            h = self.health._hyst.get((check, model))
            m.check_firing.labels(check, label).set(1 if h is not None and h.firing else 0)
        m.count_alerts(alerts)
        return alerts


def _consumer_lag(app: Any, topics: set[str],
                  positions: dict[tuple[str, int], int]) -> tuple[dict[tuple[str, int], int], int | None] | None:
    """Per-partition lag over the app's assigned input partitions (from the consumer's last fetch) and its
    total (None while no partition has a known highwater)."""
    try:
        consumer = app.consumer
        assigned = [(tp.topic, tp.partition) for tp in consumer.assignment() if tp.topic in topics]
    except Exception:  # not started or rebalancing
        return None
    by_key = {(tp.topic, tp.partition): tp for tp in consumer.assignment()}
    committed_map = getattr(consumer, "_committed_offset", {})  # Faust's record of committed offsets

    def highwater(topic: str, part: int) -> int | None:
        try:
            hw = consumer.highwater(by_key[(topic, part)])
        except Exception:
            return None
        return None if hw is None or hw < 0 else int(hw)

    def committed(topic: str, part: int) -> int | None:
        v = committed_map.get(by_key[(topic, part)]) if hasattr(committed_map, "get") else None
        return None if v is None else int(v)

    lags = compute_lag(assigned, highwater, positions, committed)
    return lags, (sum(lags.values()) if lags else None)


def _assigned(app: Any, topics: set[str]) -> bool:
    try:
        return any(tp.topic in topics for tp in app.consumer.assignment())
    except Exception:  # not started or rebalancing
        return False


def register_health(app: Any, settings: Any, pipeline: Any, topics: Any) -> WorkerObservability:
    """Serve ``/metrics`` on the worker's web server (bound to ``worker.web_host``, loopback by default)
    and run the pipeline checks on a timer, publishing their alerts to the alerts topic."""
    cfg = settings.health
    obs = WorkerObservability(cfg, name=settings.worker.app_id, pipeline=pipeline)
    inputs = {settings.topic("predictions"), settings.topic("labels")}

    @app.on_partitions_revoked.connect
    async def forget_positions(sender: Any, revoked: Any, **kwargs: Any) -> None:
        for tp in revoked:
            obs.metrics.positions.pop((tp.topic, tp.partition), None)

    from stream.worker.liveness import Liveness, live_response

    liveness = Liveness(cfg.stuck_after_s, cfg.unassigned_after_s, now=time.monotonic())

    @app.page("/live")
    async def live_page(web: Any, request: Any) -> Any:
        return live_response(web, liveness.state)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body, _ = obs.metrics.render()
        return web.text(body.decode(), content_type="text/plain; version=0.0.4")

    @app.timer(cfg.interval_s, name="glassbox.pipeline_health")
    async def pipeline_health() -> None:
        got = _consumer_lag(app, inputs, obs.metrics.positions)
        lag = None
        if got is not None:
            lags, lag = got
            obs.metrics.set_lag(lags)
        obs.lag = lag
        liveness.update(now=time.monotonic(), messages=obs.metrics.total_messages, lag=lag,
                        assigned=_assigned(app, inputs))
        for alert in obs.tick(lag):
            alert = settings.alerting.with_links(alert)
            log_alert(alert)
            try:
                await topics.alerts.send(key=alert["fingerprint"].encode(),
                                         value=orjson.dumps(alert, option=orjson.OPT_SORT_KEYS))
            except Exception:  # the broker may be the problem: the transition is logged and on /metrics
                log.exception("could not publish pipeline alert %s", alert["alert_id"])

    return obs

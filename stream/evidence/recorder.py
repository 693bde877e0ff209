"""The live worker's glass box: one MLflow monitoring run per session, Evidently snapshots of windows,
and alerts linked to both.

Nothing here decides anything: it records what the pipeline decided. MLflow writes happen on logging
threads and reports render in an executor (a process by default, at the lowest CPU priority), so neither
stalls consumption; a failure in either is logged and counted, never raised into the worker. Window metrics
go through :class:`stream.evidence.window_logger.WindowLogger`: every window's full record into the run's
``windows/`` artifact, its compact metrics into MLflow within a time budget (``mlflow.window_log_duty``),
windows beyond it thinned and counted (:meth:`Evidence.stats`).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections import deque
from typing import Any

import numpy as np
import pandas as pd

from detectors.batch import EventBatch
from stream.pipeline.monitors import MonitorRegistry
from stream.pipeline.pipeline import StepOutput
from stream.settings import Settings

log = logging.getLogger("glassbox.evidence")
# the window record an alert of each monitor belongs to (kept when window metrics are thinned)
_RECORD_KIND = {"performance": "outcomes", "concept_drift": "outcomes", "estimated_performance": "estimation"}


def batch_frame(batches: list[EventBatch], rows: list[np.ndarray] | None = None) -> pd.DataFrame:
    """Recent events as a table: features, ``prediction``, ``timestamp`` (only ``rows[i]`` of ``batches[i]``
    when given)."""
    def col(get: Any) -> np.ndarray:
        parts = [get(b) for b in batches] if rows is None else [get(b)[r] for b, r in zip(batches, rows, strict=True)]
        return np.concatenate(parts)

    cols: dict[str, Any] = {name: col(lambda b, n=name: b.features[n]) for name in batches[0].features}
    cols["prediction"] = col(lambda b: b.prediction)
    cols["timestamp"] = col(lambda b: b.timestamps)
    df = pd.DataFrame(cols)
    for name, v in cols.items():
        if v.dtype == object:
            df[name] = df[name].astype("object")
    return df


def window_frame(batches: list[EventBatch], start: int, end: int, events: int) -> pd.DataFrame | None:
    """The last ``events`` rows of ``batches`` with ``start <= timestamp <= end`` (a closed window's rows), as
    :func:`batch_frame`; only those rows are copied, however large the batches (None when there are none).

    >>> b = EventBatch.from_columns(ids=["a", "b", "c", "d"], timestamps=[1, 2, 3, 4],
    ...                             features={"x": [1.0, 2.0, 3.0, 4.0]}, prediction=[0, 1, 0, 1])
    >>> window_frame([b], 2, 4, 2)["x"].tolist()
    [3.0, 4.0]
    """
    rows = [np.flatnonzero((b.timestamps >= start) & (b.timestamps <= end)) for b in batches]
    extra = sum(len(r) for r in rows) - events
    for i, r in enumerate(rows):  # drop the oldest matches beyond ``events`` (as ``.tail(events)``)
        if extra <= 0:
            break
        cut = min(extra, len(r))
        rows[i], extra = r[cut:], extra - cut
    keep = [i for i, r in enumerate(rows) if len(r)]
    if not keep:
        return None
    return batch_frame([batches[i] for i in keep], [rows[i] for i in keep])


def like_reference(df: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Give integer and bool columns back the reference's dtype (the wire carries every number as float),
    so a report compares like with like."""
    out = df.copy()
    for col in out.columns.intersection(reference.columns):
        kind = reference[col].dtype.kind
        v = out[col]
        if kind in "iub" and v.dtype.kind == "f" and v.notna().all() and (v == v.round()).all():
            out[col] = v.astype(reference[col].dtype)
    return out


class ConsumedOffsets:
    """The first and last Kafka offset seen per ``topic:partition``, from what a step carries: its events'
    ``(partition, offset)`` (on ``topic``), the label messages it joined and its dead letters'
    ``topic``/``partition``/``offset`` (predictions' or labels').

    >>> seen = ConsumedOffsets("glassbox.predictions")
    >>> b = EventBatch.from_columns(ids=["a", "b", "c"], timestamps=[1, 2, 3], features={"x": [1.0, 2.0, 3.0]},
    ...                             prediction=[0, 1, 0])
    >>> b.partitions, b.offsets = np.array([0, 1, 0]), np.array([7, 3, 9])
    >>> seen.add(StepOutput(batches=[("m", b)], deadletters=[{"topic": "glassbox.predictions", "partition": 1,
    ...                                                       "offset": 4}]))
    True
    >>> seen.add(StepOutput(label_messages=[("glassbox.labels", 2, 5), ("glassbox.labels", 2, 6)]))
    True
    >>> seen.as_dict()
    {'glassbox.labels:2': [5, 6], 'glassbox.predictions:0': [7, 9], 'glassbox.predictions:1': [3, 4]}
    """

    def __init__(self, topic: str):
        self.topic = topic
        self.spans: dict[str, list[int]] = {}

    def _see(self, key: str, first: int, last: int) -> None:
        span = self.spans.get(key)
        if span is None:
            self.spans[key] = [first, last]
        else:
            span[0], span[1] = min(span[0], first), max(span[1], last)

    def add(self, out: StepOutput) -> bool:
        """Fold in a step; True when it carried events or dead letters."""
        for _, batch in out.batches:
            parts, offs = batch.partitions, batch.offsets
            if not len(offs) or parts.min() < 0:  # file rows, not Kafka offsets
                continue
            for p in np.unique(parts).tolist():
                sel = offs[parts == p]
                self._see(f"{self.topic}:{p}", int(sel.min()), int(sel.max()))
        for topic, partition, offset in out.label_messages:
            self._see(f"{topic}:{partition}", offset, offset)
        for d in out.deadletters:
            if d.get("topic") is not None and d.get("offset") is not None:
                self._see(f"{d['topic']}:{d['partition']}", int(d["offset"]), int(d["offset"]))
        return bool(out.batches or out.label_messages or out.deadletters)

    def as_dict(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in sorted(self.spans.items())}


class Evidence:
    """Monitoring run + snapshots + alert enrichment for a set of monitored models.

    The run's ``source.kafka_offsets`` tag holds the first and last offset consumed per ``topic:partition``
    (:class:`ConsumedOffsets`), updated at most every ``mlflow.window_artifact_interval_s`` and final at
    :meth:`close`.
    """

    def __init__(self, settings: Settings, registry: MonitorRegistry, *, kind: str = "worker",
                 source: dict[str, Any] | None = None):
        from stream.evidence.alert_links import AlertContext
        from stream.evidence.monitoring_run import MonitoringRun
        from stream.evidence.snapshots import SnapshotService, render_executor
        from stream.evidence.window_logger import WindowLogger

        self.settings = settings
        self.registry = registry
        self.window = settings.detection.window
        self.run = MonitoringRun(
            settings.mlflow.tracking_uri, experiment=settings.mlflow.experiment,
            artifact_root=settings.mlflow.artifact_root, kind=kind, project=settings.project, env=settings.env,
            config=settings.model_dump(mode="json"), source=source or {}, mlflow_ui_url=settings.mlflow.ui_url,
        ).start()
        self.snapshots = None
        if settings.evidently.enabled:
            executor = render_executor(settings.evidently.executor)
            self.snapshots = SnapshotService(
                workspace=settings.evidently.workspace, run=self.run,
                every_n_windows=settings.evidently.every_n_windows, sample_size=settings.evidently.sample_size,
                seed=settings.detection.seed, max_pending=settings.evidently.max_pending, executor=executor,
                evidently_ui_url=settings.evidently.ui_url, render_duty=settings.evidently.render_duty,
            )
        self.ctx = AlertContext(run=self.run, snapshots=self.snapshots, references={})
        self._logger = cf.ThreadPoolExecutor(1, thread_name_prefix="glassbox-mlflow")  # alerts
        mc = settings.mlflow
        self.window_log = WindowLogger(self.run, duty=mc.window_log_duty, max_metrics=mc.window_log_max_metrics,
                                       artifact_interval_s=mc.window_artifact_interval_s)
        self.offsets = ConsumedOffsets(settings.topic("predictions"))
        self._offsets_every = mc.window_artifact_interval_s
        self._offsets_at = time.monotonic()
        self._recent: dict[str, deque[EventBatch]] = {}
        self._recent_rows: dict[str, int] = {}

    def _remember(self, model: str, batch: EventBatch) -> None:
        q = self._recent.setdefault(model, deque())
        q.append(batch)
        self._recent_rows[model] = self._recent_rows.get(model, 0) + len(batch)
        while len(q) > 1 and self._recent_rows[model] - len(q[0]) >= 2 * self.window:
            self._recent_rows[model] -= len(q.popleft())

    def _window_rows(self, model: str, rec: dict[str, Any], reference: pd.DataFrame) -> pd.DataFrame | None:
        q = self._recent.get(model)
        if not q:
            return None
        rows = window_frame(list(q), int(rec["start"]), int(rec["end"]), int(rec["events"]))
        return None if rows is None else like_reference(rows, reference)

    def _register(self, model: str) -> Any:
        ref = self.registry.reference(model)
        if ref is not None and model not in self.ctx.references:
            self.ctx.references[model] = ref.info
            self.run.add_model(model, ref.info.model_version, reference_name=ref.info.name,
                               reference_digest=ref.info.digest, reference_uri=ref.info.uri)
        return ref

    def observe(self, out: StepOutput) -> list[dict[str, Any]]:
        """Record a step (window metrics, snapshots); returns its alerts with links and lineage filled."""
        from stream.evidence.alert_links import enrich_alert

        try:
            for model, batch in out.batches:
                self._remember(model, batch)
            if self.offsets.add(out) and time.monotonic() - self._offsets_at >= self._offsets_every:
                self._offsets_at = time.monotonic()
                self._logger.submit(self.run.set_source, kafka_offsets=self.offsets.as_dict())
            fired = {(a["model"], a["window"].get("index")) for a in out.alerts if a["status"] == "firing"}
            changed: dict[str, set[tuple[str, int]]] = {}  # windows where an alert fired or resolved
            for a in out.alerts:
                kind = _RECORD_KIND.get(a.get("monitor"), "predictions")
                changed.setdefault(a["model"], set()).add((kind, (a.get("window") or {}).get("index")))
            per_model: dict[str, list[dict[str, Any]]] = {}
            for model, rec in out.windows:
                per_model.setdefault(model, []).append(rec)
            for model, records in per_model.items():
                ref = self._register(model)
                self.window_log.add(model, records, keep=changed.get(model, ()))
                if self.snapshots is None or ref is None:
                    continue
                estimates = {r["index"]: r for r in records if r.get("kind") == "estimation"}
                for rec in records:
                    if rec.get("kind", "predictions") != "predictions":
                        continue
                    hit = (model, rec["index"]) in fired
                    if not self.snapshots.should_snapshot(rec["index"], fired=hit):
                        continue
                    self.snapshots.request(  # the window's rows are built only when the report is scheduled
                        model=model, window_index=rec["index"], window_end_ms=rec["end"],
                        current=lambda m=model, r=rec, d=ref.data: self._window_rows(m, r, d),
                        reference=ref.data, features=ref.features, task=ref.task,
                        model_version=ref.info.model_version, trigger="alert" if hit else "periodic",
                        prediction="prediction" if "prediction" in ref.data.columns else None,
                        verdicts=rec.get("columns"), estimate=estimates.get(rec["index"]),
                    )
            for a in out.alerts:
                self._register(a["model"])
            alerts = [enrich_alert(a, self.ctx) for a in out.alerts]
            if alerts:
                self._logger.submit(self.run.log_alerts, alerts)
            return alerts
        except Exception:  # the evidence must never stop the monitor
            log.exception("recording evidence failed; alerts go out without links")
            return out.alerts

    def stats(self) -> dict[str, Any]:
        """What the glass box did so far: window metrics (``windows``: received, logged, thinned, pending...)
        and snapshots (requested, completed, skipped, skipped_budget...)."""
        out: dict[str, Any] = {"windows": self.window_log.stats()}
        if self.snapshots is not None:
            out["snapshots"] = self.snapshots.stats.as_dict()
        return out

    def close(self, status: str = "FINISHED") -> None:
        """Wait for pending reports and logs, then end the run."""
        self.window_log.close()
        self._logger.shutdown(wait=True)
        if self.offsets.spans:
            try:
                self.run.set_source(kafka_offsets=self.offsets.as_dict())
            except Exception:  # the evidence must never stop the monitor
                log.exception("recording the consumed Kafka offsets failed")
        if self.snapshots is not None:
            self.snapshots.close(wait=True, timeout=60)
            self.snapshots.executor.shutdown(wait=False, cancel_futures=True)
        self.run.finish(status)

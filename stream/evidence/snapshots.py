"""Evidently snapshots off the hot path, and the links alerts carry to them.

Per model, every N windows and whenever a detector fires, the worker asks :class:`SnapshotService` for a
snapshot of the window. The request returns at once with the links the files *will* have (their paths are
fixed by model and window index), and the work runs in an executor:

1. :func:`stream.evidence.evidently_report.build_snapshot` on bounded, seeded samples of the window and the reference;
2. HTML and JSON written, then logged as artifacts of the monitoring run (``snapshots/<model>/w<index>.*``),
   and the window's drift share, per-column drift scores and quality as run metrics (step = window index);
3. the snapshot added to an Evidently local workspace, one project per model (its id derived from the model
   name) with dashboard panels: drift share, per-feature drift, performance over time.

A failure or a time-out is logged and counted (:attr:`SnapshotService.stats`), never raised into the caller;
when ``max_pending`` snapshots are already queued, new requests are skipped and counted, so a slow report can
never build a backlog. Periodic snapshots also keep to a CPU budget (``render_duty``: after a report that
took T s of CPU, periodic requests are skipped for ``T * (1 / duty - 1)`` s, counted as ``skipped_budget``),
and the render process runs at the lowest CPU priority, so reports take idle CPU, not the hot path's.
The rendering itself (in the executor) is :mod:`stream.evidence.snapshot_render`; the links alerts get from
here are filled by :func:`stream.evidence.alert_links.enrich_alert`.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stream.evidence.evidently_report import DEFAULT_SAMPLE_SIZE, sample_frame
from stream.evidence.snapshot_render import (
    SnapshotJob,
    SnapshotOutcome,
    project_id_for,
    render_executor,
    render_snapshot,
    warm_up,
)

log = logging.getLogger(__name__)

__all__ = ["SnapshotJob", "SnapshotService", "SnapshotStats", "project_id_for", "render_executor", "render_snapshot"]


@dataclass
class SnapshotStats:
    requested: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    skipped: int = 0  # beyond max_pending
    skipped_budget: int = 0  # periodic requests beyond the CPU budget (render_duty)
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        s, c = sorted(self.seconds), sorted(self.cpu_seconds)
        return {"requested": self.requested, "completed": self.completed, "failed": self.failed,
                "timed_out": self.timed_out, "skipped": self.skipped, "skipped_budget": self.skipped_budget,
                "p50_s": s[len(s) // 2] if s else None, "max_s": s[-1] if s else None,
                "p50_cpu_s": c[len(c) // 2] if c else None, "cpu_s": round(sum(c), 3)}


class SnapshotService:
    """Schedules snapshots in an executor and knows their links.

    ``run`` is the :class:`stream.evidence.monitoring_run.MonitoringRun` receiving the artifacts (None: files stay
    under ``out_dir``). ``executor`` defaults to one thread; pass a ``ProcessPoolExecutor`` to keep the
    report's CPU off the worker's interpreter. ``timeout_s`` bounds each snapshot: one running longer is
    counted as timed out and its links are not given to alerts. ``render_duty`` (0-1] budgets periodic
    snapshots to that share of one core: while one renders, and for ``T * (1 / duty - 1)`` s after one that
    took T s of CPU, periodic requests are skipped (``stats.skipped_budget``); alert snapshots are not
    budgeted. 1 (the default, as a replay wants) renders every request that ``max_pending`` allows.
    """

    def __init__(
        self,
        *,
        workspace: str | Path | None,
        run: Any = None,
        out_dir: str | Path | None = None,
        every_n_windows: int = 10,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        seed: int = 42,
        timeout_s: float = 60.0,
        max_pending: int = 2,
        executor: cf.Executor | None = None,
        evidently_ui_url: str | None = None,
        render_duty: float = 1.0,
    ) -> None:
        self.workspace = None if workspace is None else str(Path(workspace).resolve())
        self.run = run
        self._own_out = out_dir is None
        self.out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="glassbox-snap-"))
        self.every_n_windows = max(1, int(every_n_windows))
        self.sample_size = sample_size
        self.seed = seed
        self.timeout_s = timeout_s
        self.max_pending = max_pending
        self._own_executor = executor is None
        self.executor = executor or cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="glassbox-snapshot")
        self.evidently_ui_url = evidently_ui_url
        self.render_duty = min(max(float(render_duty), 1e-3), 1.0)
        self._rest_until = 0.0  # time.monotonic() before which periodic requests are over budget
        self.stats = SnapshotStats()
        self.outcomes: list[SnapshotOutcome] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending: dict[tuple[str, int], cf.Future[Any]] = {}
        self._links: dict[tuple[str, int], dict[str, str | None]] = {}
        self._latest: dict[str, int] = {}
        self._references: dict[tuple[str, int], pd.DataFrame] = {}
        self._triggers: dict[tuple[str, int], str] = {}  # pending snapshot -> its trigger
        self._warm = self.executor.submit(warm_up)  # import Evidently (about 3 s) before the first window needs it

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until the executor has imported Evidently (at most ``timeout`` s); True when it has."""
        try:
            self._warm.result(timeout=timeout)
            return True
        except Exception:  # noqa: BLE001 - a failed warm-up shows again in the first snapshot
            return False

    # -- policy --------------------------------------------------------------------------------------
    def should_snapshot(self, window_index: int, *, fired: bool = False) -> bool:
        """Every ``every_n_windows``-th window (index N-1, 2N-1, ...) and any window where a detector fired."""
        return fired or (window_index + 1) % self.every_n_windows == 0

    # -- links ---------------------------------------------------------------------------------------
    def dashboard_link(self, model: str) -> str | None:
        pid = project_id_for(model)
        if self.evidently_ui_url:
            return f"{self.evidently_ui_url.rstrip('/')}/projects/{pid}"
        return None if self.workspace is None else Path(self.workspace, str(pid)).as_uri()

    def planned_links(self, model: str, window_index: int) -> dict[str, str | None]:
        stem = f"w{window_index:06d}"
        if self.run is not None and self.run.artifact_uri:
            base = f"{self.run.artifact_uri}/snapshots/{model}"
            report, js = f"{base}/{stem}.html", f"{base}/{stem}.json"
        else:
            base_p = (self.out_dir / model).resolve()
            report, js = (base_p / f"{stem}.html").as_uri(), (base_p / f"{stem}.json").as_uri()
        return {"report": report, "report_json": js, "dashboard": self.dashboard_link(model),
                "mlflow_run": None if self.run is None else self.run.link}

    def links_for(self, model: str, window_index: int | None = None) -> dict[str, str | None]:
        """Links of the snapshot of ``window_index`` (or the model's latest one); failed or timed-out
        snapshots give ``report: None``. The dashboard and run links are always filled."""
        with self._lock:
            idx = window_index if (model, window_index) in self._links else self._latest.get(model)
            got = self._links.get((model, idx)) if idx is not None else None
        if got is None:
            return {"report": None, "report_json": None, "dashboard": self.dashboard_link(model),
                    "mlflow_run": None if self.run is None else self.run.link}
        return dict(got)

    # -- scheduling ----------------------------------------------------------------------------------
    def reference_sample(self, model: str, version: Any, reference: pd.DataFrame) -> pd.DataFrame:
        """The reference sampled once per model version (seeded), reused by every snapshot."""
        key = (model, hash(str(version)))
        with self._lock:
            if key not in self._references:
                self._references[key] = sample_frame(reference, self.sample_size, seed=self.seed + 1)
            return self._references[key]

    def request(
        self,
        *,
        model: str,
        window_index: int,
        current: pd.DataFrame | Callable[[], pd.DataFrame | None],
        reference: pd.DataFrame,
        features: Sequence[str],
        window_end_ms: int | None = None,
        prediction: str | None = "prediction",
        label: str | None = None,
        task: str | None = None,
        categorical: Sequence[str] | None = None,
        model_version: str | None = None,
        trigger: str = "periodic",
        verdicts: dict[str, dict[str, Any]] | None = None,
        estimate: dict[str, Any] | None = None,
    ) -> dict[str, str | None]:
        """Queue a snapshot of one window; returns its planned links at once (never raises).

        ``current`` is the window's rows, or a function returning them (None: nothing to report), called only
        when the snapshot is scheduled, so a skipped request costs the caller nothing. ``verdicts`` (the window
        record's ``columns``) makes the report judge each column as glassbox did
        (:func:`stream.evidence.evidently_report.build_snapshot`); ``estimate`` (the window's ``estimation``
        record) puts its estimated performance into the snapshot.
        """
        try:
            with self._lock:
                self.stats.requested += 1
                known = self._links.get((model, window_index))
                running = len(self._pending)
                skip = known is None and running >= self.max_pending
                over = (known is None and not skip and trigger != "alert" and self.render_duty < 1.0
                        and (time.monotonic() < self._rest_until or self._periodic_pending()))
                if skip:
                    self.stats.skipped += 1
                if over:
                    self.stats.skipped_budget += 1
            if known is not None:
                return dict(known)
            if over:  # the render process is within its CPU budget: periodic reports wait for the next turn
                return self.links_for(model)
            if skip:  # logged once per 100 (a fast stream asks far more often than reports render)
                (log.warning if self.stats.skipped % 100 == 1 else log.debug)(
                    "snapshot of %s window %d skipped: %d still pending (%d skipped so far)", model, window_index,
                    running, self.stats.skipped)
                return self.links_for(model)
            if callable(current):
                current = current()
                if current is None:
                    with self._lock:
                        self.stats.requested -= 1
                    return self.links_for(model)
            job = SnapshotJob(
                model=model, window_index=window_index, window_end_ms=window_end_ms,
                current=sample_frame(current, self.sample_size, seed=self.seed + window_index),
                reference=self.reference_sample(model, model_version, reference), features=list(features),
                out_dir=str(self.out_dir / model), prediction=prediction, label=label, task=task,
                categorical=None if categorical is None else list(categorical), model_version=model_version,
                trigger=trigger, sample_size=self.sample_size, seed=self.seed, workspace=self.workspace,
                run_id=None if self.run is None else self.run.run_id, verdicts=verdicts, estimate=estimate,
            )
            links = self.planned_links(model, window_index)
            fut = self.executor.submit(render_snapshot, job)
            fut.add_done_callback(lambda f, j=job, t=time.monotonic(), ln=links: self._done(f, j, t, ln))
            with self._lock:
                self._pending[(model, window_index)] = fut
                self._triggers[(model, window_index)] = trigger
                self._links[(model, window_index)] = links
                self._latest[model] = window_index
            return dict(links)
        except Exception as err:  # noqa: BLE001 - never into the worker
            with self._lock:
                self.stats.failed += 1
            log.exception("snapshot of %s window %d could not be scheduled: %s", model, window_index, err)
            return self.links_for(model)

    def _done(self, fut: cf.Future[Any], job: SnapshotJob, t0: float, links: dict[str, str | None]) -> None:
        key = (job.model, job.window_index)
        elapsed = time.monotonic() - t0
        try:
            outcome: SnapshotOutcome = fut.result()
            if elapsed > self.timeout_s:
                raise TimeoutError(f"took {elapsed:.1f}s > {self.timeout_s}s")
            self._publish(job, outcome)
            with self._lock:
                self.stats.completed += 1
                self.stats.seconds.append(outcome.seconds)
                cpu = outcome.cpu_seconds if outcome.cpu_seconds is not None else outcome.seconds
                self.stats.cpu_seconds.append(cpu)
                self._rest(cpu)
                self.outcomes.append(outcome)
        except Exception as err:  # noqa: BLE001
            timed_out = isinstance(err, TimeoutError)
            with self._lock:
                if timed_out:
                    self.stats.timed_out += 1
                else:
                    self.stats.failed += 1
                self._links[key] = {**links, "report": None, "report_json": None}
                self._rest(elapsed)  # no CPU figure from a failed report: its wall time, to be safe
                self.outcomes.append(SnapshotOutcome(model=job.model, window_index=job.window_index,
                                                     error=f"{type(err).__name__}: {err}", seconds=elapsed))
            log.error("snapshot of %s window %d failed: %s: %s", job.model, job.window_index,
                      type(err).__name__, err)
        finally:
            with self._lock:
                self._pending.pop(key, None)
                self._triggers.pop(key, None)
                self._idle.notify_all()

    def _periodic_pending(self) -> bool:
        return any(t != "alert" for t in self._triggers.values())

    def _rest(self, cpu_seconds: float) -> None:
        """Start the rest the last report earned (under ``self._lock``)."""
        if self.render_duty < 1.0:
            rest = cpu_seconds * (1.0 / self.render_duty - 1.0)
            self._rest_until = max(self._rest_until, time.monotonic() + rest)

    def _publish(self, job: SnapshotJob, outcome: SnapshotOutcome) -> None:
        """Artifacts and metrics into the monitoring run (no-op without a run)."""
        if self.run is None:
            return
        folder = f"snapshots/{job.model}"
        for path in (outcome.html, outcome.json):
            if path:
                self.run.log_artifact(path, folder)
        metrics = {"evidently/drift_share": outcome.drift_share or 0.0,
                   "evidently/drifted_columns": float(len(outcome.drifted_columns)),
                   **{f"evidently/drift_score/{c}": s for c, s in outcome.column_scores.items()},
                   **{f"evidently/quality/{k}": v for k, v in outcome.quality.items()}}
        self.run.log_window_metrics(job.model, job.window_index, metrics, timestamp_ms=job.window_end_ms,
                                    count=False)
        if self._own_out:
            for path in (outcome.html, outcome.json):
                if path:
                    Path(path).unlink(missing_ok=True)

    # -- waiting and closing -------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every queued snapshot is published or failed (at most ``timeout`` s); True when idle."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout=timeout)

    def close(self, wait: bool = True, timeout: float | None = None) -> None:
        if wait and not self.wait(timeout if timeout is not None else self.timeout_s):
            with self._lock:
                for key in list(self._pending):
                    self.stats.timed_out += 1
                    self._links[key] = {**self._links.get(key, {}), "report": None, "report_json": None}
                    log.error("snapshot of %s window %d still running at close: counted as timed out", *key)
        if self._own_executor:
            self.executor.shutdown(wait=wait, cancel_futures=not wait)
        if self._own_out and self.run is not None:
            shutil.rmtree(self.out_dir, ignore_errors=True)

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
:func:`enrich_alert` fills an alert's ``links`` and ``evidence``.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stream.evidence.evidently_report import DEFAULT_SAMPLE_SIZE, sample_frame

log = logging.getLogger(__name__)

PROJECT_NAMESPACE = uuid.UUID("6f1c2b1e-7a51-4e55-9d0a-9a7c0f1d2e3b")


def project_id_for(model: str) -> uuid.UUID:
    """The Evidently project id of a model: stable, so links are known before the project exists.

    >>> str(project_id_for("churn")) == str(project_id_for("churn"))
    True
    """
    return uuid.uuid5(PROJECT_NAMESPACE, f"glassbox-model:{model}")


def snapshot_name(model: str, window_index: int) -> str:
    return f"{model}-w{window_index:06d}"


@dataclass
class SnapshotJob:
    """Everything one snapshot needs; picklable, so a process pool can run :func:`render_snapshot`."""

    model: str
    window_index: int
    window_end_ms: int | None
    current: pd.DataFrame
    reference: pd.DataFrame
    features: list[str]
    out_dir: str
    prediction: str | None = "prediction"
    label: str | None = None
    task: str | None = None
    categorical: list[str] | None = None
    model_version: str | None = None
    trigger: str = "periodic"  # periodic | alert
    sample_size: int = DEFAULT_SAMPLE_SIZE
    seed: int = 42
    workspace: str | None = None
    run_id: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class SnapshotOutcome:
    model: str
    window_index: int
    html: str | None = None
    json: str | None = None
    ok: bool = False
    error: str | None = None
    seconds: float = 0.0
    cpu_seconds: float | None = None  # CPU time of the rendering thread
    html_bytes: int = 0
    drift_share: float | None = None
    drifted_columns: list[str] = field(default_factory=list)
    column_scores: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    workspace_snapshot_id: str | None = None


# ------------------------------------------------------------------------------------------ the work itself
def warm_up() -> None:
    """Import Evidently in the executor, so the first snapshot does not pay for it."""
    import evidently.presets  # noqa: F401
    import evidently.ui.workspace  # noqa: F401


_ws_lock = threading.Lock()
_workspaces: dict[str, Any] = {}


def _workspace(path: str) -> Any:
    from evidently.ui.workspace import Workspace

    if path not in _workspaces:
        Path(path).mkdir(parents=True, exist_ok=True)
        _workspaces[path] = Workspace(path)
    return _workspaces[path]


def ensure_project(ws: Any, model: str, features: Sequence[str], task: str | None, label: str | None) -> Any:
    """The model's Evidently project, created with its dashboard on first use."""
    from evidently.sdk.models import PanelMetric, ProjectModel
    from evidently.sdk.panels import counter_panel, line_plot_panel, text_panel

    pid = project_id_for(model)
    project = ws.get_project(pid)
    if project is not None:
        return project
    project = ws.add_project(ProjectModel(id=pid, name=model,
                                          description=f"glassbox drift monitoring of model {model!r}"))
    d = project.dashboard
    d.add_panel(text_panel(title=f"{model}: windows vs reference"), tab="Drift")
    share = PanelMetric(legend="share", metric="DriftedColumnsCount", metric_labels={"value_type": "share"})
    d.add_panel(counter_panel(title="Share of drifted columns (last window)", values=[share], size="half"),
                tab="Drift")
    d.add_panel(counter_panel(title="Rows in the last window sample", size="half", values=[
        PanelMetric(legend="rows", metric="RowCount")]), tab="Drift")
    d.add_panel(line_plot_panel(title="Drift share over windows", values=[share], size="full"), tab="Drift")
    d.add_panel(line_plot_panel(title="Per-feature drift score", size="full", values=[
        PanelMetric(legend=c, metric="ValueDrift", metric_labels={"column": c}) for c in features]), tab="Drift")
    quality = ([("RMSE", "RMSE"), ("MAE", "MAE")] if task == "regression"
               else [("Accuracy", "accuracy"), ("F1Score", "F1"), ("Precision", "precision"), ("Recall", "recall")])
    d.add_panel(line_plot_panel(
        title="Performance over time (windows with joined labels)" if label else "Performance over time",
        values=[PanelMetric(legend=legend, metric=m, metric_labels={"value_type": "mean"} if m == "MAE" else {})
                for m, legend in quality], size="full"), tab="Performance")
    return project


def render_snapshot(job: SnapshotJob) -> SnapshotOutcome:
    """Build the report, write HTML + JSON under ``job.out_dir`` and add it to the workspace.

    Raises on failure (the service counts it); everything here depends on the job only.
    """
    from stream.evidence.evidently_report import build_snapshot

    t0, c0 = time.perf_counter(), time.thread_time()
    snap = build_snapshot(
        job.current, job.reference, features=job.features, prediction=job.prediction, label=job.label,
        task=job.task, categorical=job.categorical, sample_size=job.sample_size, seed=job.seed,
        window_end_ms=job.window_end_ms, name=snapshot_name(job.model, job.window_index),
        metadata={"model": job.model, "model_version": job.model_version or "", "window": job.window_index,
                  "trigger": job.trigger, "mlflow_run": job.run_id or ""},
        tags=[job.model, job.trigger, *job.tags],
    )
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"w{job.window_index:06d}"
    html_path, json_path = out / f"{stem}.html", out / f"{stem}.json"
    html = snap.to_html()
    html_path.write_text(html, encoding="utf-8")
    json_path.write_text(snap.to_json(), encoding="utf-8")
    snapshot_id = None
    if job.workspace:
        with _ws_lock:
            ws = _workspace(job.workspace)
            task = job.task or ("regression" if "RMSE" in snap.quality else "classification")
            project = ensure_project(ws, job.model, job.features, task, job.label)
            snapshot_id = str(ws.add_run(project.id, snap.snapshot).id)
    return SnapshotOutcome(
        model=job.model, window_index=job.window_index, html=str(html_path), json=str(json_path), ok=True,
        seconds=time.perf_counter() - t0, cpu_seconds=time.thread_time() - c0, html_bytes=len(html.encode()),
        drift_share=snap.drift_share,
        drifted_columns=snap.drifted_columns,
        column_scores={c: d["score"] for c, d in snap.column_drift.items()},
        quality=snap.quality, workspace_snapshot_id=snapshot_id,
    )


# -------------------------------------------------------------------------------------------- executor
def render_executor(kind: str = "process", nice: int | None = None, idle: bool | None = None) -> cf.Executor:
    """Where snapshots render: ``"process"`` (:class:`stream.evidence.idle_pool.IdleProcessPool`, the default: the
    report's CPU stays off the worker's interpreter, at the lowest priority) or ``"thread"`` (one thread of the
    worker)."""
    if kind == "process":
        from stream.evidence.idle_pool import IdleProcessPool

        return IdleProcessPool(nice=nice, idle=idle)
    return cf.ThreadPoolExecutor(1, thread_name_prefix="glassbox-snapshot")


# ------------------------------------------------------------------------------------------------ service
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
    ) -> dict[str, str | None]:
        """Queue a snapshot of one window; returns its planned links at once (never raises).

        ``current`` is the window's rows, or a function returning them (None: nothing to report), called only
        when the snapshot is scheduled, so a skipped request costs the caller nothing.
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
                run_id=None if self.run is None else self.run.run_id,
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


# ------------------------------------------------------------------------------------------------ alerts
@dataclass
class AlertContext:
    """What an alert's links and evidence come from (any part may be None)."""

    run: Any = None  # MonitoringRun
    snapshots: SnapshotService | None = None
    references: Mapping[str, Any] = field(default_factory=dict)  # model -> ReferenceInfo (or dict)
    git_commit: str | None = None


def enrich_alert(alert: Mapping[str, Any], ctx: AlertContext) -> dict[str, Any]:
    """A copy of ``alert`` with ``links.report`` / ``links.mlflow_run`` / ``links.dashboard`` and the
    evidence's reference dataset name and digest and git commit (identity fields are left untouched)."""
    out = dict(alert)
    model = out.get("model") or ""
    window = (out.get("window") or {}).get("index")
    links = dict(out.get("links") or {})
    if ctx.snapshots is not None:
        snap = ctx.snapshots.links_for(model, window)
        links.update({k: v for k, v in snap.items() if k in ("report", "dashboard") and v})
        if snap.get("report_json"):
            links.setdefault("report_json", snap["report_json"])
    if ctx.run is not None and ctx.run.link:
        links["mlflow_run"] = ctx.run.link
    for k in ("runbook", "dashboard", "report", "mlflow_run"):
        links.setdefault(k, None)
    evidence = dict(out.get("evidence") or {})
    ref = ctx.references.get(model)
    if ref is not None:
        get = ref.get if isinstance(ref, Mapping) else lambda k, r=ref: getattr(r, k, None)
        evidence.update({"reference_dataset": get("name"), "reference_digest": get("digest"),
                         "reference_uri": get("uri")})
    commit = ctx.git_commit
    if commit is None and ctx.run is not None:
        commit = _run_commit(ctx.run)
    evidence["git_commit"] = commit
    if ctx.run is not None and getattr(ctx.run, "run_id", None):
        evidence["mlflow_run_id"] = ctx.run.run_id
    out["links"], out["evidence"] = links, evidence
    return out


def _run_commit(run: Any) -> str | None:
    return getattr(run, "git_commit", None)

"""One Evidently snapshot of a window, rendered where the executor runs it (a low-priority process by default):
the report built on bounded samples, its HTML and JSON written, and the snapshot added to the model's project in
an Evidently workspace (its id derived from the model name, so links are known before it exists).
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stream.evidence.evidently_report import DEFAULT_SAMPLE_SIZE

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
    verdicts: dict[str, dict[str, Any]] | None = None  # glassbox's column verdicts (the window record's columns)
    estimate: dict[str, Any] | None = None  # the window's estimated performance (its ``estimation`` record)


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
        tags=[job.model, job.trigger, *job.tags], verdicts=job.verdicts, estimate=job.estimate,
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

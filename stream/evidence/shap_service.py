"""SHAP on the stream for the live worker: a seeded reservoir per window on the hot path, the SHAP work in
a separate low-priority process, ``attribution_drift`` decisions in window order as results come back, and
SHAP artifacts (summary bar plot, beeswarm plot, values table) of chosen windows in the monitoring run.

SHAP's extension holds the GIL, so a thread would stall consumption: each model gets a one-process pool
at the lowest CPU priority (``SCHED_IDLE`` on Linux, nice 19) whose initializer receives that model's window
explainer once (our own in-memory model, pickled to our
own child; nothing from the stream is unpickled). The reference's attributions come from the
``attributions.json`` stored with the reference (:func:`stream.evidence.reference.log_reference`); only references
logged without it are explained at start.

Artifacts are drawn in the same child (matplotlib, headless) and come back as bytes with the window's
result; a logging thread writes them to the run under ``snapshots/<model>/w<index>-shap/`` (next to the
Evidently snapshot of the window): every window the snapshot policy picks (``evidently.every_n_windows``),
every window where a data_drift / prediction_drift / data_quality alert fired, and every window where
``attribution_drift`` fired. Those alerts carry the artifact URIs as ``evidence.shap_plots``. Nothing here
raises into the worker: failures are logged and counted.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import shutil
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.evidence.idle_pool import IdleProcessPool
from stream.pipeline.monitors import MonitorRegistry
from stream.pipeline.pipeline import StepOutput
from stream.settings import Settings

log = logging.getLogger("glassbox.attribution")

SAME_WINDOW = frozenset({"data_drift", "prediction_drift", "data_quality"})  # alerts of a prediction window
ARTIFACT_NAMES = {"bar": "shap_summary_bar.png", "beeswarm": "shap_beeswarm.png", "table": "shap_values.csv"}
MAX_PLANNED = 256  # windows remembered per model for artifacts

_EXPLAINER: Any = None
_MODEL = ""


def _init_process(window_explainer: Any, model: str = "") -> None:
    global _EXPLAINER, _MODEL
    _EXPLAINER, _MODEL = window_explainer, model
    warnings.filterwarnings("ignore")


def _render(att: Any, index: int, events: int) -> dict[str, bytes]:
    from stream.evidence.shap_plots import artifact_bytes

    title = f"{_MODEL} window {index}: SHAP of {len(att.values)} sampled of {events} events"
    return artifact_bytes(att, title=title)


def _explain(sample: Any, render: bool = False) -> tuple[Any, dict[str, bytes] | None, str | None]:
    """In the child: the window's result and, with ``render``, its artifacts (or why they failed)."""
    result = _EXPLAINER(sample)
    if not render or result.attribution is None:
        return result, None, None
    try:
        return result, _render(result.attribution, result.index, result.window["events"]), None
    except Exception as err:  # noqa: BLE001 - a plot must never cost the window's decision
        return result, None, f"{type(err).__name__}: {err}"


def _render_only(att: Any, index: int, events: int) -> dict[str, bytes]:
    return _render(att, index, events)


def artifact_dir(model: str, index: int) -> str:
    """Where a window's SHAP artifacts go in the monitoring run (next to its Evidently snapshot)."""
    return f"snapshots/{model}/w{int(index):06d}-shap"


@dataclass
class _Job:
    model: str
    kind: str  # explain | render
    index: int | None
    future: cf.Future[Any]


class AttributionService:
    """Attribution monitors of the models whose reference carries a model (``models:/`` references).

    ``run`` (a :class:`stream.evidence.monitoring_run.MonitoringRun`, or set later with :meth:`attach_run`) receives
    the SHAP artifacts; without one, nothing is drawn.
    """

    def __init__(self, settings: Settings, registry: MonitorRegistry, run: Any = None):
        self.settings = settings
        self.registry = registry
        self.run = run
        self.every_n = max(1, int(settings.evidently.every_n_windows))
        self.monitors: dict[str, Any] = {}
        self.pools: dict[str, cf.ProcessPoolExecutor] = {}
        self.pending: list[_Job] = []
        self.failed = 0
        self.reference_sources: dict[str, str] = {}  # model -> stored | computed
        self.artifacts = {"windows": 0, "files": 0, "failed": 0}
        self._planned: dict[str, dict[int, str]] = {}  # model -> window -> want | submitted
        self._uploads: list[cf.Future[Any]] = []
        self._logger: cf.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def attach_run(self, run: Any) -> None:
        """Log SHAP artifacts of chosen windows into ``run`` from now on."""
        self.run = run

    def prepare(self) -> list[str]:
        """Build the monitors up front (calibration, and SHAP on references stored without attributions)."""
        from detectors.attribution import unwrap_model
        from detectors.attribution_monitor import AttributionMonitor
        from stream.evidence.reference import is_model_uri, load_reference

        cfg = self.settings.attribution
        if not cfg.enabled:
            return []
        for model, uri in self.registry.references.items():
            if not is_model_uri(uri):
                continue
            try:
                ref = load_reference(uri, tracking_uri=self.settings.mlflow.tracking_uri, load_model=True)
                if ref.model is None:
                    continue
                mon = AttributionMonitor(
                    unwrap_model(ref.model), ref.extras.get("attributions"), ref.data, ref.features, cfg,
                    model_name=model, seed=self.settings.detection.seed, window=self.settings.detection.window,
                    model_version=ref.info.model_version,
                    reference_info={"name": ref.info.name, "digest": ref.info.digest, "rows": ref.info.rows},
                )
            except Exception:
                log.exception("attribution monitoring of %r disabled: its model could not be explained", model)
                continue
            if mon.reference_source != "stored":
                log.warning("%s: the reference of %r has no stored attributions: explained it at start (log the "
                            "reference again to store them)", uri, model)
            self.monitors[model] = mon
            self.reference_sources[model] = mon.reference_source
            # lowest priority, and gone with the worker (windows wait, and count as backlog, when busy)
            self.pools[model] = IdleProcessPool(_init_process, (mon.window_explainer, model))
        return list(self.monitors)

    # ------------------------------------------------------------------------------------------- hot path
    def observe(self, out: StepOutput, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Sample the step's events, send closed windows to SHAP, and add the latest movers (and the SHAP
        artifacts of their window, when drawn) to ``alerts``."""
        fired = {(a["model"], a["window"].get("index")) for a in alerts
                 if a.get("status") == "firing" and a.get("monitor") in SAME_WINDOW and a.get("window")}
        for model, batch in out.batches:
            mon = self.monitors.get(model)
            if mon is None:
                continue
            for sample in mon.collect(batch):
                render = self.run is not None and (
                    (sample.index + 1) % self.every_n == 0 or (model, sample.index) in fired
                    or self._planned.get(model, {}).get(sample.index) == "want")
                if render:
                    self._plan(model, sample.index, "submitted")
                self._submit(model, "explain", sample.index, _explain, sample, render)
        if self.run is not None:
            for model, index in fired:
                if model in self.monitors and index is not None:
                    self._want(model, int(index))
        by_model: dict[str, list[dict[str, Any]]] = {}
        for a in alerts:
            by_model.setdefault(a["model"], []).append(a)
        out_alerts: list[dict[str, Any]] = []
        for model, group in by_model.items():
            mon = self.monitors.get(model)
            out_alerts.extend(mon.attach_movers(group) if mon is not None else group)
        for a in out_alerts:
            if (a["model"], a.get("window", {}).get("index")) in fired:
                self._link(a)
        return out_alerts

    def poll(self) -> list[dict[str, Any]]:
        """Decisions of the windows whose SHAP finished (in window order per model); hands finished
        artifacts to the logging thread."""
        done, still = [], []
        for job in self.pending:
            (done if job.future.done() else still).append(job)
        self.pending = still
        alerts: list[dict[str, Any]] = []
        for job in done:
            try:
                if job.kind == "explain":
                    alerts.extend(self._explained(job))
                elif (files := job.future.result()) is not None:
                    self._upload(job.model, int(job.index or 0), files)
            except Exception:
                if job.kind == "explain":
                    self.failed += 1
                else:
                    self.artifacts["failed"] += 1
                log.exception("SHAP %s of a %r window failed", job.kind, job.model)
        for a in alerts:
            if a["status"] == "firing" and self.run is not None:
                self._want(a["model"], int(a["window"]["index"]))
                self._link(a)
        return alerts

    def _explained(self, job: _Job) -> list[dict[str, Any]]:
        result, files, error = job.future.result()
        alerts = self.monitors[job.model].decide(result)
        if files:
            self._upload(job.model, result.index, files)
        elif error:
            self.artifacts["failed"] += 1
            log.error("SHAP plots of %r window %d failed: %s", job.model, result.index, error)
        elif self._planned.get(job.model, {}).get(result.index) == "want" and result.attribution is not None:
            self._render(job.model, result)
        return alerts

    # ------------------------------------------------------------------------------------------ artifacts
    def _submit(self, model: str, kind: str, index: int | None, fn: Any, *args: Any) -> None:
        self.pending.append(_Job(model, kind, index, self.pools[model].submit(fn, *args)))

    def _plan(self, model: str, index: int, state: str) -> None:
        planned = self._planned.setdefault(model, {})
        planned[index] = state
        if len(planned) > MAX_PLANNED:
            for old in sorted(planned)[: len(planned) - MAX_PLANNED]:
                del planned[old]

    def _want(self, model: str, index: int) -> None:
        """Artifacts for window ``index``: drawn now if its result is back, else when it comes back."""
        if self._planned.get(model, {}).get(index) == "submitted":
            return
        mon = self.monitors[model]
        result = mon.result(index)
        if result is not None and result.attribution is not None:
            self._render(model, result)
        elif index >= mon.next_to_decide:  # not decided yet: its sample is in flight or its window still open
            self._plan(model, index, "want")

    def _render(self, model: str, result: Any) -> None:
        self._plan(model, result.index, "submitted")
        self._submit(model, "render", result.index, _render_only, result.attribution, result.index,
                     result.window["events"])

    def _link(self, alert: dict[str, Any]) -> None:
        """``evidence.shap_plots``: the URIs of the alert window's SHAP artifacts (planned or logged)."""
        index = alert.get("window", {}).get("index")
        if index is None or self._planned.get(alert["model"], {}).get(int(index)) is None:
            return
        base = getattr(self.run, "artifact_uri", None)
        if not base:
            return
        folder = f"{base}/{artifact_dir(alert['model'], int(index))}"
        alert.setdefault("evidence", {})["shap_plots"] = {
            "window": int(index), **{k: f"{folder}/{name}" for k, name in ARTIFACT_NAMES.items()}}

    def _upload(self, model: str, index: int, files: dict[str, bytes]) -> None:
        if self.run is None:
            return
        if self._logger is None:
            self._logger = cf.ThreadPoolExecutor(1, thread_name_prefix="glassbox-shap-artifacts")
        self._uploads = [f for f in self._uploads if not f.done()]
        self._uploads.append(self._logger.submit(self._log_files, model, index, files))

    def _log_files(self, model: str, index: int, files: dict[str, bytes]) -> None:
        """On the logging thread: write the files and log them into the run (never raises)."""
        tmp = Path(tempfile.mkdtemp(prefix="glassbox-shap-"))
        try:
            for name, data in sorted(files.items()):
                path = tmp / name
                path.write_bytes(data)
                self.run.log_artifact(path, artifact_dir(model, index))
                with self._lock:
                    self.artifacts["files"] += 1
            with self._lock:
                self.artifacts["windows"] += 1
        except Exception:
            with self._lock:
                self.artifacts["failed"] += 1
            log.exception("logging SHAP artifacts of %r window %d failed", model, index)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ------------------------------------------------------------------------------------------- status
    def stats(self) -> dict[str, Any]:
        explain = sum(1 for j in self.pending if j.kind == "explain")
        uploads = sum(1 for f in self._uploads if not f.done())
        with self._lock:
            artifacts = dict(self.artifacts)
        artifacts["pending"] = len(self.pending) - explain + uploads
        return {"models": list(self.monitors), "pending": explain, "failed": self.failed,
                "reference": dict(self.reference_sources), "artifacts": artifacts}

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is in flight (artifacts of explained windows still reach the run, within ``timeout``
        seconds), then stop the SHAP processes and the logging thread."""
        deadline = time.monotonic() + timeout
        late = 0
        while self.pending and self.run is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            cf.wait([j.future for j in self.pending], timeout=left)
            late += len(self.poll())  # a render submitted here is waited for in the next round
        if late:
            log.warning("%d attribution alert transition(s) decided at shutdown were not published", late)
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        if self._logger is not None:
            cf.wait(self._uploads, timeout=max(0.0, deadline - time.monotonic()))
            self._logger.shutdown(wait=False, cancel_futures=True)

"""One MLflow run per worker session or replay: the record that makes every alert traceable.

The run carries who/what/where tags (project, env, user, models and versions, git commit, lock digest,
package versions, instance type), the configuration, the reference datasets (name and digest), the input
(Kafka offsets or the input file's digest), system metrics, window statistics as metrics (step = window
index, timestamp = the window's end event time, so two replays of the same data log identical series), and
at the end the alerts as a table artifact and the session's run time.

Window metrics are a compact set per window (:func:`~stream.evidence.window_metrics.compact_window_metrics`: per
monitored column the tested
statistic's value, its threshold and the drift flag; per window the events, drift share and quality
summaries; per outcome window the performance metrics and the decision), while the full window records go to
gzipped JSON-lines artifacts ``windows/<model>/part-NNNNNN.jsonl.gz`` (:meth:`MonitoringRun.record_windows`,
uploaded periodically and at the end; :func:`~stream.evidence.window_spool.read_window_records` reads them back).
A replay logs every window's metrics (:mod:`~stream.evidence.replay_run`); a live worker logs them through
:class:`~stream.evidence.window_logger.WindowLogger`, which bounds the time MLflow takes and thins the windows
it cannot log in time (``windows_thinned``; they stay in the artifact).

It talks to MLflow through an explicit ``MlflowClient`` and run id (no fluent global state), so the worker's
event loop and the snapshot executor can share it; a lock serialises calls.

>>> alerts_table([{"alert_id": "a1", "status": "firing", "window": {"index": 3}}])["window_index"]
[3]
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stream.evidence import lineage
from stream.evidence.window_metrics import (
    METRICS_PER_BATCH,
    as_mapping,
    cached_key,
    compact_window_metrics,
    metric_key,
)
from stream.evidence.window_spool import WindowSpool, artifact_name

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "glassbox-monitoring"

ALERT_TABLE_COLUMNS = (
    "alert_id", "status", "severity", "model", "model_version", "monitor", "feature", "detector", "statistic",
    "value", "threshold", "threshold_kind", "window_index", "window_start", "window_end", "event_time",
    "summary", "report", "dashboard",
)


def ensure_experiment(client: Any, name: str, artifact_root: str | os.PathLike[str] | None = None) -> str:
    """The experiment's id, creating it (artifacts under ``artifact_root/<name>`` when given) if needed."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if artifact_root is not None:
        root = str(artifact_root)
        location = root.rstrip("/") + "/" + name if "://" in root else (Path(root) / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another worker
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def local_path(uri: str) -> Path | None:
    """The local path of a ``file://`` URI or plain path, None for remote stores."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    return None if "://" in uri else Path(uri)


class MonitoringRun:
    """An MLflow run recording one worker session (``kind="worker"``) or one replay (``kind="replay"``).

    Use as a context manager (a failure marks the run FAILED) or call :meth:`start` / :meth:`finish`.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str = DEFAULT_EXPERIMENT,
        artifact_root: str | os.PathLike[str] | None = None,
        kind: str = "worker",
        run_name: str | None = None,
        project: str = "glassbox",
        env: str = "local",
        config: Mapping[str, Any] | None = None,
        source: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        system_metrics: bool = True,
        system_metrics_interval_s: float = 10.0,
        mlflow_ui_url: str | None = None,
        repo: str | None = None,
    ) -> None:
        from mlflow import MlflowClient

        lineage.quiet_store_logs()
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment = experiment
        self.artifact_root = artifact_root
        self.kind = kind
        self.run_name = run_name
        self.project, self.env = project, env
        self.config = dict(config or {})
        self.source = dict(source or {})
        self.extra_tags = dict(tags or {})
        self.system_metrics = system_metrics
        self.system_metrics_interval_s = system_metrics_interval_s
        self.mlflow_ui_url = mlflow_ui_url
        self.repo = repo
        self.models: dict[str, dict[str, Any]] = {}
        self.alerts: list[dict[str, Any]] = []
        self.windows_logged = 0  # windows whose metrics went to MLflow
        self.windows_recorded = 0  # windows written to the ``windows/`` artifact (all of them)
        self.windows_thinned = 0  # live windows whose metrics were not logged (too many, too fast)
        self.run_id: str | None = None
        self.git_commit: str | None = None
        self.experiment_id: str | None = None
        self.artifact_uri: str | None = None
        self._lock = threading.RLock()
        self._monitor: Any = None
        self._t0 = 0.0
        self._finished = False
        self._spool = WindowSpool()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> MonitoringRun:
        """Create the run with its lineage tags, config and package versions."""
        with self._lock:
            self.experiment_id = ensure_experiment(self.client, self.experiment, self.artifact_root)
            tags = lineage.lineage_tags(project=self.project, env=self.env, repo=self.repo)
            self.git_commit = tags.get("git_commit")
            tags.update({"glassbox.kind": self.kind, "mlflow.source.type": "JOB"})
            tags.update({f"source.{k}": _tag_value(v) for k, v in self.source.items()})
            tags.update(self.extra_tags)
            run = self.client.create_run(self.experiment_id, run_name=self.run_name, tags=tags)
            self.run_id = run.info.run_id
            self.artifact_uri = run.info.artifact_uri
            self._spool.owner = {"run_id": self.run_id, "tracking_uri": self.tracking_uri}  # for recover_spools
            self._t0 = time.perf_counter()
            params = {f"pkg.{k}": v for k, v in lineage.package_versions().items()}
            params.update({f"config.{k}": _tag_value(v)[:6000] for k, v in _flat_config(self.config).items()})
            self._log_params(params)
            self.client.log_dict(self.run_id, {"config": self.config, "packages": lineage.package_versions()},
                                 "config.json")
            self._write_run_card()
            if self.system_metrics:
                self._start_system_metrics()
        return self

    def finish(self, status: str = "FINISHED") -> None:
        """Log the alerts table, run time and process metrics, stop system metrics, end the run."""
        with self._lock:
            if self._finished or self.run_id is None:
                return
            self._finished = True
            try:
                self.upload_windows()
                self.client.log_table(self.run_id, data=alerts_table(self.alerts), artifact_file="alerts.json")
                lines = "\n".join(json.dumps(a, sort_keys=True, default=str) for a in self.alerts)
                self.client.log_text(self.run_id, lines + ("\n" if lines else ""), "alerts.jsonl")
                now = int(time.time() * 1000)
                metrics = {"run_time_s": round(time.perf_counter() - self._t0, 3),
                           "alerts": float(len(self.alerts)), "windows": float(self.windows_recorded),
                           "windows_logged": float(self.windows_logged),
                           "windows_thinned": float(self.windows_thinned), **lineage.process_metrics()}
                self._log_metrics([(k, v, now, 0) for k, v in metrics.items()])
                self._log_tags({**{f"source.{k}": _tag_value(v) for k, v in self.source.items()},
                                "windows_thinned": str(self.windows_thinned)})
                self._write_run_card()
            finally:
                if self._monitor is not None:
                    self._monitor.finish()
                    self._monitor = None
                self._spool.close()
                self.client.set_terminated(self.run_id, status=status)

    def __enter__(self) -> MonitoringRun:
        return self.start() if self.run_id is None else self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.finish("FAILED" if exc_type else "FINISHED")

    # -- what the session monitors -----------------------------------------------------------------
    def add_model(self, name: str, version: str | int | None = None, *, reference_name: str | None = None,
                  reference_digest: str | None = None, reference_uri: str | None = None) -> None:
        """Record a monitored model and its reference (tags ``model``, ``model_version``, ``reference_*``)."""
        with self._lock:
            self.models[name] = {"version": None if version is None else str(version),
                                 "reference_name": reference_name, "reference_digest": reference_digest,
                                 "reference_uri": reference_uri}
            tags = {f"model.{name}.version": str(version) if version is not None else "",
                    f"reference.{name}.dataset": reference_name or "",
                    f"reference.{name}.digest": reference_digest or "",
                    f"reference.{name}.uri": reference_uri or "",
                    "model": ",".join(sorted(self.models))}
            if len(self.models) == 1:
                tags.update({"model_version": tags[f"model.{name}.version"],
                             "reference_dataset": reference_name or "", "reference_digest": reference_digest or ""})
            self._log_tags(tags)

    def set_source(self, **source: Any) -> None:
        """Update the input record (e.g. ``kafka_offsets={"glassbox.predictions/0": [0, 1200]}``)."""
        with self._lock:
            self.source.update(source)
            self._log_tags({f"source.{k}": _tag_value(v) for k, v in source.items()})

    # -- data ---------------------------------------------------------------------------------------
    def log_window_metrics(self, model: str, index: int, metrics: Mapping[str, float],
                           timestamp_ms: int | None = None, *, count: bool = True) -> None:
        """Metrics of one window, as ``<model>/<name>`` at step ``index`` (``count=False`` for extra metrics
        of a window already counted, such as its snapshot's)."""
        ts = int(timestamp_ms) if timestamp_ms is not None else 0
        self._log_metrics([(metric_key(model, k), float(v), ts, int(index)) for k, v in metrics.items()])
        if count:
            self.windows_logged += 1

    def log_windows(self, model: str, records: Iterable[Any]) -> int:
        """Record closed-window records in full (the ``windows/`` artifact) and log every one's compact metrics
        (:func:`compact_window_metrics`) in batches, as a replay does; returns the metrics logged."""
        records = [as_mapping(r) for r in records]
        self.record_windows(model, records)
        return self.log_compact(model, [compact_window_metrics(r) for r in records])

    def log_compact(self, model: str, windows: Iterable[tuple[int, int | None, Mapping[str, float]]]) -> int:
        """Log ``(index, end ms, metrics)`` triples as ``<model>/<name>`` at step = index; returns the metrics."""
        return self.log_compact_many((model, w) for w in windows)

    def log_compact_many(self, windows: Iterable[tuple[str, tuple[int, int | None, Mapping[str, float]]]]) -> int:
        """:meth:`log_compact` for ``(model, (index, end, metrics))`` pairs of several models at once."""
        rows: list[tuple[str, float, int, int]] = []
        n_windows = 0
        for model, (index, end, metrics) in windows:
            ts = end or 0
            rows.extend((cached_key(model, k), v, ts, index) for k, v in metrics.items())
            n_windows += 1
        self._log_metrics(rows)
        self.windows_logged += n_windows
        return len(rows)

    def record_windows(self, model: str, records: Iterable[Mapping[str, Any]]) -> int:
        """Append full window records to the model's spool (:class:`~stream.evidence.window_spool.WindowSpool`,
        uploaded by :meth:`upload_windows` and at :meth:`finish` as ``windows/<model>/part-NNNNNN.jsonl.gz``);
        cheap and never waits for MLflow."""
        if self._finished:
            return 0
        n = self._spool.write(model, records)
        self.windows_recorded += n
        return n

    def upload_windows(self) -> list[str]:
        """Log the spooled parts as artifacts (``windows/<model>/part-NNNNNN.jsonl.gz``); returns their artifact
        paths. New records start new parts."""
        done = []
        for model, path in self._spool.take().items():
            folder = f"windows/{artifact_name(model)}"
            try:
                with self._lock:
                    self._require_run()
                    self.client.log_artifact(self.run_id, str(path), folder)
                done.append(f"{folder}/{path.name}")
            except Exception:
                log.exception("uploading window records of %r to MLflow failed (kept in %s)", model, path)
                continue
            path.unlink(missing_ok=True)
        return done

    def log_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Keep alerts for the table artifact written at :meth:`finish`."""
        with self._lock:
            self.alerts.extend(dict(a) for a in alerts)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        """A JSON artifact (``default=str`` for values JSON lacks)."""
        with self._lock:
            self._require_run()
            self.client.log_dict(self.run_id, json.loads(json.dumps(data, default=str)), artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        """A text artifact."""
        with self._lock:
            self._require_run()
            self.client.log_text(self.run_id, text, artifact_file)

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> str:
        """Upload a file; returns its artifact URI."""
        with self._lock:
            self._require_run()
            self.client.log_artifact(self.run_id, str(path), artifact_path)
            return f"{self.artifact_uri}/{artifact_path + '/' if artifact_path else ''}{Path(path).name}"

    # -- links -------------------------------------------------------------------------------------
    @property
    def link(self) -> str | None:
        """Where a human opens this run: the MLflow UI page when ``mlflow_ui_url`` is set, else the run card
        (``run.json``) in the run's artifacts."""
        if self.run_id is None:
            return None
        if self.mlflow_ui_url:
            return f"{self.mlflow_ui_url.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"{self.artifact_uri}/run.json"

    # -- internals ---------------------------------------------------------------------------------
    def _require_run(self) -> None:
        if self.run_id is None:
            raise RuntimeError("monitoring run not started: call start() or use it as a context manager")

    def _write_run_card(self) -> None:
        card = {"run_id": self.run_id, "experiment": self.experiment, "experiment_id": self.experiment_id,
                "tracking_uri": self.tracking_uri, "kind": self.kind, "models": self.models,
                "source": self.source, "alerts": len(self.alerts), "windows": self.windows_logged}
        self.client.log_dict(self.run_id, card, "run.json")

    def _start_system_metrics(self) -> None:
        if not lineage.system_metrics_available():
            log.warning("system metrics off: MLflow samples them with psutil, which is not installed")
            self._log_tags({"log_system_metrics": "unavailable (psutil missing)"})
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=self.system_metrics_interval_s,
                                             tracking_uri=self.tracking_uri)
        self._monitor.start()
        self._log_tags({"log_system_metrics": "true"})

    def _log_metrics(self, rows: list[tuple[str, float, int, int]]) -> None:
        from mlflow.entities import Metric

        with self._lock:
            self._require_run()
            for i in range(0, len(rows), METRICS_PER_BATCH):
                chunk = [Metric(k, v, ts, step) for k, v, ts, step in rows[i:i + METRICS_PER_BATCH]]
                self.client.log_batch(self.run_id, metrics=chunk)

    def _log_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        with self._lock:
            self._require_run()
            items = [RunTag(k, str(v)[:8000]) for k, v in tags.items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, tags=items[i:i + 100])

    def _log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])


def _tag_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def _flat_config(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(_flat_config(v, key))
        else:
            out[key] = v
    return out


def alerts_table(alerts: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Alerts as columns (``ALERT_TABLE_COLUMNS``) for ``MlflowClient.log_table``."""
    table: dict[str, list[Any]] = {c: [] for c in ALERT_TABLE_COLUMNS}
    for a in alerts:
        window = a.get("window") or {}
        links = a.get("links") or {}
        row = {**{c: a.get(c) for c in ALERT_TABLE_COLUMNS},
               "window_index": window.get("index"), "window_start": window.get("start"),
               "window_end": window.get("end"), "report": links.get("report"), "dashboard": links.get("dashboard")}
        for c in ALERT_TABLE_COLUMNS:
            table[c].append(row[c])
    return table

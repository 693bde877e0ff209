"""One MLflow run per worker session or replay: the record that makes every alert traceable.

The run carries who/what/where tags (project, env, user, models and versions, git commit, lock digest,
package versions, instance type), the configuration, the reference datasets (name and digest), the input
(Kafka offsets or the input file's digest), system metrics, window statistics as metrics (step = window
index, timestamp = the window's end event time, so two replays of the same data log identical series), and
at the end the alerts as a table artifact and the session's run time.

Window metrics are a compact set per window (:func:`compact_window_metrics`: per monitored column the tested
statistic's value, its threshold and the drift flag; per window the events, drift share and quality
summaries; per outcome window the performance metrics and the decision), while the full window records go to
gzipped JSON-lines artifacts ``windows/<model>/part-NNNNNN.jsonl.gz`` (:meth:`MonitoringRun.record_windows`,
uploaded periodically and at the end; :func:`read_window_records` reads them back). A replay logs every
window's metrics; a live worker logs them through :class:`WindowLogger`, which bounds the time MLflow takes
and thins the windows it cannot log in time (``windows_thinned``; they stay in the artifact).

It talks to MLflow through an explicit ``MlflowClient`` and run id (no fluent global state), so the worker's
event loop and the snapshot executor can share it; a lock serialises calls.

>>> flatten_metrics({"x": {"psi": 0.2, "n": 3, "name": "a"}, "ok": True, "bad": float("nan")})
{'x/psi': 0.2, 'x/n': 3.0, 'ok': 1.0}
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from detectors.values import finite_number
from stream.evidence import lineage

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "glassbox-monitoring"
_BATCH = 1000  # MLflow's per-request limit on metrics (and total entities)
_KEY_BAD = re.compile(r"[^0-9A-Za-z_\-. /]")

ALERT_TABLE_COLUMNS = (
    "alert_id", "status", "severity", "model", "model_version", "monitor", "feature", "detector", "statistic",
    "value", "threshold", "threshold_kind", "window_index", "window_start", "window_end", "event_time",
    "summary", "report", "dashboard",
)


def metric_key(*parts: Any) -> str:
    """An MLflow-safe metric name from parts (``/``-joined, other characters replaced by ``_``)."""
    return "/".join(_KEY_BAD.sub("_", str(p)) for p in parts if p not in (None, ""))


def flatten_metrics(stats: Any, prefix: str = "") -> dict[str, float]:
    """Finite numbers from nested mappings/dataclasses/pydantic models as ``a/b/c`` keys; the rest is dropped."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        stats = dataclasses.asdict(stats)
    elif hasattr(stats, "model_dump"):
        stats = stats.model_dump()
    elif hasattr(stats, "to_dict") and not isinstance(stats, Mapping):
        stats = stats.to_dict()
    out: dict[str, float] = {}
    if isinstance(stats, Mapping):
        for k, v in stats.items():
            out.update(flatten_metrics(v, metric_key(prefix, k)))
        return out
    if isinstance(stats, bool):
        return {prefix: float(stats)} if prefix else {}
    try:
        import numpy as np

        if isinstance(stats, np.generic):
            stats = stats.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(stats, (int, float)) and not isinstance(stats, bool) and math.isfinite(stats) and prefix:
        return {prefix: float(stats)}
    return out


def window_fields(record: Any) -> tuple[int, int | None, dict[str, float]]:
    """``(index, end event time ms, metrics)`` of a closed-window record from ``ModelMonitor.drain_windows()``.

    Accepts a mapping, a dataclass or a pydantic model with ``index``, ``end`` (ms), ``events`` and per-column
    statistics (any nesting); every finite number except index/start/end becomes a metric, prefixed with the
    record's ``kind`` (``predictions`` / ``outcomes``) when it has one; booleans become 0/1.

    >>> window_fields({"kind": "predictions", "index": 2, "start": 0, "end": 99, "events": 100,
    ...                "columns": {"x": {"value": 0.3, "drift": True}}})
    (2, 99, {'predictions/events': 100.0, 'predictions/columns/x/value': 0.3, 'predictions/columns/x/drift': 1.0})
    """
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        data = dataclasses.asdict(record)
    elif hasattr(record, "model_dump"):
        data = record.model_dump()
    elif isinstance(record, Mapping):
        data = dict(record)
    else:
        data = {k: getattr(record, k) for k in dir(record) if not k.startswith("_")
                and not callable(getattr(record, k))}
    index = int(data["index"])
    end = data.get("end")
    kind = data.get("kind") if isinstance(data.get("kind"), str) else ""
    rest = {k: v for k, v in data.items() if k not in ("index", "start", "end", "model", "model_version", "kind")}
    return index, None if end is None else int(end), flatten_metrics(rest, kind)


@functools.lru_cache(maxsize=1 << 16)
def _key(*parts: str) -> str:
    return metric_key(*parts)


_QUALITY_RATES = ("missing_rate", "out_of_range_rate", "unseen_rate", "type_error_rate")


def compact_window_metrics(record: Mapping[str, Any]) -> tuple[int, int | None, dict[str, float]]:
    """``(index, end event time ms, metrics)``: the compact metric set of one closed-window record from
    ``ModelMonitor.drain_windows()`` (the full record goes to the ``windows/`` artifact).

    Prediction windows (``predictions/...``): ``events``, ``tested``, ``drifted_columns``, ``drift_share``
    (drifted / monitored columns), ``quality_columns`` (columns failing a quality check), the largest
    ``missing_rate`` / ``out_of_range_rate`` / ``unseen_rate`` / ``type_error_rate`` over the columns (as
    ``<rate>_max``), and per monitored column ``columns/<col>/value`` (the tested statistic),
    ``columns/<col>/threshold`` (when there is one) and ``columns/<col>/drift`` (0/1).
    Outcome windows (``outcomes/...``): ``events``, ``metrics/<name>`` (accuracy, error_rate, f1, auc or mae,
    rmse, bias), ``decision/value``, ``decision/threshold``, ``decision/condition`` and ``concept_detections``.
    Any other record falls back to :func:`window_fields` (every number).

    >>> compact_window_metrics({"kind": "predictions", "index": 2, "start": 0, "end": 99, "events": 100,
    ...     "tested": True, "drifted": ["x"], "columns": {"x": {"value": 0.3, "threshold": 0.1, "drift": True,
    ...     "missing_rate": 0.02, "quality_failed": 0, "psi": 0.5}}})[2]  # doctest: +NORMALIZE_WHITESPACE
    {'predictions/events': 100.0, 'predictions/tested': 1.0, 'predictions/drifted_columns': 1.0,
     'predictions/drift_share': 1.0, 'predictions/quality_columns': 0.0, 'predictions/missing_rate_max': 0.02,
     'predictions/columns/x/value': 0.3, 'predictions/columns/x/threshold': 0.1, 'predictions/columns/x/drift': 1.0}
    """
    kind = record.get("kind") if isinstance(record, Mapping) else None
    if kind not in ("predictions", "outcomes"):
        return window_fields(record)
    index, end = int(record["index"]), record.get("end")
    out: dict[str, float] = {}
    events = finite_number(record.get("events"))
    if events is not None:
        out[_key(kind, "events")] = events
    if kind == "predictions":
        columns: Mapping[str, Mapping[str, Any]] = record.get("columns") or {}
        if "tested" in record:
            out[_key(kind, "tested")] = float(bool(record["tested"]))
        drifted = sum(1 for c in columns.values() if c.get("drift"))
        out[_key(kind, "drifted_columns")] = float(drifted)
        out[_key(kind, "drift_share")] = drifted / len(columns) if columns else 0.0
        out[_key(kind, "quality_columns")] = float(sum(1 for c in columns.values() if c.get("quality_failed")))
        worst: dict[str, float] = {}
        for c in columns.values():
            for rate in _QUALITY_RATES:
                v = c.get(rate)
                if v is not None and (rate not in worst or v > worst[rate]):
                    worst[rate] = v
        for rate, v in worst.items():
            f = finite_number(v)
            if f is not None:
                out[_key(kind, f"{rate}_max")] = f
        for name, c in columns.items():
            for field in ("value", "threshold", "drift"):
                f = finite_number(c.get(field))
                if f is not None:
                    out[_key(kind, "columns", name, field)] = f
    else:
        for name, v in (record.get("metrics") or {}).items():
            f = finite_number(v)
            if f is not None:
                out[_key(kind, "metrics", name)] = f
        decision = record.get("decision") or {}
        for field in ("value", "threshold", "condition"):
            f = finite_number(decision.get(field))
            if f is not None:
                out[_key(kind, "decision", field)] = f
        f = finite_number(record.get("concept_detections"))
        if f is not None:
            out[_key(kind, "concept_detections")] = f
    return index, None if end is None else int(end), out


def compact_width(record: Mapping[str, Any]) -> int:
    """About how many metrics :func:`compact_window_metrics` gives for ``record`` (without computing them)."""
    if record.get("kind") == "outcomes":
        return 12
    return 3 * len(record.get("columns") or ()) + 9


def select_windows(keep: Sequence[bool], group: Sequence[Any], width: Sequence[int], budget: int) -> list[int]:
    """Which of the pending windows to log within ``budget`` metrics: all of them when they fit; else every
    ``keep`` window (those where an alert fired or resolved) and the latest of each ``group`` (model), then
    evenly spaced others as the budget allows. Returns positions, in order.

    >>> select_windows([False] * 10, ["m"] * 10, [1] * 10, 4)
    [0, 3, 6, 9]
    >>> select_windows([False, True, False, False, False], ["m"] * 5, [1] * 5, 2)
    [1, 4]
    """
    n = len(keep)
    if sum(width) <= budget:
        return list(range(n))
    latest = {g: i for i, g in enumerate(group)}
    must = sorted({i for i in range(n) if keep[i]} | set(latest.values()))
    left = budget - sum(width[i] for i in must)
    taken = set(must)
    others = [i for i in range(n) if i not in taken]
    if others and left > 0:
        avg = sum(width[i] for i in others) / len(others)
        k = min(len(others), int(left // max(avg, 1e-9)))
        if k > 0:  # evenly spaced, counted back from the latest
            step = len(others) / k
            taken.update(others[len(others) - int((j + 1) * step)] for j in range(k))
    return sorted(taken)


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


def quiet_store_logs() -> None:
    """No INFO lines from MLflow's store set-up ("Creating initial MLflow database tables...", "Updating database
    tables", alembic's migrations) on a command's output: warnings and errors still show."""
    for name in ("mlflow.store.db.utils", "mlflow.store.sql_store", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


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

        quiet_store_logs()
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
        self._spool_lock = threading.Lock()  # never held around an MLflow call: the hot path writes the spool
        self._spool_dir: Path | None = None
        self._spool: dict[str, tuple[Any, Path]] = {}  # model -> (open gzip file, its path)
        self._parts: dict[str, int] = {}

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
                self._close_spool()
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
        records = [_as_mapping(r) for r in records]
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
            rows.extend((_key(model, k), v, ts, index) for k, v in metrics.items())
            n_windows += 1
        self._log_metrics(rows)
        self.windows_logged += n_windows
        return len(rows)

    def record_windows(self, model: str, records: Iterable[Mapping[str, Any]]) -> int:
        """Append full window records to the model's spool (gzipped JSON lines, uploaded by
        :meth:`upload_windows` and at :meth:`finish` as ``windows/<model>/part-NNNNNN.jsonl.gz``).

        Cheap (about 20 us a record) and never waits for MLflow, so the live worker calls it on its hot path
        and no window is ever lost, however many are thinned from the metrics."""
        import orjson

        opt = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
        n = 0
        with self._spool_lock:
            if self._finished:
                return 0
            f = self._spool_file(model)
            for rec in records:
                f.write(orjson.dumps(rec, option=opt, default=str))
                n += 1
            self.windows_recorded += n
        return n

    def upload_windows(self) -> list[str]:
        """Close the spooled parts and log them as artifacts (``windows/<model>/part-NNNNNN.jsonl.gz``);
        returns their artifact paths. New records start new parts."""
        with self._spool_lock:
            closing, self._spool = self._spool, {}
            for f, _ in closing.values():
                f.close()
        done = []
        for model, (_, path) in closing.items():
            folder = f"windows/{_artifact_name(model)}"
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

    def _spool_file(self, model: str) -> Any:
        got = self._spool.get(model)
        if got is not None:
            return got[0]
        if self._spool_dir is None:
            self._spool_dir = Path(tempfile.mkdtemp(prefix="glassbox-windows-"))
        part = self._parts.get(model, 0)
        self._parts[model] = part + 1
        folder = self._spool_dir / _artifact_name(model)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{part:06d}.jsonl.gz"
        f = gzip.open(path, "wb", compresslevel=1)  # noqa: SIM115 - open until uploaded
        self._spool[model] = (f, path)
        return f

    def _close_spool(self) -> None:
        with self._spool_lock:
            for f, _ in self._spool.values():
                f.close()
            self._spool = {}
            if self._spool_dir is not None and not any(self._spool_dir.rglob("*.gz")):
                shutil.rmtree(self._spool_dir, ignore_errors=True)  # kept when an upload failed
                self._spool_dir = None

    def log_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Keep alerts for the table artifact written at :meth:`finish`."""
        with self._lock:
            self.alerts.extend(dict(a) for a in alerts)

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
            for i in range(0, len(rows), _BATCH):
                chunk = [Metric(k, v, ts, step) for k, v, ts, step in rows[i:i + _BATCH]]
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


class WindowLogger:
    """The live worker's window metrics: bounded, off the hot path, never behind.

    :meth:`add` (on the hot path) writes the full records to the run's ``windows/`` artifact spool and queues
    them; one thread logs the queued windows' compact metrics (:func:`compact_window_metrics`) in batches of
    at most ``max_metrics``, and after a batch that took T seconds rests ``T * (1 / duty - 1)`` seconds, so
    MLflow (whose sqlite store costs about 0.15-0.3 ms of the worker's CPU per metric) takes at most ``duty`` of
    the worker's time. Windows arriving faster are thinned at each batch (:func:`select_windows`: windows where
    an alert fired or resolved and each model's latest are kept, the others evenly decimated) and counted in
    ``run.windows_thinned``; the queue never holds more than ``max_pending`` windows (beyond, it is thinned to
    half at once). The artifact parts are uploaded every ``artifact_interval_s`` and at :meth:`close`.
    """

    def __init__(self, run: MonitoringRun, *, duty: float = 0.1, max_metrics: int = _BATCH,
                 max_pending: int = 500, artifact_interval_s: float = 60.0) -> None:
        self.run = run
        self.duty = min(max(float(duty), 1e-3), 1.0)
        self.max_metrics = max(1, int(max_metrics))
        self.max_pending = max(2, int(max_pending))
        self.artifact_interval_s = artifact_interval_s
        self.received = 0
        self.batches = 0
        self.failed = 0
        self.log_seconds = 0.0
        self.uploads = 0
        self._pending: list[tuple[str, Mapping[str, Any], bool]] = []  # (model, record, keep)
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False
        self._last_upload = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="glassbox-mlflow-windows", daemon=True)
        self._thread.start()

    def add(self, model: str, records: Sequence[Mapping[str, Any]], keep: Iterable[tuple[str, int]] = ()) -> None:
        """Queue closed-window records of ``model`` (``keep``: ``(kind, index)`` of windows where an alert
        fired or resolved, kept when others are thinned); never blocks on MLflow, never raises."""
        try:
            self.run.record_windows(model, records)
        except Exception:
            log.exception("spooling window records of %r failed", model)
        keep = set(keep)
        with self._cond:
            if self._closing:
                return
            self._pending.extend((model, r, (r.get("kind", "predictions"), r.get("index")) in keep)
                                 for r in records)
            self.received += len(records)
            if len(self._pending) > self.max_pending:
                p = self._pending
                chosen = select_windows([k for _, _, k in p], [m for m, _, _ in p], [1] * len(p),
                                        self.max_pending // 2)
                self.run.windows_thinned += len(p) - len(chosen)
                self._pending = [p[i] for i in chosen]
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closing)
                if not self._pending and self._closing:
                    return
                batch, self._pending, self._busy = self._pending, [], True
            t0 = time.perf_counter()
            self._flush(batch)
            if time.monotonic() - self._last_upload >= self.artifact_interval_s:
                self._upload()
            spent = time.perf_counter() - t0
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                if not self._closing:  # rest in proportion to the work: MLflow gets at most ``duty``
                    self._cond.wait_for(lambda: self._closing, timeout=spent * (1.0 / self.duty - 1.0))

    def _flush(self, batch: list[tuple[str, Mapping[str, Any], bool]]) -> None:
        chosen = select_windows([k for _, _, k in batch], [m for m, _, _ in batch],
                                [compact_width(r) for _, r, _ in batch], self.max_metrics)
        with self._cond:
            self.run.windows_thinned += len(batch) - len(chosen)
        per_model: dict[str, list[tuple[int, int | None, dict[str, float]]]] = {}
        t0 = time.perf_counter()
        try:
            for i in chosen:
                model, rec, _ = batch[i]
                per_model.setdefault(model, []).append(compact_window_metrics(rec))
            rows = [(model, w) for model, ws in per_model.items() for w in ws]
            self.run.log_compact_many(rows)
        except Exception:
            self.failed += 1
            log.exception("logging window metrics to MLflow failed")
        finally:
            self.batches += 1
            self.log_seconds += time.perf_counter() - t0

    def _upload(self) -> None:
        self._last_upload = time.monotonic()
        try:
            self.run.upload_windows()
            self.uploads += 1
            now = int(time.time() * 1000)
            self.run._log_metrics([("windows_thinned", float(self.run.windows_thinned), now, self.uploads),
                                   ("windows_recorded", float(self.run.windows_recorded), now, self.uploads)])
        except Exception:
            log.exception("uploading window records to MLflow failed")

    def stats(self) -> dict[str, Any]:
        """Counters for ``/stats``: windows received, logged (metrics in MLflow), thinned, pending..."""
        with self._cond:
            pending = len(self._pending)
        return {"received": self.received, "recorded": self.run.windows_recorded,
                "logged": self.run.windows_logged, "thinned": self.run.windows_thinned, "pending": pending,
                "batches": self.batches, "failed": self.failed, "log_s": round(self.log_seconds, 3),
                "uploads": self.uploads, "duty": self.duty}

    def close(self, timeout: float | None = 60.0) -> None:
        """Log what is queued (one last batch, thinned to ``max_metrics``), stop the thread; the run's
        :meth:`MonitoringRun.finish` uploads the last artifact parts."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)


def _artifact_name(model: str) -> str:
    return _KEY_BAD.sub("_", model).replace("/", "_") or "model"


def _as_mapping(record: Any) -> Mapping[str, Any]:
    if isinstance(record, Mapping):
        return record
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    if hasattr(record, "model_dump"):
        return record.model_dump()
    return {k: getattr(record, k) for k in dir(record) if not k.startswith("_") and not callable(getattr(record, k))}


def read_window_records(artifact_dir: str | os.PathLike[str], model: str) -> Iterator[dict[str, Any]]:
    """The full window records of ``model`` from a run's artifacts (a local directory, e.g.
    ``local_path(run.artifact_uri)`` or ``client.download_artifacts(run_id, "windows")``'s parent), in order."""
    folder = Path(artifact_dir) / "windows" / _artifact_name(model)
    for part in sorted(folder.glob("part-*.jsonl.gz")):
        with gzip.open(part, "rb") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


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




def log_replay(run: MonitoringRun, result: Any, *, model: str | None = None) -> int:
    """Record a replay's result (``alerts``, ``windows``, ``summary``, as ``stream.backtest.file_replay.ReplayResult``)
    in ``run``: its window records as metrics (per the records' ``model``, else ``model``), its alerts for the
    table, its summary as ``replay_summary.json``. Returns the metrics logged."""
    name = model or (result.alerts[0]["model"] if result.alerts else None) or result.summary.get("model", "model")
    per_model: dict[str, list[Any]] = {}
    for rec in result.windows:
        per_model.setdefault(str(_as_mapping(rec).get("model") or name), []).append(rec)
    n = sum(run.log_windows(m, records) for m, records in per_model.items())
    run.log_alerts(result.alerts)
    with run._lock:
        run._require_run()
        run.client.log_dict(run.run_id, json.loads(json.dumps(result.summary, default=str)), "replay_summary.json")
    return n

"""The live worker's window metrics in MLflow: bounded, off the hot path, never behind (:class:`WindowLogger`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stream.evidence.window_metrics import METRICS_PER_BATCH, compact_width, compact_window_metrics, select_windows

if TYPE_CHECKING:
    from stream.evidence.monitoring_run import MonitoringRun

log = logging.getLogger(__name__)


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

    def __init__(self, run: MonitoringRun, *, duty: float = 0.1, max_metrics: int = METRICS_PER_BATCH,
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

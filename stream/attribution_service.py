"""SHAP on the stream for the live worker: a seeded reservoir per window on the hot path, the SHAP work in
a separate low-priority process, ``attribution_drift`` decisions in window order as results come back.

SHAP's extension holds the GIL, so a thread would stall consumption: each model gets a one-process pool
whose initializer receives that model's window explainer once (our own in-memory model, pickled to our
own child; nothing from the stream is unpickled).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import warnings
from typing import Any

from stream.monitors import MonitorRegistry
from stream.processing import StepOutput
from stream.settings import Settings

log = logging.getLogger("glassbox.attribution")

_EXPLAINER: Any = None


def _init_process(window_explainer: Any) -> None:
    global _EXPLAINER
    _EXPLAINER = window_explainer
    os.nice(10)  # yield the CPU to the hot path when cores are contended
    warnings.filterwarnings("ignore")


def _explain(sample: Any) -> Any:
    return _EXPLAINER(sample)


class AttributionService:
    """Attribution monitors of the models whose reference carries a model (``models:/`` references)."""

    def __init__(self, settings: Settings, registry: MonitorRegistry):
        self.settings = settings
        self.registry = registry
        self.monitors: dict[str, Any] = {}
        self.pools: dict[str, cf.ProcessPoolExecutor] = {}
        self.pending: list[tuple[str, cf.Future[Any]]] = []
        self.failed = 0

    def prepare(self) -> list[str]:
        """Build the monitors up front (SHAP on the reference and calibration take a second or two each)."""
        from detectors.attribution import unwrap_model
        from detectors.attribution_monitor import AttributionMonitor
        from stream.reference import is_model_uri, load_reference

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
            self.monitors[model] = mon
            self.pools[model] = cf.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("forkserver"), initializer=_init_process,
                initargs=(mon.window_explainer,),
            )
        return list(self.monitors)

    def observe(self, out: StepOutput, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Sample the step's events, send closed windows to SHAP, and add the latest movers to ``alerts``."""
        for model, batch in out.batches:
            mon = self.monitors.get(model)
            if mon is None:
                continue
            for sample in mon.collect(batch):
                self.pending.append((model, self.pools[model].submit(_explain, sample)))
        by_model: dict[str, list[dict[str, Any]]] = {}
        for a in alerts:
            by_model.setdefault(a["model"], []).append(a)
        out_alerts: list[dict[str, Any]] = []
        for model, group in by_model.items():
            mon = self.monitors.get(model)
            out_alerts.extend(mon.attach_movers(group) if mon is not None else group)
        return out_alerts

    def poll(self) -> list[dict[str, Any]]:
        """Decisions of the windows whose SHAP finished (in window order per model)."""
        done, still = [], []
        for model, fut in self.pending:
            (done if fut.done() else still).append((model, fut))
        self.pending = still
        alerts: list[dict[str, Any]] = []
        for model, fut in done:
            try:
                alerts.extend(self.monitors[model].decide(fut.result()))
            except Exception:
                self.failed += 1
                log.exception("SHAP of a %r window failed", model)
        return alerts

    def stats(self) -> dict[str, Any]:
        return {"models": list(self.monitors), "pending": len(self.pending), "failed": self.failed}

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

"""Which models are monitored, against which reference, and their live :class:`ModelMonitor` objects.

``[worker.models]`` maps a model name to its reference: ``models:/NAME@alias`` or ``models:/NAME/VERSION``
in MLflow (see ``glassbox reference log``), or a table file (.parquet/.csv/.jsonl with a ``prediction``
column and optional ``label``).
With no models configured the worker runs in discovery mode: the first ``worker.max_discovered_models``
model names are accepted and counted, none is monitored (a warning says so once per model); further names
are dead-lettered as ``unknown_model``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from detectors.config import DetectionConfig

log = logging.getLogger("glassbox.monitors")


class MonitorRegistry:
    """Lazily builds one monitor per configured model; ``get`` returns None for unmonitored models."""

    def __init__(
        self,
        references: dict[str, str],
        config: DetectionConfig,
        reference_loader: Callable[[str], Any],
        max_discovered: int = 1000,
    ):
        self.references = dict(references)
        self.config = config
        self._load = reference_loader
        self._monitors: dict[str, Any] = {}
        self._loaded: dict[str, Any] = {}
        self._warned: set[str] = set()
        self.max_discovered = max_discovered
        self._discovered: set[str] = set()
        self._keep_records = True

    def reference(self, model: str) -> Any | None:
        """The model's loaded :class:`stream.evidence.reference.Reference` (None when unmonitored)."""
        ref = self.references.get(model)
        if ref is None:
            return None
        if model not in self._loaded:
            self._loaded[model] = self._load(ref)
        return self._loaded[model]

    @property
    def discovery(self) -> bool:
        return not self.references

    def accepts(self, model: str) -> bool:
        """Configured models; in discovery mode the first ``max_discovered`` model names seen (state per
        model name must stay bounded whatever the stream sends)."""
        if not self.discovery:
            return model in self.references
        if model in self._discovered:
            return True
        if len(self._discovered) < self.max_discovered:
            self._discovered.add(model)
            return True
        return False

    def keep_records(self, keep: bool) -> None:
        """Whether the monitors, made and to come, leave records of their closed windows (the worker hands them
        on; a replay that keeps no windows saves building them)."""
        self._keep_records = keep
        for mon in self._monitors.values():
            mon.keep_records = keep

    def _add(self, key: str, mon: Any) -> Any:
        mon.keep_records = self._keep_records
        self._monitors[key] = mon
        return mon

    def get(self, model: str, model_version: str | None = None) -> Any | None:
        mon = self._monitors.get(model)
        if mon is not None:
            return mon
        ref = self.references.get(model)
        if ref is None:
            if model not in self._warned:
                self._warned.add(model)
                log.warning("model %r has no reference configured: counted, not monitored", model)
            return None
        from detectors.monitor import ModelMonitor

        return self._add(model, ModelMonitor(self.reference(model).profile, self.config, model=model,
                                             model_version=model_version))

    def restore(self, model: str, state: dict[str, Any], model_version: str | None = None) -> None:
        """Rebuild a model's monitor from state recovered from the changelog."""
        from detectors.monitor import ModelMonitor

        profile = self.reference(model).profile
        self._add(model, ModelMonitor.from_state(profile, self.config, model, model_version, state))

    def forget(self, model: str) -> None:
        self._monitors.pop(model, None)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._monitors.items())

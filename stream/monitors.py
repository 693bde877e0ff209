"""Which models are monitored, against which reference, and their live :class:`ModelMonitor` objects.

``[worker.models]`` maps a model name to its reference: ``models:/NAME@alias`` or ``models:/NAME/VERSION``
in MLflow, or a table file (.parquet/.csv/.jsonl with a ``prediction`` column and optional ``label``).
With no models configured the worker runs in discovery mode: every model is accepted and counted, none is
monitored (a warning says so once per model).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from detectors.config import DetectionConfig

log = logging.getLogger("glassbox.monitors")


def load_profile(reference: str, settings: Any) -> Any:
    """A :class:`detectors.profile.ReferenceProfile` for a reference given as a models:/ URI or a file."""
    from detectors.profile import build_profile

    if reference.startswith("models:/"):
        from stream.reference import load_reference

        return load_reference(reference, tracking_uri=settings.mlflow.tracking_uri).profile
    from stream.tables import read_table

    df = read_table(reference)
    label = "label" if "label" in df.columns else None
    return build_profile(df, prediction="prediction", label=label)


class MonitorRegistry:
    """Lazily builds one monitor per configured model; ``get`` returns None for unmonitored models."""

    def __init__(
        self,
        references: dict[str, str],
        config: DetectionConfig,
        profile_loader: Callable[[str], Any],
    ):
        self.references = dict(references)
        self.config = config
        self._load = profile_loader
        self._monitors: dict[str, Any] = {}
        self._warned: set[str] = set()

    @property
    def discovery(self) -> bool:
        return not self.references

    def accepts(self, model: str) -> bool:
        return self.discovery or model in self.references

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

        mon = ModelMonitor(self._load(ref), self.config, model=model, model_version=model_version)
        self._monitors[model] = mon
        return mon

    def restore(self, model: str, state: dict[str, Any], model_version: str | None = None) -> None:
        """Rebuild a model's monitor from state recovered from the changelog."""
        from detectors.monitor import ModelMonitor

        profile = self._load(self.references[model])
        self._monitors[model] = ModelMonitor.from_state(profile, self.config, model, model_version, state)

    def forget(self, model: str) -> None:
        self._monitors.pop(model, None)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._monitors.items())

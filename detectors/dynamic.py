"""Dynamic thresholds: a River detector over each column's series of standardised window statistics.

Each window's decision score is standardised by its null distribution (mean and sd of the calibration
resamples) and fed to PageHinkley (``mode="up"``) or ADWIN. A detection with the score above its level before
fires; while the alert is firing the condition holds above the midpoint of the levels before and at the change.

>>> from detectors.config import DetectionConfig
>>> dyn = DynamicThresholds(DetectionConfig(threshold="dynamic"), ["x"])
>>> verdicts = [dyn.update("x", score, (0.0, 1.0), firing=False)[0] for score in [0.0] * 20 + [8.0] * 5]
>>> verdicts.index(True)
23
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detectors import river_state
from detectors.config import DetectionConfig
from detectors.river_drift import detector_class


class DynamicThresholds:
    """One River detector per column with its running level (state: JSON via :mod:`detectors.river_state`)."""

    def __init__(self, config: DetectionConfig, columns: Sequence[str]):
        self.config = config
        self.columns: dict[str, dict[str, Any]] = {c: self._new() for c in columns}

    def _new(self) -> dict[str, Any]:
        cfg = self.config  # River is imported here, only the detector's module (see detectors.river_drift)
        if cfg.dynamic_detector == "adwin":
            det: Any = detector_class("ADWIN")(delta=cfg.dynamic_adwin_delta, clock=1, grace_period=5,
                                                min_window_length=3)
        else:
            det = detector_class("PageHinkley")(
                min_instances=5, delta=cfg.dynamic_ph_delta, threshold=cfg.dynamic_ph_threshold, mode="up")
        return {"detector": det, "sum": 0.0, "n": 0, "level": None}

    def update(self, name: str, score: float, null: tuple[float, float], firing: bool) -> tuple[bool, float | None]:
        """Feed one window's score; returns the verdict and the level (score scale) once known."""
        st = self.columns[name]
        mean, sd = null
        z = min(max((score - mean) / sd, -5.0), 50.0)
        if not firing:
            st["level"] = None
        det = st["detector"]
        x = min(max(z / 20.0, 0.0), 1.0) if self.config.dynamic_detector == "adwin" else z
        det.update(x)
        st["sum"] += z
        st["n"] += 1
        detected_up = False
        if det.drift_detected:
            before = (st["sum"] - z) / max(st["n"] - 1, 1)
            if z > before:
                detected_up = True
                st["level"] = (before + z) / 2
            st["sum"], st["n"] = 0.0, 0  # River's detectors restart on their next update
        level = st["level"]
        cond = detected_up or (level is not None and z > level)
        return cond, None if level is None else mean + level * sd

    def to_state(self) -> dict[str, Any]:
        return {k: {"detector": river_state.dumps(v["detector"]), "sum": v["sum"], "n": v["n"],
                    "level": v["level"]} for k, v in self.columns.items()}

    def load_state(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            self.columns[k] = {"detector": river_state.loads(v["detector"]), "sum": float(v["sum"]),
                               "n": int(v["n"]), "level": v["level"]}

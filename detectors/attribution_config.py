"""Settings of the attribution-drift monitor, in a module of their own: the worker's settings import them
without pulling in SHAP, pandas or SciPy.

>>> cfg = AttributionConfig(k=100)
>>> cfg.level()  # per-window level of each statistic: false_alarm_rate / (2 * horizon_windows)
2.5e-05
>>> AttributionConfig(alpha=0.01).level(), cfg.threshold, cfg.budget_s
(0.01, 'calibrated', 5.0)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AttributionConfig(BaseModel):
    """Settings of the attribution-drift monitor (embed as ``DetectionConfig.attribution``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="run SHAP on sampled windows and test attribution drift")
    k: int = Field(200, ge=10, description="events sampled (reservoir) and explained per window")
    budget_s: float | None = Field(
        5.0, gt=0, description="SHAP time budget per window (s); over it the window is skipped and counted. "
        "None: no budget (replay: results then never depend on time)"
    )
    reference_rows: int = Field(500, ge=50, description="reference rows explained for the reference attributions")
    background_rows: int = Field(30, ge=5, description="background rows of the model-agnostic explainer")
    permutations: int = Field(4, ge=2, description="antithetic permutations of the model-agnostic explainer")
    threshold: Literal["calibrated", "static"] = Field("calibrated", description="calibrated or static bounds")
    false_alarm_rate: float = Field(0.05, gt=0, lt=1, description="false-alarm probability over horizon_windows")
    horizon_windows: int = Field(1000, ge=1, description="windows over which false_alarm_rate holds")
    alpha: float | None = Field(
        None, gt=0, lt=1, description="per-window level of each statistic (default false_alarm_rate / "
        "(2 * horizon_windows))"
    )
    calibration_resamples: int = Field(1000, ge=200, description="null windows resampled from the reference")
    min_distance: float = Field(0.05, ge=0, le=1, description="minimum attribution distance that can fire")
    min_ndcg_drop: float = Field(0.02, ge=0, le=1, description="minimum nDCG drop (1 - nDCG) that can fire")
    static_distance: float = Field(0.2, ge=0, le=1, description="static bound of the attribution distance")
    static_ndcg: float = Field(0.9, ge=0, le=1, description="static bound: nDCG below it fires")
    ndcg_k: int | None = Field(None, ge=1, description="nDCG over the top k features (default all)")
    fire_after: int = Field(1, ge=1, description="consecutive drifted windows before firing")
    resolve_after: int = Field(3, ge=1, description="consecutive clear windows before resolving")
    top_movers: int = Field(5, ge=1, description="top SHAP movers listed in evidence")
    keep_results: int = Field(16, ge=1, description="recent window results kept for top_movers(window)")
    severity: Literal["critical", "warning", "info"] = Field("warning", description="severity of the alerts")
    max_window_records: int = Field(10_000, ge=1, description="window records kept until drain_windows()")
    max_pending: int = Field(
        4, ge=1, description="closed windows awaiting SHAP at most; beyond, a window is skipped (backlog)"
    )

    def level(self) -> float:
        return self.alpha if self.alpha is not None else self.false_alarm_rate / (2 * self.horizon_windows)

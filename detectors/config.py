"""Detection settings: windows, thresholds, hysteresis. Pure pydantic, embedded in ``stream.settings``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DetectionConfig(BaseModel):
    """How windows are cut and when a statistic counts as a change (owned by the detection core)."""

    model_config = ConfigDict(extra="forbid")

    window: int = Field(1000, ge=10, description="events per count window (tumbling)")
    seed: int = Field(42, description="seed for every resampling (calibration, reservoirs)")

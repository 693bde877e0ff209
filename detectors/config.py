"""Detection settings: windows, thresholds, hysteresis. Pure pydantic, embedded in ``stream.settings``.

Every field has a default that works with no flags: count windows of 1,000 events, thresholds calibrated
on the reference with a 5% family-wise false-alarm rate over 1,000 windows (split over the horizons of
1, 2, 5, 10 and 20 windows that each closed window is tested at), ADWIN on the error stream,
fire at once and resolve after 3 clear windows.

>>> DetectionConfig().window, DetectionConfig(window=500).resolve_after
(1000, 3)
>>> DetectionConfig(threshold="static").static_thresholds["wasserstein"]
0.1
>>> DetectionConfig().horizons
[1, 2, 5, 10, 20]
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

StatTest = Literal["auto", "wasserstein", "ks", "psi", "jensenshannon", "chisquare"]


def _default_static() -> dict[str, float]:
    # Evidently's defaults: distances above the value drift, p-values below it drift.
    return {"wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.2, "ks": 0.05, "chisquare": 0.05}


def _default_severities() -> dict[str, str]:
    return {
        "data_drift": "warning",
        "prediction_drift": "warning",
        "data_quality": "warning",
        "concept_drift": "critical",
        "performance": "critical",
        "estimated_performance": "warning",
        "improvement": "info",
    }


class DetectionConfig(BaseModel):
    """How windows are cut and when a statistic counts as a change (owned by the detection core)."""

    model_config = ConfigDict(extra="forbid")

    # windows
    window: int = Field(1000, ge=10, description="events per count window (tumbling)")
    window_ms: int | None = Field(
        None, ge=1, description="event-time tumbling windows of this many ms instead of count windows"
    )
    min_window_events: int = Field(
        100, ge=1, description="event-time windows with fewer events are recorded but not tested"
    )
    outcome_window: int | None = Field(
        None, ge=10, description="labelled outcomes per performance window (default: window)"
    )
    seed: int = Field(42, description="seed for every resampling (calibration, reservoirs)")

    # thresholds
    threshold: Literal["calibrated", "static", "dynamic"] = Field(
        "calibrated",
        description="calibrated: null distribution resampled from the reference; static: static_thresholds; "
        "dynamic: ADWIN over each column's series of window statistics",
    )
    stattest: StatTest = Field(
        "auto", description="decision statistic; auto = Evidently's choice by column type and reference size"
    )
    false_alarm_rate: float = Field(
        0.05, gt=0, lt=1, description="family-wise false-alarm probability over all tests and horizon_windows"
    )
    horizon_windows: int = Field(1000, ge=1, description="windows over which false_alarm_rate holds")
    horizons: list[int] = Field(
        default_factory=lambda: [1, 2, 5, 10, 20],
        description="calibrated thresholds: each closed window also tests the merged counts of the last h "
        "windows for every h here (the drift budget is split evenly over them), on the columns whose reference "
        "has at least as many values as the horizon has events; must start with 1",
    )
    calibration_resamples: int = Field(1000, ge=200, description="null windows resampled per column")
    static_thresholds: dict[str, float] = Field(default_factory=_default_static)
    dynamic_detector: Literal["page_hinkley", "adwin"] = Field(
        "page_hinkley", description="River detector over each column's standardised window statistics"
    )
    dynamic_ph_delta: float = Field(0.5, ge=0, description="PageHinkley slack, in null standard deviations")
    dynamic_ph_threshold: float = Field(25.0, gt=0, description="PageHinkley alarm level (null sd x windows)")
    dynamic_adwin_delta: float = Field(0.002, gt=0, lt=1, description="ADWIN delta (needs ~20 windows)")

    # hysteresis
    fire_after: int = Field(1, ge=1, description="consecutive windows the condition must hold to fire")
    resolve_after: int = Field(3, ge=1, description="consecutive clear windows before an alert resolves")

    # data quality: minimum rate increase over the reference before a significant change counts
    quality_min_delta: float = Field(0.01, ge=0, le=1, description="minimum rate increase (missing, unseen...)")
    domains: dict[str, tuple[float | None, float | None]] = Field(
        default_factory=dict,
        description="valid domain [low, high] per numeric column (None: unbounded); other columns: inferred "
        "from the reference (see detectors.domains)",
    )
    domain_margin: float = Field(
        1.0, ge=0, description="inferred domains: the reference range widened by this many spans on each side"
    )

    # outcomes
    concept_detector: Literal["adwin", "ddm", "hddm_w", "hddm_a"] = Field(
        "adwin", description="River detector on the per-event error stream"
    )
    concept_delta: float = Field(
        2e-4, gt=0, lt=1,
        description="ADWIN delta on the error stream (River's 0.002 false-alarmed on long stable streams)",
    )
    performance_min_delta: float = Field(
        0.02, ge=0, le=1, description="minimum change of accuracy (absolute) before a performance alert"
    )
    performance_min_relative: float = Field(
        0.1, ge=0, description="minimum relative change of MAE (regression) before a performance alert"
    )

    # estimated performance (CBPE, detectors/estimation.py)
    estimation_metrics: list[Literal["accuracy", "precision", "recall", "f1", "roc_auc"]] = Field(
        default_factory=lambda: ["accuracy"], description="estimated metrics that alert (empty: estimation off)"
    )
    estimation_gap_windows: int = Field(5, ge=1, description="labelled windows averaged for the estimate-gap check")

    # alerts
    severities: dict[str, str] = Field(
        default_factory=_default_severities,
        description="severity per monitor; 'improvement' is used when a metric got better",
    )
    evidence_top_k: int = Field(5, ge=1, description="drifted columns listed in each alert's evidence")
    max_window_records: int = Field(
        10_000, ge=1, description="closed-window records kept until drain_windows(); oldest dropped beyond"
    )

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, v: list[int]) -> list[int]:
        h = sorted(set(v))
        if not h or h[0] != 1:
            raise ValueError("horizons must include 1 (the window itself)")
        return h

    def severity(self, monitor: str, improvement: bool = False) -> str:
        """Severity of an alert of ``monitor`` (``improvement`` wins when the metric got better)."""
        sev = _default_severities() | self.severities
        return sev["improvement"] if improvement else sev.get(monitor, "warning")

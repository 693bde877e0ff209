"""The alert record: what every monitor emits and every notifier consumes (schema ``glassbox.alert/v1``).

Alerts are plain JSON-ready dicts built here, so the core stays free of I/O and the same record travels
from a detector through Kafka to Slack. Everything in an alert derives from the events, never from the
wall clock, so replaying the same events yields byte-identical alerts.

>>> a = make_alert(model="churn", monitor="data_drift", feature="age", status="firing",
...                severity="warning", detector="psi", statistic="psi", value=0.31, threshold=0.2,
...                threshold_kind="calibrated", window={"index": 7, "start": 7000, "end": 7999, "events": 1000},
...                event_time=1700000000000, summary="age drifted")
>>> a["fingerprint"] == fingerprint("churn", "data_drift", "age")
True
>>> a["alert_id"] == make_alert(**{k: a[k] for k in ALERT_ARGS})["alert_id"]
True
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

ALERT_SCHEMA = "glassbox.alert/v1"

Status = Literal["firing", "resolved"]
Severity = Literal["critical", "warning", "info"]
MonitorName = Literal[
    "data_drift",
    "prediction_drift",
    "concept_drift",
    "performance",
    "estimated_performance",
    "data_quality",
    "attribution_drift",
    "pipeline",
]
ThresholdKind = Literal["static", "dynamic", "calibrated"]

MONITORS: tuple[str, ...] = MonitorName.__args__  # type: ignore[attr-defined]
SEVERITIES: tuple[str, ...] = Severity.__args__  # type: ignore[attr-defined]
THRESHOLD_KINDS: tuple[str, ...] = ThresholdKind.__args__  # type: ignore[attr-defined]

ALERT_ARGS = (
    "model", "monitor", "feature", "status", "severity", "detector", "statistic", "value", "threshold",
    "threshold_kind", "window", "event_time", "summary",
)


def fingerprint(model: str, monitor: str, feature: str | None) -> str:
    """Stable identity of an alert condition: the same (model, monitor, feature) always maps to the same id."""
    key = f"{model}\x1f{monitor}\x1f{feature or ''}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


def make_alert(
    *,
    model: str,
    monitor: str,
    feature: str | None,
    status: str,
    severity: str,
    detector: str,
    statistic: str,
    value: float | None,
    threshold: float | None,
    threshold_kind: str,
    window: dict[str, Any],
    event_time: int,
    summary: str,
    model_version: str | None = None,
    source: dict[str, Any] | None = None,
    row: int | None = None,
    direction: str | None = None,
    links: dict[str, str | None] | None = None,
    evidence: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one alert record. ``alert_id`` is derived from fingerprint, status and window, so it is stable
    across replays and lets consumers deduplicate redeliveries."""
    if monitor not in MONITORS:
        raise ValueError(f"unknown monitor {monitor!r}; allowed: {', '.join(MONITORS)}")
    if status not in ("firing", "resolved"):
        raise ValueError(f"unknown status {status!r}; allowed: firing, resolved")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; allowed: {', '.join(SEVERITIES)}")
    if threshold_kind not in THRESHOLD_KINDS:
        raise ValueError(f"unknown threshold kind {threshold_kind!r}; allowed: {', '.join(THRESHOLD_KINDS)}")
    fp = fingerprint(model, monitor, feature)
    alert_id = hashlib.sha256(f"{fp}:{status}:{window.get('index')}:{event_time}".encode()).hexdigest()[:24]
    return {
        "schema": ALERT_SCHEMA,
        "alert_id": alert_id,
        "fingerprint": fp,
        "status": status,
        "severity": severity,
        "model": model,
        "model_version": model_version,
        "monitor": monitor,
        "feature": feature,
        "detector": detector,
        "statistic": statistic,
        "value": None if value is None else float(value),
        "threshold": None if threshold is None else float(threshold),
        "threshold_kind": threshold_kind,
        "direction": direction,
        "window": window,
        "event_time": int(event_time),
        "source": source or {},
        "row": row,
        "summary": summary,
        "links": links or {"runbook": None, "dashboard": None, "report": None, "mlflow_run": None},
        "evidence": evidence or {},
    }

"""The ``estimated_performance`` alert, as CBPE (:mod:`detectors.estimation`) and direct loss estimation
(:mod:`detectors.estimation_regression`) both raise it.

>>> a = estimate_alert(metric="accuracy", name="accuracy", detector="cbpe", status="firing",
...                    direction="degradation", value=0.71, band=(0.78, 0.9), threshold=0.78, reference=0.84,
...                    window={"index": 3, "start": 0, "end": 999}, src=(0, 0, 999), events=1000,
...                    unit="predictions", resolve_after=3)
>>> a["monitor"], a["event_time"], a["threshold_kind"]
('estimated_performance', 999, 'calibrated')
>>> a["summary"]
'estimated accuracy degradation: 0.71 vs reference 0.84 (band 0.78..0.9) over 1000 predictions, before labels'
"""

from __future__ import annotations

from typing import Any


def estimate_alert(*, metric: str, name: str, detector: str, status: str, direction: str | None, value: float,
                   band: tuple[float, float], threshold: float, reference: float, window: dict[str, Any],
                   src: tuple[int, int, int], events: int, unit: str, resolve_after: int) -> dict[str, Any]:
    """An ``estimated_performance`` alert transition (classification and regression estimates alike)."""
    if status == "firing":
        summary = (f"estimated {name} {direction}: {value:.4g} vs reference {reference:.4g} "
                   f"(band {band[0]:.4g}..{band[1]:.4g}) over {events} {unit}, before labels")
    else:
        summary = f"estimated {name} back within its band for {resolve_after} windows ({value:.4g})"
    return {"monitor": "estimated_performance", "feature": metric, "status": status, "direction": direction,
            "detector": detector, "statistic": f"estimated_{metric}", "value": value, "threshold": threshold,
            "threshold_kind": "calibrated", "window": window, "event_time": window["end"], "src": src,
            "summary": summary,
            "evidence": {"estimated": value, "band": list(band), "reference_estimate": reference, "scored": events}}

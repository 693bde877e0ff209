"""What CBPE (:mod:`detectors.estimation`) and direct loss estimation (:mod:`detectors.estimation_regression`)
share: the ``estimated_performance`` alert and the completion of windows waiting for their labels.

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

from collections.abc import Callable, Iterable
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


def realize_complete(tracked: Iterable[dict[str, Any]], realize: Callable[[dict[str, Any]], None]) -> None:
    """Realize every tracked window whose labels are all in.

    Events sharing the boundary timestamp of two windows are counted into the earlier one: its surplus is
    carried to the next, so both are complete when their labels are all in.

    >>> done = []
    >>> ws = [{"rec": {"events": 3}, "labelled": 4, "done": False}, {"rec": {"events": 2}, "labelled": 1,
    ...        "done": False}, {"rec": {"events": 5}, "labelled": 1, "done": False}]
    >>> realize_complete(ws, lambda t: done.append(t["rec"]["events"]))
    >>> done
    [3, 2]
    """
    carry = 0
    for t in tracked:
        have = t["labelled"] + carry
        if not t["done"] and have >= t["rec"]["events"]:
            realize(t)
        carry = max(0, have - t["rec"]["events"])

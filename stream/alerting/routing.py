"""Routing: which receivers an alert goes to (Alertmanager-style ordered routes).

>>> from stream.alerting.config import AlertingConfig
>>> cfg = AlertingConfig()
>>> receivers_for({"model": "m", "monitor": "performance", "feature": None, "severity": "critical"}, cfg)
('pagerduty', 'slack')
>>> receivers_for({"model": "m", "monitor": "data_drift", "feature": "age", "severity": "warning"}, cfg)
('slack',)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stream.alerting.config import AlertingConfig


def receivers_for(
    alert: dict[str, Any], config: AlertingConfig, available: Iterable[str] | None = None
) -> tuple[str, ...]:
    """Receivers for ``alert``, in route order, without repeats.

    Receivers not in ``available`` (not configured: no token, no routing key) fall back to ``log`` so an
    alert is never routed nowhere; an alert no route matches goes to ``log``.
    """
    out: list[str] = []
    for route in config.routes:
        if route.match.matches(alert):
            out.extend(route.receivers)
            if not route.continue_:
                break
    if config.desktop:
        out.append("desktop")
    if available is not None:
        avail = set(available)
        out = [r if r in avail else "log" for r in out]
    return tuple(dict.fromkeys(out or ["log"]))

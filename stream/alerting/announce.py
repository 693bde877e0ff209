"""One log line per alert transition, for the worker (alerts it publishes) and the notifier (alerts it reads).

>>> alert_line({"status": "firing", "severity": "warning", "model": "churn", "monitor": "data_drift",
...             "feature": "region", "statistic": "psi", "value": 0.31234, "threshold": 0.2,
...             "window": {"index": 7}})
'alert firing: warning churn data_drift feature=region psi=0.3123 threshold=0.2 window=7'
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("glassbox.worker")


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def alert_line(alert: dict[str, Any]) -> str:
    """One line naming the transition: status, severity, model, monitor, feature, statistic, window."""
    window = alert.get("window") or {}
    feature = f" feature={alert['feature']}" if alert.get("feature") else ""
    return (f"alert {alert.get('status')}: {alert.get('severity')} {alert.get('model')} {alert.get('monitor')}"
            f"{feature} {alert.get('statistic')}={_num(alert.get('value'))} threshold={_num(alert.get('threshold'))}"
            f" window={window.get('index', '-')}")


def log_alert(alert: dict[str, Any], logger: logging.Logger | None = None) -> None:
    """Log one alert transition (WARNING when a warning or critical alert fires, INFO otherwise)."""
    loud = alert.get("status") == "firing" and alert.get("severity") in ("warning", "critical")
    fields = {k: alert.get(k) for k in ("alert_id", "status", "severity", "model", "monitor", "feature",
                                         "statistic", "value", "threshold", "event_time")}
    fields["window"] = (alert.get("window") or {}).get("index")
    fields["runbook"] = (alert.get("links") or {}).get("runbook")
    (logger or log).log(logging.WARNING if loud else logging.INFO, "%s", alert_line(alert), extra={"fields": fields})

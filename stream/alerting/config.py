"""Alerting settings: rules, routes, lifecycle timings, retries and the receivers' secrets.

Embedded by ``stream.settings.Settings`` as ``settings.alerting``; every field can come from the environment,
e.g. ``GLASSBOX_ALERTING__SLACK_WEBHOOK_URL`` or ``GLASSBOX_ALERTING__REPEAT_INTERVAL=2h``. Secrets are
``SecretStr`` (never printed) and may instead be read from a file (``*_file``, e.g. a Docker/Kubernetes secret).

>>> cfg = AlertingConfig(repeat_interval="2h", group_wait="500ms")
>>> cfg.repeat_interval, cfg.group_wait
(7200.0, 0.5)
>>> cfg.rule_for("churn", "performance", None).severity
'critical'
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

Receiver = Literal["pagerduty", "slack", "desktop", "log"]
RECEIVERS: tuple[str, ...] = Receiver.__args__  # type: ignore[attr-defined]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90"``, ``"1h30m"``, ``"500ms"`` or ``"2d"``.

    >>> parse_duration("1h30m"), parse_duration("500ms"), parse_duration(45)
    (5400.0, 0.5, 45.0)
    """
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 2h, 1d, 1h30m)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Matcher(BaseModel):
    """Equality-or-glob matchers on alert labels; an unset label matches anything."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    monitor: str | None = None
    feature: str | None = None
    severity: str | None = None

    def matches(self, labels: dict[str, Any]) -> bool:
        for key in ("model", "monitor", "feature", "severity"):
            pattern = getattr(self, key)
            if pattern is not None and not fnmatch.fnmatchcase(str(labels.get(key) or ""), pattern):
                return False
        return True

    def specificity(self) -> int:
        return sum(getattr(self, k) is not None for k in ("model", "monitor", "feature", "severity"))


class AlertRule(BaseModel):
    """Severity and threshold kind for the alerts of a monitor, optionally narrowed to a model or a feature."""

    model_config = ConfigDict(extra="forbid")

    monitor: str
    model: str | None = None
    feature: str | None = None
    severity: Literal["critical", "warning", "info"] = "warning"
    threshold_kind: Literal["static", "calibrated", "dynamic"] = "calibrated"


class Route(BaseModel):
    """Where matching alerts go. Routes are tried in order; the first match wins unless ``continue_`` is set."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    match: Matcher = Field(default_factory=Matcher)
    receivers: list[Receiver]
    continue_: bool = Field(False, alias="continue")


class RetryPolicy(BaseModel):
    """Exponential backoff for one delivery; 429 Retry-After is honoured (capped at ``max_retry_after``)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(10, ge=1)
    initial_backoff: Duration = 0.5
    multiplier: float = Field(2.0, ge=1.0)
    max_backoff: Duration = 60.0
    max_retry_after: Duration = 300.0
    timeout: Duration = Field(10.0, description="HTTP timeout per attempt (seconds)")

    def backoff(self, attempt: int) -> float:
        """Wait before attempt ``attempt + 1`` (attempt counts from 1).

        >>> [RetryPolicy().backoff(a) for a in (1, 2, 3)]
        [0.5, 1.0, 2.0]
        """
        return min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))


def _default_rules() -> list[AlertRule]:
    sev = {
        "data_drift": ("warning", "calibrated"),
        "prediction_drift": ("warning", "calibrated"),
        "concept_drift": ("critical", "dynamic"),
        "performance": ("critical", "static"),
        "estimated_performance": ("warning", "calibrated"),
        "data_quality": ("warning", "static"),
        "attribution_drift": ("info", "calibrated"),
        "pipeline": ("critical", "static"),
    }
    return [AlertRule(monitor=m, severity=s, threshold_kind=k) for m, (s, k) in sev.items()]  # type: ignore[arg-type]


def _default_routes() -> list[Route]:
    return [
        Route(match=Matcher(severity="critical"), receivers=["pagerduty", "slack"]),
        Route(match=Matcher(severity="warning"), receivers=["slack"]),
        Route(match=Matcher(severity="info"), receivers=["log"]),
    ]


def _packaged_runbooks() -> str:
    """File URI of the runbooks shipped inside the package (``stream/alerting/runbooks/``)."""
    return (Path(__file__).resolve().parent / "runbooks").as_uri() + "/"


class AlertingConfig(BaseModel):
    """Everything the alert lifecycle and the notifiers need."""

    model_config = ConfigDict(extra="forbid")

    rules: list[AlertRule] = Field(default_factory=_default_rules)
    routes: list[Route] = Field(default_factory=_default_routes)
    desktop: bool = Field(False, description="also notify the local desktop (plyer) for every alert")

    group_wait: Duration = Field(10.0, description="wall-clock wait collecting alerts into one notification")
    max_group: int = Field(500, ge=1, description="alerts read at most per notifier batch")
    repeat_interval: Duration = Field(4 * 3600.0, description="event time between repeats of a firing alert")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)

    runbook_base_url: str | None = Field(None, description="default: file URI of the runbooks shipped in the package")
    dashboard_url: str | None = Field(None, description="template, e.g. http://host/dash?model={model}")
    state_path: Path | None = Field(None, description="sqlite file; default <settings.home>/alerting.sqlite")
    metrics_port: int | None = Field(None, description="serve the notifier's Prometheus /metrics on this port "
                                     "(bound to worker.web_host); unset: not served")

    slack_token: SecretStr | None = None
    slack_token_file: Path | None = None
    slack_webhook_url: SecretStr | None = None
    slack_webhook_url_file: Path | None = None
    slack_channel: str = "#ml-alerts"
    slack_api_url: str = "https://slack.com/api/"
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_routing_key_file: Path | None = None
    pagerduty_url: str = "https://events.pagerduty.com"
    pagerduty_source: str = "glassbox"

    def rule_for(self, model: str, monitor: str, feature: str | None) -> AlertRule:
        """The most specific rule for (model, monitor, feature); later rules win ties."""
        best: AlertRule | None = None
        best_score = -1
        for rule in self.rules:
            if rule.monitor != monitor:
                continue
            if rule.model is not None and not fnmatch.fnmatchcase(model, rule.model):
                continue
            if rule.feature is not None and not fnmatch.fnmatchcase(feature or "", rule.feature):
                continue
            score = (rule.model is not None) * 2 + (rule.feature is not None)
            if score >= best_score:
                best, best_score = rule, score
        return best or AlertRule(monitor=monitor)

    def runbook_url(self, monitor: str) -> str:
        """The runbook of ``monitor``: under ``runbook_base_url``, else the copy shipped in the package."""
        base = self.runbook_base_url or _packaged_runbooks()
        return base.rstrip("/") + f"/{monitor}.md"

    def with_links(self, alert: dict[str, Any]) -> dict[str, Any]:
        """``alert`` with its runbook link and, when ``dashboard_url`` is templated, its dashboard link.

        >>> AlertingConfig(runbook_base_url="https://docs/rb/").with_links({"monitor": "data_drift"})["links"]
        {'runbook': 'https://docs/rb/data_drift.md'}
        """
        links = dict(alert.get("links") or {})
        links["runbook"] = self.runbook_url(alert["monitor"])
        if not links.get("dashboard") and self.dashboard_url:
            links["dashboard"] = self.dashboard_url.format(**{k: alert.get(k) for k in ("model", "monitor",
                                                                                        "feature")})
        return {**alert, "links": links}

    def secret(self, name: str) -> str | None:
        """The value of secret ``name`` (e.g. ``"slack_token"``) from the field or its ``_file``, else None."""
        value: SecretStr | None = getattr(self, name)
        if value is not None and value.get_secret_value():
            return value.get_secret_value()
        path: Path | None = getattr(self, f"{name}_file")
        if path is not None:
            text = Path(path).expanduser().read_text().strip()
            return text or None
        return None

    def secret_values(self) -> list[str]:
        """Every configured secret value (for redaction)."""
        names = ("slack_token", "slack_webhook_url", "pagerduty_routing_key")
        return [v for v in (self.secret(n) for n in names) if v]

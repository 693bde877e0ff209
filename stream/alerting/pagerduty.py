"""PagerDuty receiver (Events API v2 through pdpyras): trigger and resolve with ``dedup_key`` = the alert
fingerprint, so a redelivery never opens a second incident. pdpyras' own retry loop (which ignores
Retry-After and retries 429 forever) is replaced by one attempt per call; :mod:`stream.alerting.retry`
does the retrying."""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pdpyras import EventsAPISession, PDClientError

from stream.alerting.config import AlertingConfig
from stream.alerting.messages import pagerduty_event
from stream.alerting.notification import DeliveryError, Notification, retry_after_seconds


class _OneShotEventsSession(EventsAPISession):
    """EventsAPISession making exactly one HTTP request per call."""

    def request(self, method: str, url: str, **kwargs: Any):  # type: ignore[override]
        headers = self.prepare_headers(method, user_headers=kwargs.pop("headers", {}) or {})
        return self.parent.request(method.upper(), self.normalize_url(url), headers=headers,
                                   timeout=self.timeout, **kwargs)


class PagerDutyNotifier:
    """One Events API v2 event per alert: trigger for firing/repeat/escalated, resolve for resolved."""

    name = "pagerduty"
    groups = False

    def __init__(self, config: AlertingConfig):
        key = config.secret("pagerduty_routing_key")
        if not key:
            raise ValueError("PagerDuty needs pagerduty_routing_key")
        self.session = _OneShotEventsSession(key)
        self.session.url = config.pagerduty_url.rstrip("/")
        self.session.timeout = config.retry.timeout
        self.source = config.pagerduty_source

    def send(self, notification: Notification) -> None:
        for item in notification.items:
            fp = item.alert["fingerprint"]
            try:
                if item.kind == "resolved":
                    self.session.resolve(fp)
                else:
                    event = pagerduty_event(item, self.source)
                    self.session.trigger(**event)
            except PDClientError as exc:
                resp = exc.response
                if resp is None:
                    raise DeliveryError(f"PagerDuty: {type(exc).__name__}") from None
                status = resp.status_code
                reason = f"PagerDuty HTTP {status} {resp.text[:200]}".strip()
                if status == 429:
                    wait = retry_after_seconds(resp.headers.get("Retry-After"))
                    raise DeliveryError(reason, retry_after=wait) from None
                raise DeliveryError(reason, retryable=status >= 500 or status == 408) from None

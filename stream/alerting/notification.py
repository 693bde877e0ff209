"""What a notifier receives (a :class:`Notification`: one group of alert items for one receiver) and the
errors it raises to ask for a retry or to give up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Item:
    """One alert inside a notification: ``kind`` is firing, repeat, escalated or resolved; ``since`` is the
    event time (ms) the condition started firing."""

    alert: dict[str, Any]
    kind: str
    since: int


@dataclass(frozen=True)
class Notification:
    """Alerts of one model and one status, grouped for one receiver."""

    receiver: str
    model: str
    status: str
    items: tuple[Item, ...] = field(default_factory=tuple)

    @property
    def alert_ids(self) -> list[str]:
        return [i.alert["alert_id"] for i in self.items]


class DeliveryError(Exception):
    """A failed delivery attempt. ``retryable`` (429, 5xx, timeouts, connection errors) or permanent (4xx);
    ``retry_after`` in seconds when the receiver said so (HTTP 429 Retry-After)."""

    def __init__(self, reason: str, *, retryable: bool = True, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


class Notifier(Protocol):
    """A receiver. ``send`` is synchronous (it runs in a worker thread) and raises DeliveryError."""

    name: str
    groups: bool  # False: one notification per alert (PagerDuty: one dedup_key per fingerprint)

    def send(self, notification: Notification) -> None: ...


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header given in seconds (HTTP-dates are treated as absent).

    >>> retry_after_seconds("3"), retry_after_seconds(None), retry_after_seconds("soon")
    (3.0, None, None)
    """
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None

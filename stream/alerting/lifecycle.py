"""The alert lifecycle after detection: dedup, repeat, escalation, silences and resolved notifications.

The detection core already applies hysteresis and emits ``firing`` / ``resolved`` transitions (and may
re-emit ``firing`` while a condition holds). :func:`decide` turns each alert plus the stored state of its
fingerprint into a decision. It is pure: time is the alert's ``event_time`` (so replays decide the same way),
except ``silenced`` which the caller evaluates against the wall clock (a silence is an operator action now).

>>> a = {"fingerprint": "f", "status": "firing", "severity": "warning", "event_time": 0}
>>> s, d = decide(None, a, repeat_interval_ms=60_000, receivers=("slack",))
>>> d.notify, d.kind
(True, 'firing')
>>> s, d = decide(s, {**a, "event_time": 30_000}, repeat_interval_ms=60_000, receivers=("slack",))
>>> d.notify, d.reason
(False, 'dedup')
>>> s, d = decide(s, {**a, "event_time": 60_000}, repeat_interval_ms=60_000, receivers=("slack",))
>>> d.kind
'repeat'
>>> s, d = decide(s, {**a, "status": "resolved", "event_time": 90_000}, repeat_interval_ms=60_000,
...               receivers=("slack",))
>>> d.kind, d.receivers, s.status
('resolved', ('slack',), 'resolved')
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from stream.alerting.config import SEVERITY_RANK


@dataclass(frozen=True)
class AlertState:
    """What the notifier remembers per fingerprint (one episode = one firing..resolved span)."""

    fingerprint: str
    status: str
    since: int
    last_event_time: int
    last_notified: int | None = None
    notified_severity: str | None = None
    receivers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """``notify`` with ``kind`` (firing, repeat, escalated, resolved) or not, with ``reason``."""

    notify: bool
    kind: str | None = None
    reason: str = ""
    receivers: tuple[str, ...] = ()
    since: int | None = None


def decide(
    state: AlertState | None,
    alert: dict[str, Any],
    *,
    repeat_interval_ms: int,
    receivers: tuple[str, ...],
    silenced: bool = False,
) -> tuple[AlertState | None, Decision]:
    """Next state and decision for ``alert`` given the fingerprint's ``state``.

    Redeliveries are idempotent: an alert at or before the state's last event time changes nothing
    (``stale``), and a second ``resolved`` is ignored. A ``resolved`` is notified only when the firing was
    notified, always (silences do not hold back resolutions, so an open incident is never left behind),
    to the receivers the firing went to.
    """
    t = int(alert["event_time"])
    fp = alert["fingerprint"]
    if state is not None and t < state.last_event_time:
        return state, Decision(False, reason="stale")
    if alert["status"] == "resolved":
        if state is None or state.status == "resolved":
            return state, Decision(False, reason="not firing")
        new = replace(state, status="resolved", last_event_time=t)
        if state.last_notified is None:
            return new, Decision(False, reason="firing was never notified", since=state.since)
        return new, Decision(True, kind="resolved", receivers=state.receivers, since=state.since)

    if state is None or state.status == "resolved":
        state = AlertState(fingerprint=fp, status="firing", since=t, last_event_time=t)
    elif t == state.last_event_time and state.last_notified is not None:
        return state, Decision(False, reason="stale")
    state = replace(state, last_event_time=t)
    if silenced:
        return state, Decision(False, reason="silenced", since=state.since)
    severity = alert["severity"]
    if state.last_notified is None:
        kind = "firing"
    elif SEVERITY_RANK[severity] > SEVERITY_RANK.get(state.notified_severity or "info", 0):
        kind = "escalated"
    elif t - state.last_notified >= repeat_interval_ms:
        kind = "repeat"
    else:
        return state, Decision(False, reason="dedup", since=state.since)
    routed = tuple(dict.fromkeys(state.receivers + receivers))
    state = replace(state, last_notified=t, notified_severity=severity, receivers=routed)
    return state, Decision(True, kind=kind, receivers=receivers, since=state.since)

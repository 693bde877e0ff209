"""The notifier pipeline for one batch of alerts: lifecycle decisions, grouping, delivery with retries,
the delivery journal, dead letters, then the lifecycle state. Independent of Faust, so it is tested with
real HTTP sinks alone; :mod:`stream.alerting.agent` feeds it from the alerts topic and commits after it.

Order of effects (what makes at-least-once idempotent): deliver each receiver, journal each delivery
(alert_id, receiver), dead-letter what gave up, save the lifecycle state (the caller then publishes
``report.states`` to the shared ``alert-state`` topic), and only then may the caller commit the offsets. A
crash anywhere replays the batch: the state is the old one, so the decisions are the same, and the journal
skips receivers that already got the alert (PagerDuty dedups on the fingerprint too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream.alerting.config import AlertingConfig
from stream.alerting.lifecycle import AlertState, decide
from stream.alerting.notification import Item, Notification, Notifier
from stream.alerting.retry import Outcome, deliver
from stream.alerting.routing import receivers_for
from stream.alerting.secrets import quiet_logger, redact
from stream.alerting.store import AlertingStore, state_path
from stream.events import with_raw

log = logging.getLogger("glassbox.alerting")

DeadLetter = Callable[[dict[str, Any]], Awaitable[None]]
JOURNAL_KEEP = 7 * 86400.0  # seconds a delivery is remembered (a redelivery after that would notify again)
JOURNAL_PRUNE_EVERY = 3600.0
REQUIRED = ("alert_id", "fingerprint", "status", "severity", "model", "monitor", "event_time")


@dataclass
class BatchReport:
    """What one batch did (for logs, metrics and tests)."""

    decisions: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    gave_up: dict[str, int] = field(default_factory=dict)
    invalid: int = 0
    notifications: list[Notification] = field(default_factory=list)
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)
    states: list[tuple[int | None, AlertState]] = field(default_factory=list)  # (alert partition, state saved)


def build_notifiers(config: AlertingConfig, store: AlertingStore) -> dict[str, Notifier]:
    """The receivers that can run with this config (log and desktop always; Slack and PagerDuty when their
    secrets are set). Imports slack-sdk and pdpyras only when configured."""
    notifiers: dict[str, Notifier] = {}
    from stream.alerting.desktop import DesktopNotifier
    from stream.alerting.log_notifier import LogNotifier

    notifiers["log"] = LogNotifier()
    notifiers["desktop"] = DesktopNotifier()
    vendor_log = quiet_logger("glassbox.alerting.vendor", config.secret_values())
    if config.secret("slack_token") or config.secret("slack_webhook_url"):
        from stream.alerting.slack import SlackNotifier

        notifiers["slack"] = SlackNotifier(config, store, vendor_log)
    if config.secret("pagerduty_routing_key"):
        from stream.alerting.pagerduty import PagerDutyNotifier

        notifiers["pagerduty"] = PagerDutyNotifier(config)
    wanted = {r for route in config.routes for r in route.receivers}
    for missing in sorted(wanted - notifiers.keys()):
        log.warning("receiver %r is routed to but not configured (no secret set): its alerts go to the log",
                    missing)
    return notifiers


def dead_letter_record(alert: Any, reason: str, error: str, *, receiver: str | None = None,
                       source: dict[str, Any] | None = None, max_bytes: int | None = None) -> dict[str, Any]:
    """A dead-letter record (schema glassbox.deadletter/v1, as in ``stream.events``): the raw alert in
    base64, where it was read (topic, partition, offset), a stable ``reason`` code and the ``error``; with
    ``max_bytes`` (``kafka.max_message_bytes``) the record fits in it (:func:`stream.events.with_raw`).

    Reasons: ``invalid_alert`` (not an alert record) and ``delivery_gave_up`` (``receiver`` says which)."""
    raw = alert if isinstance(alert, bytes) else orjson.dumps(alert, option=orjson.OPT_SORT_KEYS, default=str)
    src = source or {}
    return with_raw({
        "schema": "glassbox.deadletter/v1",
        "topic": src.get("topic"),
        "partition": src.get("partition"),
        "offset": src.get("offset"),
        "reason": reason,
        "field": None,
        "error": error[:1000],
        "receiver": receiver,
        "alert_id": alert.get("alert_id") if isinstance(alert, dict) else None,
    }, raw, max_bytes)


class Dispatcher:
    """Turns batches of alert records into delivered notifications.

    ``now`` is the wall clock used for silences only; ``sleep`` is the wait between retries (both injectable
    for tests)."""

    def __init__(
        self,
        config: AlertingConfig,
        store: AlertingStore,
        *,
        notifiers: dict[str, Notifier] | None = None,
        dead_letter: DeadLetter | None = None,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_dead_letter_bytes: int | None = None,
    ):
        self.config = config
        self.store = store
        self.notifiers = notifiers if notifiers is not None else build_notifiers(config, store)
        self.dead_letter = dead_letter
        self.now = now
        self.sleep = sleep
        self.max_dead_letter_bytes = max_dead_letter_bytes  # kafka.max_message_bytes: a dead letter fits in it
        self.secrets = config.secret_values()
        self.repeat_ms = int(config.repeat_interval * 1000)
        self._sources: dict[str, dict[str, Any]] = {}
        self._pruned_at = 0.0

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> Dispatcher:
        return cls(settings.alerting, AlertingStore(state_path(settings)),
                   max_dead_letter_bytes=settings.kafka.max_message_bytes, **kwargs)

    def _redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def prepare(self, alert: dict[str, Any]) -> dict[str, Any]:
        """The alert as notified: the runbook link from the configured base, the dashboard link if templated."""
        return self.config.with_links(alert)

    async def process(
        self, alerts: list[Any], sources: list[dict[str, Any]] | None = None
    ) -> BatchReport:
        """Decide, deliver and record one batch. Never raises for a bad alert or a failed receiver (those go
        to the dead-letter topic); raises only if the dead-letter topic or the state store fails, in which case
        the caller must not commit."""
        report = BatchReport()
        sources = sources or [{} for _ in alerts]
        self._sources: dict[str, dict[str, Any]] = {}
        silences = self.store.silences(now=self.now())
        states: dict[str, AlertState | None] = {}
        partition_of: dict[str, int | None] = {}
        items: list[tuple[Item, tuple[str, ...]]] = []
        available = self.notifiers.keys()
        for raw, src in zip(alerts, sources, strict=True):
            alert = raw if isinstance(raw, dict) else None
            if alert is None or any(k not in alert for k in REQUIRED) or alert["status"] not in (
                "firing", "resolved"
            ):
                report.invalid += 1
                await self._dead(raw, "invalid_alert", f"not a glassbox.alert/v1 record: needs {REQUIRED}",
                                 None, src)
                continue
            self._sources[alert["alert_id"]] = src
            fp = alert["fingerprint"]
            if fp not in states:
                states[fp] = self.store.load_state(fp)
                partition_of[fp] = src.get("partition")
            receivers = receivers_for(alert, self.config, available)
            silenced = any(s.matches(alert) for s in silences)
            states[fp], decision = decide(
                states[fp], alert, repeat_interval_ms=self.repeat_ms, receivers=receivers, silenced=silenced
            )
            key = decision.kind if decision.notify else decision.reason
            report.decisions[key] = report.decisions.get(key, 0) + 1
            if decision.notify:
                items.append((Item(self.prepare(alert), decision.kind, decision.since), decision.receivers))

        # Waves keep each fingerprint's notifications in order (a firing and its resolve in one batch must
        # reach PagerDuty and Slack in that order); within a wave everything is delivered concurrently.
        waves: list[list[tuple[Item, tuple[str, ...]]]] = []
        seen: dict[str, int] = {}
        for item, receivers in items:
            k = seen.get(item.alert["fingerprint"], 0)
            seen[item.alert["fingerprint"]] = k + 1
            if k == len(waves):
                waves.append([])
            waves[k].append((item, receivers))
        for wave in waves:
            notifications = self.group(wave)
            report.notifications.extend(notifications)
            results = await asyncio.gather(*(self._deliver(n) for n in notifications))
            for n, outcome in zip(notifications, results, strict=True):
                report.outcomes.append((n.receiver, outcome))
                bucket = report.delivered if outcome.ok else report.gave_up
                bucket[n.receiver] = bucket.get(n.receiver, 0) + len(n.items)
        report.states = [(partition_of[fp], s) for fp, s in states.items() if s is not None]
        self.store.save_states([s for _, s in report.states])
        if time.time() - self._pruned_at > JOURNAL_PRUNE_EVERY:
            self._pruned_at = time.time()
            self.store.prune(older_than=max(JOURNAL_KEEP, 2 * self.config.repeat_interval))
        return report

    def group(self, items: list[tuple[Item, tuple[str, ...]]]) -> list[Notification]:
        """One notification per (receiver, model, status), or per alert for receivers that do not group."""
        groups: dict[tuple[str, str, str], list[Item]] = {}
        singles: list[Notification] = []
        for item, receivers in items:
            status = "resolved" if item.kind == "resolved" else "firing"
            for r in receivers:
                notifier = self.notifiers.get(r)
                if notifier is not None and not notifier.groups:
                    singles.append(Notification(r, item.alert["model"], status, (item,)))
                else:
                    groups.setdefault((r, item.alert["model"], status), []).append(item)
        grouped = [Notification(r, m, s, tuple(its)) for (r, m, s), its in groups.items()]
        return grouped + singles

    async def _deliver(self, n: Notification) -> Outcome:
        done = self.store.delivered(n.alert_ids, n.receiver)
        if done:
            n = Notification(n.receiver, n.model, n.status, tuple(i for i in n.items if i.alert["alert_id"]
                                                                   not in done))
            if not n.items:
                return Outcome(True, 0)
        notifier = self.notifiers.get(n.receiver) or self.notifiers["log"]
        outcome = await deliver(
            lambda: notifier.send(n),
            self.config.retry,
            sleep=self.sleep,
            in_thread=True,
            label=f"{n.receiver} notification ({n.model}, {n.status}, {len(n.items)} alert(s))",
            redact=self._redact,
        )
        if outcome.ok:
            self.store.mark_delivered(n.alert_ids, n.receiver)
        else:
            for item in n.items:
                error = f"{n.receiver}: gave up after {outcome.attempts} attempt(s): {outcome.error or ''}"
                await self._dead(item.alert, "delivery_gave_up", error, n.receiver,
                                 self._sources.get(item.alert["alert_id"]))
            self.store.mark_delivered(n.alert_ids, n.receiver, outcome="gave_up")
        return outcome

    async def _dead(self, alert: Any, reason: str, error: str, receiver: str | None,
                    source: dict[str, Any] | None) -> None:
        record = dead_letter_record(alert, reason, self._redact(error), receiver=receiver, source=source,
                                    max_bytes=self.max_dead_letter_bytes)
        log.warning("dead letter: %s (%s)", reason, record["error"])
        if self.dead_letter is not None:
            await self.dead_letter(record)

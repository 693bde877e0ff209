"""Slack receiver: a bot token (chat.postMessage, then chat.update of the same message on resolve) or an
incoming webhook (a resolution is a new message). Uses slack-sdk with its own retries off: retries,
backoff and Retry-After are handled by :mod:`stream.alerting.retry`."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient, WebhookClient
from slack_sdk.errors import SlackApiError

from stream.alerting.config import AlertingConfig
from stream.alerting.messages import slack_blocks
from stream.alerting.notification import DeliveryError, Notification, retry_after_seconds
from stream.alerting.store import AlertingStore

RETRYABLE_SLACK_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


def _classify(status: int, headers: Any, error: str | None) -> DeliveryError:
    retry_after = retry_after_seconds((headers or {}).get("Retry-After") or (headers or {}).get("retry-after"))
    if status == 429 or error == "ratelimited":
        return DeliveryError(f"Slack HTTP {status} rate limited", retry_after=retry_after)
    if status >= 500 or error in RETRYABLE_SLACK_ERRORS:
        return DeliveryError(f"Slack HTTP {status} {error or ''}".strip())
    return DeliveryError(f"Slack HTTP {status} {error or ''}".strip(), retryable=False)


def _member(alert: dict[str, Any], kind: str, since: int) -> dict[str, Any]:
    slim = {k: v for k, v in alert.items() if k not in ("evidence", "source")}
    return {"alert": slim, "kind": kind, "since": since, "resolved_at": None}


def _entries(members: dict[str, Any]) -> list[tuple[dict[str, Any], str, int, int | None]]:
    return [(m["alert"], m["kind"], m["since"], m["resolved_at"]) for m in members.values()]


class SlackNotifier:
    """Posts grouped alert messages to Slack."""

    name = "slack"
    groups = True

    def __init__(self, config: AlertingConfig, store: AlertingStore, logger: logging.Logger):
        token = config.secret("slack_token")
        webhook = config.secret("slack_webhook_url")
        timeout = max(1, round(config.retry.timeout))
        self.channel = config.slack_channel
        self.store = store
        self.web: WebClient | None = None
        self.hook: WebhookClient | None = None
        if token:
            self.web = WebClient(
                token=token, base_url=config.slack_api_url, timeout=timeout, retry_handlers=[], logger=logger
            )
        elif webhook:
            self.hook = WebhookClient(webhook, timeout=timeout, retry_handlers=[], logger=logger)
        else:
            raise ValueError("Slack needs slack_token or slack_webhook_url")

    @property
    def mode(self) -> str:
        return "bot" if self.web is not None else "webhook"

    def send(self, notification: Notification) -> None:
        if self.web is None:
            return self._webhook(notification)
        if notification.status == "resolved":
            return self._resolve(notification)
        members = {i.alert["fingerprint"]: _member(i.alert, i.kind, i.since) for i in notification.items}
        text, blocks = slack_blocks(notification.model, _entries(members))
        resp = self._call("chat_postMessage", channel=self.channel, text=text, blocks=blocks)
        refs = [(i.alert["fingerprint"], i.since) for i in notification.items]
        self.store.save_slack_message(resp["channel"], resp["ts"], members, refs)

    def _resolve(self, notification: Notification) -> None:
        """Edit every message that announced these alerts; post a resolution for the ones with none."""
        edits: dict[tuple[str, str], dict[str, Any]] = {}
        orphans = []
        for item in notification.items:
            fp = item.alert["fingerprint"]
            found = self.store.slack_messages_for(fp, item.since)
            if not found:
                orphans.append(item)
            for channel, ts, members in found:
                members = edits.setdefault((channel, ts), members)
                if fp in members:
                    members[fp]["resolved_at"] = item.alert["event_time"]
        for (channel, ts), members in edits.items():
            text, blocks = slack_blocks(notification.model, _entries(members))
            self._call("chat_update", channel=channel, ts=ts, text=text, blocks=blocks)
            self.store.update_slack_members(channel, ts, members)
        if orphans:
            entries = [(i.alert, i.kind, i.since, i.alert["event_time"]) for i in orphans]
            text, blocks = slack_blocks(notification.model, entries)
            self._call("chat_postMessage", channel=self.channel, text=text, blocks=blocks)

    def _call(self, method: str, **kwargs: Any) -> Any:
        assert self.web is not None
        try:
            return getattr(self.web, method)(**kwargs)
        except SlackApiError as exc:
            resp = exc.response
            data = resp.data if isinstance(resp.data, dict) else {}
            raise _classify(resp.status_code, resp.headers, data.get("error")) from None

    def _webhook(self, notification: Notification) -> None:
        assert self.hook is not None
        entries = [
            (i.alert, i.kind, i.since, i.alert["event_time"] if i.kind == "resolved" else None)
            for i in notification.items
        ]
        text, blocks = slack_blocks(notification.model, entries)
        resp = self.hook.send(text=text, blocks=blocks)
        if resp.status_code != 200:
            raise _classify(resp.status_code, resp.headers, resp.body)

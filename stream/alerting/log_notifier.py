"""Log receiver: one line per alert on the ``glassbox.alerts`` logger."""

from __future__ import annotations

import logging

from stream.alerting.messages import KIND_LABEL, describe, links_text
from stream.alerting.notification import Notification

log = logging.getLogger("glassbox.alerts")


class LogNotifier:
    name = "log"
    groups = True

    def send(self, notification: Notification) -> None:
        for item in notification.items:
            a = item.alert
            log.log(
                logging.WARNING if a["severity"] != "info" and item.kind != "resolved" else logging.INFO,
                "[%s] [%s] %s | %s | alert_id=%s",
                KIND_LABEL[item.kind], a["severity"], describe(a, item.kind, item.since), links_text(a),
                a["alert_id"],
            )

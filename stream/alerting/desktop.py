"""Desktop receiver (plyer) for local runs. Where no desktop notification is possible (headless Linux
raises NotImplementedError) it says so once, in one warning line, and then logs each alert title."""

from __future__ import annotations

import logging

from stream.alerting.messages import title
from stream.alerting.notification import Notification

log = logging.getLogger("glassbox.alerts")


class DesktopNotifier:
    name = "desktop"
    groups = True

    def __init__(self) -> None:
        self.available = True

    def send(self, notification: Notification) -> None:
        head = title(notification)
        if self.available:
            try:
                from plyer import notification as plyer_notification

                body = "\n".join(i.alert.get("summary") or "" for i in notification.items[:5])
                plyer_notification.notify(title=head[:64], message=body[:256] or head, app_name="glassbox",
                                          timeout=10)
                return
            except Exception as exc:  # NotImplementedError on headless Linux, dbus errors, ...
                self.available = False
                log.warning("desktop notifications unavailable (%s); desktop alerts go to this log",
                            type(exc).__name__)
        log.info("desktop: %s", head)

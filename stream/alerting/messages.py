"""Human-readable alert messages: what changed, where, how much, since when, and the links.

Pure functions over alert records (no I/O), shared by Slack, desktop, the log and PagerDuty.

>>> a = {"model": "churn", "model_version": "3", "monitor": "data_drift", "feature": "age",
...      "detector": "psi", "statistic": "psi", "value": 0.314, "threshold": 0.2,
...      "threshold_kind": "calibrated", "direction": None, "severity": "warning", "event_time": 0,
...      "window": {"index": 7, "start": 7000, "end": 7999, "events": 1000},
...      "links": {"runbook": "file:///r/data_drift.md"}}
>>> print(describe(a, "firing", 1_700_000_000_000))
churn v3 · data_drift · feature `age`: psi = 0.314 above the calibrated threshold 0.2 (detector psi; \
window 7: 1000 events, 7000 .. 7999); firing since 2023-11-14 22:13:20Z
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from stream.alerting.notification import Item, Notification

KIND_LABEL = {"firing": "FIRING", "repeat": "STILL FIRING", "escalated": "ESCALATED", "resolved": "RESOLVED"}
SEVERITY_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
LINK_NAMES = (("runbook", "Runbook"), ("report", "Report"), ("dashboard", "Dashboard"), ("mlflow_run", "MLflow run"))
MAX_ITEMS = 20  # per Slack message (Slack allows 50 blocks)


def mrkdwn_escape(text: str) -> str:
    """Text for Slack mrkdwn: ``&``, ``<`` and ``>`` escaped, so names and values from models and streams
    can neither mention (``<!channel>``, ``<@U1>``) nor link (``<http://x|y>``).

    >>> mrkdwn_escape("<!channel> & <http://x|y>")
    '&lt;!channel&gt; &amp; &lt;http://x|y&gt;'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fmt_time(ms: int | None) -> str:
    """Event time (epoch ms) as ``YYYY-MM-DD HH:MM:SSZ``."""
    if ms is None:
        return "?"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def where(alert: dict[str, Any]) -> str:
    version = f" v{alert['model_version']}" if alert.get("model_version") else ""
    feature = f" · feature `{alert['feature']}`" if alert.get("feature") else ""
    return f"{alert['model']}{version} · {alert['monitor']}{feature}"


def _window(w: dict[str, Any]) -> str:
    start, end = w.get("start"), w.get("end")
    if isinstance(start, int | float) and isinstance(end, int | float) and start > 1e11:  # epoch ms
        span = f"{fmt_time(int(start))} .. {fmt_time(int(end))}"
    else:
        span = f"{start} .. {end}"
    return f"window {w.get('index', '?')}: {w.get('events', '?')} events, {span}"


def how_much(alert: dict[str, Any]) -> str:
    value, threshold = alert.get("value"), alert.get("threshold")
    side = "vs"
    if isinstance(value, int | float) and isinstance(threshold, int | float):
        side = "above" if value > threshold else "below" if value < threshold else "at"
    direction = f", {alert['direction']}" if alert.get("direction") else ""
    return (
        f"{alert.get('statistic')} = {_num(value)} {side} the {alert.get('threshold_kind')} "
        f"threshold {_num(threshold)}{direction} (detector {alert.get('detector')}; "
        f"{_window(alert.get('window') or {})})"
    )


def describe(alert: dict[str, Any], kind: str, since: int, resolved_at: int | None = None) -> str:
    """One line: where, how much, since when (and when it resolved)."""
    if kind == "resolved" or resolved_at is not None:
        end = resolved_at if resolved_at is not None else alert["event_time"]
        return f"{where(alert)}: resolved at {fmt_time(end)} (was firing since {fmt_time(since)})"
    return f"{where(alert)}: {how_much(alert)}; firing since {fmt_time(since)}"


def links_text(alert: dict[str, Any], markdown: bool = False) -> str:
    links = alert.get("links") or {}
    parts = []
    for key, name in LINK_NAMES:
        url = links.get(key)
        if url:
            parts.append(f"<{url}|{name}>" if markdown else f"{name}: {url}")
    return " | ".join(parts)


def title(notification: Notification) -> str:
    items = notification.items
    kinds = {i.kind for i in items}
    label = KIND_LABEL[next(iter(kinds))] if len(kinds) == 1 else "FIRING"
    severity = max((i.alert["severity"] for i in items), key=["info", "warning", "critical"].index)
    monitors = sorted({i.alert["monitor"] for i in items})
    if len(items) == 1:
        what = items[0].alert.get("summary") or where(items[0].alert)
    else:
        what = f"{len(items)} alerts ({', '.join(monitors)})"
    return f"[{label}] [{severity}] {notification.model}: {what}"


def text(notification: Notification) -> str:
    """Plain text for the log, the desktop and Slack's fallback ``text``."""
    lines = [title(notification)]
    for item in notification.items:
        lines.append(f"- {describe(item.alert, item.kind, item.since)}")
        lines.append(f"  {links_text(item.alert)}")
    return "\n".join(lines)


def slack_blocks(
    model: str, entries: list[tuple[dict[str, Any], str, int, int | None]]
) -> tuple[str, list[dict[str, Any]]]:
    """Slack fallback text and Block Kit blocks for ``entries`` = (alert, kind, since, resolved_at).

    The same renderer draws a new message and the in-place edit on resolve (resolved_at set)."""
    open_ = [e for e in entries if e[3] is None]
    kinds = {e[1] for e in open_}
    if not open_:
        label = "RESOLVED"
    elif len(open_) < len(entries):
        label = f"FIRING ({len(entries) - len(open_)} of {len(entries)} resolved)"
    else:
        label = KIND_LABEL[next(iter(kinds))] if len(kinds) == 1 else "FIRING"
    severity = max((e[0]["severity"] for e in entries), key=["info", "warning", "critical"].index)
    emoji = ":white_check_mark:" if not open_ else SEVERITY_EMOJI.get(severity, "")
    esc = mrkdwn_escape
    if len(entries) == 1:
        what = esc(entries[0][0].get("summary") or where(entries[0][0]))
        head = f"{emoji} [{label}] [{severity}] {esc(model)}: {what}"
    else:
        monitors = esc(", ".join(sorted({e[0]["monitor"] for e in entries})))
        head = f"{emoji} [{label}] [{severity}] {esc(model)}: {len(entries)} alerts ({monitors})"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": head[:3000]}}]
    lines = [head]
    for alert, kind, since, resolved_at in entries[:MAX_ITEMS]:
        line = esc(describe(alert, kind, since, resolved_at))
        mark = "~" if resolved_at is not None else ""
        body = f"{mark}{line}{mark}\n{links_text(alert, markdown=True)}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}})
        lines.append(f"- {line}\n  {links_text(alert)}")
    if len(entries) > MAX_ITEMS:
        more = f"... and {len(entries) - MAX_ITEMS} more"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
        lines.append(more)
    return "\n".join(lines), blocks


PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


def pagerduty_event(item: Item, source: str) -> dict[str, Any]:
    """Arguments of ``EventsAPISession.trigger`` for one firing alert (dedup_key = fingerprint)."""
    a = item.alert
    summary = f"[glassbox] {where(a)}: {a.get('statistic')}={_num(a.get('value'))} "
    summary += f"(threshold {_num(a.get('threshold'))}) {a.get('summary') or ''}".rstrip()
    links = [
        {"href": url, "text": name}
        for key, name in LINK_NAMES
        if (url := (a.get("links") or {}).get(key))
    ]
    details = {
        k: a.get(k)
        for k in (
            "alert_id", "fingerprint", "model", "model_version", "monitor", "feature", "detector", "statistic",
            "value", "threshold", "threshold_kind", "direction", "window", "source", "row", "summary",
        )
    }
    details.update(
        kind=item.kind,
        firing_since=fmt_time(item.since),
        event_time=fmt_time(a.get("event_time")),
        links=a.get("links"),
        evidence=a.get("evidence"),
    )
    return {
        "summary": summary[:1024],
        "source": f"{source}/{a['model']}",
        "dedup_key": a["fingerprint"],
        "severity": PD_SEVERITY.get(a["severity"], "warning"),
        "payload": {
            "component": a.get("feature") or a["monitor"],
            "group": a["model"],
            "class": a["monitor"],
            "timestamp": dt.datetime.fromtimestamp(a["event_time"] / 1000, dt.UTC).isoformat(),
        },
        "custom_details": details,
        "links": links,
    }

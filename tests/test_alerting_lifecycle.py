"""Pure parts of alerting: config, rules, routing, the lifecycle state machine, silences, messages."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from detectors.alert import MONITORS, make_alert
from stream.alerting.config import AlertingConfig, RetryPolicy, parse_duration
from stream.alerting.lifecycle import decide
from stream.alerting.messages import describe, pagerduty_event, slack_blocks, text
from stream.alerting.notification import Item, Notification
from stream.alerting.routing import receivers_for
from stream.alerting.shared import new_silence
from stream.alerting.store import AlertingStore

T0 = 1_700_000_000_000
MIN = 60_000


def alert(status="firing", *, t=T0, feature="age", model="churn", monitor="data_drift", severity="warning",
          index=0, value=0.31):
    return make_alert(model=model, monitor=monitor, feature=feature, status=status, severity=severity,
                      detector="psi", statistic="psi", value=value, threshold=0.2, threshold_kind="calibrated",
                      window={"index": index, "start": index * 1000, "end": index * 1000 + 999, "events": 1000},
                      event_time=t, summary=f"{feature} drifted")


def test_durations_and_env_style_values():
    assert parse_duration("2h") == 7200 and parse_duration("1h30m") == 5400 and parse_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        parse_duration("2 fortnights")
    cfg = AlertingConfig(repeat_interval="30m", group_wait="2s", retry={"max_backoff": "1m"})
    assert (cfg.repeat_interval, cfg.group_wait, cfg.retry.max_backoff) == (1800, 2, 60)
    with pytest.raises(ValidationError):
        AlertingConfig(unknown_field=1)
    p = RetryPolicy(initial_backoff=1, multiplier=2, max_backoff=5)
    assert [p.backoff(a) for a in range(1, 6)] == [1, 2, 4, 5, 5]


def test_rules_most_specific_wins_and_every_monitor_has_a_default():
    cfg = AlertingConfig(rules=[
        *AlertingConfig().rules,
        {"monitor": "data_drift", "model": "churn", "severity": "critical", "threshold_kind": "static"},
        {"monitor": "data_drift", "model": "churn", "feature": "income", "severity": "info"},
    ])
    assert cfg.rule_for("fraud", "data_drift", "age").severity == "warning"
    assert cfg.rule_for("churn", "data_drift", "age").severity == "critical"
    assert cfg.rule_for("churn", "data_drift", "age").threshold_kind == "static"
    assert cfg.rule_for("churn", "data_drift", "income").severity == "info"
    defaults = AlertingConfig()
    assert {r.monitor for r in defaults.rules} == set(MONITORS)
    assert defaults.rule_for("m", "performance", None).severity == "critical"


def test_default_routes_by_severity_and_fallback_to_log():
    cfg = AlertingConfig()
    crit, warn, info = (alert(severity=s) for s in ("critical", "warning", "info"))
    assert receivers_for(crit, cfg) == ("pagerduty", "slack")
    assert receivers_for(warn, cfg) == ("slack",)
    assert receivers_for(info, cfg) == ("log",)
    # nothing configured: never routed nowhere
    assert receivers_for(crit, cfg, available=["log", "desktop"]) == ("log",)
    local = AlertingConfig(desktop=True)
    assert receivers_for(warn, local) == ("slack", "desktop")
    custom = AlertingConfig(routes=[
        {"match": {"model": "fraud*"}, "receivers": ["pagerduty"], "continue": True},
        {"match": {}, "receivers": ["log"]},
    ])
    assert receivers_for(alert(model="fraud-eu"), custom) == ("pagerduty", "log")
    assert receivers_for(alert(model="churn"), custom) == ("log",)


def run(alerts, *, repeat_ms=30 * MIN, silenced=lambda a: False, receivers=("slack",)):
    state, out = None, []
    for a in alerts:
        state, d = decide(state, a, repeat_interval_ms=repeat_ms, receivers=receivers, silenced=silenced(a))
        out.append(d)
    return state, out


def test_repeat_interval_in_event_time_for_100_windows():
    firing = [alert(t=T0 + i * MIN, index=i) for i in range(100)]
    _, ds = run(firing)
    notified = [i for i, d in enumerate(ds) if d.notify]
    assert notified == [0, 30, 60, 90]
    assert [ds[i].kind for i in notified] == ["firing", "repeat", "repeat", "repeat"]
    assert {d.since for d in ds} == {T0}


def test_escalation_resolution_and_redelivery_are_idempotent():
    a0 = alert(t=T0)
    a1 = alert(t=T0 + MIN, severity="critical", index=1)
    r = alert("resolved", t=T0 + 2 * MIN, index=2)
    state, ds = run([a0, a0, a1, r, r, a1], receivers=("slack",))
    assert [d.kind if d.notify else d.reason for d in ds] == [
        "firing", "stale", "escalated", "resolved", "not firing", "stale"]
    assert ds[3].receivers == ("slack",) and state.status == "resolved"
    # a new episode after resolution starts a new `since`
    state, d = decide(state, alert(t=T0 + 10 * MIN, index=10), repeat_interval_ms=MIN, receivers=("slack",))
    assert d.kind == "firing" and d.since == T0 + 10 * MIN


def test_silenced_firing_is_not_notified_and_notifies_once_the_silence_ends():
    firing = [alert(t=T0 + i * MIN, index=i) for i in range(6)]
    _, ds = run(firing, silenced=lambda a: a["event_time"] < T0 + 3 * MIN)
    assert [d.notify for d in ds] == [False, False, False, True, False, False]
    assert ds[3].kind == "firing" and ds[0].reason == "silenced"
    # a resolve of a firing that was never notified stays quiet
    _, ds = run([alert(), alert("resolved", t=T0 + MIN)], silenced=lambda a: True)
    assert not ds[1].notify


def test_silence_store_matches_and_expires(tmp_path):
    store = AlertingStore(tmp_path / "a.sqlite")
    s = new_silence({"model": "churn", "monitor": "data_drift"}, 3600, now=1000.0)
    store.put_silence(s)
    assert s.matches(alert()) and not s.matches(alert(model="fraud"))
    assert not s.matches(alert(monitor="data_quality"))
    assert [x.id for x in store.silences(now=1500.0)] == [s.id]
    assert store.silences(now=5000.0) == []
    other = AlertingStore(tmp_path / "a.sqlite")  # another process on the host sees what the mirror writes
    other.put_silence(replace(s, expired_at=2000.0))
    assert store.silences(now=2500.0) == []
    assert len(store.silences(include_inactive=True)) == 1
    with pytest.raises(ValueError):
        new_silence({}, 60)
    with pytest.raises(ValidationError):
        new_silence({"colour": "blue"}, 60)


def test_messages_say_what_where_how_much_since_and_link():
    cfg = AlertingConfig(runbook_base_url="https://runbooks.example/glassbox")
    a = {**alert(), "links": {"runbook": cfg.runbook_url("data_drift"), "report": "http://r/1",
                              "dashboard": None, "mlflow_run": None}}
    item = Item(a, "firing", T0 - 5 * MIN)
    body = text(Notification("log", "churn", "firing", (item,)))
    for needle in ("FIRING", "churn", "data_drift", "age", "psi = 0.31", "threshold 0.2", "calibrated",
                   "since 2023-11-14 22:08:20Z", "https://runbooks.example/glassbox/data_drift.md",
                   "Report: http://r/1"):
        assert needle in body, needle
    resolved = describe(a, "resolved", T0)
    assert "resolved at" in resolved and "was firing since" in resolved
    fallback, blocks = slack_blocks("churn", [(a, "firing", T0, None)] * 25)
    assert len(blocks) <= 50 and "and 5 more" in fallback
    ev = pagerduty_event(item, "glassbox")
    assert ev["dedup_key"] == a["fingerprint"] and ev["severity"] == "warning"
    assert ev["payload"]["group"] == "churn" and ev["payload"]["class"] == "data_drift"
    assert {"href": cfg.runbook_url("data_drift"), "text": "Runbook"} in ev["links"]
    assert ev["custom_details"]["threshold"] == 0.2 and len(ev["summary"]) <= 1024

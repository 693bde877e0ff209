"""Lifecycle + delivery against local servers that speak Slack's Web API, Slack webhooks and PagerDuty
Events v2 (tests/sinks.py), through the real slack-sdk and pdpyras clients."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlparse

import orjson
import pytest
from pydantic import SecretStr

from detectors.alert import MONITORS, make_alert
from stream.alerting.config import AlertingConfig
from stream.alerting.desktop import DesktopNotifier
from stream.alerting.dispatch import Dispatcher
from stream.alerting.notification import Item, Notification
from stream.alerting.shared import new_silence
from stream.alerting.store import AlertingStore
from tests.sinks import Reply, Sink

REPO = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000_000
MIN = 60_000


def alert(status="firing", *, t=T0, feature="age", model="churn", monitor="data_drift", severity="warning",
          index=0, value=0.31):
    return make_alert(model=model, monitor=monitor, feature=feature, status=status, severity=severity,
                      detector="psi", statistic="psi", value=value, threshold=0.2, threshold_kind="calibrated",
                      window={"index": index, "start": index * 1000, "end": index * 1000 + 999, "events": 1000},
                      event_time=t, summary=f"{model} {feature} {status}")


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(sink: Sink, tmp_path: Path, *, slack: str = "bot", pagerduty: bool = True, now=time.time,
         **overrides) -> tuple[Dispatcher, list[dict]]:
    cfg = {"retry": {"initial_backoff": 0.05, "max_backoff": 0.5, "timeout": 2}, "repeat_interval": "30m"}
    if slack == "bot":
        cfg.update(slack_token=sink.slack_token, slack_api_url=sink.slack_api_url)
    elif slack == "webhook":
        cfg.update(slack_webhook_url=sink.webhook_url)
    if pagerduty:
        cfg.update(pagerduty_routing_key=sink.routing_key, pagerduty_url=sink.url)
    cfg.update(overrides)
    dead: list[dict] = []

    async def dead_letter(record: dict) -> None:
        dead.append(record)

    d = Dispatcher(AlertingConfig(**cfg), AlertingStore(tmp_path / "alerting.sqlite"), dead_letter=dead_letter,
                   now=now)
    return d, dead


def process(d: Dispatcher, *alerts):
    return asyncio.run(d.process(list(alerts)))


def posts(sink: Sink) -> list[dict]:
    return [r.json for r in sink.calls("/api/chat.postMessage") if r.ok]


def updates(sink: Sink) -> list[dict]:
    return [r.json for r in sink.calls("/api/chat.update") if r.ok]


def test_critical_pages_once_resolves_same_key_and_edits_the_slack_message(sink, tmp_path):
    d, dead = make(sink, tmp_path)
    fire = alert(severity="critical")
    process(d, fire)
    process(d, alert("resolved", t=T0 + 5 * MIN, severity="critical", index=5))
    events = sink.pd_events
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert {e["dedup_key"] for e in events} == {fire["fingerprint"]}
    assert events[0]["payload"]["severity"] == "critical"
    assert sink.incidents_opened == 1 and sink.incidents[fire["fingerprint"]]["status"] == "resolved"
    assert len(posts(sink)) == 1 and len(updates(sink)) == 1
    (ts, msg), = sink.messages.items()
    assert updates(sink)[0]["ts"] == ts and msg["edits"] == 1
    assert "[RESOLVED]" in msg["text"] and "was firing since" in msg["text"]
    assert dead == []


def test_firing_and_resolve_in_one_batch_arrive_in_order(sink, tmp_path):
    d, _ = make(sink, tmp_path)
    fire = alert(severity="critical")
    process(d, fire, alert(feature="other", severity="critical"),
            alert("resolved", t=T0 + MIN, index=1, severity="critical"))
    assert [e["event_action"] for e in sink.pd_events if e["dedup_key"] == fire["fingerprint"]] == [
        "trigger", "resolve"]
    assert sink.incidents[fire["fingerprint"]]["status"] == "resolved"
    assert len(posts(sink)) == 1 and len(updates(sink)) == 1  # edited, not a second message
    assert "(1 of 2 resolved)" in updates(sink)[0]["text"]


def test_warning_goes_to_slack_only(sink, tmp_path):
    d, _ = make(sink, tmp_path)
    process(d, alert(severity="warning"))
    process(d, alert("resolved", t=T0 + MIN, index=1))
    assert sink.pd_events == [] and len(posts(sink)) == 1 and len(updates(sink)) == 1


def test_webhook_posts_a_resolution_message(sink, tmp_path):
    d, _ = make(sink, tmp_path, slack="webhook", pagerduty=False)
    process(d, alert())
    process(d, alert("resolved", t=T0 + MIN, index=1))
    assert [("RESOLVED" in p["text"]) for p in sink.webhook_posts] == [False, True]
    assert "FIRING" in sink.webhook_posts[0]["text"]


def test_100_windows_of_one_condition_notify_once_per_repeat_interval(sink, tmp_path):
    d, _ = make(sink, tmp_path, repeat_interval="30m")
    for i in range(100):  # one window per minute of event time, delivered one by one as a stream would
        process(d, alert(t=T0 + i * MIN, index=i))
    texts = [p["text"] for p in posts(sink)]
    assert len(texts) == 4  # windows 0, 30, 60, 90
    assert "[FIRING]" in texts[0] and all("[STILL FIRING]" in t for t in texts[1:])


def test_10_features_in_one_window_are_one_grouped_notification(sink, tmp_path):
    d, _ = make(sink, tmp_path)
    feats = [f"f{i}" for i in range(10)]
    process(d, *[alert(feature=f) for f in feats])
    (msg,) = posts(sink)
    assert all(f"feature `{f}`" in msg["text"] for f in feats) and "10 alerts" in msg["text"]
    # they resolve one by one: the same message is edited, never a new one
    for i, f in enumerate(feats):
        process(d, alert("resolved", feature=f, t=T0 + (i + 1) * MIN, index=i + 1))
    assert len(posts(sink)) == 1 and len(updates(sink)) == 10
    (only,) = sink.messages.values()
    assert "[RESOLVED]" in only["text"]
    assert "(1 of 10 resolved)" in updates(sink)[0]["text"]


def test_critical_group_is_one_slack_message_and_one_pagerduty_event_per_fingerprint(sink, tmp_path):
    d, _ = make(sink, tmp_path)
    process(d, *[alert(feature=f"f{i}", severity="critical") for i in range(10)])
    assert len(posts(sink)) == 1
    events = sink.pd_events
    assert len(events) == 10 and len({e["dedup_key"] for e in events}) == 10
    assert {e["payload"]["group"] for e in events} == {"churn"}


def test_429_then_500_three_times_then_200_delivers_once_after_the_waits(sink, tmp_path):
    d, _ = make(sink, tmp_path)
    retry_after = Reply(429, {"Retry-After": "1"}, {"error": "rate limited"})
    sink.script("/v2/enqueue", retry_after, 500, 500, 500)
    sink.script("/api/chat.postMessage", Reply(429, {"Retry-After": "1"}), 500, 500, 500)
    t = time.monotonic()
    report = process(d, alert(severity="critical"))
    elapsed = time.monotonic() - t
    outcomes = dict(report.outcomes)
    for receiver in ("pagerduty", "slack"):
        assert outcomes[receiver].ok and outcomes[receiver].attempts == 5
        assert outcomes[receiver].waits == [1.0, 0.1, 0.2, 0.4]  # Retry-After, then backoff
    assert elapsed >= 1.65
    assert [r.status for r in sink.calls("/v2/enqueue")] == [429, 500, 500, 500, 202]
    assert len(sink.pd_events) == 1 and sink.incidents_opened == 1 and len(posts(sink)) == 1
    # the retries left a gap of at least Retry-After after the 429
    pd_times = [r.at for r in sink.calls("/v2/enqueue")]
    assert pd_times[1] - pd_times[0] >= 0.95


def test_timeouts_are_retried_and_pagerduty_never_opens_a_second_incident(sink, tmp_path):
    d, _ = make(sink, tmp_path, retry={"initial_backoff": 0.05, "timeout": 0.5}, slack="none")
    sink.script("/v2/enqueue", Reply(200, delay=1.5))  # processed, but the answer comes too late
    report = process(d, alert(severity="critical"))
    assert dict(report.outcomes)["pagerduty"].attempts == 2
    assert len(sink.pd_events) == 2 and sink.incidents_opened == 1


def test_given_up_deliveries_go_to_the_dead_letter_topic(sink, tmp_path):
    d, dead = make(sink, tmp_path, retry={"initial_backoff": 0.01, "max_attempts": 3})
    sink.script("/v2/enqueue", Reply(400, body={"status": "invalid event", "errors": ["x"]}))
    sink.script("/api/chat.postMessage", 503, 503, 503)
    a = alert(severity="critical")
    report = process(d, a)
    assert report.gave_up == {"pagerduty": 1, "slack": 1}
    assert len(sink.calls("/v2/enqueue")) == 1  # a 400 is permanent: no retry
    assert len(sink.calls("/api/chat.postMessage")) == 3
    by = {r["receiver"]: r for r in dead}
    assert set(by) == {"pagerduty", "slack"}
    assert all(r["reason"] == "delivery_gave_up" and r["schema"] == "glassbox.deadletter/v1" for r in dead)
    assert "400" in by["pagerduty"]["error"] and "3 attempt" in by["slack"]["error"]
    assert json.loads(base64.b64decode(by["slack"]["raw"]))["alert_id"] == a["alert_id"]
    # an invalid record is dead-lettered too, without stopping the batch
    report = asyncio.run(d.process([{"schema": "nope"}, b"\x00garbage"]))
    assert report.invalid == 2 and [r["reason"] for r in dead[2:]] == ["invalid_alert"] * 2



def test_a_dead_letter_fits_the_message_limit(sink, tmp_path):
    """An invalid record of 6 kB under ``kafka.max_message_bytes`` = 8 kB: its base64 would not fit, so the
    dead letter keeps the head of its bytes, their size and digest, and fits (a send over the producer's request
    size would stop the notifier's agent)."""
    d, dead = make(sink, tmp_path)
    d.max_dead_letter_bytes = 8192
    garbage = b"\x00" + bytes(range(256)) * 24
    report = asyncio.run(d.process([garbage]))
    [rec] = dead
    kept = base64.b64decode(rec["raw"])
    assert report.invalid == 1 and rec["reason"] == "invalid_alert" and len(orjson.dumps(rec)) <= 8192
    assert garbage.startswith(kept) and len(kept) > 5000
    assert rec["raw_truncated"] and (rec["raw_bytes"], rec["raw_sha256"]) == (len(garbage),
                                                                               hashlib.sha256(garbage).hexdigest())

def test_a_replayed_batch_notifies_nothing_twice(sink, tmp_path):
    batch = [alert(severity="critical", feature=f) for f in ("a", "b")]
    d, _ = make(sink, tmp_path)
    process(d, *batch)
    n_requests = len(sink.requests)
    # crash after delivery, before the lifecycle state was saved: a new notifier replays the batch
    d.store._db.execute("DELETE FROM alert_state")
    d2, _ = make(sink, tmp_path)
    report = process(d2, *batch)
    assert report.decisions == {"firing": 2}  # the same decisions again...
    assert len(sink.requests) == n_requests  # ...but the journal skips every receiver that already had them
    # crash after the state was saved (offsets not committed yet): replay decides 'stale'
    report = process(make(sink, tmp_path)[0], *batch)
    assert report.decisions == {"stale": 2} and len(sink.requests) == n_requests
    assert sink.incidents_opened == 2 and len(posts(sink)) == 1


def test_silence_on_model_and_monitor_mutes_for_its_duration_and_not_after(sink, tmp_path):
    clock = Clock()
    d, _ = make(sink, tmp_path, now=clock, pagerduty=False)
    d.store.put_silence(new_silence({"model": "churn", "monitor": "data_drift"}, 600, now=clock.t))
    process(d, alert(t=T0))
    process(d, alert(monitor="data_quality", feature="age", t=T0))  # other monitor: not silenced
    process(d, alert(model="fraud", t=T0))  # other model: not silenced
    heads = [p["text"].splitlines()[0] for p in posts(sink)]
    assert len(heads) == 2 and "[FIRING] [warning] churn" in heads[0] and "[FIRING] [warning] fraud" in heads[1]
    assert "data_quality" in posts(sink)[0]["text"]
    clock.t += 300
    process(d, alert(t=T0 + MIN, index=1))  # still inside the silence
    assert len(posts(sink)) == 2
    clock.t += 301  # the silence is over: the condition still firing is notified now
    report = process(d, alert(t=T0 + 2 * MIN, index=2))
    assert report.decisions == {"firing": 1} and len(posts(sink)) == 3
    assert "churn · data_drift · feature `age`" in posts(sink)[2]["text"]


def test_expired_silence_stops_muting_at_once(sink, tmp_path):
    clock = Clock()
    d, _ = make(sink, tmp_path, now=clock, pagerduty=False)
    s = new_silence({"model": "churn"}, 3600, now=clock.t)
    d.store.put_silence(s)
    process(d, alert(t=T0))
    assert posts(sink) == []
    d.store.put_silence(replace(s, expired_at=clock.t + 1))
    clock.t += 2
    process(d, alert(t=T0 + MIN, index=1))
    assert len(posts(sink)) == 1


def _runbook_links(text: str) -> list[str]:
    return re.findall(r"(file://[^\s|>]+\.md|https?://[^\s|>]+\.md)", text)


def test_every_message_links_a_runbook_that_exists(sink, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="glassbox.alerts")
    d, _ = make(sink, tmp_path, routes=[{"match": {}, "receivers": ["pagerduty", "slack", "log"]}])
    process(d, *[alert(monitor=m, feature=None, model=f"m-{m}", severity="critical") for m in MONITORS])
    messages = [p["text"] for p in posts(sink)] + [json.dumps(e) for e in sink.pd_events]
    messages += [r.getMessage() for r in caplog.records if r.name == "glassbox.alerts"]
    assert len(messages) == 3 * len(MONITORS)
    for message in messages:
        links = _runbook_links(message)
        assert links, message
        for link in links:
            path = Path(unquote(urlparse(link).path))
            assert path.is_file(), link
            assert path.parent == REPO / "stream" / "alerting" / "runbooks"


@pytest.mark.parametrize("monitor", MONITORS)
def test_runbook_has_meaning_checks_and_actions(monitor):
    text = (REPO / "stream" / "alerting" / "runbooks" / f"{monitor}.md").read_text()
    for section in ("## What it means", "## How to check", "## What to do"):
        assert section in text


def test_runbook_base_url_is_configurable(sink, tmp_path):
    d, _ = make(sink, tmp_path, runbook_base_url="https://git.example/glassbox/blob/main/docs/runbooks/")
    process(d, alert())
    assert "<https://git.example/glassbox/blob/main/docs/runbooks/data_drift.md|Runbook>" in json.dumps(
        posts(sink)[0]["blocks"])


def test_no_secret_in_logs_payloads_or_mlflow_params(sink, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "slack_token"
    token_file.write_text(sink.slack_token + "\n")
    secrets = [sink.slack_token, sink.routing_key, sink.webhook_url, sink.webhook_path.rsplit("/", 1)[1]]
    d, dead = make(sink, tmp_path, slack="none", slack_token_file=str(token_file),
                   slack_api_url=sink.slack_api_url, retry={"initial_backoff": 0.01, "max_attempts": 2})
    sink.script("/v2/enqueue", Reply(401, body={"message": f"bad key {sink.routing_key}"}))
    process(d, alert(severity="critical"))
    process(d, alert("resolved", t=T0 + MIN, index=1, severity="critical"))
    w, dead2 = make(sink, tmp_path / "w", slack="webhook", pagerduty=False,
                    retry={"initial_backoff": 0.01, "max_attempts": 2})
    sink.down_for(1.0)  # connection errors must not leak the webhook URL either
    process(w, alert(model="fraud"))
    time.sleep(1.1)
    process(w, alert(model="fraud", t=T0 + 31 * MIN, index=31))
    assert dead and dead2 and len(sink.webhook_posts) == 1 and len(posts(sink)) == 1
    payloads = [json.dumps(dead + dead2)] + [r.body.decode() for r in sink.requests]
    payloads = [p.replace(f'"routing_key": "{sink.routing_key}"', "") for p in payloads]  # PD's auth field
    mlflow_params = _mlflow_params(tmp_path, d.config, sink)
    for secret in secrets:
        assert secret not in caplog.text, secret
        assert all(secret not in p for p in payloads), secret
        assert all(secret not in v for v in mlflow_params.values()), secret
        assert secret not in repr(d.config) and secret not in d.config.model_dump_json()
    assert any("slack_token" in k for k in mlflow_params)


def _mlflow_params(tmp_path: Path, cfg: AlertingConfig, sink: Sink) -> dict[str, str]:
    """The config as the monitoring run logs it to MLflow (a real sqlite store)."""
    from mlflow import MlflowClient

    from stream.evidence.monitoring_run import MonitoringRun
    from stream.settings import Settings

    settings = Settings(home=tmp_path, alerting=cfg.model_copy(update={
        "slack_token": SecretStr(sink.slack_token), "slack_webhook_url": SecretStr(sink.webhook_url)}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = MonitoringRun(uri, artifact_root=str(tmp_path / "art"), config=settings.model_dump(mode="json"),
                        system_metrics=False)
    run.start()
    run.finish()
    return MlflowClient(uri).get_run(run.run_id).data.params


def test_desktop_degrades_to_a_single_warning_line(caplog):
    caplog.set_level(logging.INFO, logger="glassbox.alerts")
    n = DesktopNotifier()
    note = Notification("desktop", "churn", "firing", (Item(alert(), "firing", T0),))
    for _ in range(3):
        n.send(note)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    if n.available:  # a real desktop: notifications were shown, nothing to degrade
        assert warnings == []
    else:
        assert len(warnings) == 1 and "desktop notifications unavailable" in warnings[0].getMessage()
        assert sum("desktop: [FIRING]" in r.getMessage() for r in caplog.records) == 3

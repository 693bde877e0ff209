"""The notifier as a real process (``glassbox alerts notify``) on the embedded broker, delivering to local
Slack / PagerDuty servers: outages, SIGKILL mid-delivery, restarts, dead letters, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detectors.alert import make_alert
from stream.producer import Producer
from stream.worker.agents import alert_bytes
from tests.kafka_util import read_json
from tests.sinks import Reply, Sink

T0 = 1_700_000_000_000
MIN = 60_000


def alert(status="firing", *, model="churn", feature="age", severity="critical", t=T0, index=0):
    return make_alert(model=model, monitor="data_drift", feature=feature, status=status, severity=severity,
                      detector="psi", statistic="psi", value=0.4, threshold=0.2, threshold_kind="calibrated",
                      window={"index": index, "start": 0, "end": 999, "events": 1000}, event_time=t,
                      summary=f"{model}/{feature} {status}")


class Notifier:
    """``glassbox alerts notify`` in a child process, configured through GLASSBOX_* variables."""

    def __init__(self, bootstrap: str, prefix: str, home: Path, sink: Sink, app_id: str, args: tuple[str, ...] = ()):
        self.app_id = app_id
        self.args = args
        self.home = home
        self.log_path = home / f"notifier-{uuid.uuid4().hex[:6]}.log"
        self.env = {
            **os.environ,
            "GLASSBOX_KAFKA__BOOTSTRAP": bootstrap,
            "GLASSBOX_KAFKA__TOPIC_PREFIX": prefix,
            "GLASSBOX_HOME": str(home),
            "GLASSBOX_WORKER__APP_ID": app_id,
            "GLASSBOX_WORKER__SESSION_TIMEOUT_S": "3.0",
            "GLASSBOX_WORKER__REBALANCE_TIMEOUT_S": "3.0",
            "GLASSBOX_WORKER__HEARTBEAT_INTERVAL_S": "0.5",
            "GLASSBOX_ALERTING__GROUP_WAIT": "0.5",
            "GLASSBOX_ALERTING__SLACK_TOKEN": sink.slack_token,
            "GLASSBOX_ALERTING__SLACK_API_URL": sink.slack_api_url,
            "GLASSBOX_ALERTING__PAGERDUTY_ROUTING_KEY": sink.routing_key,
            "GLASSBOX_ALERTING__PAGERDUTY_URL": sink.url,
            "GLASSBOX_ALERTING__RETRY__INITIAL_BACKOFF": "0.2",
            "GLASSBOX_ALERTING__RETRY__MAX_BACKOFF": "2",
            "GLASSBOX_ALERTING__RETRY__MAX_ATTEMPTS": "200",
            "GLASSBOX_LOG_LEVEL": "INFO",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Notifier:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "alerts", "notify", *self.args],
            env={**self.env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}, cwd=self.home,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_until(cond: Callable[[], bool], timeout: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise TimeoutError(why())


def publish(bootstrap: str, prefix: str, alerts: list[dict]) -> None:
    with Producer(bootstrap, topic_prefix=prefix) as prod:
        for a in alerts:
            prod.send_raw(f"{prefix}alerts", alert_bytes(a), key=a["fingerprint"])
        prod.flush()


def slack_texts(sink: Sink) -> list[str]:
    return [r.json["text"] for r in sink.calls("/api/chat.postMessage") if r.ok]


def triggers(sink: Sink) -> list[str]:
    return [e["dedup_key"] for e in sink.pd_events if e["event_action"] == "trigger"]


def once_each(texts: list[str], alerts: list[dict]) -> bool:
    return all(sum(f"{a['model']} · data_drift · feature `{a['feature']}`" in t for t in texts) == 1
               for a in alerts)


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


@pytest.mark.system
def test_sink_down_20s_then_everything_is_delivered_once(kafka_bootstrap, topic_prefix, tmp_path, sink):
    firing = [alert(model=m, feature=f, severity="critical" if m != "ads" else "warning")
              for m in ("churn", "fraud", "ads") for f in ("age", "income", "tenure", "region")]
    publish(kafka_bootstrap, topic_prefix, firing)
    publish_garbage = [b"not json", b'{"schema": "glassbox.alert/v1"}']
    with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
        for raw in publish_garbage:
            prod.send_raw(f"{topic_prefix}alerts", raw, key="x")
    sink.down_for(20.0)
    t_down = time.time()
    n = Notifier(kafka_bootstrap, topic_prefix, tmp_path, sink, f"n-{uuid.uuid4().hex[:8]}").start()
    try:
        crit = [a for a in firing if a["severity"] == "critical"]
        wait_until(lambda: len(triggers(sink)) >= len(crit) and once_each(slack_texts(sink), firing), 60,
                   lambda: f"pd={len(triggers(sink))} slack={slack_texts(sink)}\n{n.log()[-3000:]}")
        first = min(r.at for r in sink.requests)
        assert first >= t_down + 19.9  # nothing got through while down...
        assert sorted(triggers(sink)) == sorted(a["fingerprint"] for a in crit)  # ...and nothing twice
        assert sink.incidents_opened == len(crit)
        assert len(slack_texts(sink)) <= 3  # grouped by model
        # resolution of everything: PagerDuty resolves by the same keys, Slack edits in place
        publish(kafka_bootstrap, topic_prefix,
                [alert("resolved", model=a["model"], feature=a["feature"], severity=a["severity"],
                       t=T0 + 5 * MIN, index=5) for a in firing])
        wait_until(lambda: all(i["status"] == "resolved" for i in sink.incidents.values())
                   and all("[RESOLVED]" in m["text"] for m in sink.messages.values()), 30,
                   lambda: f"{sink.incidents}\n{n.log()[-3000:]}")
        assert sink.incidents_opened == len(crit) and len(slack_texts(sink)) <= 3
        dead = read_json(kafka_bootstrap, f"{topic_prefix}deadletter")
        assert sorted(d["reason"] for d in dead) == ["invalid_alert", "invalid_alert"]
        assert all(d["topic"] == f"{topic_prefix}alerts" and d["offset"] is not None for d in dead)
    finally:
        n.stop()
    log = n.log()
    for secret in (sink.slack_token, sink.routing_key):
        assert secret not in log


@pytest.mark.system
def test_sigkill_mid_delivery_then_restart_loses_and_duplicates_nothing(
    kafka_bootstrap, topic_prefix, tmp_path, sink
):
    app_id = f"n-{uuid.uuid4().hex[:8]}"
    early = [alert(model="churn", feature=f) for f in ("a", "b")]
    late = [alert(model="fraud", feature=f) for f in ("c", "d", "e", "f")]
    publish(kafka_bootstrap, topic_prefix, early)
    first = Notifier(kafka_bootstrap, topic_prefix, tmp_path, sink, app_id).start()
    second = Notifier(kafka_bootstrap, topic_prefix, tmp_path, sink, app_id)
    try:
        wait_until(lambda: len(triggers(sink)) == 2 and once_each(slack_texts(sink), early), 40,
                   lambda: first.log()[-3000:])
        # the receivers start failing; new alerts arrive; the notifier is killed while it retries them
        sink.script("/v2/enqueue", *[Reply(503)] * 10_000)
        sink.script("/api/chat.postMessage", *[Reply(503)] * 10_000)
        publish(kafka_bootstrap, topic_prefix, late)
        wait_until(lambda: len(sink.calls("/v2/enqueue", 503)) >= 6, 30, lambda: first.log()[-3000:])
        first.kill()
        sink.clear_scripts()
        second.start()
        wait_until(lambda: len(triggers(sink)) >= 6 and once_each(slack_texts(sink), early + late), 40,
                   lambda: f"{triggers(sink)}\n{second.log()[-3000:]}")
        time.sleep(1.5)  # let a redelivery, if any, show up
        assert sorted(triggers(sink)) == sorted(a["fingerprint"] for a in early + late)
        assert sink.incidents_opened == 6
        assert once_each(slack_texts(sink), early + late) and len(slack_texts(sink)) <= 1 + len(late)
    finally:
        first.kill()
        second.stop()


def test_silence_and_tail_cli(kafka_bootstrap, topic_prefix, tmp_path, monkeypatch):
    import asyncio

    from stream.alerting.shared import SharedState
    from stream.alerting.store import AlertingStore
    from stream.cli.main import app
    from stream.settings import Settings

    monkeypatch.setenv("GLASSBOX_HOME", str(tmp_path))
    monkeypatch.setenv("GLASSBOX_KAFKA__BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("GLASSBOX_KAFKA__TOPIC_PREFIX", topic_prefix)
    runner = CliRunner()
    out = runner.invoke(app, ["silence", "add", "model=churn", "monitor=data_drift", "--duration", "2h",
                              "--comment", "planned migration"])
    assert out.exit_code == 0, out.output
    sid = out.output.split()[0]
    other_host = SharedState(Settings(kafka={"topic_prefix": topic_prefix}), kafka_bootstrap,
                             AlertingStore(tmp_path / "other" / "alerting.sqlite"))  # reads it from Kafka
    assert asyncio.run(other_host.sync_silences()) == 1
    (s,) = other_host.store.silences()
    assert s.id == sid and s.matchers == {"model": "churn", "monitor": "data_drift"}
    assert 7190 < s.ends_at - s.starts_at <= 7200
    listed = runner.invoke(app, ["silence", "list"])
    assert sid in listed.output and "model=churn monitor=data_drift" in listed.output
    assert runner.invoke(app, ["silence", "expire", sid]).exit_code == 0
    assert sid not in runner.invoke(app, ["silence", "list"]).output
    assert sid in runner.invoke(app, ["silence", "list", "--all"]).output
    bad = runner.invoke(app, ["silence", "add", "colour=blue"])
    assert bad.exit_code != 0

    publish(kafka_bootstrap, topic_prefix, [
        alert(model="churn", feature="age", severity="critical"),
        alert(model="churn", feature="income", severity="warning"),
        alert(model="fraud", feature="amount", severity="critical"),
    ])
    out = runner.invoke(app, ["alerts", "tail", "--once", "--model", "churn"])
    assert out.exit_code == 0, out.output
    assert "age" in out.output and "income" in out.output and "amount" not in out.output
    out = runner.invoke(app, ["alerts", "tail", "--once", "--severity", "critical"])
    assert "age" in out.output and "amount" in out.output and "income" not in out.output


@pytest.mark.system
def test_notifier_says_what_it_does_in_json(kafka_bootstrap, topic_prefix, tmp_path, sink):
    """``--log-format json``: every line is one JSON object (start-up summary, one line per alert received),
    and no terminal control sequence reaches a log file."""
    a = alert(model="churn", feature="age", severity="critical")
    publish(kafka_bootstrap, topic_prefix, [a])
    n = Notifier(kafka_bootstrap, topic_prefix, tmp_path, sink, f"n-{uuid.uuid4().hex[:8]}",
                 args=("--log-format", "json")).start()
    try:
        wait_until(lambda: len(triggers(sink)) == 1 and "alert firing" in n.log(), 60, lambda: n.log()[-3000:])
    finally:
        n.stop()
    out = n.log()
    assert "\x1b" not in out
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    messages = [r["message"] for r in records]
    assert any(m.startswith(f"glassbox notifier {n.app_id}-notifier: broker {kafka_bootstrap}") for m in messages)
    assert f"reads {topic_prefix}alerts; gives up to {topic_prefix}deadletter" in messages, messages
    (line,) = [r for r in records if r["message"].startswith("alert firing")]
    assert line["message"] == "alert firing: critical churn data_drift feature=age psi=0.4 threshold=0.2 window=0"
    assert (line["level"], line["alert_id"], line["model"], line["feature"]) == ("WARNING", a["alert_id"], "churn",
                                                                                "age")

"""Two notifier replicas (separate homes, as on two hosts) sharing silences and the alert lifecycle through Kafka."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from typer.testing import CliRunner

from tests.sinks import Sink
from tests.test_alerting_agent import MIN, T0, Notifier, alert, publish, slack_texts, triggers, wait_until


@pytest.fixture
def sink():
    with Sink() as s:
        yield s


def test_two_hosts_see_each_others_silences_and_the_owner_hands_its_lifecycle_over(kafka_bootstrap, topic_prefix,
                                                                                  tmp_path):
    """In process: two SharedState objects with their own sqlite caches, as on two hosts."""
    from stream.alerting.lifecycle import AlertState
    from stream.alerting.shared import SharedState, new_silence
    from stream.alerting.store import AlertingStore
    from stream.settings import Settings

    settings = Settings(kafka={"topic_prefix": topic_prefix})
    one, two = (SharedState(settings, kafka_bootstrap, AlertingStore(tmp_path / h / "alerting.sqlite"))
                for h in ("one", "two"))
    one.ensure_topics()

    async def scenario() -> None:
        s = new_silence({"model": "churn"}, 3600)
        await one.publish_silence(s)
        assert await two.sync_silences() == 1 and [x.id for x in two.store.silences()] == [s.id]
        assert await two.expire_silence(s.id) and not await two.expire_silence(s.id)
        await one.sync_silences()
        assert one.store.silences() == [] and one.store.silences(include_inactive=True)[0].expired_at is not None

        firing = AlertState("fp-a", "firing", since=1, last_event_time=5, last_notified=5,
                            notified_severity="critical", receivers=("slack", "pagerduty"))
        await one.save([(2, firing), (3, AlertState("fp-b", "firing", 1, 1))])
        assert await two.load({2}) == 1 and two.store.load_state("fp-a") == firing
        assert two.store.load_state("fp-b") is None  # partition 3 is not two's
        assert await two.load({2}) == 0  # read once while owned
        await one.save([(2, AlertState("fp-a", "resolved", 1, 9, 5, "critical", ("slack", "pagerduty")))])
        two.forget({2})  # lost and regained: the other owner's newer state wins
        assert await two.load({2}) == 1 and two.store.load_state("fp-a").status == "resolved"
        await one.close()
        await two.close()

    asyncio.run(scenario())


def owned(n: Notifier) -> list[int] | None:
    """The alert partitions ``n`` said it owns last (None before its first assignment)."""
    found = re.findall(r"notifier owns partitions \[([0-9, ]*)\]", n.log())
    return None if not found else [int(p) for p in found[-1].split(",") if p.strip()]


def mentions(texts: list[str], a: dict) -> int:
    return sum(f"{a['model']} · data_drift · feature `{a['feature']}`" in t for t in texts)


@pytest.mark.system
def test_a_silence_added_through_one_replica_holds_on_both_and_the_rest_is_delivered_once(
    kafka_bootstrap, topic_prefix, tmp_path, sink, monkeypatch
):
    from stream.cli.main import app

    app_id = f"shared-{topic_prefix.strip('.')}"
    a = Notifier(kafka_bootstrap, topic_prefix, (tmp_path / "host-a"), sink, app_id)
    b = Notifier(kafka_bootstrap, topic_prefix, (tmp_path / "host-b"), sink, app_id)
    for n in (a, b):
        n.home.mkdir()
        n.start()
    try:
        wait_until(lambda: bool(owned(a)) and bool(owned(b)) and sorted(owned(a) + owned(b)) == [0, 1, 2, 3], 90,
                   lambda: f"no split assignment: A {owned(a)}, B {owned(b)}\n{a.log()[-3000:]}\n{b.log()[-3000:]}")
        # the operator silences model churn from a third host, through the CLI
        monkeypatch.setenv("GLASSBOX_HOME", str(tmp_path / "host-c"))
        monkeypatch.setenv("GLASSBOX_KAFKA__BOOTSTRAP", kafka_bootstrap)
        monkeypatch.setenv("GLASSBOX_KAFKA__TOPIC_PREFIX", topic_prefix)
        out = CliRunner().invoke(app, ["silence", "add", "model=churn", "--duration", "1h"])
        assert out.exit_code == 0, out.output

        features = [f"f{i}" for i in range(12)]
        silenced = [alert(model="churn", feature=f) for f in features]
        loud = [alert(model="fraud", feature=f) for f in features]
        publish(kafka_bootstrap, topic_prefix, silenced + loud)
        wait_until(lambda: all(mentions(slack_texts(sink), x) for x in loud) and len(triggers(sink)) >= len(loud),
                   60, lambda: f"undelivered: {slack_texts(sink)}\n{a.log()[-3000:]}\n{b.log()[-3000:]}")
        time.sleep(3)  # room for a late duplicate
        texts = slack_texts(sink)
        assert [mentions(texts, x) for x in loud] == [1] * len(loud)
        assert not any(mentions(texts, x) for x in silenced)
        assert sorted(triggers(sink)) == sorted(x["fingerprint"] for x in loud)
        for n in (a, b):  # each replica read churn alerts (12 fingerprints over 4 partitions) and held them back
            assert "'silenced'" in n.log(), n.log()[-3000:]

        # A dies; B takes its partitions with A's lifecycle: the same conditions a minute later are deduplicated
        a.kill()
        wait_until(lambda: owned(b) == [0, 1, 2, 3], 60, lambda: f"B owns {owned(b)}\n{b.log()[-3000:]}")
        repeat = [alert(model="fraud", feature=f, t=T0 + MIN, index=1) for f in features]
        publish(kafka_bootstrap, topic_prefix, repeat)
        after = len(b.log())
        wait_until(lambda: sum(map(int, re.findall(r"'dedup': (\d+)", b.log()[after:]))) == len(repeat), 60,
                   lambda: b.log()[-3000:])
        time.sleep(2)
        assert [mentions(slack_texts(sink), x) for x in loud] == [1] * len(loud)
        assert len(triggers(sink)) == len(loud)
    finally:
        a.kill()
        b.stop()

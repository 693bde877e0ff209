"""The state topic: created compacted, restored from the latest checkpoint to the fetch high watermark, so a restore
costs the state's size, not the history's length; an uncompacted state topic is reported at start."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from pathlib import Path

import pytest

from stream.kafka.state_topic import CHECKPOINT, TopicState
from stream.kafka.topics import ensure_topics, warn_uncompacted
from stream.settings import Settings

MODELS = [f"m{k}" for k in range(5)]


def value(step: int) -> bytes:
    return b'{"step": %d, "pad": "%s"}' % (step, b"x" * 200)


async def write_steps(settings: Settings, bootstrap: str, steps: int) -> dict[str, bytes]:
    """``steps`` steps of five models on partition 0, published as the worker does; returns the last values."""
    from aiokafka import AIOKafkaProducer

    state = TopicState(settings, bootstrap)
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20)
    await prod.start()
    last: dict[str, bytes] = {}
    try:
        for step in range(steps):
            model = MODELS[step % len(MODELS)]
            state.place(model, 0)
            last[model] = value(step)
            state.set(model, last[model])
            for partition, key, val in state.take_dirty():
                await prod.send(state.topic, val, key=key, partition=partition)
        await prod.flush()
    finally:
        await prod.stop()
    return last


async def timed_restores(settings: Settings, bootstrap: str, runs: int = 5) -> tuple[float, TopicState, int]:
    times, state, n = [], None, 0
    for _ in range(runs):
        state = TopicState(settings, bootstrap)
        t0 = time.perf_counter()
        n = await state.load({0})
        times.append(time.perf_counter() - t0)
    return statistics.median(times), state, n


@pytest.mark.timeout(300)
def test_restore_of_100000_steps_takes_as_long_as_of_100(kafka_bootstrap: str, topic_prefix: str,
                                                          tmp_path: Path) -> None:
    figures = {}
    for steps in (100, 100_000):
        kafka = {"bootstrap": kafka_bootstrap, "topic_prefix": f"{topic_prefix}{steps}."}
        settings = Settings(home=tmp_path, kafka=kafka)
        ensure_topics(settings, kafka_bootstrap, ("state", "joinlog"))
        last = asyncio.run(write_steps(settings, kafka_bootstrap, steps))
        median_s, state, n = asyncio.run(timed_restores(settings, kafka_bootstrap))
        assert {m: state.get(m) for m in MODELS} == last, "the restore must end at the latest state of each model"
        figures[steps] = (median_s, n)
    (small, n_small), (big, n_big) = figures[100], figures[100_000]
    print(f"\nrestore (median of 5): 100 steps {small * 1000:.1f} ms ({n_small} records), "
          f"100,000 steps {big * 1000:.1f} ms ({n_big} records); ratio {big / small:.2f}")
    assert n_big <= 2 * 200 + 1, "a restore reads at most two checkpoint intervals"
    assert big <= 2 * small, figures


def test_checkpoints_hold_the_latest_published_state_of_their_partition(tmp_path: Path) -> None:
    state = TopicState(Settings(home=tmp_path), "127.0.0.1:1", checkpoint_every=2)
    state.place("a", 0)
    state.place("b", 1)
    state.set("a", b'"a1"')
    state.set("b", b'"b1"')
    assert [k for _, k, _ in state.take_dirty()] == [b"a", b"b"]
    state.set("a", b'"a2"')
    state.set("b", b'"b2"')  # a set but not published: not in a checkpoint
    published = state.take_dirty()
    assert [(p, k) for p, k, _ in published] == [(0, b"a"), (1, b"b"), (0, CHECKPOINT), (1, CHECKPOINT)]
    assert published[2][2] == b'{"a":"\\"a2\\""}'


def test_an_uncompacted_state_topic_is_reported_once(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    settings = Settings(home=tmp_path, kafka={"bootstrap": kafka_bootstrap, "topic_prefix": topic_prefix})
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:  # an operator's topic with the default policy
        admin.create_topics([NewTopic(settings.topic("state"), 4, 1, topic_configs={"cleanup.policy": "delete"})])
    finally:
        admin.close()
    with caplog.at_level(logging.WARNING, logger="glassbox.kafka"):
        assert asyncio.run(warn_uncompacted(settings, kafka_bootstrap)) == "delete"
    [warning] = [r.getMessage() for r in caplog.records]
    assert settings.topic("state") in warning and "cleanup.policy=delete" in warning
    caplog.clear()
    ok = Settings(home=tmp_path, kafka={"bootstrap": kafka_bootstrap, "topic_prefix": f"{topic_prefix}ok."})
    ensure_topics(ok, kafka_bootstrap, ("state",))
    with caplog.at_level(logging.WARNING, logger="glassbox.kafka"):
        assert asyncio.run(warn_uncompacted(ok, kafka_bootstrap)) == "compact"
    assert not caplog.records


def test_every_producer_waits_for_the_configured_acknowledgements(kafka_bootstrap: str, tmp_path: Path) -> None:
    from stream.kafka.faust_app import make_app
    from stream.kafka.topics import topic_configs
    from stream.producer import Producer

    for acks, expected in (("all", -1), ("1", 1)):
        settings = Settings(home=tmp_path, kafka={"acks": acks, "replication_factor": 3, "min_insync_replicas": 2})
        app = make_app(settings, bootstrap=kafka_bootstrap, app_id=f"acks-{acks}", web_enabled=False)
        assert app.conf.producer_acks == expected and app.conf.topic_replication_factor == 3
        with Producer(kafka_bootstrap, kafka=settings.kafka) as sdk:
            assert sdk._producer.config["acks"] == expected
        assert topic_configs(settings, "alerts")["min.insync.replicas"] == "2"
    assert Settings().kafka.acks == "all" and not Settings().kafka.idempotent

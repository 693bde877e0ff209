"""The Faust application and its topics.

One factory so the worker, the notifier and the tests configure Faust the same way: raw bytes on every
topic (glassbox parses and validates itself, once per message), memory store with changelogs in Kafka,
and group timeouts short enough for the embedded broker, which holds a JoinGroup for about half the
session timeout: Faust's defaults take 32 s to join and 93 s to recover from a SIGKILL there, while
3-s session and rebalance timeouts with a 0.5-s heartbeat are ready in about 4 s.
"""

from __future__ import annotations

from typing import Any

import faust

from stream.kafka.clients import faust_kwargs
from stream.settings import Settings


def _patch_fetch_wait() -> None:
    """Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer; on the embedded broker a fetch then
    waits that long whenever data trickles in, which alone put ~400 ms (p50) between producing an event and
    the agent seeing it at 100 messages/s. Use the app's ``worker.fetch_max_wait_ms`` instead (aiokafka reads
    the attribute when the consumer starts)."""
    from faust.transport.drivers import aiokafka as driver

    create = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "glassbox", False):
        return

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        wait = getattr(self.app, "glassbox_fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait
        return consumer

    create_worker_consumer.glassbox = True  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer


def _patch_idempotence() -> None:
    """Faust turns the idempotent producer on only inside transactions; with ``kafka.idempotent`` the worker's
    producer (predictions' alerts, dead letters, state) is idempotent too, so a retried batch is written once."""
    from faust.transport.drivers import aiokafka as driver

    extra = driver.Producer._settings_extra
    if getattr(extra, "glassbox", False):
        return

    def settings_extra(self: Any) -> Any:
        kw = dict(extra(self))
        if getattr(self.app, "glassbox_idempotent", False):
            kw["enable_idempotence"] = True
        return kw

    settings_extra.glassbox = True  # type: ignore[attr-defined]
    driver.Producer._settings_extra = settings_extra


TOPICS = ("predictions", "labels", "alerts", "deadletter", "audit", "state", "joinlog", "summaries")


def make_app(
    settings: Settings, *, bootstrap: str, app_id: str | None = None, web_port: int | None = None,
    web_enabled: bool = True, **overrides: Any,
) -> faust.App:
    """A configured :class:`faust.App`; ``overrides`` go straight to Faust (tests shorten timeouts)."""
    w = settings.worker
    app_id = app_id or w.app_id
    (settings.home / "faust").mkdir(parents=True, exist_ok=True)
    conf: dict[str, Any] = {
        **faust_kwargs(settings.kafka, bootstrap),
        "datadir": str(settings.home / "faust" / app_id),
        "store": "memory://",
        "autodiscover": False,
        "value_serializer": "raw",
        "key_serializer": "raw",
        "topic_partitions": settings.kafka.partitions,
        "table_standby_replicas": 0,
        "broker_session_timeout": w.session_timeout_s,
        "broker_rebalance_timeout": w.rebalance_timeout_s,
        "broker_heartbeat_interval": w.heartbeat_interval_s,
        "consumer_auto_offset_reset": "earliest",
        "consumer_max_fetch_size": settings.kafka.max_message_bytes + 1024,
        "producer_max_request_size": settings.kafka.max_message_bytes + 1024,
        "web_enabled": web_enabled,
        "web_host": w.web_host,
        "web_port": w.web_port if web_port is None else web_port,
        "web_bind": w.web_host,
    }
    conf.update(overrides)
    _patch_fetch_wait()
    _patch_idempotence()
    app = faust.App(app_id, **conf)
    app.glassbox_fetch_max_wait_ms = w.fetch_max_wait_ms
    app.glassbox_idempotent = settings.kafka.idempotent
    return app


class Topics:
    """The glassbox topics of an app (names carry the configured prefix)."""

    def __init__(self, app: faust.App, settings: Settings):
        def topic(name: str) -> Any:
            return app.topic(settings.topic(name), value_type=bytes, key_type=bytes,
                             value_serializer="raw", key_serializer="raw",
                             partitions=settings.kafka.partitions)

        self.predictions = topic("predictions")
        self.labels = topic("labels")
        self.alerts = topic("alerts")
        self.deadletter = topic("deadletter")
        self.audit = topic("audit")
        self.state = topic("state")
        self.joinlog = topic("joinlog")


def faust_worker(app: faust.App) -> faust.Worker:
    """A :class:`faust.Worker` that leaves logging to glassbox (configured by the command line): no handler of
    its own, no stdout redirection, no banner, and no progress spinner (it writes terminal control sequences
    even when the output is a file)."""
    worker = faust.Worker(app, quiet=True, override_logging=False, redirect_stdouts=False)
    worker.spinner = None
    return worker

"""Create glassbox's topics with the configured partition count before anything auto-creates them."""

from __future__ import annotations

from stream.kafka.clients import kafka_python_kwargs
from stream.kafka.faust_app import TOPICS
from stream.settings import Settings


def ensure_topics(settings: Settings, bootstrap: str, names: tuple[str, ...] = TOPICS) -> list[str]:
    """Create the missing topics (``kafka.partitions`` each); returns the names created. Idempotent.

    Topics accept records up to ``kafka.max_message_bytes`` (plus room for a dead letter's base64 copy of
    1 MiB): Apache Kafka's own default, 1 MB, would refuse the batches the worker is allowed to read."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**kafka_python_kwargs(settings.kafka, bootstrap),
                             request_timeout_ms=int(settings.kafka.connect_timeout_s * 1000))
    limit = max(settings.kafka.max_message_bytes, 2 * 1024 * 1024) + 64 * 1024
    created = []
    try:
        for name in names:
            try:
                admin.create_topics([NewTopic(settings.topic(name), settings.kafka.partitions, 1,
                                              topic_configs={"max.message.bytes": str(limit)})])
                created.append(settings.topic(name))
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    return created

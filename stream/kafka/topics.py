"""Create glassbox's topics before anything auto-creates them, and check the state topic's cleanup policy.

Every topic gets ``kafka.partitions`` partitions and ``kafka.replication_factor`` replicas (with
``min.insync.replicas`` when set, so that ``acks=all`` means that many copies). ``state``, ``silences`` and
``alert-state`` are compacted (only the latest record per model, silence or alert fingerprint matters);
``joinlog`` (the label join's journal) is deleted after the label TTL plus a day.

>>> topic_configs(Settings(), "state")["cleanup.policy"], topic_configs(Settings(), "alerts").get("cleanup.policy")
('compact', None)
"""

from __future__ import annotations

import logging

from stream.kafka.clients import aiokafka_kwargs, kafka_python_kwargs
from stream.kafka.faust_app import TOPICS
from stream.settings import Settings

log = logging.getLogger("glassbox.kafka")

DAY_MS = 24 * 3600 * 1000


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    """The configs glassbox creates topic ``name`` with.

    Records up to ``kafka.max_message_bytes`` (plus room for a dead letter's base64 copy of 1 MiB) are accepted:
    Apache Kafka's own default, 1 MB, would refuse the batches the worker is allowed to read."""
    limit = max(settings.kafka.max_message_bytes, 2 * 1024 * 1024) + 64 * 1024
    cfg = {"max.message.bytes": str(limit)}
    if settings.kafka.min_insync_replicas:
        cfg["min.insync.replicas"] = str(settings.kafka.min_insync_replicas)
    if name in ("state", "silences", "alert-state"):  # the latest record per key is all that matters
        cfg |= {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": str(3600 * 1000)}
    elif name == "joinlog":
        cfg |= {"cleanup.policy": "delete", "retention.ms": str(int(settings.worker.label_ttl_s * 1000) + DAY_MS),
                "segment.ms": str(3600 * 1000)}
    return cfg


def ensure_topics(settings: Settings, bootstrap: str, names: tuple[str, ...] = TOPICS) -> list[str]:
    """Create the missing topics; returns the names created. Idempotent."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**kafka_python_kwargs(settings.kafka, bootstrap),
                             request_timeout_ms=int(settings.kafka.connect_timeout_s * 1000))
    created = []
    try:
        for name in names:
            try:
                admin.create_topics([NewTopic(settings.topic(name), settings.kafka.partitions,
                                              settings.kafka.replication_factor,
                                              topic_configs=topic_configs(settings, name))])
                created.append(settings.topic(name))
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    return created


async def cleanup_policy(settings: Settings, bootstrap: str, name: str = "state") -> str | None:
    """The ``cleanup.policy`` of an existing topic, or None where the broker does not let us read it."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings.kafka, bootstrap),
                                request_timeout_ms=int(settings.kafka.connect_timeout_s * 1000))
    try:
        await admin.start()
        [resp] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic(name))])
        for res in resp.resources:
            for entry in res[4]:
                if entry[0] == "cleanup.policy":
                    return str(entry[1])
    except Exception:  # noqa: BLE001 - a broker (or ACL) that does not describe configs: nothing to check
        log.debug("cannot read the configs of %s", settings.topic(name), exc_info=True)
    finally:
        await admin.close()
    return None


async def warn_uncompacted(settings: Settings, bootstrap: str) -> str | None:
    """Log one warning when the state topic exists without compaction; returns the policy read (if any)."""
    policy = await cleanup_policy(settings, bootstrap)
    if policy is not None and "compact" not in policy:
        log.warning("state topic %s has cleanup.policy=%s, not compact: its restores read its whole history; set "
                    "cleanup.policy=compact", settings.topic("state"), policy)
    return policy

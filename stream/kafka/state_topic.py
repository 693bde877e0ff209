"""Model state that survives a worker crash or a rebalance: the latest record per model on ``<prefix>state``.

Each step publishes the state of the models it touched to the partition their events came from (a model
lives in one partition), together with the input offsets the state covers. A worker that is assigned a
partition reads that partition of the state topic to its end before processing its first message, so it
continues exactly where the previous owner stopped. We manage this topic ourselves rather than through a
Faust table: table recovery waits on end offsets, which the embedded broker does not report reliably.
"""

from __future__ import annotations

import logging

from stream.kafka.clients import aiokafka_kwargs
from stream.settings import Settings

log = logging.getLogger("glassbox.state")


class TopicState:
    """The :class:`stream.pipeline.pipeline.StateStore` of a live worker."""

    def __init__(self, settings: Settings, bootstrap: str):
        self.settings = settings
        self.bootstrap = bootstrap
        self.topic = settings.topic("state")
        self._values: dict[str, bytes] = {}
        self._partition_of: dict[str, int] = {}
        self._loaded: set[int] = set()
        self._dirty: dict[str, bytes] = {}

    def get(self, model: str) -> bytes | None:
        return self._values.get(model)

    def set(self, model: str, value: bytes) -> None:
        self._values[model] = value
        self._dirty[model] = value

    def take_dirty(self) -> dict[str, bytes]:
        dirty, self._dirty = self._dirty, {}
        return dirty

    def missing(self, partitions: set[int]) -> set[int]:
        return partitions - self._loaded

    async def load(self, partitions: set[int]) -> int:
        """Read the given partitions of the state topic to their end; returns the records read."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        todo = self.missing(partitions)
        if not todo:
            return 0
        consumer = AIOKafkaConsumer(**aiokafka_kwargs(self.settings.kafka, self.bootstrap), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    fetch_max_bytes=self.settings.kafka.max_message_bytes * 4,
                                    max_partition_fetch_bytes=self.settings.kafka.max_message_bytes * 2)
        n = 0
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(todo)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:  # until an empty fetch: the embedded broker has no reliable end offsets
                batch = await consumer.getmany(timeout_ms=300)
                if not batch:
                    break
                for tp, records in batch.items():
                    for rec in records:
                        if rec.key is None or rec.value is None:
                            continue
                        model = rec.key.decode()
                        self._values[model] = rec.value
                        self._partition_of[model] = tp.partition
                        n += 1
        finally:
            await consumer.stop()
        self._loaded |= todo
        log.info("restored %d state records from %s partitions %s", n, self.topic, sorted(todo))
        return n

    def forget(self, partitions: set[int]) -> list[str]:
        """Drop what we know of partitions we no longer own; returns their models."""
        self._loaded -= partitions
        gone = [m for m, p in self._partition_of.items() if p in partitions]
        for m in gone:
            self._values.pop(m, None)
            self._partition_of.pop(m, None)
            self._dirty.pop(m, None)
        return gone

    def place(self, model: str, partition: int) -> None:
        self._partition_of[model] = partition

    def partition_of(self, model: str) -> int | None:
        return self._partition_of.get(model)

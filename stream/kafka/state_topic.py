"""Model state that survives a worker crash or a rebalance: the latest record per model on ``<prefix>state``,
and the label join's journal on ``<prefix>joinlog``.

Every ``worker.state_interval_s`` the worker publishes the state of the models its steps touched since the last
save to the partition their events came from (a model lives in one partition), together with the input offsets
the state covers; the input is acknowledged only after that. Every ``checkpoint_every`` records a
partition also gets a checkpoint: one record holding the latest state of every model of that partition. A
worker that is assigned a partition reads the state topic backwards from the high watermark its fetch reports
to the latest checkpoint and forwards from there, so a restore reads at most ``checkpoint_every`` records
whatever the topic's length: on Apache Kafka compaction bounds the topic too, the embedded broker compacts
nothing. It then reads the partition's joinlog (bounded by its retention, the label TTL plus a day).

We manage these topics ourselves rather than through a Faust table: table recovery waits on end offsets, which
the embedded broker does not report reliably (its fetch high watermark is right).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import orjson

from stream.kafka.clients import aiokafka_kwargs
from stream.settings import Settings

log = logging.getLogger("glassbox.state")

CHECKPOINT = b"\x00checkpoint"  # the key of a partition's checkpoint record (never a model name)


class TopicState:
    """The :class:`stream.pipeline.pipeline.StateStore` of a live worker."""

    def __init__(self, settings: Settings, bootstrap: str, *, checkpoint_every: int = 200, journals: bool = True):
        self.settings = settings
        self.journals = journals  # keep the label join's calls (off: pending predictions die with the worker)
        self.bootstrap = bootstrap
        self.topic = settings.topic("state")
        self.joinlog_topic = settings.topic("joinlog")
        self.checkpoint_every = checkpoint_every
        self._values: dict[str, bytes] = {}
        self._sent: dict[str, bytes] = {}  # the latest value published per model (what a checkpoint holds)
        self._partition_of: dict[str, int] = {}
        self._loaded: set[int] = set()
        self._dirty: dict[str, bytes] = {}
        self._since_checkpoint: dict[int, int] = defaultdict(int)
        self._journal: list[tuple[str, bytes]] = []  # (model, record) to publish, in call order
        self._restored_journal: dict[str, list[bytes]] = defaultdict(list)
        self._loading = asyncio.Lock()
        self.restore_s = 0.0  # time of the latest restore
        self.restored_records = 0

    def get(self, model: str) -> bytes | None:
        return self._values.get(model)

    def set(self, model: str, value: bytes) -> None:
        self._values[model] = value
        self._dirty[model] = value

    def journal(self, model: str, record: bytes) -> None:
        """Append one label-join call of ``model`` to the joinlog (published before the model's next state)."""
        self._journal.append((model, record))

    def journal_of(self, model: str) -> list[bytes]:
        """The joinlog records of ``model`` read at restore, oldest first (handed over once)."""
        return self._restored_journal.pop(model, [])

    def take_journal(self) -> list[tuple[int | None, bytes, bytes]]:
        """(partition, key, value) of the joinlog records to publish, in call order."""
        out = [(self._partition_of.get(m), m.encode(), rec) for m, rec in self._journal]
        self._journal = []
        return out

    def requeue_journal(self, records: list[tuple[int | None, bytes, bytes]]) -> None:
        """Put back records of :meth:`take_journal` whose publishing failed, before the newer ones (a record that
        was written after all is replayed once: the replay skips offsets it already applied)."""
        self._journal[:0] = [(key.decode(), value) for _, key, value in records]

    def take_dirty(self) -> list[tuple[int | None, bytes, bytes]]:
        """(partition, key, value) of the state records to publish, each partition's checkpoint when it is due."""
        dirty, self._dirty = self._dirty, {}
        out: list[tuple[int | None, bytes, bytes]] = []
        due: set[int] = set()
        for model, value in dirty.items():
            p = self._partition_of.get(model)
            out.append((p, model.encode(), value))
            self._sent[model] = value
            if p is not None:
                self._since_checkpoint[p] += 1
                if self._since_checkpoint[p] >= self.checkpoint_every:
                    due.add(p)
        for p in sorted(due):
            out.append((p, CHECKPOINT, self.checkpoint(p)))
            self._since_checkpoint[p] = 0
        return out

    def checkpoint(self, partition: int) -> bytes:
        """The latest published state of every model of ``partition`` (values are JSON: orjson text)."""
        return orjson.dumps({m: v.decode() for m, v in self._sent.items() if self._partition_of.get(m) == partition})

    def missing(self, partitions: set[int]) -> set[int]:
        return partitions - self._loaded

    async def load(self, partitions: set[int]) -> int:
        """Restore the given partitions' state and joinlog; returns the state records applied."""
        if not self.missing(partitions):
            return 0
        async with self._loading:  # both agents may ask for the same partition at once: read it once
            return await self._load(self.missing(partitions))

    async def _load(self, todo: set[int]) -> int:
        """Read the partitions concurrently (each: state, then joinlog); apply them once all are read."""
        if not todo:
            return 0
        t0 = time.perf_counter()
        got = await asyncio.gather(*(self._read(p) for p in sorted(todo)))
        n = j = 0
        for p, (states, journal) in zip(sorted(todo), got, strict=True):
            for model, value in states:
                self._apply(model, value, p)
            self._restored_journal |= journal
            n, j = n + len(states), j + sum(map(len, journal.values()))
        self._loaded |= todo
        self.restore_s, self.restored_records = time.perf_counter() - t0, n
        log.info("restored %d state and %d joinlog records of partitions %s in %.3f s", n, j, sorted(todo),
                 self.restore_s, extra={"fields": {"restore_s": round(self.restore_s, 4), "records": n,
                                                   "joinlog_records": j}})
        return n

    async def _read(self, partition: int) -> tuple[list[tuple[str, bytes]], dict[str, list[bytes]]]:
        states = await self._read_state(partition)
        journal: dict[str, list[bytes]] = defaultdict(list)
        for rec in await read_partition(self.settings, self.bootstrap, self.joinlog_topic, partition):
            if rec.key is not None and rec.value is not None:
                journal[rec.key.decode()].append(rec.value)
        return states, journal

    async def _read_state(self, partition: int) -> list[tuple[str, bytes]]:
        """Read back from the high watermark to the latest checkpoint; (model, state) from there on, in order."""
        hw = await high_watermark(self.settings, self.bootstrap, self.topic, partition)
        window = self.checkpoint_every + 1
        end, records = hw, []
        while end > 0:
            start = max(0, end - window)
            chunk = await read_partition(self.settings, self.bootstrap, self.topic, partition, start, end)
            records = chunk + records
            cut = next((i for i in range(len(records) - 1, -1, -1) if records[i].key == CHECKPOINT), None)
            if cut is not None:
                records = records[cut:]
                break
            end, window = start, window * 2
        out: list[tuple[str, bytes]] = []
        for rec in records:
            if rec.key is None or rec.value is None:
                continue
            if rec.key == CHECKPOINT:
                out.extend((model, value.encode()) for model, value in orjson.loads(rec.value).items())
            else:
                out.append((rec.key.decode(), rec.value))
        return out

    def _apply(self, model: str, value: bytes, partition: int) -> None:
        self._values[model] = self._sent[model] = value
        self._partition_of[model] = partition

    def forget(self, partitions: set[int]) -> list[str]:
        """Drop what we know of partitions we no longer own; returns their models."""
        self._loaded -= partitions
        gone = [m for m, p in self._partition_of.items() if p in partitions]
        for m in gone:
            for d in (self._values, self._sent, self._partition_of, self._dirty, self._restored_journal):
                d.pop(m, None)
        self._journal = [(m, r) for m, r in self._journal if m not in gone]
        return gone

    def place(self, model: str, partition: int) -> None:
        self._partition_of[model] = partition

    def partition_of(self, model: str) -> int | None:
        return self._partition_of.get(model)


def _consumer(settings: Settings, bootstrap: str, fetch_bytes: int) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(**aiokafka_kwargs(settings.kafka, bootstrap), group_id=None, enable_auto_commit=False,
                            auto_offset_reset="earliest", fetch_max_bytes=max(fetch_bytes * 2, 1024),
                            max_partition_fetch_bytes=fetch_bytes, fetch_max_wait_ms=50)


async def high_watermark(settings: Settings, bootstrap: str, topic: str, partition: int) -> int:
    """The partition's high watermark as a fetch response reports it (one small fetch from its start)."""
    from aiokafka import TopicPartition

    consumer = _consumer(settings, bootstrap, 1024)
    tp = TopicPartition(topic, partition)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + settings.kafka.connect_timeout_s
        while consumer.highwater(tp) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no fetch response for {topic}:{partition} within "
                                   f"{settings.kafka.connect_timeout_s:g} s")
            await consumer.getmany(tp, timeout_ms=200, max_records=1)
        return int(consumer.highwater(tp))
    finally:
        await consumer.stop()


async def read_partition(settings: Settings, bootstrap: str, topic: str, partition: int, start: int = 0,
                         end: int | None = None) -> list[Any]:
    """The records of ``topic:partition`` from ``start`` up to ``end`` (default: the high watermark of the first
    fetch), in offset order. Stops at the watermark, not at an empty fetch: a slow broker cannot cut it short."""
    from aiokafka import TopicPartition

    consumer = _consumer(settings, bootstrap, settings.kafka.max_message_bytes * 2)
    tp = TopicPartition(topic, partition)
    out: list[Any] = []
    await consumer.start()
    try:
        consumer.assign([tp])
        if start:
            consumer.seek(tp, start)
        else:
            await consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + settings.kafka.connect_timeout_s
        while True:
            if end is None and consumer.highwater(tp) is not None:
                end = int(consumer.highwater(tp))
            if end is not None and await consumer.position(tp) >= end:
                break
            batch = await consumer.getmany(tp, timeout_ms=200)
            if batch:
                deadline = time.monotonic() + settings.kafka.connect_timeout_s
                out.extend(r for r in batch.get(tp, []) if end is None or r.offset < end)
            elif time.monotonic() > deadline:
                raise TimeoutError(f"{topic}:{partition}: no records for {settings.kafka.connect_timeout_s:g} s "
                                   f"at {await consumer.position(tp)} (high watermark {end})")
        return out
    finally:
        await consumer.stop()

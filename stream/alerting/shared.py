"""Alert state shared by every notifier replica, on Kafka (the one service every deployment shares).

- **Silences** live on the compacted topic ``<prefix>silences`` (partition 0, keyed by silence id; an expiry
  rewrites the record with ``expired_at``). ``glassbox silence add`` publishes there with ``acks=all``; every
  notifier reads the topic to the high watermark its fetch reports before it decides a batch, so a silence
  acknowledged before an alert was read applies to that alert, whichever replica reads it.
- **Lifecycle** (what was notified, when, to whom) belongs to the notifier that owns the alert's partition: alerts
  are keyed by fingerprint and the notifiers share one consumer group, so one replica decides each fingerprint.
  After each batch (before its offsets are committed) the changed states go to the compacted
  ``<prefix>alert-state`` topic, keyed by fingerprint, in the alert's partition. A replica that is assigned a
  partition reads that partition of ``alert-state`` first, so a rebalance or a restart on another host hands the
  lifecycle over.

The local sqlite file (:class:`~stream.alerting.store.AlertingStore`) is the cache the dispatcher reads: this
module writes what it reads from Kafka into it. The delivery journal and Slack message references stay local.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from stream.alerting.config import Matcher
from stream.alerting.lifecycle import AlertState
from stream.alerting.store import AlertingStore, Silence
from stream.kafka.clients import aiokafka_kwargs, producer_kwargs
from stream.kafka.state_topic import read_partition
from stream.settings import Settings

SHARED_TOPICS = ("silences", "alert-state")

log = logging.getLogger("glassbox.alerting")


def new_silence(matchers: dict[str, str], duration: float, *, created_by: str | None = None,
                comment: str | None = None, now: float | None = None) -> Silence:
    """A silence of ``duration`` seconds from ``now``; raises ValueError for no or unknown matchers."""
    if not matchers:
        raise ValueError("a silence needs at least one matcher (model=, monitor=, feature=, severity=)")
    Matcher(**matchers)  # validates the keys
    start = time.time() if now is None else now
    return Silence(uuid.uuid4().hex[:12], dict(matchers), start, start + duration, created_by, comment)


def _silence_bytes(s: Silence) -> bytes:
    return json.dumps(asdict(s), sort_keys=True).encode()


class SharedState:
    """Kafka side of the alert state: publish silences, mirror them and the owned lifecycle into ``store``."""

    def __init__(self, settings: Settings, bootstrap: str, store: AlertingStore):
        self.settings = settings
        self.bootstrap = bootstrap
        self.store = store
        self.silences_topic = settings.topic("silences")
        self.state_topic = settings.topic("alert-state")
        self._silences_at = 0  # next offset of the silences topic to read
        self._loaded: set[int] = set()  # alert partitions whose lifecycle is in the cache
        self._producer: Any = None

    def ensure_topics(self) -> None:
        """Create the two compacted topics if missing (blocking; call once at start)."""
        from stream.kafka.topics import ensure_topics

        ensure_topics(self.settings, self.bootstrap, SHARED_TOPICS)

    async def _send(self, records: list[tuple[str, int, bytes, bytes]]) -> None:
        """Publish (topic, partition, key, value) records and wait for every acknowledgement."""
        from aiokafka import AIOKafkaProducer

        if self._producer is None:
            self._producer = AIOKafkaProducer(**aiokafka_kwargs(self.settings.kafka, self.bootstrap),
                                              **producer_kwargs(self.settings.kafka))
            await self._producer.start()
        futures = [await self._producer.send(t, value=v, key=k, partition=p) for t, p, k, v in records]
        for f in futures:
            await f

    async def until_done(self, what: str, op: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``op(*args)`` until it succeeds, waiting the retry policy's backoff in between: a notifier that cannot
        read or write the shared state must not decide (nor commit) anything, so it waits for the broker."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await op(*args)
            except Exception as exc:  # noqa: BLE001 - broker unreachable, timeouts: retried
                wait = self.settings.alerting.retry.backoff(attempt)
                log.warning("%s failed (attempt %d: %s: %s); retrying in %.1f s", what, attempt,
                            type(exc).__name__, exc, wait)
                await asyncio.sleep(wait)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    # silences
    async def publish_silence(self, silence: Silence) -> None:
        await self._send([(self.silences_topic, 0, silence.id.encode(), _silence_bytes(silence))])

    async def expire_silence(self, silence_id: str, *, now: float | None = None) -> bool:
        """Expire an active silence on the topic; False if there is none with that id."""
        await self.sync_silences()
        match = [s for s in self.store.silences(include_inactive=True) if s.id == silence_id and s.expired_at is None]
        if not match:
            return False
        expired = Silence(**{**asdict(match[0]), "expired_at": time.time() if now is None else now})
        await self.publish_silence(expired)
        self.store.put_silence(expired)
        return True

    async def sync_silences(self) -> int:
        """Read the silences topic to its high watermark into the cache; returns the records read."""
        records = await read_partition(self.settings, self.bootstrap, self.silences_topic, 0, self._silences_at)
        for rec in records:
            if rec.value is not None:
                data = json.loads(rec.value)
                self.store.put_silence(Silence(**data))
            self._silences_at = rec.offset + 1
        return len(records)

    # lifecycle
    async def load(self, partitions: set[int]) -> int:
        """Bring the lifecycle of newly owned alert ``partitions`` into the cache; returns the states read."""
        n = 0
        for p in sorted(partitions - self._loaded):
            states = {}
            for rec in await read_partition(self.settings, self.bootstrap, self.state_topic, p):
                if rec.key is not None and rec.value is not None:
                    states[rec.key.decode()] = _state(rec.value)
            self.store.save_states(list(states.values()))
            self._loaded.add(p)
            n += len(states)
        return n

    def forget(self, partitions: set[int]) -> None:
        """Partitions given up in a rebalance: read them again if they come back (another replica wrote)."""
        self._loaded -= partitions

    async def save(self, states: list[tuple[int, AlertState]]) -> None:
        """Publish (alert partition, state) pairs to ``alert-state`` and wait for the acknowledgements."""
        await self._send([(self.state_topic, p, s.fingerprint.encode(), json.dumps(asdict(s)).encode())
                          for p, s in states])


def _state(raw: bytes) -> AlertState:
    data = json.loads(raw)
    data["receivers"] = tuple(data["receivers"])
    return AlertState(**data)

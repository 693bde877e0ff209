"""Read Kafka partitions directly for a replay: offset or time ranges, merged in event-time order, in steps.

Partitions are read with aiokafka (no consumer group, nothing committed) over a range given by offsets
(``[from, to)`` per partition or for all) or by event time (``[since, until)`` on the record timestamp,
which the producer SDK sets to the event time). The start and end offsets of a time range come from the
broker's ``offsets_for_times`` when its answers check out against the records themselves; otherwise
(the embedded broker ignores record timestamps there) the partitions are scanned and filtered. The end of
the data is the partition's high watermark seen on the first fetch (``end_offsets`` is wrong on the
embedded broker), so a replay reads a snapshot and never tails.

Ordering: records of one partition keep their offset order (a model lives in one partition, so this is the
order the live worker sees); partitions and the labels topic are merged on each partition's running maximum
of record timestamps, predictions before labels on ties, so a label follows the predictions it can join.
Consecutive records of one topic become one step of at most ``step_messages`` messages (and about
``STEP_BYTES``), as the worker's agents would take them (where a step ends changes no result).

This module stays light (no pandas, no MLflow): :class:`stream.backtest.reader_process.ReaderProcess` runs it in a
child process; :mod:`stream.backtest.topic_range` holds the range and the plan per partition.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from stream.backtest.topic_range import (
    LABELS,
    PREDICTIONS,
    KafkaReplayError,
    PartitionPlan,
    ReadStats,
    ReplayRange,
    offset_for,
)
from stream.pipeline.parse_step import RawMessage

if TYPE_CHECKING:
    from stream.settings import KafkaConfig

MAX_BUFFERED = 50_000  # records buffered per partition before it is paused
#: A step also ends at this many bytes: big batch messages then still make many steps, so reading and
#: detection overlap (steps are cut anywhere: the pipeline's results do not depend on where).
STEP_BYTES = 4 * 1024 * 1024
_DONE = object()

class _Buffer:
    """One partition's records in offset order, keyed by the running maximum of their timestamps."""

    __slots__ = ("plan", "keys", "msgs", "head", "key", "done", "paused", "hw_seen")

    def __init__(self, plan: PartitionPlan):
        self.plan = plan
        self.keys: list[int] = []
        self.msgs: list[RawMessage] = []
        self.head = 0
        self.key = -(2**62)
        self.done = False
        self.paused = False
        self.hw_seen = False

    def size(self) -> int:
        return len(self.keys) - self.head

    def last_key(self) -> int | None:
        return self.keys[-1] if self.size() else None

    def take(self, horizon: int | None) -> tuple[list[int], list[RawMessage]]:
        """Pop the prefix with key <= horizon (everything if None)."""
        j = len(self.keys) if horizon is None else bisect_right(self.keys, horizon, self.head)
        keys, msgs = self.keys[self.head:j], self.msgs[self.head:j]
        self.head = j
        if self.head > 4096 and self.head * 2 > len(self.keys):
            del self.keys[: self.head]
            del self.msgs[: self.head]
            self.head = 0
        return keys, msgs


class TopicReader:
    """Reads the planned partitions of the predictions (and labels) topic and yields merged steps.

    Runs an asyncio loop in a background thread (fetching overlaps with detection in the caller's thread);
    :meth:`steps` yields ``(rank, messages)`` with ``rank`` PREDICTIONS or LABELS.
    """

    def __init__(self, bootstrap: str, kafka: KafkaConfig, predictions: str, labels: str | None,
                 rng: ReplayRange, *, step_messages: int = 1000, label_horizon_ms: int | None = None,
                 fetch_timeout_ms: int = 500, empty_fetches: int = 2):
        self.bootstrap = bootstrap
        self.kafka = kafka
        self.predictions = predictions
        self.labels = labels
        self.rng = rng
        self.step_messages = max(1, step_messages)
        self.label_horizon_ms = label_horizon_ms
        self.fetch_timeout_ms = fetch_timeout_ms
        self.empty_fetches = empty_fetches
        self.stats = ReadStats()
        self._q: queue.Queue[Any] = queue.Queue(maxsize=8)
        self._stop = threading.Event()

    # public -----------------------------------------------------------------------------------------------
    def steps(self) -> Iterator[tuple[int, list[RawMessage]]]:
        """The merged steps, in order; raises what the reader thread raised (e.g. no such topic)."""
        t = threading.Thread(target=self._thread, name="glassbox-replay-reader", daemon=True)
        t.start()
        try:
            while True:
                item = self._q.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            while t.is_alive():  # unblock a reader waiting on a full queue
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    t.join(0.05)

    # reader thread ----------------------------------------------------------------------------------------
    def _thread(self) -> None:
        try:
            asyncio.run(self._read())
        except BaseException as err:  # handed to the consuming thread
            self._put(err)
            return
        self._put(_DONE)

    def _put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    async def _read(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        from stream.kafka.clients import aiokafka_kwargs

        consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(self.kafka, self.bootstrap), group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=max(8 * 1024 * 1024, self.kafka.max_message_bytes + 1024),
            request_timeout_ms=int(max(self.kafka.connect_timeout_s, 5) * 1000 + 25_000),
        )
        try:
            await asyncio.wait_for(consumer.start(), self.kafka.connect_timeout_s + 5)
        except (TimeoutError, KafkaError, OSError) as err:
            raise KafkaReplayError(f"cannot reach Kafka at {self.bootstrap} ({type(err).__name__})") from None
        try:
            await self._plan(consumer)
            await self._fetch_loop(consumer)
        finally:
            await consumer.stop()

    async def _partitions(self, consumer: Any, topic: str) -> list[int]:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            md = await consumer._client.fetch_all_metadata()  # no auto-creation: lists existing topics only
            parts = md.partitions_for_topic(topic)
            if parts is None:
                known = sorted(t for t in md.topics() if not t.startswith("__"))
                hint = f"; topics: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''}" if known else ""
                raise KafkaReplayError(f"topic {topic!r} does not exist on {self.bootstrap}{hint}")
        return sorted(parts)

    async def _plan(self, consumer: Any) -> None:
        from aiokafka import TopicPartition

        r = self.rng
        topics = [(self.predictions, PREDICTIONS)] + ([(self.labels, LABELS)] if self.labels else [])
        tps: list[tuple[Any, int]] = []
        for topic, rank in topics:
            tps += [(TopicPartition(topic, p), rank) for p in await self._partitions(consumer, topic)]
        if isinstance(r.from_offset, dict) or isinstance(r.to_offset, dict):
            known = {tp.partition for tp, rank in tps if rank == PREDICTIONS}
            for spec in (r.from_offset, r.to_offset):
                for p in (spec or {}) if isinstance(spec, dict) else {}:
                    if p not in known:
                        raise KafkaReplayError(f"partition {p} does not exist in {self.predictions!r} "
                                               f"(partitions: {', '.join(map(str, sorted(known)))})")
        consumer.assign([tp for tp, _ in tps])
        begin = await consumer.beginning_offsets([tp for tp, _ in tps])
        starts = {tp: begin[tp] for tp, _ in tps}
        ends: dict[Any, int | None] = {tp: None for tp, _ in tps}
        for tp, rank in tps:
            if rank == PREDICTIONS:
                f, t = offset_for(r.from_offset, tp.partition), offset_for(r.to_offset, tp.partition)
                if f is not None:
                    starts[tp] = max(starts[tp], f)
                if t is not None:
                    ends[tp] = t
        if r.since_ms is not None or r.until_ms is not None:
            self.stats.method = "scan"
            lo = await self._time_offsets(consumer, [tp for tp, _ in tps], r.since_ms) if r.since_ms else {}
            hi = await self._time_offsets(consumer, [tp for tp, _ in tps], r.until_ms) if r.until_ms else {}
            if lo is not None and hi is not None:
                self.stats.method = "offsets_for_times"
                for tp, rank in tps:
                    if tp in lo:
                        starts[tp] = max(starts[tp], lo[tp])
                    if tp in hi and rank == PREDICTIONS:
                        ends[tp] = hi[tp] if ends[tp] is None else min(ends[tp], hi[tp])  # type: ignore[type-var]
        elif r.from_offset is None and r.to_offset is None:
            self.stats.method = "whole"
        self.stats.plans = [PartitionPlan(tp.topic, tp.partition, rank, starts[tp], ends[tp]) for tp, rank in tps]
        for tp, _ in tps:
            consumer.seek(tp, starts[tp])

    async def _time_offsets(self, consumer: Any, tps: list[Any], ts: int) -> dict[Any, int] | None:
        """First offset with a timestamp >= ts per partition (absent: none), or None when the broker's answer
        does not match the records (the embedded broker ignores record timestamps): then we scan."""
        from aiokafka.errors import KafkaError

        try:
            found = await asyncio.wait_for(consumer.offsets_for_times({tp: ts for tp in tps}), 10)
        except (TimeoutError, KafkaError, ValueError):
            return None
        out: dict[Any, int] = {}
        checked = 0
        for tp in tps:
            hit = found.get(tp)
            if hit is None:
                continue
            rec = await self._record_at(consumer, tp, hit.offset)
            if rec is None or rec.timestamp != hit.timestamp or rec.timestamp < ts:
                return None
            if hit.offset > 0:
                prev = await self._record_at(consumer, tp, hit.offset - 1)
                if prev is not None and prev.offset == hit.offset - 1 and prev.timestamp >= ts:
                    return None
            out[tp] = hit.offset
            checked += 1
        return out if checked else None

    async def _record_at(self, consumer: Any, tp: Any, offset: int) -> Any | None:
        consumer.seek(tp, offset)
        for _ in range(3):
            res = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
            recs = res.get(tp)
            if recs:
                return recs[0]
        return None

    async def _fetch_loop(self, consumer: Any) -> None:
        from aiokafka import TopicPartition

        bufs = [_Buffer(p) for p in self.stats.plans]
        tp_of = {id(b): TopicPartition(b.plan.topic, b.plan.partition) for b in bufs}
        by_tp = {tp_of[id(b)]: b for b in bufs}
        since, until = self.rng.since_ms, self.rng.until_ms
        empty_rounds = 0
        max_pred_key: int | None = None
        for b in bufs:  # empty planned ranges are done at once
            if b.plan.end is not None and b.plan.start >= b.plan.end:
                b.done = True
        while not self._stop.is_set():
            active = [b for b in bufs if not b.done]
            if not active:
                break
            self._pause_resume(consumer, bufs, tp_of)
            fetchable = [tp_of[id(b)] for b in active if not b.paused]
            res = await consumer.getmany(*fetchable, timeout_ms=self.fetch_timeout_ms,
                                         max_records=20_000) if fetchable else {}
            got = 0
            for tp, recs in res.items():
                b = by_tp[tp]
                if b.done:
                    continue
                got += len(recs)
                self._ingest(b, recs, since, until)
            for b in active:
                tp = tp_of[id(b)]
                hw = consumer.highwater(tp)
                if hw is not None and not b.hw_seen:  # the snapshot: what was there when we first looked
                    b.hw_seen = True
                    b.plan.end = hw if b.plan.end is None else min(b.plan.end, hw)
                pos = await consumer.position(tp)
                if b.plan.end is not None and pos >= b.plan.end:
                    b.done = True
                elif b.plan.end is None and empty_rounds >= self.empty_fetches and tp not in res:
                    b.plan.end = pos
                    b.done = True
            if self.labels and self.label_horizon_ms is not None:
                preds = [b for b in bufs if b.plan.rank == PREDICTIONS]
                if all(b.done for b in preds):
                    keys = [b.key for b in preds if b.plan.read]
                    max_pred_key = max(keys) if keys else None
                    for b in bufs:
                        if b.plan.rank == LABELS and not b.done and (
                                max_pred_key is None or b.key > max_pred_key + self.label_horizon_ms):
                            b.done = True  # labels this late cannot join anything we replayed
            empty_rounds = 0 if got else empty_rounds + 1
            self._emit(bufs, final=False)
        self._emit(bufs, final=True)

    def _ingest(self, b: _Buffer, recs: Sequence[Any], since: int | None, until: int | None) -> None:
        end = b.plan.end
        label = b.plan.rank == LABELS  # labels are not cut at --until: they arrive after their predictions
        key = b.key
        keys, msgs = b.keys, b.msgs
        plan = b.plan
        n0 = len(keys)
        nbytes = 0
        for r in recs:
            off = r.offset
            if end is not None and off >= end:
                b.done = True
                break
            ts = r.timestamp
            if (since is not None and ts < since) or (until is not None and ts >= until and not label):
                self.stats.skipped += 1
                continue
            if ts > key:
                key = ts
            keys.append(key)
            v = r.value
            if v is not None:
                nbytes += len(v)
            msgs.append(RawMessage(plan.topic, plan.partition, off, v, ts, r.key))
        b.key = key
        k = len(keys) - n0
        if k:
            if plan.first is None:
                plan.first = msgs[n0].offset
            plan.last = msgs[-1].offset
            plan.read += k
        self.stats.fetched_bytes += nbytes

    def _pause_resume(self, consumer: Any, bufs: list[_Buffer], tp_of: dict[int, Any]) -> None:
        for b in bufs:
            full = b.size() >= MAX_BUFFERED or b.done  # done partitions are not fetched again
            if full and not b.paused:
                consumer.pause(tp_of[id(b)])
                b.paused = True
            elif b.paused and not full:
                consumer.resume(tp_of[id(b)])
                b.paused = False

    def _emit(self, bufs: list[_Buffer], *, final: bool) -> None:
        """Hand on every buffered record that no partition can still precede."""
        horizon: int | None = None
        if not final:
            for b in bufs:
                if b.done:
                    continue
                lk = b.last_key()
                if lk is None:
                    return  # a partition with nothing buffered yet could hold earlier records
                horizon = lk if horizon is None else min(horizon, lk)
        runs: list[tuple[list[int], int, list[RawMessage]]] = []
        for b in bufs:
            keys, msgs = b.take(horizon)
            if msgs:
                runs.append((keys, b.plan.rank, msgs))
        if not runs:
            return
        if len(runs) == 1:
            merged = runs[0][2]
            ranks = [runs[0][1]] * len(merged)
        else:
            # by (key, rank), ties in run then offset order: a stable sort of the runs laid end to end
            flat = [m for _, _, msgs in runs for m in msgs]
            rank_of = np.concatenate([np.full(len(keys), rank, np.int8) for keys, rank, _ in runs])
            order = np.lexsort((rank_of, np.concatenate([np.asarray(keys, np.int64) for keys, _, _ in runs])))
            merged = [flat[i] for i in order.tolist()]
            ranks = rank_of[order].tolist()
        self.stats.messages += len(merged)
        step, budget = self.step_messages, STEP_BYTES
        a = 0
        n = len(merged)
        while a < n:
            rank = ranks[a]
            b = a + 1
            size = len(merged[a].value or b"")
            while b < n and b - a < step and ranks[b] == rank and size < budget:
                size += len(merged[b].value or b"")
                b += 1
            self._put((rank, merged[a:b]))
            a = b




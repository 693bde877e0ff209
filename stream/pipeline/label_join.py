"""Join late labels to their predictions by ``prediction_id``.

Predictions wait for their label until the event-time watermark (the newest prediction time seen) passes
their time plus the TTL; labels that arrive before their prediction wait the same way. Everything that
expires is counted (``expired_predictions``, ``unmatched_labels``), never dropped silently. State is bounded
by the TTL and ``max_pending``, not by the stream's length.

>>> j = LabelJoin(ttl_ms=1000)
>>> j.add_predictions(["a", "b"], [0, 10], [1, 0], None, [-1, -1], [0, 1])
[]
>>> [(o.prediction_id, o.prediction, o.label) for o in j.add_label("a", 1, 50)]
[('a', 1, 1)]
>>> j.coverage()
0.5
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import orjson

from detectors.batch import OutcomeBatch, as_column


@dataclass(slots=True)
class LabelledPrediction:
    """A prediction joined with its label: one outcome of the model (label-arrival order in a batch)."""

    prediction_id: str
    timestamp: int
    label_timestamp: int
    prediction: Any
    label: Any
    scores: dict[str, float] | None
    partition: int
    offset: int


class _ScoreRows:
    """The scores of a block's predictions as columns; an event's ``{class: score}`` is built when it is joined
    (most predictions of a block never are while it is pending, and a dict per event costs as much as detection)."""

    __slots__ = ("classes", "cols")

    def __init__(self, classes: tuple[str, ...], cols: list[np.ndarray]):
        self.classes, self.cols = classes, cols

    def __getitem__(self, i: int) -> dict[str, float]:
        return {c: float(col[i]) for c, col in zip(self.classes, self.cols, strict=True)}

    def __len__(self) -> int:
        return len(self.cols[0])


class _Block:
    """The predictions of one call, as columns; ``indexed`` once their ids are in the lookup dict."""

    __slots__ = ("ids", "ts", "preds", "rows", "parts", "offs", "indexed")

    def __init__(self, ids: list[str], ts: list[int], preds: list[Any], rows: list[Any] | _ScoreRows,
                 parts: list[int], offs: list[int]):
        self.ids, self.ts, self.preds, self.rows, self.parts, self.offs = ids, ts, preds, rows, parts, offs
        self.indexed = False

    def take(self, keep: list[int]) -> _Block:
        return _Block(*([col[i] for i in keep] for col in (self.ids, self.ts, self.preds, self.rows, self.parts,
                                                             self.offs)))


class LabelJoin:
    """Pending predictions and early labels, matched in label-arrival order.

    Pending predictions are kept as blocks (one per call, in arrival order ~ event order, expired oldest
    first); their ids are indexed for lookup only once labels come, so a model whose labels never arrive (or
    a replay without a labels topic) pays no per-event dictionary.
    """

    def __init__(self, ttl_ms: int, max_pending: int = 2_000_000):
        self.ttl_ms = ttl_ms
        self.max_pending = max_pending
        self._pending: dict[str, tuple[_Block, int]] = {}  # id -> its block and position (indexed blocks)
        self._blocks: deque[_Block] = deque()
        self._cursor = 0  # entries of the oldest block already gone
        self._unindexed = 0  # pending entries in blocks not indexed yet
        self._in_blocks = 0  # entries the indexed blocks hold, matched ones included
        self._early: OrderedDict[str, tuple[int, Any, int, int]] = OrderedDict()  # id -> (ts, label, part, off)
        self.watermark = 0
        self.predictions = 0
        self.matched = 0
        self.late_labels = 0  # labels that arrived before their prediction
        self.expired_predictions = 0
        self.unmatched_labels = 0
        self.duplicate_labels = 0

    def add_predictions(
        self,
        ids: Sequence[str],
        timestamps: Sequence[int],
        predictions: Sequence[Any] | np.ndarray,
        scores: dict[str, Sequence[float]] | None,
        partitions: Sequence[int],
        offsets: Sequence[int],
    ) -> list[LabelledPrediction]:
        """Remember predictions; returns outcomes for labels that were already waiting for them."""
        out: list[LabelledPrediction] = []
        ts_list = [int(t) for t in timestamps] if not hasattr(timestamps, "tolist") else timestamps.tolist()
        rows: list[Any] | _ScoreRows
        if scores:
            rows = _ScoreRows(tuple(scores), [np.asarray(v, np.float64) for v in scores.values()])
        else:
            rows = [None] * len(ids)
        if isinstance(predictions, np.ndarray):
            predictions = predictions.tolist()
        parts = partitions.tolist() if hasattr(partitions, "tolist") else list(partitions)
        offs = offsets.tolist() if hasattr(offsets, "tolist") else list(offsets)
        id_list = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
        early = self._early
        if early:  # labels that came first: match them now, in prediction order
            for i, pid in enumerate(id_list):
                hit = early.pop(pid, None)
                if hit is not None:
                    lts, label, part, off = hit
                    out.append(LabelledPrediction(pid, ts_list[i], lts, predictions[i], label, rows[i], part, off))
        block = _Block(id_list, ts_list, list(predictions), rows, parts, offs)
        if out:
            matched = {o.prediction_id for o in out}
            block = block.take([i for i, pid in enumerate(id_list) if pid not in matched])
        if block.ids:
            self._blocks.append(block)
            self._unindexed += len(block.ids)
        self.matched += len(out)
        self.late_labels += len(out)
        if ts_list:
            self.watermark = max(self.watermark, max(ts_list))
        self.predictions += len(id_list)
        self._expire()
        return out

    def add_label(self, prediction_id: str, label: Any, timestamp: int, partition: int = -1,
                  offset: int = -1) -> list[LabelledPrediction]:
        """Join one label; an outcome if its prediction is pending, else the label waits."""
        if self._unindexed:
            self._index()
        hit = self._pending.pop(prediction_id, None)
        if hit is None:
            if prediction_id in self._early:
                self.duplicate_labels += 1
            self._early[prediction_id] = (timestamp, label, partition, offset)
            self._expire()
            return []
        b, i = hit
        self.matched += 1
        return [LabelledPrediction(prediction_id, b.ts[i], timestamp, b.preds[i], label, b.rows[i], partition, offset)]

    def _index(self) -> None:
        """Put the ids of the blocks not indexed yet (the newest ones) in the lookup dict, oldest first."""
        fresh = []
        for b in reversed(self._blocks):
            if b.indexed:
                break
            fresh.append(b)
        for b in reversed(fresh):
            start = self._cursor if b is self._blocks[0] else 0
            self._pending.update(zip(b.ids[start:], zip(repeat(b), range(start, len(b.ids))), strict=True))
            b.indexed = True
            self._in_blocks += len(b.ids)
        self._unindexed = 0

    def _expire(self) -> None:
        horizon = self.watermark - self.ttl_ms
        pending, blocks, early = self._pending, self._blocks, self._early
        while blocks:
            b = blocks[0]
            ids, ts = b.ids, b.ts
            i = self._cursor
            while i < len(ids):
                if b.indexed:
                    v = pending.get(ids[i])
                    alive = v is not None and v[0] is b and v[1] == i  # not matched, not sent again since
                else:
                    alive = True
                if alive:
                    if len(pending) + self._unindexed <= self.max_pending and ts[i] >= horizon:
                        break
                    if b.indexed:
                        del pending[ids[i]]
                    else:
                        self._unindexed -= 1
                    self.expired_predictions += 1
                i += 1
            if i < len(ids):
                self._cursor = i
                break
            blocks.popleft()
            if b.indexed:
                self._in_blocks -= len(ids)
            self._cursor = 0
        if self._in_blocks > 2 * len(pending) + 4096 and not self._unindexed:
            self._compact()
        while early and (len(early) > self.max_pending or next(iter(early.values()))[0] < horizon):
            early.popitem(last=False)
            self.unmatched_labels += 1

    def _compact(self) -> None:
        """Mostly matched entries in the blocks: keep only the waiting ones, in one block."""
        items = list(self._pending.items())
        cols: list[list[Any]] = [[], [], [], [], [], []]
        for pid, (b, i) in items:
            for col, src in zip(cols, (pid, b.ts[i], b.preds[i], b.rows[i], b.parts[i], b.offs[i]), strict=True):
                col.append(src)
        block = _Block(*cols)
        block.indexed = True
        self._pending = {pid: (block, j) for j, (pid, _) in enumerate(items)}
        self._blocks = deque([block]) if items else deque()
        self._in_blocks, self._cursor = len(items), 0

    def coverage(self) -> float:
        """Share of predictions that received a label (so far)."""
        return self.matched / self.predictions if self.predictions else 0.0

    def pending(self) -> int:
        return len(self._pending) + self._unindexed

    def counters(self) -> dict[str, int]:
        return {
            "predictions": self.predictions, "matched": self.matched, "late_labels": self.late_labels,
            "expired_predictions": self.expired_predictions, "unmatched_labels": self.unmatched_labels,
            "duplicate_labels": self.duplicate_labels, "pending_predictions": self.pending(),
            "pending_labels": len(self._early),
        }


def outcome_batch(outcomes: Sequence[LabelledPrediction]) -> OutcomeBatch:
    """Columnar outcomes, in the order given (label-arrival order)."""
    scores = None
    if outcomes and outcomes[0].scores is not None:
        classes = list(outcomes[0].scores)
        scores = {c: np.array([(o.scores or {}).get(c, np.nan) for o in outcomes], np.float64) for c in classes}
    return OutcomeBatch(
        ids=np.array([o.prediction_id for o in outcomes], dtype=object),
        timestamps=np.array([o.timestamp for o in outcomes], np.int64),
        label_timestamps=np.array([o.label_timestamp for o in outcomes], np.int64),
        prediction=as_column([o.prediction for o in outcomes]),
        label=as_column([o.label for o in outcomes]),
        scores=scores,
        partitions=np.array([o.partition for o in outcomes], np.int64),
        offsets=np.array([o.offset for o in outcomes], np.int64),
    )


def _plain(values: Any) -> list[Any]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def prediction_record(topic: str, ids: Any, timestamps: Any, predictions: Any, scores: dict[str, Any] | None,
                      partitions: Any, offsets: Any) -> bytes:
    """The journal record of one :meth:`LabelJoin.add_predictions` call (what a restore replays)."""
    return orjson.dumps({"k": "p", "topic": topic, "ids": _plain(ids), "ts": _plain(timestamps),
                         "pred": _plain(predictions), "part": _plain(partitions), "off": _plain(offsets),
                         "scores": {c: _plain(v) for c, v in scores.items()} if scores else None})


def label_record(topic: str, calls: Sequence[tuple[str, Any, int, int, int]]) -> bytes:
    """The journal record of a step's :meth:`LabelJoin.add_label` calls: (id, label, timestamp, partition, offset)."""
    ids, labels, ts, parts, offs = (list(c) for c in zip(*calls, strict=True)) if calls else ([],) * 5
    return orjson.dumps({"k": "l", "topic": topic, "ids": ids, "labels": labels, "ts": ts, "part": parts,
                         "off": offs})


def fitted(build: Callable[[int, int], bytes], partitions: Sequence[int], offsets: Sequence[int],
           max_bytes: int) -> list[bytes]:
    """``build(0, n)`` (a journal record of entries ``0..n``), or records of consecutive ranges of at most
    ``max_bytes`` each, cut between input messages: a message's entries stay in one record, which the replay's
    skip of offsets already applied relies on. A single message's entries make one record whatever its size.

    >>> build = lambda lo, hi: label_record("l", [(str(i), 1, 0, 0, i // 2) for i in range(lo, hi)])
    >>> [orjson.loads(r)["ids"] for r in fitted(build, [0] * 6, [0, 0, 1, 1, 2, 2], 100)]
    [['0', '1'], ['2', '3'], ['4', '5']]
    """
    def cut(lo: int, hi: int) -> list[bytes]:
        rec = build(lo, hi)
        if len(rec) <= max_bytes:
            return [rec]
        same = lambda i: partitions[i] == partitions[i - 1] and offsets[i] == offsets[i - 1]  # noqa: E731
        mid = (lo + hi) // 2
        while lo < mid < hi and same(mid):
            mid += 1
        if mid >= hi:
            mid = (lo + hi) // 2
            while lo < mid and same(mid):
                mid -= 1
        return [rec] if mid <= lo else cut(lo, mid) + cut(mid, hi)

    return cut(0, len(offsets))


def replay(join: LabelJoin, records: Sequence[bytes], done: dict[str, int]) -> LabelJoin:
    """Redo the journalled calls whose input offsets ``done`` covers (the restored state's offsets), in order:
    ``join`` ends as the crashed worker's join was when it saved that state. Outcomes are not returned again (the
    restored monitors have them). A record written twice (a retried publish) is applied once: offsets at or below
    those of earlier records of the same partition are skipped.

    >>> j = LabelJoin(ttl_ms=1000)
    >>> recs = [prediction_record("p", ["a", "b"], [0, 10], [1, 0], None, [0, 0], [5, 6]),
    ...         label_record("l", [("a", 1, 20, 0, 3)]), label_record("l", [("b", 0, 30, 0, 4)])]
    >>> replay(j, recs + recs[:1], {"p:0": 6, "l:0": 3}).counters()  # the first record written twice: applied once
    ... # doctest: +ELLIPSIS
    {'predictions': 2, 'matched': 1, ..., 'pending_predictions': 1, 'pending_labels': 0}
    """
    applied: dict[str, int] = {}  # topic:partition -> the highest offset replayed by earlier records
    for raw in records:
        rec = orjson.loads(raw)
        topic, parts, offs = rec["topic"], rec["part"], rec["off"]
        tps = [f"{topic}:{p}" for p in parts]
        keep = [i for i in range(len(offs)) if applied.get(tps[i], -1) < offs[i] <= done.get(tps[i], -1)]
        for tp, off in zip(tps, offs, strict=True):
            applied[tp] = max(applied.get(tp, -1), off)
        if not keep:
            continue
        if rec["k"] == "p":
            def pick(col: list[Any], keep: list[int] = keep) -> list[Any]:
                return [col[i] for i in keep]

            scores = {c: pick(v) for c, v in rec["scores"].items()} if rec["scores"] else None
            join.add_predictions(pick(rec["ids"]), pick(rec["ts"]), pick(rec["pred"]), scores, pick(parts),
                                 pick(offs))
        else:
            for i in keep:
                join.add_label(rec["ids"][i], rec["labels"][i], rec["ts"][i], parts[i], offs[i])
    return join

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors.batch import OutcomeBatch, as_column


@dataclass(slots=True)
class Outcome:
    prediction_id: str
    timestamp: int
    label_timestamp: int
    prediction: Any
    label: Any
    scores: dict[str, float] | None
    partition: int
    offset: int


class LabelJoin:
    """Pending predictions and early labels, matched in label-arrival order."""

    def __init__(self, ttl_ms: int, max_pending: int = 2_000_000):
        self.ttl_ms = ttl_ms
        self.max_pending = max_pending
        # id -> (timestamp, prediction, scores, partition, offset), and the same entries in insertion order
        # (~ event order) as blocks, one per call, for expiry oldest first
        self._pending: dict[str, tuple[int, Any, dict[str, float] | None, int, int]] = {}
        self._blocks: deque[tuple[list[str], list[tuple[int, Any, dict[str, float] | None, int, int]]]] = deque()
        self._cursor = 0  # entries of the oldest block already gone
        self._in_blocks = 0  # entries the blocks hold, matched ones included
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
    ) -> list[Outcome]:
        """Remember predictions; returns outcomes for labels that were already waiting for them."""
        out: list[Outcome] = []
        ts_list = [int(t) for t in timestamps] if not hasattr(timestamps, "tolist") else timestamps.tolist()
        classes = tuple(scores) if scores else None
        if classes:
            cols = [scores[c] for c in classes]  # type: ignore[index]
            rows = [dict(zip(classes, map(float, r), strict=True)) for r in zip(*cols, strict=True)]
        else:
            rows = [None] * len(ids)
        if isinstance(predictions, np.ndarray):
            predictions = predictions.tolist()
        parts = partitions.tolist() if hasattr(partitions, "tolist") else list(partitions)
        offs = offsets.tolist() if hasattr(offsets, "tolist") else list(offsets)
        early = self._early
        if early:  # labels that came first: match them now, in prediction order
            for i, pid in enumerate(ids):
                hit = early.pop(pid, None)
                if hit is not None:
                    lts, label, part, off = hit
                    out.append(Outcome(pid, ts_list[i], lts, predictions[i], label, rows[i], part, off))
        waiting = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
        values = list(zip(ts_list, predictions, rows, parts, offs, strict=True))
        if out:
            matched = {o.prediction_id for o in out}
            keep = [i for i, pid in enumerate(waiting) if pid not in matched]
            waiting, values = [waiting[i] for i in keep], [values[i] for i in keep]
        self._pending.update(zip(waiting, values, strict=True))
        if waiting:
            self._blocks.append((waiting, values))
            self._in_blocks += len(waiting)
        self.matched += len(out)
        self.late_labels += len(out)
        if ts_list:
            self.watermark = max(self.watermark, max(ts_list))
        self.predictions += len(ids)
        self._expire()
        return out

    def add_label(self, prediction_id: str, label: Any, timestamp: int, partition: int = -1,
                  offset: int = -1) -> list[Outcome]:
        """Join one label; an outcome if its prediction is pending, else the label waits."""
        hit = self._pending.pop(prediction_id, None)
        if hit is None:
            if prediction_id in self._early:
                self.duplicate_labels += 1
            self._early[prediction_id] = (timestamp, label, partition, offset)
            self._expire()
            return []
        ts, pred, sc, _, _ = hit
        self.matched += 1
        return [Outcome(prediction_id, ts, timestamp, pred, label, sc, partition, offset)]

    def _expire(self) -> None:
        horizon = self.watermark - self.ttl_ms
        pending, blocks, early = self._pending, self._blocks, self._early
        while blocks:
            ids, values = blocks[0]
            i = self._cursor
            while i < len(ids):
                pid, v = ids[i], values[i]
                if pending.get(pid) is v:  # still waiting (not matched, not sent again since)
                    if len(pending) <= self.max_pending and v[0] >= horizon:
                        break
                    del pending[pid]
                    self.expired_predictions += 1
                i += 1
            if i < len(ids):
                self._cursor = i
                break
            blocks.popleft()
            self._in_blocks -= len(ids)
            self._cursor = 0
        if self._in_blocks > 2 * len(pending) + 4096:  # mostly matched entries: keep only the waiting ones
            self._blocks = deque([(list(pending), list(pending.values()))]) if pending else deque()
            self._in_blocks, self._cursor = len(pending), 0
        while early and (len(early) > self.max_pending or next(iter(early.values()))[0] < horizon):
            early.popitem(last=False)
            self.unmatched_labels += 1

    def coverage(self) -> float:
        """Share of predictions that received a label (so far)."""
        return self.matched / self.predictions if self.predictions else 0.0

    def pending(self) -> int:
        return len(self._pending)

    def counters(self) -> dict[str, int]:
        return {
            "predictions": self.predictions, "matched": self.matched, "late_labels": self.late_labels,
            "expired_predictions": self.expired_predictions, "unmatched_labels": self.unmatched_labels,
            "duplicate_labels": self.duplicate_labels, "pending_predictions": len(self._pending),
            "pending_labels": len(self._early),
        }


def outcome_batch(outcomes: Sequence[Outcome]) -> OutcomeBatch:
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

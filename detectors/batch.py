"""Columnar batches: the only shape in which events reach the core.

The stream shell (Kafka messages, single or batched) and the file replay both turn their input into these,
so the detectors never see where the events came from. Arrays are aligned: position ``i`` in every array is
the same event.

>>> import numpy as np
>>> b = EventBatch.from_columns(ids=["a", "b"], timestamps=[1, 2], features={"x": [0.5, None]},
...                             prediction=[1, 0])
>>> len(b), b.features["x"].dtype.kind
(2, 'f')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def as_column(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """A feature column as numpy: float64 with NaN for missing when no value is a string (bools count as
    numbers), else an object array with ``None`` for missing.

    >>> as_column([1, None, True]).tolist(), as_column(["a", None]).tolist()
    ([1.0, nan, 1.0], ['a', None])
    """
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "fiub":
            return values.astype(np.float64, copy=False)
        values = values.tolist()
    if str in set(map(type, values)):
        return np.array(values, dtype=object)
    try:
        return np.array(values, dtype=np.float64)  # None -> nan
    except (TypeError, ValueError):
        return np.array(values, dtype=object)


@dataclass(slots=True)
class EventBatch:
    """Prediction events of one model, in event order.

    ``sources`` holds, per event, where it came from: a ``(partition, offset)`` pair in the live worker or
    the 0-based input row in a file replay (then ``partition`` is -1).
    """

    ids: np.ndarray  # object (str)
    timestamps: np.ndarray  # int64, epoch milliseconds (event time)
    features: dict[str, np.ndarray]  # float64 (NaN = missing) or object (None = missing)
    prediction: np.ndarray  # float64 or object
    scores: dict[str, np.ndarray] | None = None  # class -> probability, float64
    partitions: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # int64, -1 for files
    offsets: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # int64 offset or file row

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, mask: np.ndarray) -> EventBatch:
        """The events where ``mask`` is True, in order."""
        return EventBatch(
            ids=self.ids[mask], timestamps=self.timestamps[mask],
            features={k: v[mask] for k, v in self.features.items()}, prediction=self.prediction[mask],
            scores=None if self.scores is None else {k: v[mask] for k, v in self.scores.items()},
            partitions=self.partitions[mask], offsets=self.offsets[mask],
        )

    @classmethod
    def from_columns(
        cls,
        *,
        ids: Sequence[Any],
        timestamps: Sequence[int] | np.ndarray,
        features: Mapping[str, Sequence[Any] | np.ndarray],
        prediction: Sequence[Any] | np.ndarray,
        scores: Mapping[str, Sequence[float] | np.ndarray] | None = None,
        partitions: Sequence[int] | np.ndarray | None = None,
        offsets: Sequence[int] | np.ndarray | None = None,
    ) -> EventBatch:
        n = len(ids)
        return cls(
            ids=np.asarray(ids, dtype=object),
            timestamps=np.asarray(timestamps, dtype=np.int64),
            features={k: as_column(v) for k, v in features.items()},
            prediction=as_column(prediction),
            scores=None if scores is None else {k: np.asarray(v, np.float64) for k, v in scores.items()},
            partitions=np.full(n, -1, np.int64) if partitions is None else np.asarray(partitions, np.int64),
            offsets=np.arange(n, dtype=np.int64) if offsets is None else np.asarray(offsets, np.int64),
        )


@dataclass(slots=True)
class OutcomeBatch:
    """Predictions joined with their labels, in label-arrival order (the order the join produced them).

    ``timestamps`` is the prediction's event time; ``label_timestamps`` the label's.
    """

    ids: np.ndarray  # object (str)
    timestamps: np.ndarray  # int64 ms, prediction event time
    label_timestamps: np.ndarray  # int64 ms, label event time
    prediction: np.ndarray  # float64 or object
    label: np.ndarray  # float64 or object
    scores: dict[str, np.ndarray] | None = None
    partitions: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    offsets: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # of the label event / row

    def __len__(self) -> int:
        return len(self.ids)

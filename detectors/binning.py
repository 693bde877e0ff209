"""The integer counts of consecutive slices of events: what a window's tests are made of.

A monitor folds buffered events into slices cut at window boundaries and adds each slice's counts (numeric bins,
type errors, values outside the valid domain, categories) to its open window. :class:`Binner` computes those
counts for a list of slices at once, as a :class:`~detectors.batch.SliceCounts`. Counts are integers, so finer
slices summed (:meth:`~detectors.batch.SliceCounts.merge`) are exactly the coarser ones: a batch may arrive with
its slices already counted elsewhere (``EventBatch.binned``, a file replay's counting process), and the monitor
only adds them up.

>>> import numpy as np, pandas as pd
>>> from detectors.config import DetectionConfig
>>> from detectors.batch import EventBatch
>>> from detectors.profile import build_profile
>>> from detectors.window_tests import WindowTests
>>> p = build_profile(pd.DataFrame({"x": np.arange(100.0), "c": ["a", "b"] * 50}), prediction=None)
>>> binner = Binner(WindowTests(p, DetectionConfig()))
>>> b = EventBatch.from_columns(ids=list("abcd"), timestamps=[0] * 4, features={"x": [1.0, 2.0, 3.0, None],
...                             "c": ["a", "a", "b", "z"]}, prediction=[0] * 4)
>>> fine = binner.batch_counts(b, np.array([0, 1, 3, 4]))
>>> coarse = binner.batch_counts(b, np.array([0, 3, 4]))
>>> bool((fine.merge([(0, 3), (3, 4)]).cat == coarse.cat).all()), fine.merge([(0, 2), (2, 4)])
(True, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from detectors.batch import EventBatch, SliceCounts
from detectors.domains import count_outside_segments
from detectors.encoding import FoldColumns

if TYPE_CHECKING:
    from detectors.window_tests import WindowTests

Column = np.ndarray | None  # absent from the batch: None


class Binner:
    """Counts the monitored columns of event batches into slices, for a monitor (or for a monitor elsewhere: a
    helper process counting a file's slices ahead, with the same tests, gets the same counts)."""

    def __init__(self, tests: WindowTests):
        self.tests = tests
        self.num_specs = [(c.role, c.name) for c in tests.num_cols]
        self.cat_specs = [(c.role, c.name) for c in tests.cat_cols]

    @staticmethod
    def _column(b: EventBatch, role: str, name: str) -> Column:
        if role == "feature":
            return b.features.get(name)
        if role == "prediction":
            return b.prediction
        return b.scores.get(name) if b.scores else None

    def _gather(self, specs: list[tuple[str, str]], batches: Sequence[EventBatch]) -> list[Column]:
        out: list[Column] = []
        for role, name in specs:
            parts = [self._column(b, role, name) for b in batches]
            if all(p is None for p in parts):
                out.append(None)
            elif len(parts) == 1:
                out.append(parts[0])
            else:
                out.append(np.concatenate([p if p is not None else np.full(len(b), np.nan)
                                           for p, b in zip(parts, batches, strict=True)]))
        return out

    def counts(self, batches: Sequence[EventBatch], bounds: Sequence[tuple[int, int]]) -> SliceCounts:
        """The counts of the consecutive slices ``bounds`` of ``batches`` (concatenated)."""
        t = self.tests
        num, cat = self._gather(self.num_specs, batches), self._gather(self.cat_specs, batches)
        starts = np.array([a for a, _ in bounds], np.int64)
        ends = np.array([b for _, b in bounds], np.int64)
        fold = FoldColumns(num)
        nums = np.zeros((len(bounds), len(t.num), t.num.width), np.int64)
        types = np.zeros((len(bounds), len(t.num)), np.int64)
        for s, (a, b) in enumerate(bounds):
            t.num.add_slice(nums[s], types[s], fold, a, b)
        domain = count_outside_segments(num, *t.domain, starts, ends)
        return SliceCounts(np.append(starts, ends[-1]), nums, types, domain, t.cat.segment_counts(cat, starts, ends))

    def batch_counts(self, batch: EventBatch, cuts: np.ndarray) -> SliceCounts:
        """The counts of one batch's slices ``cuts[s]:cuts[s + 1]``."""
        return self.counts([batch], list(zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True)))

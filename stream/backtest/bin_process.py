"""The second core of a file replay: a child process reads the parquet file's monitored columns and counts each
window's slices (:class:`detectors.binning.Binner`) ahead of the replay, which then only adds the counts up.

Counting (sorting numbers into the reference bins, looking categories up) is half of what a replay of count
windows does per event; the other half (window tests, outcomes, estimation, alerts) stays in the replaying
process. The counts are integers, so the alerts are the same whichever process counted: the replay takes the
child's counts of a chunk when they are ready and counts the chunk itself when they are not (while the child
starts, about half a second, or if it fails), so the child never makes a replay slower or wrong. Count windows
only: their slices are cut at multiples of the window size from the first row, which the child knows in advance.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from pathlib import Path
from typing import Any

import numpy as np

from detectors.batch import SliceCounts
from detectors.binning import Binner
from detectors.config import DetectionConfig
from detectors.profile import ReferenceProfile
from detectors.window_tests import WindowTests
from stream.backtest.arrow_chunks import iter_arrow_chunks
from stream.backtest.chunk_batches import ChunkColumns
from stream.backtest.main_script import main_script_hidden

AHEAD = 4  # chunks the child may count ahead of the replay
MIN_CHUNKS = 4  # files with fewer chunks are counted in the replaying process (the child takes ~0.5 s to start)

log = logging.getLogger("glassbox.replay")


def window_cuts(first_row: int, n: int, window: int) -> np.ndarray:
    """Row offsets cutting rows ``first_row:first_row + n`` at every multiple of ``window`` (and at both ends).

    >>> window_cuts(1500, 2000, 1000).tolist()
    [0, 500, 1500, 2000]
    """
    first = -first_row % window
    return np.unique(np.r_[0, np.arange(first, n, window), n])


class BinProcess:
    """A child process counting the slices of a parquet file's chunks (rows cut at multiples of ``window``) for
    a replay reading the same file in chunks of ``chunk_rows``; a context manager (the child is killed on exit).
    :attr:`counted` and :attr:`missed` say how many chunks came from the child and how many the replay counted,
    :attr:`cpu` the child's CPU seconds;
    :attr:`patience` is how long :meth:`take` waits for the child (0: not at all; tests wait)."""

    patience = 0.0

    def __init__(self, path: Path, chunk_rows: int, columns: ChunkColumns, profile: ReferenceProfile,
                 config: DetectionConfig):
        assert config.window_ms is None, "count windows only"
        self.args = (str(path), chunk_rows, columns, profile, config)
        self.counted = 0
        self.cpu = 0.0  # the child's CPU seconds, as of its last message
        self.missed = 0
        self.failed: str | None = None
        self._proc: Any = None
        self._q: Any = None
        self._next: Any = None

    def __enter__(self) -> BinProcess:
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["stream.backtest.bin_process"])
        self._q = ctx.Queue(maxsize=AHEAD)
        self._next = ctx.RawValue("q", 0)  # shared: the first row the replay has not passed
        self._proc = ctx.Process(target=_bin_main, args=(self._q, self._next, *self.args),
                                 name="glassbox-replay-binner", daemon=True)
        with main_script_hidden():
            self._proc.start()
        return self

    def take(self, first_row: int, n: int) -> SliceCounts | None:
        """The child's counts of rows ``first_row:first_row + n`` if it has them ready, else None (the replay
        counts them itself); counts of rows the replay has passed are dropped."""
        self._next.value = first_row
        while self.failed is None:
            try:
                kind, row, size, counts, self.cpu = (self._q.get(timeout=self.patience) if self.patience
                                                     else self._q.get_nowait())
            except queue.Empty:
                if not self._proc.is_alive():
                    self._fail(f"exited with code {self._proc.exitcode}")
                break
            if kind == "error":
                self._fail(counts)
            elif row == first_row and size == n:
                self.counted += 1
                return counts.astype(np.int64)
            elif row >= first_row:  # the child's chunks are not the replay's: count here from now on
                self._fail(f"its chunk at row {row} ({size} rows) is not the replay's ({first_row}, {n} rows)")
        self.missed += 1
        self._next.value = first_row + n  # counted here: the child skips it
        return None

    def _fail(self, why: str) -> None:
        self.failed = why
        log.warning("the replay's binning process stopped (%s); the replay counts every chunk itself", why)
        self._stop()

    def _stop(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    def __exit__(self, *exc: Any) -> None:
        self._stop()
        if self._proc is not None:
            self._proc.join(5)
        if self._q is not None:
            self._q.cancel_join_thread()
            self._q.close()


def _bin_main(q: Any, passed: Any, path: str, chunk_rows: int, columns: ChunkColumns, profile: ReferenceProfile,
              config: DetectionConfig) -> None:
    """The child: the slice counts of every chunk the replay has not passed (``passed.value``), in order, into
    ``q``; an error as one line."""
    try:
        binner = Binner(WindowTests(profile, config))
        r = columns.roles
        names = list(dict.fromkeys(r.features + r.scores + ([r.prediction] if r.prediction else [])))
        row = 0
        for chunk in iter_arrow_chunks(path, chunk_rows, columns=names):
            n = len(chunk)
            if row >= passed.value:
                batch = columns.batch(chunk, row, events=False)
                counts = binner.batch_counts(batch, window_cuts(row, n, config.window))
                most = int(np.diff(counts.cuts).max())  # no count exceeds its slice's rows
                q.put(("chunk", row, n, counts.astype(np.min_scalar_type(most)), time.process_time()))
            row += n
    except BaseException as err:  # noqa: BLE001 - the replay goes on without the child and says why
        with contextlib.suppress(Exception):
            q.put(("error", -1, 0, f"{type(err).__name__}: {err}", time.process_time()))
    q.close()
    q.join_thread()

"""The outcome side of a large parquet replay in a second process (:class:`OutcomeProcess`), on the other core.

A model's outcome monitor (concept drift, performance: :class:`detectors.outcomes.OutcomeMonitor`) depends on
nothing the prediction side computes, and costs about a quarter of a labelled replay (River's ADWIN is called
once per outcome and holds the GIL, so a thread would not run beside the prediction side). The child reads
the label-side columns of the same file itself (handing the batches over would cost as much as it saves: a
pipe, and a pickling thread fighting the replay for the GIL) and makes the same outcome batches
(:mod:`stream.backtest.outcome_feed`); the replaying process keeps everything else, estimation included, and
turns the child's transition records into alerts at the end, in their order: the same alerts as one process.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from detectors.config import DetectionConfig
from detectors.outcomes import OutcomeMonitor
from detectors.profile import ReferenceProfile
from stream.backtest.arrow_chunks import iter_arrow_chunks, parquet_rows
from stream.backtest.event_columns import ReplayError, ReplayOptions, Roles, resolve_roles
from stream.backtest.outcome_feed import OutcomeFeed, label_columns, label_side
from stream.backtest.processes import (
    boot_forkserver,
    child_setup,
    forkserver_booted,
    forkserver_context,
    main_script_hidden,
)
from stream.errors import UserError

_END, _ERROR = "end", "error"
PRELOAD = ["stream.backtest.outcome_process"]  # what the child imports (see forkserver_context)
#: Rows from which a parquet replay runs its outcome side in a second process: the child costs ~0.1 s to
#: start once its fork server runs (which takes ~1 s of the other core, once per process).
MIN_ROWS = 300_000
#: The child's niceness: its work is done before the replaying process needs it, so the scheduler lets the
#: replaying process go first when the two (and the parquet reader's threads) want the same core. On the 1M-event
#: benchmark: 0.39-0.40 s vs 0.42-0.43 s per replay (3 alternating rounds, best of 5 each).
NICENESS = 5


@dataclass(frozen=True)
class OutcomeTotals:
    """What a replay's summary reads from the outcome monitor once the replay ends."""

    dropped: int  # outcomes without a usable label or prediction
    index: int  # outcome windows closed
    cpu_seconds: float | None = None  # the outcome process's CPU time, when there was one

    @classmethod
    def of(cls, monitor: OutcomeMonitor, cpu_seconds: float | None = None) -> OutcomeTotals:
        return cls(dropped=monitor.dropped, index=monitor.index, cpu_seconds=cpu_seconds)


def _forkserver_here() -> bool:
    import multiprocessing

    return "forkserver" in multiprocessing.get_all_start_methods()  # not on Windows


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def wanted(source: Path | None, roles: Roles, opts: ReplayOptions) -> bool:
    """Whether a replay of ``source`` runs its outcomes in a second process: a parquet source with labels, no
    window records kept (their order is one process's), at least :data:`MIN_ROWS` rows, two cores, a fork
    server."""
    if source is None or not roles.label or opts.keep_windows or _cores() < 2 or not _forkserver_here():
        return False
    return (parquet_rows(source) or 0) >= MIN_ROWS


def ready(source: Path, opts: ReplayOptions) -> bool:
    """Whether a replay of ``source`` runs its outcomes in the outcome process: when it is :func:`wanted` and an
    earlier replay in this process booted the fork server. A first replay that wants it boots the server for
    the next ones and runs in one process: it would wait for the server's imports (~0.8 s of the other core,
    about what the second process saves on 1M events)."""
    try:
        want = wanted(source, resolve_roles(pq.read_schema(source).names, opts), opts)
    except Exception:  # noqa: BLE001 - the replay reads the file and says what is wrong with it
        return False
    if not want:
        return False
    warm = forkserver_booted()
    boot_forkserver(PRELOAD)
    return warm


class OutcomeProcess:
    """An :class:`OutcomeMonitor` replaying the outcomes of a parquet file in a child process; :meth:`finish`
    returns its transition records (in order) and totals.

    The child comes from the fork server (forking beside MLflow's or Arrow's threads is not safe), starts in
    the background while the replay goes on, is killed if the replay stops early, and a child that dies or
    fails is an error, never a silent end.
    """

    def __init__(self, path: Path, roles: Roles, opts: ReplayOptions, profile: ReferenceProfile,
                 config: DetectionConfig, alpha: float):
        boot_forkserver(PRELOAD)
        ctx = forkserver_context(PRELOAD)
        self._out = ctx.Queue()
        self._proc = ctx.Process(target=_outcome_main,
                                 args=(self._out, path, roles, opts.label_delay, opts.chunk_rows, profile, config,
                                       alpha),
                                 name="glassbox-replay-outcomes", daemon=True)
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        threading.Thread(target=self._start, name="glassbox-outcomes-start", daemon=True).start()

    def _start(self) -> None:
        try:
            with main_script_hidden():
                self._proc.start()
        except BaseException as err:  # noqa: BLE001 - raised in the replaying thread by finish
            self._start_error = err
        finally:
            self._started.set()

    def finish(self) -> tuple[list[dict[str, Any]], OutcomeTotals]:
        """The monitor's transition records (turned into alerts by the model monitor) and its totals."""
        self._started.wait()
        if self._start_error is not None:
            raise ReplayError(f"the outcome process did not start: {self._start_error}") from self._start_error
        while True:
            try:
                kind, a, b = self._out.get(timeout=1.0)
            except queue.Empty:
                if not self._proc.is_alive():
                    raise ReplayError(f"the outcome process died (exit code {self._proc.exitcode})") from None
                continue
            if kind == _ERROR:
                raise a
            return a, b

    def close(self) -> None:
        """Stop the child (done already after :meth:`finish`)."""
        self._started.wait()
        if self._proc.is_alive():
            self._proc.kill()
        if self._proc.pid is not None:
            self._proc.join(5)
        self._out.cancel_join_thread()
        self._out.close()


def _outcome_main(outq: Any, path: Path, roles: Roles, delay: int, chunk_rows: int, profile: ReferenceProfile,
                  config: DetectionConfig, alpha: float) -> None:
    """The child: the file's outcomes through the monitor, then all records and the totals (or the error)."""
    cpu0 = time.process_time()
    os.nice(NICENESS)
    child_setup()
    try:
        monitor = OutcomeMonitor(profile, config, alpha)
        monitor.keep_records = False
        feed = OutcomeFeed(delay)
        records: list[dict[str, Any]] = []
        rows = 0
        for chunk in iter_arrow_chunks(path, chunk_rows, columns=label_columns(roles)):
            if not len(chunk):
                continue
            for batch in feed.add(label_side(chunk, roles, rows)):
                records += monitor.observe(batch)
            rows += len(chunk)
        for batch in feed.finish():
            records += monitor.observe(batch)
        outq.put((_END, records, OutcomeTotals.of(monitor, time.process_time() - cpu0)))
    except UserError as err:  # the user's to fix (the replaying process reads the same rows and says so too)
        outq.put((_ERROR, err, None))
    except BaseException as err:  # noqa: BLE001 - a defect: its traceback here, one line there
        logging.getLogger("glassbox.replay").exception("the outcome process failed")
        outq.put((_ERROR, ReplayError(f"the outcome process failed: {type(err).__name__}: {err}"), None))
    outq.close()
    outq.join_thread()

"""A one-process pool for work kept off the worker's hot path (Evidently reports, SHAP): low priority, and
tied to the life of the process that created it.

forkserver, not fork: forking a process that runs MLflow's system-metrics thread can deadlock the child.
A plain process pool outlives a worker that dies without shutting it down (killed, or ended with
``os._exit``): the pool process blocks forever on its call queue and keeps the forkserver and the resource
tracker alive, and all three hold the worker's stdout and stderr, so whatever reads the worker's output to
its end (a supervisor, ``subprocess.run(capture_output=True)``) waits forever. Here the pool process watches
a pipe whose other end only the creating process holds, and exits when it closes. It runs at the lowest CPU
priority (``SCHED_IDLE`` where the OS has it, and nice 19), so it takes an idle core, not the hot path's.

A supervisor that stops the worker may signal its whole process group (a terminal's Ctrl-C, ``killpg``), and
a report cut off mid-write leaves a truncated snapshot that breaks the Evidently workspace it was added to. So
the pool process runs in a process group of its own, and multiprocessing's forkserver (whose death breaks the
pool) is started ignoring SIGTERM and SIGINT; it exits with its owner anyway. The owner ends the pool
process: by ``shutdown`` after the running report is done, or by its lifeline when the owner is gone.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("glassbox.idle_pool")

NICE = 19
IDLE = True  # SCHED_IDLE where the OS has it (Linux): runs only when a core is otherwise idle
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def lower_priority(nice: int = NICE, idle: bool = IDLE) -> str:
    """Lower the calling process's CPU priority: ``nice`` (0-19) and, with ``idle`` where the OS has it, the
    ``SCHED_IDLE`` policy. Returns what it got, e.g. ``"idle+nice19"`` (never raises)."""
    got = []
    if idle and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            got.append("idle")
        except OSError as err:
            log.debug("SCHED_IDLE refused (%s): nice only", err)
    if nice:
        with contextlib.suppress(OSError):
            os.nice(max(0, min(19, nice) - os.nice(0)))
            got.append(f"nice{os.nice(0)}")
    return "+".join(got) or "normal"


def _start_forkserver() -> None:
    """Start multiprocessing's forkserver (once per process) ignoring the stop signals, a disposition it keeps
    across its exec, so that a signal to the owner's process group leaves it running. The owner's own
    handlers are back before the signals are unblocked: one that came meanwhile is delivered to them, not lost
    (Linux never discards a blocked signal). Outside the main thread (no handlers can be set there) the
    forkserver starts as multiprocessing starts it."""
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        forkserver.ensure_running()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _watch_lifeline(lifeline: Any) -> None:
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()  # nothing is ever sent: returns (EOFError) when the owner's end closes
    os._exit(0)


def _init(lifeline: Any, nice: int, idle: bool, initializer: Callable[..., None] | None,
          initargs: tuple[Any, ...]) -> None:
    os.setpgid(0, 0)  # out of the owner's process group
    lower_priority(nice, idle)
    threading.Thread(target=_watch_lifeline, args=(lifeline,), name="glassbox-lifeline", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


class IdleProcessPool(cf.ProcessPoolExecutor):
    """One forkserver process at the lowest priority that exits with its owner (see the module docstring).

    >>> pool = IdleProcessPool()
    >>> pool.submit(os.nice, 0).result(60) >= 10
    True
    >>> pool.shutdown()
    """

    def __init__(self, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = (), *,
                 nice: int | None = None, idle: bool | None = None) -> None:
        ctx = multiprocessing.get_context("forkserver")
        _start_forkserver()
        reader, self._lifeline = ctx.Pipe(duplex=False)
        self._lifeline_reader = reader  # kept: the pool may start its process lazily
        super().__init__(1, mp_context=ctx, initializer=_init,
                         initargs=(reader, NICE if nice is None else nice, IDLE if idle is None else idle,
                                   initializer, initargs))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            self._lifeline.close()
            self._lifeline_reader.close()

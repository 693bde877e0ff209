"""What the replays' child processes share: the fork server they come from (:func:`forkserver_context`), the
main script hidden while one starts, and fewer garbage collections while a replay runs."""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from stream.backtest.heap import keep_freed_memory

#: Container allocations between young collections of the garbage collector during a replay (Python's
#: default, 700, makes a collection every few messages: 5-10% of the CPU time of each process).
GC_YOUNG = 20_000


_booted = False


def boot_forkserver(preload: list[str]) -> None:
    """Start the fork server in the background (once per process), importing ``preload`` (see
    :func:`forkserver_context`): its imports then run on the other core while this process goes on."""
    global _booted
    if _booted:
        return
    _booted = True
    from multiprocessing import forkserver

    forkserver_context(preload)
    threading.Thread(target=forkserver.ensure_running, name="glassbox-forkserver-boot", daemon=True).start()


def forkserver_booted() -> bool:
    """Whether :func:`boot_forkserver` ran in this process."""
    return _booted


def forkserver_context(preload: list[str]) -> Any:
    """multiprocessing's fork server context (forking beside MLflow's, Arrow's or aiokafka's threads is not
    safe). The server imports ``preload`` once when it starts, not every child: the modules of the first kind of
    child started in this process (a later kind imports its own in each child)."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(preload)
    return ctx


def child_setup() -> None:
    """What a replay's child process does first: ignore Ctrl-C (it reaches the whole process group; the replaying
    process stops its children itself, and an interrupted child would only print a traceback), collect young
    objects every :data:`GC_YOUNG` allocations (the process only replays) and keep freed memory in the heap."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.set_threshold(max(gc.get_threshold()[0], GC_YOUNG))
    keep_freed_memory()


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect young objects every :data:`GC_YOUNG` allocations instead of every 700 while a replay runs (the
    older generations as usual; the thresholds are restored after)."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], GC_YOUNG), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@contextlib.contextmanager
def main_script_hidden() -> Iterator[None]:
    """While a child process starts, hide the main script's path from multiprocessing: a forkserver child
    re-runs the main script (Python 3.11's fork server never preloads it), which costs 0.2-0.8 s when it
    imports pandas or scikit-learn (0.4 s for ``glassbox``'s own entry point), and the children need nothing
    from it."""
    main = sys.modules.get("__main__")
    path = main.__dict__.pop("__file__", None) if main is not None else None
    try:
        yield
    finally:
        if path is not None:
            main.__dict__["__file__"] = path

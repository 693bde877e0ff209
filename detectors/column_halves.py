"""Work on many columns split over two cores: numpy releases the GIL inside its loops, so a second thread
doing half of the columns runs while the calling thread does the other half.

Each column is computed exactly as alone (the work of a column never depends on the others), so the results
are the same with one thread or two. Small work stays on the calling thread: handing it over costs more.

>>> out = [0] * 4
>>> def square(cols):
...     for j in cols:
...         out[j] = j * j
>>> in_halves(square, 4, work=10**6)
>>> out
[0, 1, 4, 9]
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

MIN_WORK = 200_000  # array elements touched below which one thread is faster
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0  # the process the pool's thread lives in (a forked child starts its own)


def _cores() -> int:
    """The cores this process may run on (its affinity where the platform tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _second() -> ThreadPoolExecutor | None:
    global _pool, _pool_pid
    if (_pool is None or _pool_pid != os.getpid()) and _cores() > 1:
        _pool, _pool_pid = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glassbox-columns"), os.getpid()
    return _pool


def in_halves(fn: Callable[[range], None], columns: int, work: int) -> None:
    """``fn(columns)`` over ``range(columns)``, in two halves on two threads when ``work`` (elements the call
    touches) is large enough; ``fn`` writes each column's results to its own place."""
    pool = _second() if work >= MIN_WORK and columns > 1 else None
    if pool is None:
        fn(range(columns))
        return
    half = columns // 2
    other = pool.submit(fn, range(half, columns))
    fn(range(half))
    other.result()

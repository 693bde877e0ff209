"""Keep freed memory in the heap of a replaying process (glibc).

A replay allocates and frees arrays of a few hundred kB to a few MB for every chunk (columns, bin keys,
counts of every window and horizon). By default glibc gives the top of the heap back to the kernel as soon as
128 kB of it are free, so the next chunk faults the same pages in again: on the 1M-event benchmark that was a
fifth of the replay's CPU time. :func:`keep_freed_memory` raises the trim threshold (and pads each heap growth)
so the memory is reused instead; the process keeps up to the threshold of freed memory. File replays and both
processes of a topic replay call it. Elsewhere (macOS, musl)
it does nothing. Tested in ``tests/test_replay_heap.py``.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_TOP_PAD = -1, -2  # mallopt parameters (malloc.h)
TRIM_THRESHOLD = 256 << 20  # free memory at the top of the heap kept before any is returned
TOP_PAD = 64 << 20  # extra memory asked for whenever the heap grows

_done = False


def keep_freed_memory() -> bool:
    """Set the process's glibc heap to keep freed memory (once); whether it could."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # no mallopt (not glibc)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_TOP_PAD, TOP_PAD))
    return _done

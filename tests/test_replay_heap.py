"""A replaying process keeps freed memory in its heap (glibc): the next chunk reuses the pages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stream.backtest.heap import keep_freed_memory

FREE_AND_MEASURE = """
import sys
from stream.backtest.heap import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20
blocks = [bytearray(64 * 1024) for _ in range(2_000)]  # 125 MB of heap blocks (under the mmap threshold)
full = rss_mb()
del blocks
print(full - rss_mb())  # memory given back to the kernel
"""


def _given_back(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", FREE_AND_MEASURE, mode], capture_output=True, text=True,
                         check=True)
    return float(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap")
def test_freed_memory_stays_in_the_heap() -> None:
    assert keep_freed_memory() and keep_freed_memory()  # once, then a no-op
    assert _given_back("default") > 30  # glibc returns the freed top of the heap at once (64 MB here)
    assert _given_back("keep") < 5  # kept for the next chunk

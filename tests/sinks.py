"""Local HTTP servers that speak the receivers' real APIs, for tests (no mocks of the client libraries).

One :class:`Sink` on a free 127.0.0.1 port serves:
- the Slack Web API under ``/api/``: ``chat.postMessage`` and ``chat.update`` (Bearer token checked, Slack's
  ``{"ok": false, "error": ...}`` replies, channel name resolved to an id, ``ts`` per message);
- a Slack incoming webhook at ``webhook_path`` (``ok`` / ``invalid_token`` like hooks.slack.com);
- the PagerDuty Events API v2 at ``/v2/enqueue`` (routing key and payload checked, 202 with ``dedup_key``,
  an incident model keyed by ``dedup_key``: a trigger opens an incident only when none is open).

Scriptable failures: :meth:`Sink.script` queues replies per path (``429`` with Retry-After, ``5xx``, slow
replies for timeouts); :meth:`Sink.down_for` closes the listening socket for N seconds (connection refused)
and listens again on the same port. Every request is recorded (:attr:`Sink.requests`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from stream.kafka.broker import free_port


@dataclass
class Reply:
    """A scripted reply. ``delay`` seconds before answering (to provoke client timeouts)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float
    ok: bool = False

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Sink:
    """Slack Web API + Slack webhook + PagerDuty Events v2, recording everything."""

    def __init__(
        self,
        *,
        slack_token: str = "xoxb-test-token",
        routing_key: str = "R0UTINGKEY0000000000000000000000",
        webhook_path: str = "/hooks/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        channel_id: str = "C0GLASSBOX",
    ):
        self.slack_token = slack_token
        self.routing_key = routing_key
        self.webhook_path = webhook_path
        self.channel_id = channel_id
        self.port = free_port()
        self.requests: list[Recorded] = []
        self.messages: dict[str, dict[str, Any]] = {}  # ts -> {channel, text, blocks, edits}
        self.incidents: dict[str, dict[str, Any]] = {}  # dedup_key -> {status, opened, triggers}
        self.incidents_opened = 0
        self.webhook_posts: list[dict[str, Any]] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._ts = 0

    # lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def slack_api_url(self) -> str:
        return f"{self.url}/api/"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{self.webhook_path}"

    def start(self) -> Sink:
        self._listen()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _listen(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, headers, payload, delay = sink._handle(self.path, dict(self.headers), body)
                if delay:
                    time.sleep(delay)
                raw = payload if isinstance(payload, bytes) else (
                    payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                )
                try:
                    self.send_response(status)
                    ctype = "application/json" if not isinstance(payload, str) else "text/plain"
                    self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                    self.send_header("Content-Length", str(len(raw)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        server = _Server(("127.0.0.1", self.port), Handler)
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    # scripting
    def script(self, path: str, *replies: Reply | int) -> None:
        """Queue replies for requests whose path starts with ``path`` (ints are bare status codes)."""
        with self._lock:
            self._scripts.setdefault(path, []).extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def clear_scripts(self) -> None:
        with self._lock:
            self._scripts.clear()

    def down_for(self, seconds: float) -> None:
        """Refuse connections now, listen again after ``seconds``."""
        self.stop()
        timer = threading.Timer(seconds, self._listen)
        timer.daemon = True
        timer.start()

    # views
    def calls(self, path: str, status: int | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(path) and (status is None or r.status == status)]

    @property
    def posts(self) -> list[Recorded]:
        return [r for r in self.calls("/api/chat.postMessage") if r.ok]

    @property
    def pd_events(self) -> list[dict[str, Any]]:
        return [r.json for r in self.calls("/v2/enqueue", 202)]

    # handling
    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, Any, float]:
        with self._lock:
            scripted = None
            for prefix, queue in self._scripts.items():
                if path.startswith(prefix) and queue:
                    scripted = queue.pop(0)
                    break
            if scripted is not None and scripted.status != 200:
                body_out = scripted.body if scripted.body is not None else {"error": f"scripted {scripted.status}"}
                self._record(path, headers, body, scripted.status, False)
                return scripted.status, scripted.headers, body_out, scripted.delay
            delay = scripted.delay if scripted is not None else 0.0
            if path.startswith("/api/"):
                status, out = self._slack(path[len("/api/"):], headers, body)
                self._record(path, headers, body, status, bool(out.get("ok")))
                return status, {}, out, delay
            if path == self.webhook_path:
                data = json.loads(body)
                self.webhook_posts.append(data)
                self._record(path, headers, body, 200, True)
                return 200, {}, "ok", delay
            if path.startswith("/hooks/"):
                self._record(path, headers, body, 403, False)
                return 403, {}, "invalid_token", delay
            if path == "/v2/enqueue":
                status, out = self._pagerduty(body)
                self._record(path, headers, body, status, status == 202)
                return status, {}, out, delay
            self._record(path, headers, body, 404, False)
            return 404, {}, {"error": "not found"}, delay

    def _record(self, path: str, headers: dict[str, str], body: bytes, status: int, ok: bool) -> None:
        self.requests.append(Recorded("POST", path, headers, body, status, time.time(), ok))

    def _slack(self, method: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        if auth != f"Bearer {self.slack_token}":
            return 200, {"ok": False, "error": "invalid_auth" if auth else "not_authed"}
        data = Recorded("POST", method, headers, body, 0, 0).json
        if method == "chat.postMessage":
            if not data.get("channel"):
                return 200, {"ok": False, "error": "channel_not_found"}
            if not data.get("text") and not data.get("blocks"):
                return 200, {"ok": False, "error": "no_text"}
            self._ts += 1
            ts = f"1700000000.{self._ts:06d}"
            self.messages[ts] = {"channel": self.channel_id, "text": data.get("text"),
                                 "blocks": data.get("blocks"), "edits": 0}
            return 200, {"ok": True, "channel": self.channel_id, "ts": ts,
                         "message": {"text": data.get("text"), "ts": ts}}
        if method == "chat.update":
            msg = self.messages.get(str(data.get("ts")))
            if msg is None or data.get("channel") != msg["channel"]:
                return 200, {"ok": False, "error": "message_not_found"}
            msg.update(text=data.get("text"), blocks=data.get("blocks"), edits=msg["edits"] + 1)
            return 200, {"ok": True, "channel": msg["channel"], "ts": data["ts"], "text": data.get("text")}
        return 200, {"ok": False, "error": "unknown_method"}

    def _pagerduty(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            event = json.loads(body)
        except ValueError:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": ["bad json"]}
        errors = []
        if event.get("routing_key") != self.routing_key:
            errors.append("Invalid routing key")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        if action == "trigger":
            p = event.get("payload") or {}
            errors += [f"'payload.{k}' is missing" for k in ("summary", "source", "severity") if not p.get(k)]
            if p.get("severity") not in ("critical", "error", "warning", "info"):
                errors.append("'payload.severity' is invalid")
        elif not event.get("dedup_key"):
            errors.append("'dedup_key' is missing")
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        key = event.get("dedup_key") or uuid.uuid4().hex
        inc = self.incidents.get(key)
        if action == "trigger":
            if inc is None or inc["status"] == "resolved":
                self.incidents_opened += 1
                inc = self.incidents[key] = {"status": "triggered", "opened": (inc or {}).get("opened", 0) + 1,
                                             "triggers": 0}
            inc["triggers"] += 1
        elif action == "resolve" and inc is not None:
            inc["status"] = "resolved"
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}

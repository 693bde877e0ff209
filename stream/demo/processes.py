"""The demo's child processes (worker, notifier, UIs, the broker's guard), each in its own process group.

Python children ask Linux for SIGTERM when the demo dies (``PR_SET_PDEATHSIG``), whatever kills it; the broker,
which is not a Python child, gets a tiny guard process that stops it the same way. :meth:`Children.stop_all`
ends them all, in parallel, on exit, on errors and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.demo.home import APP_ID, MODEL, PREFIX, DemoError

# Python children ask Linux for SIGTERM when the demo dies, whatever kills it (even SIGKILL)
_PDEATHSIG = ("import os, sys, signal\n"
              "if sys.platform.startswith('linux'):\n"
              "    import ctypes\n"
              "    ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"
              "    if os.getppid() != {ppid}: sys.exit(0)\n")



@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


class Children:
    """The processes the demo started, each in its own process group; :meth:`stop_all` ends them all."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def python(self, name: str, code: str, args: list[str], env: dict[str, str], log: Path) -> Child:
        """``python -c code args`` (with the parent-death signal armed)."""
        boot = _PDEATHSIG.format(ppid=os.getpid())
        return self.spawn(name, [sys.executable, "-c", boot + code, *args], env, log)

    def module(self, name: str, module: str, args: list[str], env: dict[str, str], log: Path) -> Child:
        """``python -m module args`` (with the parent-death signal armed)."""
        run = f"import runpy\nrunpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
        return self.python(name, run, args, env, log)

    def guard(self, name: str, pid: int, log: Path) -> Child:
        """A tiny watcher that SIGTERMs ``pid`` (a process not started through here, such as the broker) when
        the demo dies without cleaning up, or when the watcher is stopped."""
        code = ("import time\n"
                "def stop(*_):\n"
                f"    try: os.kill({pid}, signal.SIGTERM)\n"
                "    except OSError: pass\n"
                "    os._exit(0)\n"
                "signal.signal(signal.SIGTERM, stop)\n"
                "while True: time.sleep(3600)\n")
        return self.python(name, code, [], {**os.environ}, log)

    def spawn(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> Child:
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    @property
    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.children}

    def stop(self, child: Child, timeout_s: float = 10.0) -> None:
        """SIGTERM to the child's process group, SIGKILL after ``timeout_s``."""
        proc = child.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # grandchildren (report executors, UI workers) too
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def stop_all(self, timeout_s: float = 10.0) -> None:
        """SIGTERM to every group at once (they shut down in parallel), then the broker's guard last."""
        guards = [c for c in self.children if c.name.endswith("-guard")]
        others = [c for c in self.children if c not in guards]
        for child in others:
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in [*others, *guards]:
            self.stop(child, max(deadline - time.monotonic(), 0.5) if child in others else timeout_s)


def http_json(url: str, timeout: float = 1.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def wait_http(url: str, child: Child, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""



def child_env(home: Path, bootstrap: str, web_port: int, tracking_uri: str) -> dict[str, str]:
    """The environment of the worker and the notifier: the user's (Slack/PagerDuty settings apply), with the
    demo's broker, home, model and short group timeouts on top."""
    return {
        **os.environ,
        "GLASSBOX_HOME": str(home),
        "GLASSBOX_KAFKA__BOOTSTRAP": bootstrap,
        "GLASSBOX_KAFKA__TOPIC_PREFIX": PREFIX,
        "GLASSBOX_KAFKA__PARTITIONS": "4",
        "GLASSBOX_WORKER__APP_ID": APP_ID,
        "GLASSBOX_WORKER__WEB_HOST": "127.0.0.1",
        "GLASSBOX_WORKER__WEB_PORT": str(web_port),
        "GLASSBOX_WORKER__SESSION_TIMEOUT_S": "6",
        "GLASSBOX_WORKER__REBALANCE_TIMEOUT_S": "4",
        "GLASSBOX_WORKER__HEARTBEAT_INTERVAL_S": "1",
        "GLASSBOX_WORKER__MODELS": json.dumps({MODEL: f"models:/{MODEL}@champion"}),
        "GLASSBOX_DETECTION__WINDOW": "1000",
        "GLASSBOX_MLFLOW__TRACKING_URI": tracking_uri,
        "MLFLOW_TRACKING_URI": tracking_uri,  # for MLflow calls that take no tracking URI (model loading)
        "MLFLOW_REGISTRY_URI": tracking_uri,  # see train_model: no pyspark lookup in system-metrics threads
        "GLASSBOX_MLFLOW__ARTIFACT_ROOT": str(home / "mlartifacts"),
        "GLASSBOX_EVIDENTLY__WORKSPACE": str(home / "evidently"),
        "GLASSBOX_ALERTING__DESKTOP": "true",
        "GLASSBOX_ALERTING__GROUP_WAIT": "1s",
        "GLASSBOX_ALERTING__STATE_PATH": str(home / "alerting.sqlite"),
        "GLASSBOX_LOG_LEVEL": os.environ.get("GLASSBOX_LOG_LEVEL", "INFO"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }



def wait_worker_ready(worker: Child, stats_url: str, timeout_s: float) -> None:
    """Until the worker serves ``/stats`` and owns predictions partitions (it joined its group)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if worker.proc.poll() is not None:
            raise DemoError(f"the worker exited (code {worker.proc.returncode}):\n{tail(worker.log)}")
        s = http_json(stats_url)
        if s and any(a.startswith(PREFIX + "predictions:") for a in s.get("assignment", [])):
            return
        if time.monotonic() > deadline:
            raise DemoError(f"the worker did not join its group in {timeout_s:g} s:\n{tail(worker.log)}")
        time.sleep(0.3)



def start_uis(children: Children, home: Path, tracking_uri: str, env: dict[str, str]) -> dict[str, str]:
    """MLflow UI and Evidently UI on free loopback ports; returns their URLs (those that came up)."""
    from stream.evidence.snapshots import project_id_for
    from stream.kafka.broker import free_port

    urls: dict[str, str] = {}
    mport, eport = free_port(), free_port()
    mlflow_ui = children.python(
        "mlflow-ui", "from mlflow.cli import cli; cli()",
        ["ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1", "--port", str(mport)],
        env, home / "logs" / "mlflow-ui.log")
    ev_ui = children.python(
        "evidently-ui", "from evidently.cli import app; app()",
        ["ui", "--workspace", str(home / "evidently"), "--host", "127.0.0.1", "--port", str(eport)],
        env, home / "logs" / "evidently-ui.log")
    if wait_http(f"http://127.0.0.1:{mport}/health", mlflow_ui, 60):
        urls["mlflow"] = f"http://127.0.0.1:{mport}/#/models/{MODEL}"
    if wait_http(f"http://127.0.0.1:{eport}/api/projects", ev_ui, 60):
        urls["evidently"] = f"http://127.0.0.1:{eport}/projects/{project_id_for(MODEL)}"
    return urls


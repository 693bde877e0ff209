"""``glassbox demo``: the whole product on one machine, nothing installed or running beforehand.

It starts the embedded broker, trains and registers the reference model with ``examples/train_reference.py``
(seeded), starts the monitoring worker and the notifier as child processes, publishes a realistic stream
(:mod:`stream.demo.stream_data`: clean, then data drift, then concept drift, then a data-quality problem, with late
labels), shows the alerts live as they fire and resolve, and ends with a summary: alerts per monitor, where the
reports are, and the commands that open the MLflow and Evidently UIs on them.

Everything lives under ``--home`` (default ``.glassbox/demo``), which the demo wipes at start (only when it
holds the demo's marker file), so a second run needs no cleaning. Every child runs in its own process group
and is stopped on exit, on errors and on Ctrl-C; Python children also get SIGTERM from Linux if the demo dies.
``<home>/alerts.jsonl`` holds every alert seen (with the stream row and phase it fell in), ``<home>/summary.json``
the outcome, ``<home>/logs/`` the children's logs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from stream.errors import UserError

MODEL = "churn"
DEFAULT_HOME = Path(".glassbox/demo")
MARKER = ".glassbox-demo"
EXPECTED = ("data_drift", "concept_drift", "data_quality")
PREFIX = "glassbox."
APP_ID = "glassbox-demo"
SEV_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
# Python children ask Linux for SIGTERM when the demo dies, whatever kills it (even SIGKILL)
_PDEATHSIG = ("import os, sys, signal\n"
              "if sys.platform.startswith('linux'):\n"
              "    import ctypes\n"
              "    ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"
              "    if os.getppid() != {ppid}: sys.exit(0)\n")


class DemoError(UserError, RuntimeError):
    """The demo cannot run or did not show what it should; one line says why."""


@dataclass
class DemoOptions:
    home: Path = DEFAULT_HOME
    rows: int = 30_000
    speed: float = 1500.0  # events per second; 0 = as fast as possible
    seed: int = 7
    keep_running: bool = False
    label_delay: int = 300
    batch: int = 250


# ------------------------------------------------------------------------------------------------ the home
def prepare_home(home: Path) -> Path:
    """Empty ``home`` for a fresh run: wiped only if it is the demo's own (marker file) or empty."""
    home = home.expanduser().resolve()
    if home.exists():
        if not home.is_dir():
            raise DemoError(f"--home {home} is a file")
        if any(home.iterdir()) and not (home / MARKER).is_file():
            raise DemoError(f"--home {home} is not empty and was not made by glassbox demo; pick another folder")
        shutil.rmtree(home)
    (home / "logs").mkdir(parents=True)
    (home / MARKER).write_text("made by `glassbox demo`; wiped at the start of the next run\n")
    return home


# ------------------------------------------------------------------------------------------ child processes
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


# ---------------------------------------------------------------------------------------------- alert feed
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


# ------------------------------------------------------------------------------------------------- display
@dataclass
class Progress:
    phase: str = "starting"
    published: int = 0
    labels: int = 0
    processed: int = 0
    joined: int = 0
    note: str = ""


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


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def alert_line(a: dict[str, Any]) -> str:
    """One plain line per alert (non-terminal output, and the log)."""
    d = a.get("demo", {})
    when = dt.datetime.fromtimestamp((a.get("event_time") or 0) / 1000).strftime("%H:%M:%S")
    return (f"ALERT {a['status'].upper():8} {a['severity']:8} {a['monitor']:16} {a['model']}"
            f"{'/' + a['feature'] if a.get('feature') else ''}  {a.get('statistic')} {_num(a.get('value'))}"
            f" vs {_num(a.get('threshold'))}  at {when} row {d.get('row')} ({d.get('phase')})")


class Display:
    """A rich Live view (alerts table + progress) on a terminal; plain lines otherwise (logs, tests)."""

    def __init__(self, console: Any, total: int, phases: list[Any]):
        self.console = console
        self.total = total
        self.phases = phases
        self.progress = Progress()
        self.rows: list[dict[str, Any]] = []
        self.live: Any = None
        self.t0 = time.monotonic()

    def __enter__(self) -> Display:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(*exc)
            self.live = None

    def phase(self, text: str) -> None:
        self.progress.phase = text
        if self.live is None:
            from rich.markup import escape

            self.console.print(f"[bold]== {escape(text)}[/]")
        self.refresh()

    def alert(self, a: dict[str, Any]) -> None:
        self.rows.append(a)
        if self.live is None:
            style = "dim" if a["status"] == "resolved" else SEV_STYLE.get(a["severity"], "")
            self.console.print(alert_line(a), style=style, highlight=False, markup=False)
        self.refresh()

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render())

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table("time", "model", "monitor", "feature", "status", "severity", "value vs threshold", "row",
                      "phase", title="glassbox alerts (live)", expand=False)
        for a in self.rows[-18:]:
            d = a.get("demo", {})
            when = dt.datetime.fromtimestamp((a.get("event_time") or 0) / 1000).strftime("%H:%M:%S")
            sev = a["severity"]
            table.add_row(when, a["model"], a["monitor"], a.get("feature") or "-", a["status"],
                          Text(sev, style=SEV_STYLE.get(sev, "")),
                          f"{_num(a.get('value'))} vs {_num(a.get('threshold'))}", str(d.get("row")),
                          str(d.get("phase")), style="dim" if a["status"] == "resolved" else None)
        p = self.progress
        bar_w = 30
        done = int(bar_w * p.published / max(self.total, 1))
        head = Text(f" {p.phase} {p.note}", style="bold")
        line = Text(f" [{'#' * done}{'.' * (bar_w - done)}] sent {p.published:,}/{self.total:,} events, "
                    f"{p.labels:,} labels | worker {p.processed:,} events, {p.joined:,} labels | "
                    f"{len(self.rows)} alerts | {time.monotonic() - self.t0:.0f}s")
        return Group(table, head, line)


# --------------------------------------------------------------------------------------------------- steps
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
        "GLASSBOX_LOG_LEVEL": os.environ.get("GLASSBOX_LOG_LEVEL", "WARNING"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def quiet_into(log: Path) -> Any:
    """Send stdout, stderr and warnings of the block (MLflow is chatty) to ``log``."""
    import warnings

    with open(log, "a", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def train_model(home: Path, tracking_uri: str) -> tuple[Any, Any, Any]:
    """Train, gate and register ``churn@champion`` with the example's code; returns (result, reference, model)."""
    from stream.demo import training as ex

    with quiet_into(home / "logs" / "train.log"):
        import mlflow

        # MLflow 3.17's system-metrics thread builds an MlflowClient every few seconds; without a registry URI
        # that tries `import pyspark` through MLflow's import hooks, which can deadlock with an import in this
        # thread (seen here: a hang inside log_model). A registry URI skips that lookup; importing what training
        # imports lazily, before the thread starts, closes the window too.
        mlflow.set_registry_uri(tracking_uri)
        import mlflow.models.evaluation.default_evaluator  # noqa: F401
        import mlflow.pyfunc  # noqa: F401
        import mlflow.sklearn  # noqa: F401
        import sklearn.inspection  # noqa: F401

        result = ex.train_and_register(tracking_uri, MODEL, seed=42, alias="champion",
                                       artifact_root=str(home / "mlartifacts"), env="demo")
        mlflow.set_tracking_uri(tracking_uri)
        from stream.evidence.reference import load_reference

        ref = load_reference(f"models:/{MODEL}@champion", tracking_uri=tracking_uri, load_model=True)
        model = ref.model.get_raw_model()
    return result, ref, model


def local_path(link: str | None) -> Path | None:
    """A report link as a local file path (file URIs and absolute paths), or None."""
    if not link:
        return None
    if link.startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(link).path))
    p = Path(link)
    return p if p.is_absolute() else None


def own_report(home: Path, stream: Any, reference: Any, window_index: int, end_ms: int | None) -> Path:
    """An Evidently report of one window against the reference (HTML under ``<home>/reports``, and added to
    the Evidently workspace), for when the worker wrote none."""
    from stream.evidence.snapshots import SnapshotJob, render_snapshot

    w = 1000
    cur = stream.frame.iloc[window_index * w:(window_index + 1) * w]
    feats = list(stream.features)
    current = cur[feats + ["prediction", "label"]].reset_index(drop=True)
    ref = reference.data.rename(columns={"churn": "label"})[feats + ["prediction", "label"]]
    with quiet_into(home / "logs" / "reports.log"):
        out = render_snapshot(SnapshotJob(
            model=MODEL, window_index=window_index, window_end_ms=end_ms, current=current, reference=ref,
            features=feats, out_dir=str(home / "reports" / MODEL), label="label", task="binary",
            categorical=list(stream.categorical), trigger="alert", sample_size=1000,
            workspace=str(home / "evidently"), tags=["demo"]))
    return Path(out.html)


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


def collect_reports(home: Path, stream: Any, reference: Any, alerts: list[dict[str, Any]]) -> dict[str, str]:
    """monitor -> the Evidently report of the window where it first fired, from the alerts' links (only when
    the link is that window's report, not a later one); the data-drift report is rendered here if the worker
    wrote none."""
    reports: dict[str, str] = {}
    seen: set[str] = set()
    for a in alerts:
        if a["status"] != "firing" or a["monitor"] in seen:
            continue
        seen.add(a["monitor"])
        p = local_path((a.get("links") or {}).get("report"))
        index = int((a.get("window") or {}).get("index", -1))
        if p is not None and p.is_file() and p.stem == f"w{index:06d}":
            reports[a["monitor"]] = str(p)
    first = next((a for a in alerts if a["monitor"] == "data_drift" and a["status"] == "firing"), None)
    if "data_drift" not in reports and first is not None:
        window = first.get("window") or {}
        index = int(window.get("index", stream.first_change_row // 1000))
        reports["data_drift"] = str(own_report(home, stream, reference, index, window.get("end")))
    return reports


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


# ------------------------------------------------------------------------------------------------ the demo
def run_demo(opts: DemoOptions, console: Any = None) -> dict[str, Any]:
    """Run the demo; returns the summary (also written to ``<home>/summary.json``)."""
    from rich.console import Console

    console = console or Console(file=sys.stdout, highlight=False,
                                 width=None if sys.stdout.isatty() else 160)
    t_start = time.monotonic()
    home = prepare_home(opts.home)
    children = Children()
    broker = None
    feed: AlertFeed | None = None
    summary: dict[str, Any] = {"home": str(home), "pids": {}}

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell that started the demo in the background may have left Ctrl-C ignored
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        from stream.kafka.broker import EmbeddedBroker, free_port
        from stream.kafka.topics import ensure_topics
        from stream.settings import load_settings

        console.print(f"[bold]glassbox demo[/]: everything under {home}")
        broker = EmbeddedBroker(log_path=home / "logs" / "broker.log").start()
        summary["pids"]["broker"] = broker.pid
        children.guard("broker-guard", broker.pid, home / "logs" / "broker.log")
        tracking_uri = f"sqlite:///{home.as_posix()}/mlflow.db"
        web_port = free_port()
        env = child_env(home, broker.bootstrap, web_port, tracking_uri)
        settings = load_settings(home=home, kafka={"bootstrap": broker.bootstrap, "topic_prefix": PREFIX,
                                                   "partitions": 4})
        ensure_topics(settings, broker.bootstrap)
        console.print(f"  embedded broker at {broker.bootstrap} (pid {broker.pid})")
        notifier = children.python("notifier", "from stream.cli.main import main; main()", ["alerts", "notify"], env,
                                   home / "logs" / "notifier.log")
        receivers = ["log", "desktop"] + [r for r, key in (("slack", "slack_token"), ("slack", "slack_webhook_url"),
                                                           ("pagerduty", "pagerduty_routing_key"))
                                          if settings.alerting.secret(key)]
        receivers = list(dict.fromkeys(receivers))
        console.print(f"  notifier started (pid {notifier.proc.pid}): {', '.join(receivers)}")

        t = time.monotonic()
        console.print("  training the reference model (examples/train_reference.py, seed 42) ...")
        result, reference, model = train_model(home, tracking_uri)
        auc = result.metrics.get("roc_auc", float("nan"))
        console.print(f"  registered {result.model_uri} as {MODEL}@champion (ROC AUC {auc:.3f}) with its reference "
                      f"({reference.info.rows} rows, digest {reference.info.digest}) in {time.monotonic() - t:.1f}s")

        worker = children.python("worker", "from stream.cli.main import main; main()", ["worker"], env,
                                 home / "logs" / "worker.log")
        summary["pids"].update(children.pids)
        (home / "pids.json").write_text(json.dumps(summary["pids"]))

        from stream.demo.stream_data import make_stream

        speed = opts.speed if opts.speed > 0 else 1500.0
        start_ms = int(time.time() * 1000)
        stream = make_stream(model.predict_proba, rows=opts.rows, seed=opts.seed, label_delay=opts.label_delay,
                             start_ms=start_ms, events_per_second=speed, model=MODEL)
        for p in stream.phases:
            console.print(f"  phase {p.name!r}: rows {p.start:,}-{p.end - 1:,}: {p.description}")

        stats_url = f"http://127.0.0.1:{web_port}/stats"
        wait_worker_ready(worker, stats_url, timeout_s=90)
        console.print(f"  worker ready (pid {worker.proc.pid}, stats at {stats_url}) after "
                      f"{time.monotonic() - t_start:.1f}s")

        feed = AlertFeed(settings, broker.bootstrap, settings.topic("alerts"))
        feed.start()
        log = AlertLog(home / "alerts.jsonl")
        log.path.write_text("")
        summary.update(publish_and_watch(opts, stream, broker.bootstrap, settings, feed, log, worker, stats_url,
                                         console, speed))
        streamed_at = time.monotonic()

        urls: dict[str, str] = {}
        if opts.keep_running:
            urls = start_uis(children, home, tracking_uri, env)
            summary["pids"].update(children.pids)
            (home / "pids.json").write_text(json.dumps(summary["pids"]))
        else:
            console.print("  stopping the worker (it closes its MLflow run and finishes its reports) ...")
            children.stop(worker, timeout_s=30)
            children.stop(notifier, timeout_s=10)
        reports = collect_reports(home, stream, reference, log.alerts)
        summary.update(finish_summary(opts, home, stream, log, reports, tracking_uri, receivers,
                                      time.monotonic() - t_start, streamed_at - t_start))
        (home / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        print_summary(console, summary, urls)
        if opts.keep_running:
            console.print("[bold]broker, worker, notifier and UIs are running: press Ctrl-C to stop them[/]")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    for a in feed.drain():
                        console.print(alert_line(log.add(a, stream)), markup=False, highlight=False)
                    time.sleep(0.5)
        if summary["missing"]:
            raise DemoError(f"the demo saw no {', '.join(summary['missing'])} alert (logs in {home / 'logs'})")
        return summary
    finally:
        t = time.monotonic()
        for s in old:  # a second Ctrl-C must not cut the cleanup short (each stop is bounded)
            signal.signal(s, signal.SIG_IGN)
        if feed is not None:
            feed.stop()
        children.stop_all()
        if broker is not None:
            broker.stop()
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        names = [c.name for c in children.children if c.name != "broker-guard"] + ["broker"] * (broker is not None)
        console.print(f"stopped {', '.join(names)} and their subprocesses ({time.monotonic() - t:.1f}s)")


def publish_and_watch(opts: DemoOptions, stream: Any, bootstrap: str, settings: Any, feed: AlertFeed,
                      log: AlertLog, worker: Child, stats_url: str, console: Any, speed: float) -> dict[str, Any]:
    """Publish the stream (paced), show alerts as they come, wait until the worker processed everything."""
    from stream.producer import Producer

    n = len(stream)
    pace = opts.speed > 0
    display = Display(console, n, stream.phases)
    last_stats = 0.0
    labels_sent = 0

    def pump() -> None:
        nonlocal last_stats
        for a in feed.drain():
            display.alert(log.add(a, stream))
        if time.monotonic() - last_stats > 0.5:
            last_stats = time.monotonic()
            s = http_json(stats_url)
            if s:
                display.progress.processed = int(s.get("events", 0))
                display.progress.joined = int(s.get("labels", 0))
        display.refresh()

    t0 = time.monotonic()
    with Producer(bootstrap, topic_prefix=PREFIX, kafka=settings.kafka) as producer, display:
        phase_idx = -1
        for start in range(0, n, opts.batch):
            end = min(n, start + opts.batch)
            k = int(stream.frame["phase"].iat[start])
            if k != phase_idx:
                phase_idx = k
                p = stream.phases[k]
                display.phase(f"phase {k + 1}/4: {p.name} ({p.description})")
            producer.send_prediction_batch(**stream.prediction_batch(start, end))
            labels_sent, due = stream.labels_due(end, labels_sent)
            for label in due:
                producer.send_label(**label)
            display.progress.published, display.progress.labels = end, labels_sent
            if worker.proc.poll() is not None:
                raise DemoError(f"the worker exited (code {worker.proc.returncode}):\n{tail(worker.log)}")
            if pace:
                while (wait := t0 + end / speed - time.monotonic()) > 0:
                    pump()
                    time.sleep(min(wait, 0.1))
            else:
                pump()
        labels_sent, due = stream.labels_due(n, labels_sent)
        for label in due:
            producer.send_label(**label)
        producer.flush()
        display.progress.labels = labels_sent
        display.phase("all events published; waiting for the worker to finish")
        deadline = time.monotonic() + 60
        done_at = None
        while time.monotonic() < deadline:
            pump()
            if display.progress.processed >= n and display.progress.joined >= labels_sent:
                done_at = done_at or time.monotonic()
                quiet = time.monotonic() - done_at
                if quiet > 3.0:
                    break
            if worker.proc.poll() is not None:
                raise DemoError(f"the worker exited (code {worker.proc.returncode}):\n{tail(worker.log)}")
            time.sleep(0.2)
        else:
            display.progress.note = "(timed out waiting for the worker)"
        pump()
        display.phase("done")
    return {"published": n, "labels": labels_sent, "processed": display.progress.processed,
            "labels_joined": display.progress.joined, "stream_seconds": round(time.monotonic() - t0, 1)}


def finish_summary(opts: DemoOptions, home: Path, stream: Any, log: AlertLog, reports: dict[str, str],
                   tracking_uri: str, receivers: list[str], seconds: float, streamed: float) -> dict[str, Any]:
    """The outcome as data: counts per monitor, first firing row per monitor, early alerts, paths, commands."""
    counts: dict[str, dict[str, int]] = {}
    for (monitor, status), c in sorted(log.counts().items()):
        counts.setdefault(monitor, {})[status] = c
    first: dict[str, int] = {}
    for a in log.alerts:
        if a["status"] == "firing":
            first.setdefault(a["monitor"], a["demo"]["row"])
    change = stream.first_change_row
    early = [a["alert_id"] for a in log.alerts if a["demo"]["row"] < change]
    return {
        "rows": len(stream), "phases": [p.__dict__ for p in stream.phases], "first_change_row": change,
        "first_change_time_ms": int(stream.frame["timestamp"].iat[change]),
        "alerts": len(log.alerts), "counts": counts, "first_firing_row": first, "early_alerts": early,
        "missing": [m for m in EXPECTED if m not in first], "reports": reports, "receivers": receivers,
        "alerts_file": str(log.path), "logs": str(home / "logs"), "tracking_uri": tracking_uri,
        "evidently_workspace": str(home / "evidently"),
        "commands": {
            "mlflow": f"uv run mlflow ui --backend-store-uri {tracking_uri} --port 5000",
            "evidently": f"uv run evidently ui --workspace {home / 'evidently'} --port 8000",
        },
        "seconds": round(seconds, 1), "seconds_to_end_of_stream": round(streamed, 1),
    }


def print_summary(console: Any, s: dict[str, Any], urls: dict[str, str]) -> None:
    from rich.panel import Panel
    from rich.table import Table

    table = Table("monitor", "firing", "resolved", "first firing at row", "injected at row", box=None)
    injected = {p["monitor"]: p["start"] for p in s["phases"] if p["monitor"]}
    for monitor, c in s["counts"].items():
        table.add_row(monitor, str(c.get("firing", 0)), str(c.get("resolved", 0)),
                      str(s["first_firing_row"].get(monitor, "-")), str(injected.get(monitor, "-")))
    early = (f"no alert before the first injected change (row {s['first_change_row']:,})" if not s["early_alerts"]
             else f"{len(s['early_alerts'])} alert(s) before the first change at row {s['first_change_row']:,}")
    lines = [
        f"{s['alerts']} alerts from {s['rows']:,} events in {s['seconds']:.0f}s; {early}.",
        f"missing: {', '.join(s['missing'])}" if s["missing"] else "data drift, concept drift and data quality "
        "problems were each detected.",
        f"notified through: {', '.join(s['receivers'])} (notifier log: {s['logs']}/notifier.log)",
        f"alerts as JSON lines: {s['alerts_file']}",
        *[f"Evidently report ({m}): {p}" for m, p in s["reports"].items()],
        *([f"all reports of the run: {Path(next(iter(s['reports'].values()))).parent}"] if s["reports"] else []),
        "",
        *([f"MLflow UI:    {urls['mlflow']}"] if "mlflow" in urls else [f"MLflow UI:    {s['commands']['mlflow']}"]),
        *([f"Evidently UI: {urls['evidently']}"] if "evidently" in urls
          else [f"Evidently UI: {s['commands']['evidently']}"]),
    ]
    from rich.console import Group
    from rich.text import Text

    console.print(Panel(Group(table, Text(""), Text("\n".join(lines))), title="glassbox demo: summary",
                        expand=False))


# ------------------------------------------------------------------------------------------------- command
def demo_command(
    keep_running: Annotated[bool, typer.Option("--keep-running", help="leave broker, worker, notifier and the "
                                               "MLflow and Evidently UIs up until Ctrl-C")] = False,
    home: Annotated[Path, typer.Option(help="demo folder (wiped at start when the demo made it)")] = DEFAULT_HOME,
    rows: Annotated[int, typer.Option(min=8000, help="events in the stream (4 phases)")] = 30_000,
    speed: Annotated[float, typer.Option(min=0, help="events per second (0: as fast as possible)")] = 1500.0,
    seed: Annotated[int, typer.Option(help="seed of the stream")] = 7,
) -> None:
    """Run the whole product on an embedded broker: train, stream, drift, live alerts, reports."""
    run_demo(DemoOptions(home=home, rows=rows, speed=speed, seed=seed, keep_running=keep_running))


def main(argv: list[str] | None = None) -> None:
    """``python -m stream.demo.main``: the command on its own (what ``glassbox demo`` runs)."""
    from stream.cli.main import main as cli_main

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    app.command()(demo_command)
    import stream.cli.main

    saved = stream.cli.main.app
    stream.cli.main.app = app
    try:
        cli_main(argv)
    finally:
        stream.cli.main.app = saved


if __name__ == "__main__":
    main()

"""Security: Kafka SASL/SSL settings reach every client, secrets are never shown, nothing from Kafka is
unpickled or evaluated, names and values from models and streams are escaped in Slack and HTML, and the
worker's web endpoints listen on loopback only."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import socket
import ssl
import threading
import time
import urllib.request
from pathlib import Path

import certifi
import psutil
import pytest

from stream.kafka.clients import aiokafka_kwargs, faust_kwargs, kafka_python_kwargs
from stream.kafka.faust_app import make_app
from stream.settings import ConfigError, KafkaConfig, Settings, load_settings
from tests.kafka_util import WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "stream").rglob("*.py"), *(ROOT / "detectors").rglob("*.py")])
PASSWORD = "pw-9f1c-never-print-me"
EVIL = '<!channel> </script><img src=x onerror=alert(1)> & <http://evil.example|click>'


def sasl_ssl(mechanism: str = "SCRAM-SHA-512") -> KafkaConfig:
    return KafkaConfig(bootstrap="k1:9093", security_protocol="SASL_SSL", sasl_mechanism=mechanism,
                       sasl_username="svc-glassbox", sasl_password=PASSWORD, ssl_cafile=Path(certifi.where()))


# Kafka security settings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_settings_reach_faust_aiokafka_and_kafka_python(mechanism: str, tmp_path: Path) -> None:
    cfg = sasl_ssl(mechanism)
    # kafka-python (producer SDK, topic admin): the real client's resolved config
    from kafka import KafkaConsumer

    kp = KafkaConsumer(**kafka_python_kwargs(cfg, "127.0.0.1:1"), api_version=(2, 6, 0), group_id=None)
    try:
        c = kp.config
        assert (c["security_protocol"], c["sasl_mechanism"], c["sasl_plain_username"], c["sasl_plain_password"]) \
            == ("SASL_SSL", mechanism, "svc-glassbox", PASSWORD)
        assert isinstance(c["ssl_context"], ssl.SSLContext) and c["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    finally:
        kp.close()
    # aiokafka (state topic, topic replay, backtests): the real client's connection settings

    async def aio() -> None:
        from aiokafka import AIOKafkaProducer

        p = AIOKafkaProducer(**aiokafka_kwargs(cfg, "127.0.0.1:1"))
        cl = p.client
        assert (cl._security_protocol, cl._sasl_mechanism, cl._sasl_plain_username, cl._sasl_plain_password) == \
            ("SASL_SSL", mechanism, "svc-glassbox", PASSWORD)
        assert cl._ssl_context.verify_mode == ssl.CERT_REQUIRED and cl._ssl_context.check_hostname

    asyncio.run(aio())
    # Faust (the worker): the app's credentials, and what Faust's aiokafka driver makes of them
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    settings = Settings(home=tmp_path, kafka=cfg.model_dump())
    app = make_app(settings, bootstrap="k1:9093,k2:9093", web_enabled=False)
    assert [str(u) for u in app.conf.broker] == ["kafka://k1:9093", "kafka://k2:9093"]
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert (auth["security_protocol"], auth["sasl_mechanism"], auth["sasl_plain_username"],
            auth["sasl_plain_password"]) == ("SASL_SSL", mechanism, "svc-glassbox", PASSWORD)
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_ssl_alone_and_sasl_plaintext_reach_faust() -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    tls = KafkaConfig(security_protocol="SSL", ssl_cafile=Path(certifi.where()))
    assert credentials_to_aiokafka_auth(faust_kwargs(tls, "h:1")["broker_credentials"])["security_protocol"] == "SSL"
    plain = KafkaConfig(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                        sasl_password=PASSWORD)
    auth = credentials_to_aiokafka_auth(faust_kwargs(plain, "h:1")["broker_credentials"])
    assert (auth["security_protocol"], auth["sasl_plain_password"]) == ("SASL_PLAINTEXT", PASSWORD)
    assert aiokafka_kwargs(plain, "h:1")["security_protocol"] == "SASL_PLAINTEXT"
    assert kafka_python_kwargs(plain, "h:1")["security_protocol"] == "SASL_PLAINTEXT"


class Sniffer:
    """A TCP listener that records the first bytes every client sends, then hangs up (no Kafka behind)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.first: list[bytes] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    data = conn.recv(16)
                    if data:
                        self.first.append(data)

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.server.close()


def test_tls_is_on_the_wire_for_the_producer_sdk_topic_admin_and_state_reader(tmp_path: Path) -> None:
    """With ``security_protocol = SSL``, every connection the kafka-python and aiokafka clients open starts
    with a TLS ClientHello (0x16 0x03), never a plaintext Kafka request."""
    from stream.kafka.state_topic import TopicState
    from stream.kafka.topics import ensure_topics
    from stream.producer import Producer, ProducerError

    sniff = Sniffer()
    boot = f"127.0.0.1:{sniff.port}"
    cfg = KafkaConfig(bootstrap=boot, security_protocol="SSL", ssl_cafile=Path(certifi.where()),
                      connect_timeout_s=1)
    settings = Settings(home=tmp_path, kafka=cfg.model_dump())
    try:
        with pytest.raises(ProducerError):
            Producer(boot, kafka=cfg, connect_timeout_s=1)
        n_kafka_python = len(sniff.first)
        with contextlib.suppress(Exception):
            ensure_topics(settings, boot)
        n_admin = len(sniff.first) - n_kafka_python

        async def state() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(TopicState(settings, boot).load({0}), 5)

        asyncio.run(state())
        n_aiokafka = len(sniff.first) - n_kafka_python - n_admin
    finally:
        time.sleep(0.3)
        sniff.close()
    assert n_kafka_python and n_aiokafka, (n_kafka_python, n_admin, n_aiokafka)
    assert all(b[:2] == b"\x16\x03" for b in sniff.first), [b[:6] for b in sniff.first]


KAFKA_CLIENTS = {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient", "AIOKafkaConsumer", "AIOKafkaProducer",
                 "AIOKafkaAdminClient", "App"}


def kafka_clients_without_settings() -> list[str]:
    """Kafka clients built in stream/ without ``**`` connection settings from stream.kafka.clients."""
    bad = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name not in KAFKA_CLIENTS or (name == "App" and "faust" not in ast.unparse(f)):
                continue
            if not any(k.arg is None for k in node.keywords):  # no **kwargs: nothing passed the settings
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return bad


def test_the_worker_producer_state_admin_and_replay_clients_take_the_settings() -> None:
    core = [b for b in kafka_clients_without_settings()
            if b.split(":")[0] in ("stream/kafka/faust_app.py", "stream/worker/agents.py", "stream/producer.py",
                                   "stream/kafka/state_topic.py", "stream/kafka/topics.py",
                                   "stream/backtest/topic_replay.py", "stream/cli/replay.py")]
    assert core == []


def test_every_kafka_client_takes_the_security_settings() -> None:
    assert kafka_clients_without_settings() == []


# nothing from Kafka is unpickled or evaluated --------------------------------------------------------------------
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve", "skops"}
UNSAFE_CALLS = {"eval", "exec", "compile", "__import__"}
ALLOWED_IMPORTS = {"detectors/river_state.py"}  # rebuilds River classes by name; see the next test


def test_nothing_is_unpickled_or_evaluated() -> None:
    found = []
    for path in SOURCES:
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                found += [f"{rel}:{node.lineno} import {m}" for m in mods if m.split(".")[0] in UNSAFE_MODULES]
            elif isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Name) and f.id in UNSAFE_CALLS:
                    found.append(f"{rel}:{node.lineno} {f.id}()")
                elif isinstance(f, ast.Attribute):
                    owner = ast.unparse(f.value)
                    if owner.split(".")[0] in UNSAFE_MODULES and f.attr in ("load", "loads", "Unpickler"):
                        found.append(f"{rel}:{node.lineno} {owner}.{f.attr}()")
                    if f.attr in ("import_module", "__import__") and rel not in ALLOWED_IMPORTS:
                        found.append(f"{rel}:{node.lineno} {owner}.{f.attr}()")
                    if owner == "yaml" and f.attr in ("load", "unsafe_load", "full_load"):
                        found.append(f"{rel}:{node.lineno} yaml.{f.attr}()")
                    if f.attr == "read_pickle":
                        found.append(f"{rel}:{node.lineno} read_pickle()")
    assert found == []


def test_restored_state_rebuilds_river_classes_only() -> None:
    from detectors.river_state import loads

    for name in ("os:system", "subprocess:Popen", "builtins:eval", "detectors.monitor:ModelMonitor"):
        with pytest.raises(ValueError):
            loads({"__obj__": name, "attrs": {}})


def test_restored_state_cannot_reach_non_river_objects_through_river_modules() -> None:
    from detectors.river_state import loads

    for name in ("river.base.base:inspect.getsource", "river.base.base:sys", "river.base.base:types.FunctionType",
                 "riverx:thing"):
        with pytest.raises(ValueError):
            loads({"__obj__": name, "attrs": {}})


# secrets ----------------------------------------------------------------------------------------------------------
def test_secrets_come_from_env_or_files_and_are_never_printed(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "slack_token"
    token_file.write_text("xoxb-file-secret-123\n")
    monkeypatch.setenv("GLASSBOX_KAFKA__SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("GLASSBOX_ALERTING__SLACK_TOKEN_FILE", str(token_file))
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.kafka.sasl_password.get_secret_value() == PASSWORD
    assert s.alerting.secret("slack_token") == "xoxb-file-secret-123"
    shown = repr(s) + str(s) + s.model_dump_json() + json.dumps(s.model_dump(mode="json"))
    assert PASSWORD not in shown and "xoxb-file-secret-123" not in shown
    monkeypatch.setenv("GLASSBOX_KAFKA__PARTITIONS", "0")  # an error elsewhere must not echo the secrets
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert PASSWORD not in str(err.value) and "partitions" in str(err.value)


@pytest.mark.system
@pytest.mark.timeout(120)
def test_worker_web_endpoints_are_on_loopback_and_leak_no_secret(kafka_bootstrap: str, topic_prefix: str,
                                                                  tmp_path: Path) -> None:
    secret_file = tmp_path / "pd_key"
    secret_file.write_text("pd-routing-key-file-secret")
    env = {"GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_ATTRIBUTION__ENABLED": "false",
           "GLASSBOX_ALERTING__SLACK_TOKEN": "xoxb-env-secret-456",
           "GLASSBOX_ALERTING__PAGERDUTY_ROUTING_KEY_FILE": str(secret_file), "GLASSBOX_LOG_LEVEL": "INFO"}
    with WorkerProcess(kafka_bootstrap, topic_prefix, app_id=f"{topic_prefix}sec", home=tmp_path / "w",
                       extra_env=env) as worker:
        worker.wait_ready()
        proc = psutil.Process(worker.proc.pid)
        listening = {(c.laddr.ip, c.laddr.port) for c in proc.net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {("127.0.0.1", worker.web_port)}, listening
        pages = ""
        for page in ("stats", "metrics"):
            with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/{page}", timeout=3) as r:
                pages += r.read().decode()
        log = worker.log()
    for secret in ("xoxb-env-secret-456", "pd-routing-key-file-secret"):
        assert secret not in pages and secret not in log


# escaping ---------------------------------------------------------------------------------------------------------
def hostile_alert() -> dict:
    from detectors.alert import make_alert

    return make_alert(model=f"m {EVIL}", monitor="data_drift", feature=EVIL, status="firing", severity="warning",
                      detector="psi", statistic="psi", value=0.3, threshold=0.2, threshold_kind="calibrated",
                      window={"index": 1, "start": 0, "end": 10, "events": 10}, event_time=1_700_000_000_000,
                      summary=f"feature {EVIL!r} drifted")


def test_slack_messages_escape_names_and_values() -> None:
    from stream.alerting.messages import slack_blocks

    a = hostile_alert()
    text, blocks = slack_blocks(a["model"], [(a, "firing", a["event_time"], None)])
    rendered = text + json.dumps(blocks)
    for raw in ("<!channel>", "<http://evil.example|click>", "</script>"):
        assert raw not in rendered
    assert "&lt;!channel&gt;" in rendered and "&amp;" in rendered


def test_timeline_html_escapes_names_and_values(tmp_path: Path) -> None:
    from stream.backtest.timeline import Panel, Span, Timeline, write_html

    p = Panel(model=EVIL, name=EVIL, statistic=EVIL, x=[1.0, 2.0], value=[0.1, 0.3], threshold=[0.2, 0.2],
              drift=[False, True], spans=[Span("data_drift", 1.0, None, "warning")], changes=[(1.5, EVIL)])
    page = write_html(Timeline([p], x_is_time=False, title=EVIL), tmp_path / "t.html").read_text()
    benign = write_html(Timeline([Panel(model="m", name="x", statistic="psi", x=[1.0, 2.0], value=[0.1, 0.3],
                                        threshold=[0.2, 0.2], drift=[False, True])], x_is_time=False),
                        tmp_path / "b.html").read_text()
    assert EVIL not in page and "<img src=x" not in page
    assert page.count("</script>") == benign.count("</script>")


def test_evidently_report_html_escapes_names_and_stream_values() -> None:
    import numpy as np
    import pandas as pd

    from stream.evidence.evidently_report import build_snapshot

    rng = np.random.default_rng(0)
    evil = "</script><img src=x onerror=alert(1)>"
    ref = pd.DataFrame({evil: rng.normal(size=300), "c": rng.choice(["a", "b"], 300)})
    cur = pd.DataFrame({evil: rng.normal(1, 1, size=300), "c": rng.choice(["a", evil], 300)})  # value from the stream
    page = build_snapshot(cur, ref, features=[evil, "c"], categorical=["c"], sample_size=300).to_html()
    benign = build_snapshot(cur.rename(columns={evil: "x"}).replace(evil, "z"), ref.rename(columns={evil: "x"}),
                            features=["x", "c"], categorical=["c"], sample_size=300).to_html()
    assert evil not in page
    assert page.count("</script>") == benign.count("</script>")

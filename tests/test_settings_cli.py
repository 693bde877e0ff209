"""Configuration and the command line: defaults that need nothing, one-line errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from stream.settings import ConfigError, Settings, load_settings


def test_defaults_need_nothing_installed(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.kafka.embedded and s.mlflow.tracking_uri == "sqlite:///.glassbox/mlflow.db"
    assert s.topic("predictions") == "glassbox.predictions"


def test_env_overrides_toml(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    cfg = tmp_path / "glassbox.toml"
    cfg.write_text('[kafka]\nbootstrap = "a:1"\ntopic_prefix = "x."\n[detection]\nwindow = 500\n')
    monkeypatch.setenv("GLASSBOX_KAFKA__BOOTSTRAP", "b:2")
    s = load_settings(cfg)
    assert (s.kafka.bootstrap, s.kafka.topic_prefix, s.detection.window) == ("b:2", "x.", 500)


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[kafka]\npartitions = 0\n", "kafka.partitions"),
        ("[kafka]\nbootstrp = 'x'\n", "kafka.bootstrp: unknown setting"),
        ("[kafka]\nsecurity_protocol = 'TLS'\n", "kafka.security_protocol"),
        ("[kafka\n", "cannot read config"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, toml: str, needle: str) -> None:
    cfg = tmp_path / "glassbox.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg


def test_secrets_are_not_printed() -> None:
    s = Settings(kafka={"sasl_password": "hunter2"})
    assert "hunter2" not in repr(s) and "hunter2" not in s.model_dump_json()


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "stream.cli", *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


COMMANDS = ("broker", "produce", "worker", "replay", "explain", "demo", "reference", "alerts", "silence")


def test_help_lists_commands() -> None:
    """Every command group is registered explicitly: one that fails to import breaks ``--help`` loudly."""
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    listed = {line.split()[0] for line in r.stdout.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert listed == set(COMMANDS)
    for group, sub in (("alerts", "notify"), ("alerts", "tail"), ("silence", "add"), ("reference", "show")):
        assert sub in run_cli(group, "--help").stdout


def test_missing_worker_dependency_is_one_line() -> None:
    """With only the producer SDK installed (here: mlflow made unimportable), a command that needs the worker
    side says what to install."""
    code = "import sys; sys.modules['mlflow'] = None; from stream.cli.main import main; main()"
    r = subprocess.run([sys.executable, "-c", code, "reference", "show", "models:/churn@champion"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("glassbox: error: reference show needs the worker dependencies (no module 'mlflow'): "
                                "pip install 'glassbox[worker]'")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--bogus",), "No such option: --bogus"),
        (("produce", "/no/such/file.parquet", "--model", "m"), "/no/such/file.parquet"),
        (("worker", "--config", "/no/such.toml"), "config file not found"),
    ],
)
def test_cli_errors_are_one_line(args: tuple[str, ...], needle: str, kafka_bootstrap: str) -> None:
    r = run_cli(*args, env={"GLASSBOX_KAFKA__BOOTSTRAP": kafka_bootstrap})
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "Warning" not in ln]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("glassbox: error: "), r.stderr
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_unreachable_broker_fails_fast() -> None:
    t = time.monotonic()
    r = run_cli("worker", env={"GLASSBOX_KAFKA__BOOTSTRAP": "127.0.0.1:1", "GLASSBOX_KAFKA__CONNECT_TIMEOUT_S": "2"})
    assert time.monotonic() - t < 12
    assert r.returncode == 2 and "not reachable at 127.0.0.1:1" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_configuration_reference_is_current() -> None:
    from pathlib import Path

    from stream.config_doc import reference

    doc = Path(__file__).parents[1] / "docs" / "configuration.md"
    assert doc.read_text() == reference(), "regenerate: uv run python -m stream.config_doc > docs/configuration.md"

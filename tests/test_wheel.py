"""The wheel is the product: built with ``uv build``, installed into fresh virtual environments outside the
repository, and used from a folder that is not the repository.

- the base install (no extras) is the producer SDK: it publishes to the embedded broker without the worker stack;
- ``glassbox[worker,embedded]`` runs ``glassbox demo`` to the end (each kind of alert), ``glassbox replay`` on a
  parquet file against a file reference, and the alerts' runbook links open files shipped inside the package.

Installs use the lock's pins (``uv export --all-extras`` as constraints), so they come from the uv cache. The
children run as on a user's machine: bytecode is written (``PYTHONDONTWRITEBYTECODE`` unset), nothing of the
repository on the path. About 3-4 minutes on 2 busy cores, so it has its own marker: ``pytest -m wheel``
(``.ci/run`` runs it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import synth

from tests.test_producer_sdk import check_published, run_sdk

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ("data_drift", "concept_drift", "data_quality")  # the demo's kinds of alert
RUNBOOK_URI = re.compile(r"file://[^\s\"'<>|)]+/stream/alerting/runbooks/[a-z_]+\.md")


def _clean_env(venv: Path | None = None) -> dict[str, str]:
    """The environment of a user's shell: no project venv, no repository on the path, bytecode written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLASSBOX_", "UV_PROJECT", "PYTHON"))
           and k not in ("VIRTUAL_ENV", "UV_COMPILE_BYTECODE", "UV_PYTHON")}  # installs link from the uv cache
    repo_bin = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p != repo_bin]
    if venv is not None:
        path.insert(0, str(venv / "bin"))
        env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join(path)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def _uv(*args: str, cwd: Path = ROOT, timeout: float = 600) -> str:
    out = subprocess.run(["uv", *args], cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"uv {' '.join(args)}:\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _uv("build", "--wheel", "--build-constraint", str(ROOT / "build-constraints.txt"), "--out-dir", str(out), "-q")
    (whl,) = out.glob("glassbox-*.whl")
    return whl


@pytest.fixture(scope="module")
def constraints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pins") / "constraints.txt"
    path.write_text(_uv("export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "--all-extras"))
    return path


def make_venv(dest: Path, wheel: Path, constraints: Path, extras: str = "") -> Path:
    """A fresh virtual environment at ``dest`` with the wheel (and ``extras``) installed; its ``bin`` folder."""
    _uv("venv", "-q", "--python", sys.executable, str(dest))
    t = time.monotonic()
    _uv("pip", "install", "-q", "--python", str(dest / "bin" / "python"), "-c", str(constraints),
        f"{wheel}{extras}")
    print(f"installed {wheel.name}{extras} into {dest} in {time.monotonic() - t:.1f}s")
    return dest / "bin"


def run(bin_dir: Path, args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    t = time.monotonic()
    out = subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=_clean_env(bin_dir.parent),
                         capture_output=True, text=True, timeout=timeout)
    print(f"{' '.join(args[:2])}: exit {out.returncode} in {time.monotonic() - t:.1f}s")
    return out


def test_wheel_ships_what_the_commands_need(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    runbooks = {n.rsplit("/", 1)[1] for n in names if n.startswith("stream/alerting/runbooks/")}
    assert {f"{m}.md" for m in (*EXPECTED, "performance", "pipeline")} <= runbooks
    assert "stream/demo/training.py" in names and "stream/producer.py" in names and "detectors/config.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "examples/")) or "__pycache__" in n]
    assert "Requires-Python: <3.14,>=3.11" in meta
    assert "Provides-Extra: worker" in meta and "Provides-Extra: embedded" in meta
    requires = re.findall(r"^Requires-Dist: (\S+?)[<>=!~; ]", meta, flags=re.M)
    base = {r for r, line in zip(requires, re.findall(r"^Requires-Dist: .*$", meta, flags=re.M), strict=True)
            if "extra ==" not in line}
    assert {"kafka-python", "orjson", "numpy", "pydantic"} <= base
    assert not base & {"mlflow", "evidently", "shap", "faust-streaming", "pandas", "prometheus-client"}


def test_base_install_is_the_producer_sdk(wheel: Path, constraints: Path, tmp_path: Path, kafka_bootstrap: str,
                                          topic_prefix: str) -> None:
    bin_dir = make_venv(tmp_path / "sdk-venv", wheel, constraints)
    work = tmp_path / "model-server"
    work.mkdir()
    probe = run(bin_dir, ["python", "-c", "import importlib.util as u, stream; print(stream.__file__); "
                          "print([m for m in ('mlflow', 'faust', 'pandas', 'evidently') if u.find_spec(m)])"],
                work, timeout=60)
    where, missing = probe.stdout.splitlines()
    assert Path(where).is_relative_to(tmp_path / "sdk-venv") and missing == "[]", probe.stdout + probe.stderr
    assert run_sdk(bin_dir / "python", kafka_bootstrap, topic_prefix, work) == []
    check_published(kafka_bootstrap, topic_prefix)
    cli = run(bin_dir, ["glassbox", "--help"], work, timeout=60)  # the entry point loads without the extra
    assert cli.returncode == 0 and "replay" in cli.stdout, cli.stdout + cli.stderr


@pytest.fixture(scope="module")
def product(wheel: Path, constraints: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``glassbox[worker,embedded]`` installed in a fresh environment; its ``bin`` folder."""
    return make_venv(tmp_path_factory.mktemp("product") / "venv", wheel, constraints, "[worker,embedded]")


def _runbook_links(*paths: Path) -> dict[str, str]:
    """monitor -> runbook link, from the alerts and logs the commands wrote."""
    links: dict[str, str] = {}
    for path in paths:
        for uri in RUNBOOK_URI.findall(path.read_text(errors="replace")):
            links.setdefault(uri.rsplit("/", 1)[1].removesuffix(".md"), uri)
    return links


def test_installed_demo_replay_and_runbook_links(product: Path, tmp_path: Path) -> None:
    work = tmp_path / "somewhere-else"
    work.mkdir()
    site = product.parent / "lib"

    # the demo, to the end: exit 0 and every kind of alert
    home = tmp_path / "demo-home"
    t = time.monotonic()
    demo = run(product, ["glassbox", "demo", "--rows", "8000", "--speed", "0", "--home", str(home)], work, 600)
    seconds = time.monotonic() - t
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    assert "data drift, concept drift and data quality problems were each detected" in demo.stdout
    summary = json.loads((home / "summary.json").read_text())
    assert not summary["missing"] and summary["rows"] == 8000
    for monitor in EXPECTED:
        assert summary["counts"][monitor]["firing"] >= 1, summary["counts"]
    alerts = [json.loads(line) for line in (home / "alerts.jsonl").read_text().splitlines()]
    assert {a["monitor"] for a in alerts if a["status"] == "firing"} >= set(EXPECTED)
    print(f"glassbox demo --rows 8000 --speed 0: {seconds:.0f}s (summary: {summary['seconds']}s)")

    # replay: a parquet file against a file reference, from the same foreign folder
    ref, events = synth.frame(5000, seed=4000), synth.frame(8000, seed=41)
    events.loc[4000:, "num_12"] += 5.0
    events.insert(0, "prediction_id", [f"id-{i}" for i in range(len(events))])
    events.insert(1, "timestamp", pd.date_range("2026-01-01", periods=len(events), freq="s", tz="UTC"))
    ref.to_parquet(work / "reference.parquet")
    events.to_parquet(work / "events.parquet")
    replay = run(product, ["glassbox", "replay", "events.parquet", "--reference", "reference.parquet",
                           "--alerts-out", "alerts.jsonl"], work, 300)
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
    assert "8,000 events" in replay.stdout
    replayed = [json.loads(line) for line in (work / "alerts.jsonl").read_text().splitlines()]
    assert ("data_drift", "num_12", "firing") in {(a["monitor"], a["feature"], a["status"]) for a in replayed}

    # runbook links: file URIs into the installed package, and they open the runbook of their monitor
    links = _runbook_links(home / "alerts.jsonl", home / "logs" / "notifier.log", work / "alerts.jsonl")
    assert set(EXPECTED) <= set(links), links
    for monitor, uri in links.items():
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path))
        assert path.is_relative_to(site) and path.parent.parts[-3:] == ("stream", "alerting", "runbooks"), uri
        with urllib.request.urlopen(uri) as page:
            assert page.read().decode().startswith(f"# Runbook: {monitor}\n"), uri

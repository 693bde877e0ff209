"""Snapshots as a user sees them, in headless Chromium: the report HTML and the Evidently UI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stream.evidence.snapshots import SnapshotService, project_id_for
from tests.browser import chromium_path, dump_dom, screenshot, visible_text

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium not installed (apt-get install chromium)")


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"tenure": rng.normal(30 + shift * 10, 10, n), "charges": rng.normal(70, 20, n),
                       "plan": rng.choice(["basic", "pro"], n)})
    df["prediction"] = (df.charges > 75).astype(int)
    return df


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("snapshots")
    svc = SnapshotService(workspace=root / "ws", out_dir=root / "out", sample_size=1000, max_pending=4)
    ref = frame(2000, 1)
    for i, shift in enumerate((0.0, 2.0)):
        svc.request(model="churn", window_index=i, window_end_ms=1_700_000_000_000 + i * 60_000,
                    current=frame(1000, 5 + i, shift), reference=ref, features=["tenure", "charges", "plan"])
    assert svc.wait(60) and svc.stats.completed == 2
    svc.close()
    return {"root": root, "ws": root / "ws", "drifted": root / "out" / "churn" / "w000001.html"}


def test_snapshot_html_renders_and_shows_the_drifted_columns(snapshots: dict[str, Path]) -> None:
    text = visible_text(dump_dom(snapshots["drifted"].as_uri()))
    assert "Drift is detected for 25.0% of columns (1 out of 4)" in text
    assert "tenure num Detected" in text  # the drift table: column, type, verdict
    assert "charges num Not Detected" in text and "plan cat Not Detected" in text
    png = screenshot(snapshots["drifted"].as_uri(), snapshots["root"] / "report.png", size=(1200, 900))
    assert png.stat().st_size > 20_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.system
def test_evidently_ui_lists_the_project_and_its_snapshots(snapshots: dict[str, Path]) -> None:
    port = _free_port()
    exe = Path(sys.executable).with_name("evidently")
    log = open(snapshots["root"] / "ui.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(exe), "ui", "--workspace", str(snapshots["ws"]), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "DO_NOT_TRACK": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                projects = _get_json(f"{base}/api/projects")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((snapshots["root"] / "ui.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        pid = str(project_id_for("churn"))
        assert [(p["id"], p["name"]) for p in projects] == [(pid, "churn")]
        snaps = _get_json(f"{base}/api/projects/{pid}/snapshots")
        assert sorted(s["name"] for s in snaps) == ["churn-w000000", "churn-w000001"]
        assert {s["metadata"]["window"] for s in snaps} == {"0", "1"}

        home = visible_text(dump_dom(f"{base}/", budget_ms=8000))
        assert "churn" in home and "glassbox drift monitoring" in home
        dash = visible_text(dump_dom(f"{base}/projects/{pid}", budget_ms=8000))
        for panel in ("Share of drifted columns", "Drift share over windows", "Per-feature drift score"):
            assert panel in dash
        reports = visible_text(dump_dom(f"{base}/projects/{pid}/reports", budget_ms=8000))
        assert "churn-w000000" in reports and "churn-w000001" in reports
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

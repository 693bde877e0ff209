"""Nothing left behind: the window spool of a SIGKILLed worker is uploaded to its run when the next worker starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stream.evidence.window_spool import read_window_records, recover_spools

KILLED = """
import os, signal, sys
from stream.evidence.window_spool import WindowSpool
spool = WindowSpool(sys.argv[1])
spool.owner = {"run_id": sys.argv[2], "tracking_uri": sys.argv[3]}
for i in range(0, 300, 30):
    spool.write("churn/v2", [{"index": j, "value": j / 7} for j in range(i, i + 30)])
os.kill(os.getpid(), signal.SIGKILL)  # before any upload: the parts are cut short (no gzip trailer)
"""


@pytest.mark.slow
def test_a_killed_workers_window_spool_is_uploaded_to_its_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("spool", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(exp).info.run_id
    root = tmp_path / "spool"
    root.mkdir()
    proc = subprocess.run([sys.executable, "-c", KILLED, str(root), run_id, uri], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert recover_spools(f"sqlite:///{tmp_path}/other.db", root) == {}, "another store's spool is left alone"
    assert recover_spools(uri, root) == {run_id: 300}
    assert not list(root.iterdir()), "the uploaded spool is removed"
    records = list(read_window_records(client.download_artifacts(run_id, "windows", str(tmp_path / "dl")) + "/..",
                                       "churn/v2"))
    assert [r["index"] for r in records] == list(range(300))
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and "300 window records" in run.data.tags["glassbox.note"]
    assert recover_spools(uri, root) == {}

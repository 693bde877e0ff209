"""Snapshots off the hot path: planned links, MLflow artifacts, Evidently workspace, failures counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors.batch import EventBatch
from stream.evidence.alert_links import AlertContext, enrich_alert
from stream.evidence.monitoring_run import MonitoringRun, local_path
from stream.evidence.recorder import window_frame
from stream.evidence.snapshots import SnapshotService, project_id_for

FEATURES = ["a", "b", "c"]


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(shift, 1, n), "b": rng.normal(0, 1, n), "c": rng.choice(["x", "y"], n)})
    df["prediction"] = (df.a > 0).astype(int)
    df["label"] = (df.a + rng.normal(0, 0.5, n) > 0).astype(int)
    return df


def test_policy_every_n_windows_and_on_alerts(tmp_path: Path) -> None:
    svc = SnapshotService(workspace=None, every_n_windows=10, out_dir=tmp_path)
    assert [i for i in range(30) if svc.should_snapshot(i)] == [9, 19, 29]
    assert svc.should_snapshot(3, fired=True)
    svc.close()


def test_snapshots_land_in_the_run_and_the_workspace_with_links(tmp_path: Path) -> None:
    ref = frame(3000, 1)
    run = MonitoringRun(f"sqlite:///{tmp_path}/mlflow.db", artifact_root=tmp_path / "art", kind="replay").start()
    svc = SnapshotService(workspace=tmp_path / "ws", run=run, every_n_windows=1, sample_size=800, max_pending=8)
    links = [svc.request(model="m1", window_index=i, window_end_ms=1_700_000_000_000 + i, current=frame(900, 10 + i,
                         shift=1.5 if i == 2 else 0.0), reference=ref, features=FEATURES, label="label",
                         task="binary", model_version="4") for i in range(3)]
    assert links[2]["report"].endswith("/artifacts/snapshots/m1/w000002.html")  # known before it exists
    assert svc.wait(60)
    alert = enrich_alert({"model": "m1", "window": {"index": 2}, "links": {"runbook": "docs/runbooks/drift.md"}},
                         AlertContext(run=run, snapshots=svc, references={"m1": {"name": "r", "digest": "d1"}}))
    run.finish()
    svc.close()
    assert svc.stats.as_dict()["completed"] == 3 and svc.stats.failed == 0
    for key in ("report", "report_json", "mlflow_run", "dashboard"):
        assert local_path(alert["links"][key]).exists(), key
    assert alert["links"]["runbook"] == "docs/runbooks/drift.md"
    assert alert["evidence"]["reference_digest"] == "d1" and alert["evidence"]["mlflow_run_id"] == run.run_id
    assert json.loads(local_path(alert["links"]["report_json"]).read_text())["glassbox"]["drifted_columns"] == [
        "a", "prediction"]
    hist = run.client.get_metric_history(run.run_id, "m1/evidently/drift_share")
    assert [(m.step, m.value) for m in hist] == [(0, 0.0), (1, 0.0), (2, 0.5)]  # a and prediction of 4
    assert run.client.get_metric_history(run.run_id, "m1/evidently/quality/Accuracy")

    from evidently.ui.workspace import Workspace

    ws = Workspace(str(tmp_path / "ws"))
    project = ws.get_project(project_id_for("m1"))
    assert project.name == "m1" and len(ws.list_runs(project.id)) == 3
    titles = [p.title for p in ws.get_dashboard(project.id).panels]
    assert {"Drift share over windows", "Per-feature drift score"} <= set(titles)
    assert any(t.startswith("Performance over time") for t in titles)


def test_a_failing_report_is_counted_never_raised(tmp_path: Path) -> None:
    svc = SnapshotService(workspace=tmp_path / "ws", out_dir=tmp_path / "out")
    links = svc.request(model="m", window_index=0, current=frame(100, 1), reference=frame(100, 2),
                        features=["a", "not-a-column"])
    assert links["report"] is not None
    assert svc.wait(60)
    assert svc.stats.failed == 1 and svc.stats.completed == 0
    assert svc.links_for("m", 0)["report"] is None  # alerts never point at a report that does not exist
    assert "KeyError" in svc.outcomes[0].error
    svc.close()


def test_requests_beyond_max_pending_are_skipped_not_queued(tmp_path: Path) -> None:
    gate = threading.Event()

    class Slow:
        """An executor whose jobs wait for the gate: the service sees them pending."""

        def __init__(self) -> None:
            import concurrent.futures as cf

            self.pool = cf.ThreadPoolExecutor(1)

        def submit(self, fn, *a):  # noqa: ANN001, ANN202
            return self.pool.submit(lambda: (gate.wait(30), fn(*a))[1])

    slow = Slow()
    svc = SnapshotService(workspace=None, out_dir=tmp_path, max_pending=1, executor=slow, sample_size=200)
    ref = frame(300, 1)
    svc.request(model="m", window_index=0, current=frame(200, 2), reference=ref, features=FEATURES)
    built: list[int] = []
    svc.request(model="m", window_index=1, current=lambda: built.append(1) or frame(200, 3), reference=ref,
                features=FEATURES)
    assert svc.stats.skipped == 1
    assert not built, "a skipped request must not build the window's rows (the worker's hot path pays for them)"
    gate.set()
    assert svc.wait(60)
    assert svc.stats.completed == 1
    assert (tmp_path / "m" / "w000000.html").is_file() and not (tmp_path / "m" / "w000001.html").exists()
    slow.pool.shutdown()


def test_periodic_snapshots_keep_to_the_cpu_budget_alert_ones_do_not(tmp_path: Path) -> None:
    svc = SnapshotService(workspace=None, out_dir=tmp_path, max_pending=4, sample_size=300, render_duty=0.5)
    ref = frame(600, 1)

    def ask(i: int, trigger: str = "periodic") -> None:
        svc.request(model="m", window_index=i, current=frame(300, 10 + i), reference=ref, features=FEATURES,
                    trigger=trigger)

    ask(0)
    ask(1)  # the first periodic report still renders: this one waits for the next turn
    ask(2, "alert")  # alert reports are not budgeted
    assert svc.wait(60)
    assert svc.stats.skipped_budget == 1 and svc.stats.skipped == 0
    ask(3)  # just after a report that took T s of CPU: resting T * (1 / 0.5 - 1) = T s
    assert svc.stats.skipped_budget == 2
    rest = svc._rest_until - time.monotonic()
    assert 0 < rest <= 2 * max(svc.stats.cpu_seconds) + 1
    time.sleep(rest + 0.05)
    ask(4)
    assert svc.wait(60)
    stats = svc.stats.as_dict()
    assert stats["completed"] == 3 and stats["skipped_budget"] == 2 and stats["cpu_s"] > 0
    assert sorted(p.name for p in (tmp_path / "m").glob("*.html")) == ["w000000.html", "w000002.html",
                                                                       "w000004.html"]
    svc.close()


@pytest.mark.parametrize("window", [None, 7])
def test_enrich_without_snapshots_keeps_identity_fields(window: int | None) -> None:
    alert = {"alert_id": "x", "fingerprint": "f", "model": "m", "window": {"index": window}, "links": None}
    out = enrich_alert(alert, AlertContext(git_commit="abc"))
    assert out["alert_id"] == "x" and out["fingerprint"] == "f"
    assert out["links"] == {"runbook": None, "dashboard": None, "report": None, "mlflow_run": None}
    assert out["evidence"]["git_commit"] == "abc"
    assert alert["links"] is None  # not mutated


def test_window_frame_copies_only_the_windows_last_rows() -> None:
    def batch(lo: int, n: int) -> EventBatch:
        ts = np.arange(lo, lo + n)
        return EventBatch.from_columns(ids=[str(t) for t in ts], timestamps=ts,
                                       features={"a": ts * 1.0, "c": np.array(["x"] * n, dtype=object)},
                                       prediction=ts % 2)

    batches = [batch(0, 50_000), batch(50_000, 300), batch(50_300, 300)]
    df = window_frame(batches, 49_800, 50_399, 500)  # 600 rows match: the last 500, across three batches
    assert df["timestamp"].tolist() == list(range(49_900, 50_400))
    assert df["a"].tolist() == [float(t) for t in range(49_900, 50_400)] and set(df["c"]) == {"x"}
    assert df["c"].dtype == object and df["prediction"].tolist() == [t % 2 for t in range(49_900, 50_400)]
    assert window_frame(batches, 60_000, 70_000, 10) is None


LIFELINE = """
import os, sys
from stream.evidence.idle_pool import IdleProcessPool

ex = IdleProcessPool()
assert ex.submit(os.nice, 0).result(60) >= 10  # the render process runs at a lower priority
if hasattr(os, "SCHED_IDLE"):  # Linux: only on otherwise idle CPU
    assert ex.submit(os.sched_getscheduler, 0).result(60) == os.SCHED_IDLE
sys.stdout.write(f"{ex.submit(os.getpid).result(60)}\\n")
sys.stdout.flush()
os._exit(0)  # no shutdown: as a killed worker
"""


def test_render_process_exits_with_the_worker_that_owns_it() -> None:
    """A worker gone without shutting its pool down (killed, os._exit) must not leave the render process
    (and the forkserver and resource tracker it keeps alive) behind holding the worker's stdout: whoever
    reads that output to its end would wait forever."""
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", LIFELINE], capture_output=True, text=True, timeout=60, cwd=root,
                         env={**os.environ, "PYTHONPATH": root})
    assert out.returncode == 0, out.stderr[-2000:]
    pid = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid), f"render process {pid} outlived its worker"


GROUP_STOP = """
import os, signal, sys, time
from stream.evidence.idle_pool import IdleProcessPool

ex = IdleProcessPool()
ex.submit(os.getpid).result(60)  # the pool process is up
job = ex.submit(time.sleep, 2.0)  # a report being written
time.sleep(0.5)
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # this process stands for the worker, which handles its own stop
os.killpg(0, signal.SIGTERM)  # a supervisor stops the worker's whole process group
job.result(60)  # raises BrokenProcessPool if the signal ended the pool process
ex.shutdown()
sys.stdout.write("finished\\n")
"""


def test_a_stop_signal_to_the_process_group_lets_the_running_report_finish() -> None:
    """``docker stop`` or a demo signals the worker's whole process group: the render process must not die in
    the middle of a report (a truncated snapshot breaks the Evidently workspace), the worker stops it."""
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", GROUP_STOP], capture_output=True, text=True, timeout=60, cwd=root,
                         env={**os.environ, "PYTHONPATH": root}, start_new_session=True)
    assert out.returncode == 0 and out.stdout.split() == ["finished"], out.stderr[-2000:]


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False

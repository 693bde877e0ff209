"""``glassbox demo``: the stream it publishes (through the pure core) and the command end to end, as the README
runs it: exit 0 within 3 minutes, an alert of each kind and none before the first change, no process left
behind, and its Evidently report rendered in headless Chromium."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from detectors.profile import build_profile
from stream.backtest.file_replay import ReplayOptions, replay_frames
from stream.demo import training as ex
from stream.demo.home import MARKER, DemoError, prepare_home
from stream.demo.stream_data import make_stream, plan_phases
from tests.browser import chromium_path, dump_dom, screenshot, visible_text

REPO = Path(__file__).resolve().parents[1]
EXPECTED = ("data_drift", "concept_drift", "data_quality")


# ------------------------------------------------------------------------------------------- the stream
@pytest.fixture(scope="module")
def trained() -> tuple[object, pd.DataFrame]:
    """The example's model fitted on the example's data (as train_and_register does, without MLflow), and
    its reference: the held-out rows with the model's predictions and scores."""
    from sklearn.model_selection import train_test_split

    df = ex.make_dataset(4000, 42)
    train, test = train_test_split(df, test_size=0.3, random_state=42, stratify=df[ex.LABEL])
    pipe = ex.build_pipeline("random_forest", 42, {"n_estimators": 60, "max_depth": 8, "min_samples_leaf": 5})
    pipe.fit(train[ex.FEATURES], train[ex.LABEL])
    ref = test.reset_index(drop=True).rename(columns={ex.LABEL: "label"})
    ref["prediction"] = pipe.predict(ref[ex.FEATURES]).astype(int)
    ref["score"] = pipe.predict_proba(ref[ex.FEATURES])[:, 1].round(6)
    return pipe, ref


def test_phases_fall_on_window_boundaries() -> None:
    phases = plan_phases(30_000)
    assert [(p.start, p.end) for p in phases] == [(0, 7000), (7000, 15000), (15000, 22000), (22000, 30000)]
    assert [p.monitor for p in phases] == [None, "data_drift", "concept_drift", "data_quality"]
    with pytest.raises(ValueError, match="at least 4000 rows"):
        plan_phases(3999)


def test_stream_is_seeded_with_real_predictions_and_late_labels(trained: tuple[object, pd.DataFrame]) -> None:
    pipe, _ = trained
    a = make_stream(pipe.predict_proba, rows=8000, seed=3, label_delay=300)
    b = make_stream(pipe.predict_proba, rows=8000, seed=3, label_delay=300)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    f = a.frame
    assert f["prediction_id"].is_unique and f["timestamp"].is_monotonic_increasing
    assert (f["prediction"] == pipe.predict(f[a.features])).mean() > 0.999  # the model's own outputs
    delay = f["label_row"] - np.arange(len(f))
    assert delay.min() >= 300 and delay.max() < 600
    q = a.phases[3]
    assert f.loc[q.start:q.end - 1, "monthly_charges"].isna().mean() > 0.2
    assert (f.loc[: q.start - 1, "monthly_charges"].isna()).sum() == 0
    assert "crypto" in set(f.loc[q.start:, "payment_method"]) and "crypto" not in set(f.loc[: q.start - 1,
                                                                                            "payment_method"])
    # labels come out in arrival order, each once, the late ones at the end
    n, first = a.labels_due(1000, 0)
    first = list(first)
    assert n == len(first) and all(int(x["prediction_id"][1:]) + 300 <= 1000 for x in first)
    n2, rest = a.labels_due(len(a), n)
    ids = [x["prediction_id"] for x in first] + [x["prediction_id"] for x in rest]
    assert n2 == len(a) and sorted(ids) == sorted(f["prediction_id"])
    batch = a.prediction_batch(q.start, q.start + 50)
    assert None in batch["features"]["monthly_charges"] and len(batch["prediction_ids"]) == 50


def test_the_core_sees_each_change_in_its_phase_and_nothing_before(trained: tuple[object, pd.DataFrame]) -> None:
    """The demo stream through the detection core (file replay, labels 450 rows late): every change fires its
    monitor within two windows (concept drift: within 2,000 labelled rows), and nothing fires in phase 1."""
    pipe, ref = trained
    s = make_stream(pipe.predict_proba, rows=16_000, seed=7)
    profile = build_profile(ref, prediction="prediction", label="label", scores=["score"],
                            categorical=ex.CATEGORICAL, features=ex.FEATURES, name="demo-reference")
    events = s.frame.drop(columns=["label_row", "phase"])
    res = replay_frames(events, profile, ReplayOptions(label_delay=450, score_cols=["score"], model="churn"))
    first: dict[str, int] = {}
    for a in res.alerts:
        if a["status"] == "firing":
            first.setdefault(a["monitor"], a["row"])
    assert min(a["row"] for a in res.alerts) >= s.first_change_row
    starts = {p.monitor: p.start for p in s.phases if p.monitor}
    for monitor in EXPECTED:
        assert monitor in first, (monitor, res.summary["alerts_by_monitor"])
        bound = 2000 + 450 if monitor == "concept_drift" else 2000
        assert starts[monitor] <= first[monitor] < starts[monitor] + bound, (monitor, first)
    drifted = {a["feature"] for a in res.alerts if a["monitor"] == "data_drift" and a["row"] < starts["concept_drift"]}
    assert drifted == {"data_usage_gb", "region"}


# ------------------------------------------------------------------------------------------------ the home
def test_home_is_wiped_only_when_it_is_the_demos(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "sub" / "precious.txt").write_text("keep")
    with pytest.raises(DemoError, match="not made by glassbox demo"):
        prepare_home(foreign)
    assert (foreign / "sub" / "precious.txt").read_text() == "keep"
    home = prepare_home(tmp_path / "demo")
    (home / "mlflow.db").write_text("stale store of the previous run")
    again = prepare_home(tmp_path / "demo")
    assert again == home and (home / MARKER).is_file() and not (home / "mlflow.db").exists()


# ------------------------------------------------------------------------------------------- end to end
def _demo_argv(home: Path) -> list[str]:
    """``glassbox demo`` as the README runs it (the installed CLI's entry point)."""
    return [sys.executable, "-m", "stream.cli", "demo", "--home", str(home)]


class TreeWatch(threading.Thread):
    """Every descendant of a process seen while it runs (pid -> create time)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.seen: dict[int, tuple[float, str]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                for c in self.root.children(recursive=True):
                    if c.pid not in self.seen:
                        with contextlib.suppress(psutil.Error):
                            self.seen[c.pid] = (c.create_time(), " ".join(c.cmdline())[:200])
            except psutil.NoSuchProcess:
                return
            time.sleep(0.2)

    def alive(self) -> list[str]:
        left = []
        for pid, (created, cmd) in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{pid} {cmd}")
            except psutil.NoSuchProcess:
                pass
        return left


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    home = tmp_path_factory.mktemp("demo") / "home"
    # what a previous run leaves behind: the next run must start clean on its own
    home.mkdir()
    (home / MARKER).write_text("previous run\n")
    (home / "mlflow.db").write_bytes(b"not a database")
    (home / "alerts.jsonl").write_text('{"monitor": "data_drift", "status": "firing"}\n')
    t0 = time.monotonic()
    proc = subprocess.Popen(_demo_argv(home), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watch = TreeWatch(proc.pid)
    watch.start()
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"glassbox demo did not finish in 180 s:\n{out.decode(errors='replace')[-4000:]}")
    finally:
        watch.done.set()
        watch.join(2)
    seconds = time.monotonic() - t0
    time.sleep(0.5)
    return {"home": home, "rc": proc.returncode, "out": out.decode(errors="replace"), "seconds": seconds,
            "watch": watch}


@pytest.mark.system
def test_demo_exits_0_within_3_minutes_with_each_alert_and_none_early(demo_run: dict[str, object]) -> None:
    out, home = str(demo_run["out"]), Path(str(demo_run["home"]))
    assert demo_run["rc"] == 0, out[-4000:]
    assert float(demo_run["seconds"]) < 180  # type: ignore[arg-type]
    for monitor in EXPECTED:  # printed live, as they fire
        assert any(line.startswith("ALERT FIRING") and f" {monitor} " in line for line in out.splitlines()), out
    summary = json.loads((home / "summary.json").read_text())
    alerts = [json.loads(line) for line in (home / "alerts.jsonl").read_text().splitlines()]
    assert len(alerts) == summary["alerts"] > 0
    assert not summary["missing"] and not summary["early_alerts"]
    for a in alerts:  # nothing before the first injected change, by stream row and by event time
        assert a["demo"]["row"] >= summary["first_change_row"], a
        assert a["event_time"] >= summary["first_change_time_ms"], a
    phases = {p["monitor"]: p for p in summary["phases"] if p["monitor"]}
    for monitor in EXPECTED:
        firing = [a for a in alerts if a["monitor"] == monitor and a["status"] == "firing"]
        assert firing, monitor
        assert firing[0]["demo"]["row"] >= phases[monitor]["start"], (monitor, firing[0]["demo"])
    assert {a["feature"] for a in alerts if a["monitor"] == "data_drift" and a["demo"]["phase"] == "data drift"} \
        == {"data_usage_gb", "region"}
    assert "uv run mlflow ui --backend-store-uri sqlite:///" in out and "uv run evidently ui --workspace" in out


@pytest.mark.system
def test_demo_leaves_no_process_behind(demo_run: dict[str, object]) -> None:
    watch: TreeWatch = demo_run["watch"]  # type: ignore[assignment]
    home = Path(str(demo_run["home"]))
    pids = json.loads((home / "pids.json").read_text())
    assert {"broker", "worker", "notifier"} <= set(pids)
    assert set(pids.values()) <= set(watch.seen), "the watcher missed the demo's children"
    assert watch.alive() == []
    assert not psutil.pid_exists(pids["broker"]) or psutil.Process(pids["broker"]).status() == psutil.STATUS_ZOMBIE


@pytest.mark.system
@pytest.mark.skipif(chromium_path() is None, reason="chromium not installed (apt-get install chromium)")
def test_demo_report_renders_in_chromium_and_names_the_drifted_columns(demo_run: dict[str, object],
                                                                       tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    summary = json.loads((Path(str(demo_run["home"])) / "summary.json").read_text())
    report = Path(summary["reports"]["data_drift"])
    assert report.is_file() and report.suffix == ".html"
    text = visible_text(dump_dom(report.as_uri()))
    assert "data_usage_gb num Detected" in text and "region cat Detected" in text, text[:2000]
    png = screenshot(report.as_uri(), tmp_path / "report.png", size=(1200, 900))
    pixels = mpimg.imread(png)
    assert png.stat().st_size > 20_000 and float(pixels[..., :3].std()) > 0.02  # not a blank page


def test_readme_command_is_registered() -> None:
    """``uv run glassbox demo`` (README): the installed ``glassbox`` script knows the command."""
    exe = Path(sys.executable).with_name("glassbox")
    assert exe.is_file(), "the glassbox console script is not installed in this environment"
    res = subprocess.run([str(exe), "demo", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "--keep-running" in res.stdout and "--home" in res.stdout

"""``glassbox replay`` end to end through the real entry point (``stream.cli.main.main``), on real files."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import orjson
import pandas as pd
import pytest
import synth

from stream.backtest.file_replay import ReplayOptions, replay_file
from stream.backtest.table_files import TableError, iter_table, read_table
from stream.cli.main import main


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("replay")
    ref = synth.frame(20_000, seed=4000)
    ev = synth.frame(30_000, seed=41, scenario="concept_flip", at=15_000)
    ev.loc[20_000:, "num_12"] += 5.0
    ev.insert(0, "prediction_id", [f"id-{i}" for i in range(len(ev))])
    ev.insert(1, "timestamp", pd.date_range("2026-01-01", periods=len(ev), freq="s", tz="UTC"))
    paths = {"ref": d / "ref.parquet", "ev": d / "events.parquet", "csv": d / "events.csv",
             "jsonl": d / "events.jsonl", "dir": d}
    ref.to_parquet(paths["ref"])
    ev.to_parquet(paths["ev"])
    ev.to_csv(paths["csv"], index=False)
    ev.assign(timestamp=ev["timestamp"].astype("int64") // 10**6).to_json(paths["jsonl"], orient="records",
                                                                          lines=True)
    return paths


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(*args: str) -> Result:
    """``glassbox replay ARGS`` in this process (no MLflow run unless ARGS say ``--mlflow``)."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["replay", *map(str, args)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as stop:
            code = int(stop.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def alerts(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_replay_writes_alerts_and_is_byte_identical(files):
    out1, out2 = files["dir"] / "a1.jsonl", files["dir"] / "a2.jsonl"
    r = invoke(files["ev"], "--reference", files["ref"], "--score-col", "score", "--alerts-out", out1)
    assert r.exit_code == 0, r.output
    assert "30,000 events" in r.output and "alert transitions" in r.output and "concept_drift" in r.output
    assert "MLflow run" not in r.output  # only when asked (--mlflow)
    assert invoke(files["ev"], "--reference", files["ref"], "--score-col", "score", "--alerts-out",
                  out2).exit_code == 0
    assert out1.read_bytes() == out2.read_bytes() and out1.stat().st_size > 0
    got = alerts(out1)
    fired = {(a["monitor"], a["feature"]) for a in got if a["status"] == "firing"}
    assert {("concept_drift", None), ("performance", None), ("data_drift", "num_12")} <= fired
    a = got[0]
    assert a["schema"] == "glassbox.alert/v1" and a["model"] == "events" and a["source"] == {"row": a["row"]}
    assert a["window"]["start"] >= 1767225600000  # event time from the timestamp column (2026-01-01, ms)
    assert list(a) == sorted(a)  # sorted keys
    for a in got:  # the runbook shipped in the package, as on the worker's alerts
        runbook = a["links"]["runbook"]
        assert runbook.startswith("file://") and runbook.endswith(f"/{a['monitor']}.md"), runbook
        assert Path(runbook.removeprefix("file://")).is_file()


def test_csv_jsonl_and_parquet_give_the_same_alerts(files):
    res = {k: replay_file(files[k], files["ref"], ReplayOptions(score_cols=["score"])).alerts
           for k in ("ev", "csv", "jsonl")}
    key = [(a["row"], a["monitor"], a["feature"], a["status"], a["fingerprint"]) for a in res["ev"]]
    assert key == [(a["row"], a["monitor"], a["feature"], a["status"], a["fingerprint"]) for a in res["csv"]]
    assert key == [(a["row"], a["monitor"], a["feature"], a["status"], a["fingerprint"]) for a in res["jsonl"]]


def test_label_delay_shifts_outcome_alerts(files):
    now = replay_file(files["ev"], files["ref"], ReplayOptions()).alerts
    late = replay_file(files["ev"], files["ref"], ReplayOptions(label_delay=700)).alerts
    cd_now = next(a for a in now if a["monitor"] == "concept_drift")
    cd_late = next(a for a in late if a["monitor"] == "concept_drift")
    assert cd_late["row"] == cd_now["row"] + 700
    drift_now = [a for a in now if a["monitor"] == "data_drift"]
    assert drift_now == [a for a in late if a["monitor"] == "data_drift"]


def test_config_file_and_window_flag(files):
    cfg = files["dir"] / "glassbox.toml"
    cfg.write_text('[kafka]\nbootstrap = "x:1"\n\n[detection]\nwindow = 500\nresolve_after = 2\n\n'
                   '[alerting]\nrunbook_base_url = "https://wiki.example/runbooks/"\n')
    out = files["dir"] / "cfg.jsonl"
    r = invoke(files["ev"], "--reference", files["ref"], "--config", cfg, "--alerts-out", out)
    assert r.exit_code == 0, r.output
    assert "60 windows of 500" in r.output
    assert {a["window"]["events"] for a in alerts(out) if a["monitor"] == "data_drift"} == {500}
    assert {a["links"]["runbook"] for a in alerts(out)} >= {"https://wiki.example/runbooks/data_drift.md"}
    r = invoke(files["ev"], "--reference", files["ref"], "--config", cfg, "--window", "2000", "--alerts-out", out)
    assert r.exit_code == 0 and "15 windows of 2000" in r.output


def test_features_and_categorical_flags(files):
    out = files["dir"] / "f.jsonl"
    r = invoke(files["ev"], "--reference", files["ref"], "--features", "num_12,cat_0", "--categorical", "cat_0",
               "--alerts-out", out, "--task", "binary")
    assert r.exit_code == 0, r.output
    assert "2 features" in r.output
    assert {a["feature"] for a in alerts(out) if a["monitor"] == "data_drift"} == {"num_12"}


@pytest.mark.parametrize("args,message", [
    (["{dir}/missing.parquet", "--reference", "{ref}"], "no such file"),
    (["{ev}", "--reference", "{dir}/nope.csv"], "no such file"),
    (["{ev}", "--reference", "{ref}", "--label-col", "nope"], "label column 'nope' is not in the events"),
    (["{ev}", "--reference", "{ref}", "--features", "num_1,zzz"], "feature column 'zzz'"),
    (["{ev}", "--reference", "{ref}", "--task", "ranking"], "--task must be"),
    (["{dir}/events.xlsx", "--reference", "{ref}"], "unsupported table format"),
    (["{ev}", "--reference", "{ref}", "--window", "3"], "--window must be at least 10"),
    (["{ev}", "--reference", "{ref}", "--config", "{dir}/bad.toml"], "[detection] window"),
    (["{ev}", "--reference", "{ref}", "--label-delay", "-1"], "--label-delay"),
])
def test_bad_input_is_one_line_exit_2(files, args, message):
    (files["dir"] / "bad.toml").write_text("[detection]\nwindow = 'big'\n")
    (files["dir"] / "events.xlsx").write_text("x")
    fmt = {k: str(v) for k, v in files.items()}
    r = invoke(*[a.format(**fmt) for a in args])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("glassbox: error: ") and message in err and len(err.splitlines()) == 1
    assert "Traceback" not in r.output


def test_tables_read_in_chunks_and_fail_clearly(files):
    whole = read_table(files["csv"])
    chunks = list(iter_table(files["csv"], 7_000))
    assert [len(c) for c in chunks] == [7_000] * 4 + [2_000]
    assert sum(len(c) for c in iter_table(files["ev"], 10_000)) == len(whole)
    bad = files["dir"] / "bad.jsonl"
    bad.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(TableError, match="bad.jsonl:2: not valid JSON"):
        list(iter_table(bad))


def test_label_delay_longer_than_the_file_flushes_labels_at_the_end(files):
    res = replay_file(files["ev"], files["ref"], ReplayOptions(label_delay=50_000))
    assert res.summary["labels_joined"] == 30_000 and res.summary["outcome_windows"] == 30
    outcome = [a for a in res.alerts if a["monitor"] in ("concept_drift", "performance")]
    assert outcome and all(a["row"] == 29_999 for a in outcome)


def test_replay_against_a_built_profile_and_event_time_windows(files):
    from detectors.config import DetectionConfig
    from detectors.profile import build_profile

    prof = build_profile(read_table(files["ref"]), label="label", name="ref-v1")
    cfg = DetectionConfig(window_ms=600_000)  # 10 minutes of 1-second events: 600 per window
    res = replay_file(files["ev"], prof, ReplayOptions(config=cfg))
    drift = [a for a in res.alerts if a["monitor"] == "data_drift"]
    assert drift and drift[0]["window"]["end"] - drift[0]["window"]["start"] == 599_999
    assert drift[0]["window"]["events"] == 600 and drift[0]["evidence"]["reference"]["name"] == "ref-v1"


@pytest.mark.system
def test_replay_records_an_mlflow_run_quietly(files, tmp_path):
    """``--mlflow``: the replay is an MLflow run of kind ``replay``: the input file and its digest, the reference,
    the config, the alerts and the window metrics, with lineage; the command prints its id and no MLflow log line."""
    import hashlib
    import os
    import subprocess
    import sys

    from mlflow import MlflowClient

    from stream.evidence.monitoring_run import local_path

    out = tmp_path / "alerts.jsonl"
    glassbox = Path(sys.executable).with_name("glassbox")
    env = {**os.environ, "GLASSBOX_HOME": str(tmp_path / "home"), "MLFLOW_DISABLE_TELEMETRY": "true"}
    r = subprocess.run([str(glassbox), "replay", str(files["ev"]), "--reference", str(files["ref"]),
                        "--score-col", "score", "--alerts-out", str(out), "--mlflow"],
                       capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1], timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr  # no "Creating initial MLflow database tables" / "Updating database tables"
    line = [x for x in r.stdout.splitlines() if x.startswith("MLflow run ")]
    assert len(line) == 1, r.stdout
    run_id = line[0].split()[2].rstrip(":")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/home/mlflow.db")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["glassbox.kind"] == "replay"
    digest = "sha256:" + hashlib.sha256(files["ev"].read_bytes()).hexdigest()
    tags = run.data.tags
    assert tags["source.digest"] == digest and tags["source.file"] == str(files["ev"].resolve())
    assert tags["reference.events.uri"] == str(files["ref"].resolve()) and tags["reference_digest"]
    assert tags["git_commit"] and run.data.params["config.replay.columns.score_cols"] == '["score"]'
    m = run.data.metrics
    assert m["windows"] == 120 and "events/predictions/columns/num_12/value" in m  # 30 each: prediction, outcome,
    # estimation and its realized record
    assert m["alerts"] == len(alerts(out))
    art = local_path(run.info.artifact_uri)
    logged = [orjson.loads(x) for x in (art / "alerts.jsonl").read_bytes().splitlines()]
    assert logged == alerts(out)
    assert {"alerts.json", "replay_summary.json", "config.json", "run.json"} <= {p.name for p in art.iterdir()}

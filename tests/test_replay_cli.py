"""``glassbox replay`` end to end through the real CLI app (typer's CliRunner), on real files."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest
import synth
from typer.testing import CliRunner

from stream.backtest.file_replay import ReplayOptions, replay_file
from stream.backtest.table_files import TableError, iter_table, read_table
from stream.cli.main import app

runner = CliRunner()


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


def invoke(*args: str):
    return runner.invoke(app, ["replay", *map(str, args)])


def alerts(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_replay_writes_alerts_and_is_byte_identical(files):
    out1, out2 = files["dir"] / "a1.jsonl", files["dir"] / "a2.jsonl"
    r = invoke(files["ev"], "--reference", files["ref"], "--score-col", "score", "--alerts-out", out1)
    assert r.exit_code == 0, r.output
    assert "30,000 events" in r.output and "alert transitions" in r.output and "concept_drift" in r.output
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
    cfg.write_text('[kafka]\nbootstrap = "x:1"\n\n[detection]\nwindow = 500\nresolve_after = 2\n')
    out = files["dir"] / "cfg.jsonl"
    r = invoke(files["ev"], "--reference", files["ref"], "--config", cfg, "--alerts-out", out)
    assert r.exit_code == 0, r.output
    assert "60 windows of 500" in r.output
    assert {a["window"]["events"] for a in alerts(out) if a["monitor"] == "data_drift"} == {500}
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
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in r.output + r.stderr


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

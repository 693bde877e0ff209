"""``glassbox replay kafka://`` on the embedded broker: the same alerts as the live worker, ranges, errors.

One stream is produced for the module: 24,000 predictions of model ``m`` in batches of 200 (120 messages)
with a concept flip and a shift of ``num_10`` from row 12,000, two malformed messages, then every label
60 s (event time) after its prediction, once the worker has processed the predictions (delayed labels).
The live worker (a real ``glassbox worker`` process) monitors it; its alerts are read back from the alerts
topic and compared with the replay's, byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import synth

from stream.cli import main as cli
from stream.producer import Producer
from stream.worker.agents import alert_bytes
from tests.kafka_util import WorkerProcess, read_json

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
N, BATCH, AT, STEP_MS, LABEL_DELAY_MS = 24_000, 200, 12_000, 100, 60_000


@pytest.fixture
def glassbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run the real ``glassbox`` entry point."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GLASSBOX_CONFIG", raising=False)

    def run(*args: Any) -> int:
        try:
            cli.main(["replay", *map(str, args)])
        except SystemExit as e:
            return int(e.code or 0)
        return 0

    return run


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Produce the stream, run the live worker over it, return its alerts and where everything is."""
    d = tmp_path_factory.mktemp("backtest-kafka")
    prefix = f"bt{d.name[-6:]}."
    ref = d / "reference.parquet"
    synth.frame(20_000, seed=11).drop(columns=["score"]).to_parquet(ref)
    df = synth.frame(N, seed=12, scenario="concept_flip", at=AT)
    df.loc[AT:, "num_10"] += 3.0 * df["num_10"].std()
    ts = [T0 + i * STEP_MS for i in range(N)]
    # MLflow links and SHAP evidence decorate live alerts only; off here so the alerts compare byte for byte
    quiet = {"GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_EVIDENTLY__ENABLED": "false",
             "GLASSBOX_ATTRIBUTION__ENABLED": "false"}
    with WorkerProcess(kafka_bootstrap, prefix, app_id=f"{prefix}live", home=d / "home",
                       models={"m": str(ref)}, audit=False, extra_env=quiet) as worker:
        worker.wait_ready()
        with Producer(kafka_bootstrap, topic_prefix=prefix) as prod:
            for a in range(0, N, BATCH):
                c = df.iloc[a:a + BATCH]
                prod.send_prediction_batch(
                    model="m", prediction_ids=[f"p{i}" for i in range(a, a + len(c))], timestamps=ts[a:a + len(c)],
                    features={k: [None if v != v else v for v in c[k].tolist()] for k in synth.FEATURES},
                    predictions=c["prediction"].tolist())
                if a == 40 * BATCH:
                    prod.send_raw(prod.predictions_topic, b'{"schema": "glassbox.prediction/v1"}', key="m")
                    prod.send_raw(prod.predictions_topic, b"not json", key="m")
        worker.wait_for(lambda s: s["events"] >= N and s["deadlettered"] >= 2, timeout_s=60)
        with Producer(kafka_bootstrap, topic_prefix=prefix) as prod:
            for i in range(N):
                prod.send_label(prediction_id=f"p{i}", model="m", timestamp=ts[i] + LABEL_DELAY_MS,
                                label=int(df["label"].iat[i]))
        stats = worker.wait_for(lambda s: s["labels"] >= N, timeout_s=60)
        assert stats["events"] == N and stats["deadlettered"] == 2
    alerts = read_json(kafka_bootstrap, f"{prefix}alerts", idle_s=1.5)
    return {"prefix": prefix, "ref": ref, "alerts": alerts, "bootstrap": kafka_bootstrap, "dir": d, "ts": ts}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def _by_fingerprint(alerts: list[dict[str, Any]]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for a in alerts:
        out.setdefault(a["fingerprint"], []).append(alert_bytes(a))
    return out


@pytest.mark.system
def test_replay_gives_the_live_workers_alerts(live, glassbox, tmp_path: Path, capsys) -> None:
    out = tmp_path / "replayed.jsonl"
    bs, prefix = live["bootstrap"], live["prefix"]
    rc = glassbox(f"kafka://{bs}/{prefix}predictions", "--reference", live["ref"], "--model", "m",
                  "--alerts-out", out, "--mlflow")
    text = capsys.readouterr()
    assert rc == 0, text.err
    replayed, live_alerts = _lines(out), live["alerts"]
    monitors = {a["monitor"] for a in live_alerts}
    assert {"data_drift", "concept_drift", "performance"} <= monitors, monitors
    # identical alert sequences: every alert byte for byte, in the same order per condition (fingerprint)
    assert sorted(map(alert_bytes, replayed)) == sorted(map(alert_bytes, live_alerts))
    assert _by_fingerprint(replayed) == _by_fingerprint(live_alerts)
    for a in replayed:  # traceable to the source offsets
        assert {"partition", "offset_start", "offset_end"} <= set(a["source"])
    assert f"{prefix}labels" in text.out and f"{N:,} events" in text.out and f"{N:,} labels" in text.out
    assert "2 messages would be dead-lettered" in text.out
    # the replay's MLflow run: the topic and the offsets read, the reference, the alerts
    from mlflow import MlflowClient

    (line,) = [x for x in text.out.splitlines() if x.startswith("MLflow run ")]
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/.glassbox/mlflow.db").get_run(line.split()[2].rstrip(":"))
    tags = run.data.tags
    assert tags["glassbox.kind"] == "replay" and tags["source.topic"] == f"{prefix}predictions"
    offsets = json.loads(tags["source.offsets"])
    assert sum(b - a + 1 for k, (a, b) in offsets.items() if k.startswith(f"{prefix}predictions:")) == N // BATCH + 2
    assert tags["reference.m.uri"] == str(live["ref"]) and tags["reference.m.digest"]
    assert run.data.metrics["alerts"] == len(replayed) and "m/predictions/drift_share" in run.data.metrics


def test_offset_range_replays_a_prefix(live, glassbox, tmp_path: Path, capsys) -> None:
    """Predictions before offset 60 (58 batches, the stream before the change): only the data-drift
    decisions of those windows, the same as live."""
    out = tmp_path / "prefix.jsonl"
    rc = glassbox(f"kafka://{live['bootstrap']}/{live['prefix']}predictions", "--reference", live["ref"],
                  "--model", "m", "--to-offset", "60", "--labels", "none", "--alerts-out", out, "--window", "1000")
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "11,600 events" in text and "offsets [start, 60)" in text  # 58 batches + 2 malformed
    expect = [a for a in live["alerts"] if a["monitor"] in ("data_drift", "prediction_drift", "data_quality")
              and a["source"]["offset_end"] < 60]
    assert sorted(map(alert_bytes, _lines(out))) == sorted(map(alert_bytes, expect))


def test_time_range_scans_on_the_embedded_broker(live, glassbox, tmp_path: Path, capsys) -> None:
    """Tansu ignores record timestamps in offsets_for_times: the reader notices and scans instead."""
    ts = live["ts"]
    since, until = ts[5_000], ts[9_000]  # a batch message's timestamp is its newest event's
    msgs = sum(1 for a in range(0, N, BATCH) if since <= ts[a + BATCH - 1] < until)
    rc = glassbox(f"kafka://{live['bootstrap']}/{live['prefix']}predictions", "--reference", live["ref"],
                  "--model", "m", "--since", "2026-01-01T00:08:20Z", "--until", str(until), "--labels", "none",
                  "--alerts-out", tmp_path / "a.jsonl")
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert since == T0 + 500_000
    assert f"{msgs:,} messages, {msgs * BATCH:,} events" in text.out and ", scan)" in text.out


def test_compare_two_rule_sets_on_one_read(live, glassbox, tmp_path: Path, capsys) -> None:
    strict = tmp_path / "strict.toml"
    strict.write_text("[detection]\nwindow = 500\nresolve_after = 1\n")
    rc = glassbox(f"kafka://{live['bootstrap']}/{live['prefix']}predictions", "--reference", live["ref"],
                  "--model", "m", "--compare", strict, "--alerts-out", tmp_path / "a.jsonl")
    out = capsys.readouterr().out
    assert rc == 0
    assert "alerts per monitor" in out and "where they differ" in out and "B: " in out
    a, b = _lines(tmp_path / "a.jsonl"), _lines(tmp_path / "a.compare.jsonl")
    assert sorted(map(alert_bytes, a)) == sorted(map(alert_bytes, live["alerts"]))  # A is the default rule set
    assert {x["window"]["events"] for x in b if x["monitor"] == "data_drift"} == {500}


def test_truth_and_plot_from_a_topic(live, glassbox, tmp_path: Path, capsys) -> None:
    truth = tmp_path / "truth.json"
    at = live["ts"][AT]
    truth.write_text(json.dumps({"changes": [
        {"time": at, "monitor": "data_drift", "feature": "num_10"},
        {"time": at, "monitor": "concept_drift"},
    ]}))
    rc = glassbox(f"kafka://{live['bootstrap']}/{live['prefix']}predictions", "--reference", live["ref"],
                  "--model", "m", "--truth", truth, "--plot", tmp_path / "t.png", "--alerts-out", tmp_path / "a.jsonl")
    out = capsys.readouterr().out
    assert rc == 0
    score = json.loads((tmp_path / "a.score.json").read_text())
    dd = score["monitors"]["data_drift"]
    assert dd["detections"] == 1 and dd["missed"] == 0
    # the first window ending after the change (rows 12,000..12,999) detects it: delay = its last row - 12,000
    assert dd["delays_rows"] == [999] and dd["delays_ms"] == [999 * STEP_MS]
    assert score["monitors"]["concept_drift"]["detections"] == 1
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "score against the truth" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "2030-01-01T00:00:00Z"], "no record of"),
    (["--from-offset", "50", "--to-offset", "50"], "empty range"),
    (["--from-offset", "9:0"], "partition 9 does not exist"),
    (["--since", "yesterday"], "--since 'yesterday'"),
])
def test_bad_ranges_fail_with_one_line(live, glassbox, tmp_path: Path, capsys, args, message) -> None:
    rc = glassbox(f"kafka://{live['bootstrap']}/{live['prefix']}predictions", "--reference", live["ref"],
                  "--model", "m", "--labels", "none", *args, "--alerts-out", tmp_path / "a.jsonl")
    err = capsys.readouterr().err
    assert rc != 0
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_missing_topic_fails_with_one_line(live, glassbox, tmp_path: Path, capsys) -> None:
    rc = glassbox(f"kafka://{live['bootstrap']}/no.such.topic", "--reference", live["ref"],
                  "--alerts-out", tmp_path / "a.jsonl")
    err = capsys.readouterr().err
    assert rc != 0
    assert "'no.such.topic' does not exist" in err and len(err.strip().splitlines()) == 1, err


def test_topic_from_config_short_name_and_progress(live, glassbox, tmp_path: Path, capsys, monkeypatch) -> None:
    """``kafka://predictions``: the bootstrap and topic prefix come from the settings (here the environment)."""
    monkeypatch.setenv("GLASSBOX_KAFKA__BOOTSTRAP", live["bootstrap"])
    monkeypatch.setenv("GLASSBOX_KAFKA__TOPIC_PREFIX", live["prefix"])
    rc = glassbox("kafka://predictions", "--reference", live["ref"], "--model", "m", "--to-offset", "10",
                  "--progress", "--alerts-out", tmp_path / "a.jsonl")
    text = capsys.readouterr()
    assert rc == 0, text.err
    assert f"kafka://{live['prefix']}predictions + {live['prefix']}labels" in text.out
    assert "2,000 events" in text.out
    assert "events/s" in text.err  # the progress bar


def test_no_kafka_configured_fails_with_one_line(glassbox, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("GLASSBOX_KAFKA__BOOTSTRAP", raising=False)
    rc = glassbox("kafka://predictions", "--reference", tmp_path / "ref.parquet")
    err = capsys.readouterr().err
    assert rc != 0 and "kafka:// replay needs a Kafka" in err and len(err.strip().splitlines()) == 1, err

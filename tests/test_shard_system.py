"""Sharded models end to end: the SDK keys one model by prediction_id over 4 partitions, two worker processes fold
their partitions into partial windows, the combiner closes them, and the alerts equal a file replay of the same
events with the same event-time windows; a SIGKILL of one worker mid-stream loses and double-counts nothing.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from detectors.config import DetectionConfig
from stream.backtest.file_replay import ReplayOptions, replay_frames
from stream.kafka.topics import ensure_topics
from stream.producer import Producer, partition_for
from stream.settings import Settings
from tests.kafka_util import WorkerProcess, read_json
from tests.synth import FEATURES, frame

pytestmark = pytest.mark.system

T0 = 1_700_000_000_000
STEP_MS = 10
N, AT = 12_000, 6_000  # 12 windows of 1,000 events: the combiner can close 11 (no later event ends the last)
WINDOW_MS = 10_000
DETECTION = {"GLASSBOX_DETECTION__WINDOW_MS": str(WINDOW_MS), "GLASSBOX_DETECTION__MIN_WINDOW_EVENTS": "100"}
ENV = {"GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_EVIDENTLY__ENABLED": "false",
       "GLASSBOX_ATTRIBUTION__ENABLED": "false", "GLASSBOX_WORKER__SHARDED_MODELS": '["m"]',
       "GLASSBOX_WORKER__ALLOWED_LATENESS_S": "20", **DETECTION}
CHUNK = 200


def events() -> pd.DataFrame:
    df = frame(N, seed=5, scenario="missing", at=AT)
    df.loc[AT:, "num_10"] += 0.5 * df["num_10"].std()
    df.loc[AT:, "label"] = np.where(df.loc[AT:, "num_0"] > df["num_0"].median(), 1 - df.loc[AT:, "label"],
                                    df.loc[AT:, "label"])  # concept drift too
    df["timestamp"] = T0 + np.arange(N) * STEP_MS
    df["prediction_id"] = [f"p{i}" for i in range(N)]
    return df


def produce(bootstrap: str, prefix: str, df: pd.DataFrame, per_s: float | None = None,
            sent: list[int] | None = None) -> None:
    with Producer(bootstrap, topic_prefix=prefix, sharded=True, batch_events=CHUNK) as p:
        for lo in range(0, len(df), CHUNK):
            part = df.iloc[lo:lo + CHUNK]
            p.send_prediction_batch(
                model="m", prediction_ids=part["prediction_id"].tolist(), timestamps=part["timestamp"].tolist(),
                features={c: [None if v != v else v for v in part[c].tolist()] for c in FEATURES},
                predictions=part["prediction"].tolist())
            for pid, ts, lab in zip(part["prediction_id"], part["timestamp"], part["label"], strict=True):
                p.send_label(prediction_id=pid, model="m", timestamp=int(ts), label=int(lab))
            if sent is not None:
                sent.append(lo + len(part))
            if per_s:
                p.flush()
                time.sleep(1 / per_s)


def replayed(df: pd.DataFrame, ref_path: Path, settings: Settings) -> tuple[list[dict[str, Any]],
                                                                          list[dict[str, Any]]]:
    """``glassbox replay`` of the events against the profile the workers load, with the same windows."""
    from stream.evidence.reference import load_reference_for

    cfg = DetectionConfig(window_ms=WINDOW_MS, min_window_events=100, estimation_metrics=[])
    res = replay_frames(df[FEATURES + ["prediction", "label", "timestamp", "prediction_id"]],
                        load_reference_for(str(ref_path), settings).profile,
                        ReplayOptions(config=cfg, model="m", keep_windows=True))
    return res.alerts, [w for w in res.windows if w.get("kind") == "predictions"]


def combiner_stats(workers: list[WorkerProcess]) -> dict[str, Any] | None:
    for w in workers:
        if w.proc is None or w.proc.poll() is not None:
            continue
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{w.web_port}/combiner", timeout=2) as r:
                got = json.loads(r.read())
        except OSError:
            continue
        if "m" in got["models"]:
            return got["models"]["m"]
    return None


def wait_closed(workers: list[WorkerProcess], windows: int, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        last = combiner_stats(workers) or last
        if last and last["closed"] >= windows:
            return last
        time.sleep(0.5)
    logs = "\n".join(w.log()[-3000:] for w in workers)
    raise TimeoutError(f"combiner closed {last and last['closed']} of {windows} windows\n{logs}")


def key(a: dict[str, Any]) -> tuple[Any, ...]:
    return (a["fingerprint"], a["status"], a["monitor"], a["feature"], a["value"], a["threshold"], a["event_time"],
            tuple(sorted(a["window"].items())))


def compare(live: list[dict[str, Any]], want: list[dict[str, Any]], until: int,
            monitors: tuple[str, ...] = ("data_drift", "data_quality", "performance")) -> None:
    exact = {key(a) for a in want if a["monitor"] in monitors and a["event_time"] < until}
    got = {key(a) for a in live if a["monitor"] in monitors and a["event_time"] < until}
    assert {k[2] for k in exact} == set(monitors), exact
    assert got == exact
    change = T0 + AT * STEP_MS
    first = [min((a["event_time"] for a in alerts if a["monitor"] == "concept_drift" and a["status"] == "firing"),
                 default=None) for alerts in (want, live)]
    assert first[0] is not None and first[0] >= change, first
    assert first[1] is not None and change <= first[1] <= change + 2 * (first[0] - change), first


def test_sdk_keys_a_label_to_its_predictions_partition(kafka_bootstrap: str, topic_prefix: str) -> None:
    """Labels sent alone or in batches land on the partition of their prediction (murmur2 of prediction_id)."""
    from tests.kafka_util import read_topic

    settings = Settings(kafka={"topic_prefix": topic_prefix, "partitions": 4})
    ensure_topics(settings, kafka_bootstrap, ("predictions", "labels"))
    with Producer(kafka_bootstrap, topic_prefix=topic_prefix, sharded=["m"], batch_events=50) as p:
        for i in range(200):
            p.send_prediction(prediction_id=f"id{i}", model="m", timestamp=T0 + i, features={"x": 1.0},
                              prediction=1)
        p.send_prediction(prediction_id="k1", model="keyed", timestamp=T0, features={"x": 1.0}, prediction=1)
        for i in range(200):
            p.send_label(prediction_id=f"id{i}", model="m", timestamp=T0 + i, label=1)
    where: dict[str, set[int]] = {}
    for topic in ("predictions", "labels"):
        for rec in read_topic(kafka_bootstrap, f"{topic_prefix}{topic}"):
            doc = json.loads(rec.value)
            ids = doc["prediction_id"] if isinstance(doc["prediction_id"], list) else [doc["prediction_id"]]
            for pid in ids:
                where.setdefault(pid, set()).add(rec.partition)
    assert len({p for pid, ps in where.items() if pid.startswith("id") for p in ps}) == 4  # spread over all
    assert all(ps == {partition_for(pid, 4)} for pid, ps in where.items() if pid.startswith("id"))


def reference(tmp_path: Path, bootstrap: str, prefix: str) -> Path:
    """The model's reference file, and the topics (four partitions) created."""
    ref_path = tmp_path / "ref.parquet"
    frame(20_000, seed=1)[FEATURES + ["prediction", "label"]].to_parquet(ref_path)
    ensure_topics(Settings(kafka={"topic_prefix": prefix, "partitions": 4}), bootstrap)
    return ref_path


def two_workers(bootstrap: str, prefix: str, app: str, ref_path: Path, tmp_path: Path) -> list[WorkerProcess]:
    return [WorkerProcess(bootstrap, prefix, app_id=f"{prefix}{app}", home=tmp_path / f"w{i}",
                          models={"m": str(ref_path)}, audit=False, extra_env=ENV) for i in range(2)]


def test_two_workers_give_the_replay_alerts(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    ref_path = reference(tmp_path, kafka_bootstrap, topic_prefix)
    df = events()
    want, windows = replayed(df, ref_path, Settings(kafka={"topic_prefix": topic_prefix, "partitions": 4}))
    workers = two_workers(kafka_bootstrap, topic_prefix, "shard", ref_path, tmp_path)
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready()
        produce(kafka_bootstrap, topic_prefix, df)
        stats = wait_closed(workers, 11)
        assert stats["duplicates"] == stats["late_partials"] == stats["late_outcomes"] == stats["by_lateness"] == 0, \
            stats
        assert {tuple(r) for r in stats["recent"]} == {(w["index"], w["events"]) for w in windows[:11]}
        time.sleep(1.0)
        live = read_json(kafka_bootstrap, f"{topic_prefix}alerts")
    finally:
        for w in workers:
            w.stop()
    compare(live, want, T0 + 11 * WINDOW_MS)
    # the topic replay under the live config folds the shards and closes their partials as the combiner does
    compare(live, topic_replayed(kafka_bootstrap, topic_prefix, ref_path, tmp_path), T0 + 11 * WINDOW_MS)


def topic_replayed(bootstrap: str, prefix: str, ref_path: Path, home: Path) -> list[dict[str, Any]]:
    """``glassbox replay kafka://`` of the sharded topics under the workers' config (the model sharded): the
    partitions merged in event-time order, each folded by its shard, the partials closed by a combiner."""
    from stream.backtest.rule_sets import kafka_pipelines
    from stream.backtest.topic_replay import replay_topic

    s = Settings(home=home / "replay", kafka={"topic_prefix": prefix, "partitions": 4}, mlflow={"enabled": False},
                 worker={"models": {"m": str(ref_path)}, "sharded_models": ["m"], "allowed_lateness_s": 20},
                 detection={"window_ms": WINDOW_MS, "min_window_events": 100, "estimation_metrics": []})
    res = replay_topic(kafka_pipelines([s], None, None), bootstrap=bootstrap, kafka=s.kafka,
                       predictions=s.topic("predictions"), labels=s.topic("labels"))
    return res.runs[0].alerts


def test_an_idle_partition_holds_windows_only_for_the_allowed_lateness(kafka_bootstrap: str, topic_prefix: str,
                                                                        tmp_path: Path) -> None:
    """No event lands on partition 3, so no watermark passes any window: the worker's lateness timer closes each
    window (and releases its outcomes) once the allowed lateness passed, and the alerts are still the replay's."""
    ref_path = reference(tmp_path, kafka_bootstrap, topic_prefix)
    df = events()
    df = df[[partition_for(pid, 4) != 3 for pid in df["prediction_id"]]].reset_index(drop=True)
    want, windows = replayed(df, ref_path, Settings())
    worker = WorkerProcess(kafka_bootstrap, topic_prefix, app_id=f"{topic_prefix}idle", home=tmp_path / "w",
                           models={"m": str(ref_path)}, audit=False,
                           extra_env={**ENV, "GLASSBOX_WORKER__ALLOWED_LATENESS_S": "2"})
    try:
        worker.start()
        worker.wait_ready()
        produce(kafka_bootstrap, topic_prefix, df)
        stats = wait_closed([worker], 11, timeout_s=60)
        assert stats["by_lateness"] == stats["closed"] and sorted(stats["watermarks"]) == ["0", "1", "2"], stats
        assert {tuple(r) for r in stats["recent"]} == {(w["index"], w["events"]) for w in windows[:11]}
        time.sleep(1.0)
        live = read_json(kafka_bootstrap, f"{topic_prefix}alerts")
    finally:
        worker.stop()
    compare(live, want, T0 + 11 * WINDOW_MS)


def test_sigkill_of_one_worker_loses_and_doubles_nothing(kafka_bootstrap: str, topic_prefix: str,
                                                        tmp_path: Path) -> None:
    ref_path = reference(tmp_path, kafka_bootstrap, topic_prefix)
    df = events()
    want, windows = replayed(df, ref_path, Settings(kafka={"topic_prefix": topic_prefix, "partitions": 4}))
    workers = two_workers(kafka_bootstrap, topic_prefix, "kill", ref_path, tmp_path)
    sent: list[int] = []
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_ready()
        feeder = threading.Thread(target=produce, args=(kafka_bootstrap, topic_prefix, df, 12.0, sent), daemon=True)
        feeder.start()
        while not sent or sent[-1] < N * 0.4:
            time.sleep(0.05)
        workers[0].kill()
        assert sent[-1] < N, "killed before the stream ended"
        feeder.join(120)
        owned = workers[1].wait_for(lambda st: sum(a.startswith(f"{topic_prefix}predictions:")
                                                   for a in st["assignment"]) == 4)
        assert f"{topic_prefix}summaries:" in " ".join(owned["assignment"])
        stats = wait_closed(workers[1:], 11, timeout_s=180)
        assert {tuple(r) for r in stats["recent"]} == {(w["index"], w["events"]) for w in windows[:11]}
        assert stats["events"] == sum(w["events"] for w in windows[:11])
        time.sleep(1.0)
        live = read_json(kafka_bootstrap, f"{topic_prefix}alerts")
    finally:
        for w in workers:
            w.stop()
    compare(live, want, T0 + 11 * WINDOW_MS)

"""Crash and restart: SIGKILL workers mid-stream, restart them, and compare with an uninterrupted run.

The uninterrupted run is the same :class:`stream.pipeline.pipeline.Pipeline` fed, in process and in one go, the
very records the crashed workers consumed (read back from the predictions topic with their partitions and
offsets). After any number of SIGKILLs and restarts:

- no event is lost: every prediction_id is on the audit topic;
- nothing is counted twice: each model's last state record (the one a next restart would load) equals
  the uninterrupted monitor's state exactly (event count, every window's bin counts, hysteresis, offsets);
- the alert set equals the uninterrupted run's, modulo exact duplicates (same alert_id, identical bytes),
  which at-least-once delivery allows.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from stream.pipeline.pipeline import RawMessage
from stream.producer import Producer
from stream.settings import Settings
from stream.worker.agents import build_pipeline
from tests.kafka_util import WorkerProcess, read_json, read_topic
from tests.synth import FEATURES, frame

T0 = 1_700_000_000_000
QUIET = {"GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_EVIDENTLY__ENABLED": "false",
         "GLASSBOX_ATTRIBUTION__ENABLED": "false"}
PER_MESSAGE = 50


def stream_messages(models: list[str], n: int) -> list[tuple[str, dict]]:
    """Columnar prediction messages of ``n`` events per model, a mean shift half way, models interleaved."""
    out: list[tuple[str, dict]] = []
    frames = {m: frame(n, seed=10 + k, scenario="mean_shift", at=n // 2) for k, m in enumerate(models)}
    for lo in range(0, n, PER_MESSAGE):
        for m in models:
            part = frames[m].iloc[lo:lo + PER_MESSAGE]
            out.append((m, dict(
                model=m, prediction_ids=[f"{m}-{i}" for i in range(lo, lo + len(part))],
                timestamps=[T0 + i * 10 for i in range(lo, lo + len(part))],
                features={c: [None if v != v else v for v in part[c].tolist()] for c in FEATURES},
                predictions=part["prediction"].tolist(),
            )))
    return out


class PacedProducer(threading.Thread):
    """Publishes the messages at a steady pace, so workers can be killed mid-stream."""

    def __init__(self, bootstrap: str, prefix: str, messages: list[tuple[str, dict]], per_s: float):
        super().__init__(daemon=True)
        self.args, self.messages, self.per_s = (bootstrap, prefix), messages, per_s
        self.sent = 0

    def run(self) -> None:
        bootstrap, prefix = self.args
        with Producer(bootstrap, topic_prefix=prefix) as prod:
            t0 = time.monotonic()
            for i, (_, kw) in enumerate(self.messages):
                prod.send_prediction_batch(**kw)
                self.sent = i + 1
                delay = t0 + (i + 1) / self.per_s - time.monotonic()
                if delay > 0:
                    prod.flush()
                    time.sleep(delay)


def uninterrupted(bootstrap: str, prefix: str, models: dict[str, str], home: Path):
    """The same pipeline fed the topic's records in one step: its alerts and each model's final state."""
    settings = Settings(home=home, kafka={"topic_prefix": prefix}, worker={"models": models},
                        mlflow={"enabled": False})
    pipe = build_pipeline(settings)
    recs = read_topic(bootstrap, f"{prefix}predictions")
    out = pipe.on_predictions([RawMessage(r.topic, r.partition, r.offset, r.value, r.timestamp, r.key)
                               for r in recs])
    offsets = {m: {} for m in models}
    for r in recs:
        offsets[r.key.decode()][f"{r.topic}:{r.partition}"] = r.offset
    states = {m: {"monitor": pipe.monitors.get(m).to_state(), "offsets": offsets[m],
                  "recent_ids": pipe._recent[m].to_state()} for m in models}
    return out.alerts, states, len(recs)


def last_states(bootstrap: str, prefix: str) -> dict[str, dict]:
    last: dict[str, dict] = {}
    for r in read_topic(bootstrap, f"{prefix}state"):  # partition by partition, in offset order
        last[r.key.decode()] = orjson.loads(r.value)
    return last


def live_alerts(bootstrap: str, prefix: str) -> tuple[list[dict], int]:
    """Distinct detection alerts, after checking that repeats are exact duplicates; and the repeat count."""
    by_id: dict[str, bytes] = {}
    dups = 0
    for r in read_topic(bootstrap, f"{prefix}alerts"):
        a = orjson.loads(r.value)
        if a["monitor"] == "pipeline":
            continue
        if a["alert_id"] in by_id:
            assert by_id[a["alert_id"]] == r.value, "a repeated alert must be byte-identical"
            dups += 1
        by_id[a["alert_id"]] = r.value
    return [orjson.loads(v) for v in by_id.values()], dups


def wait_audit(bootstrap: str, prefix: str, ids: set[str], timeout_s: float = 90) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = defaultdict(int)
        for rec in read_json(bootstrap, f"{prefix}audit", idle_s=0.5):
            for i in rec["ids"]:
                counts[i] += 1
        if ids <= counts.keys():
            return counts
        time.sleep(1)
    raise AssertionError(f"lost {len(ids - counts.keys())} of {len(ids)} events")


def check_against_uninterrupted(bootstrap: str, prefix: str, models: dict[str, str], home: Path,
                                ids: set[str]) -> dict[str, int]:
    counts = wait_audit(bootstrap, prefix, ids)
    expected_alerts, expected_states, n_records = uninterrupted(bootstrap, prefix, models, home)
    assert any(a["monitor"] == "data_drift" and a["status"] == "firing" for a in expected_alerts)
    deadline = time.monotonic() + 30
    while True:  # the last state record follows the last audit record
        states = last_states(bootstrap, prefix)
        if all(states.get(m, {}).get("monitor", {}).get("events") == expected_states[m]["monitor"]["events"]
               for m in models) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for m in models:
        assert states[m]["monitor"]["events"] == expected_states[m]["monitor"]["events"], f"{m}: events differ"
        assert states[m] == expected_states[m], f"{m}: final state differs from the uninterrupted run"
    alerts, dup_alerts = live_alerts(bootstrap, prefix)
    key = lambda a: a["alert_id"]  # noqa: E731
    assert sorted(alerts, key=key) == sorted(expected_alerts, key=key)
    return {"records": n_records, "events": len(ids), "audit_duplicates": sum(counts.values()) - len(ids),
            "alert_duplicates": dup_alerts, "alerts": len(alerts)}


@pytest.mark.system
@pytest.mark.timeout(240)
def test_one_worker_sigkilled_twice_loses_nothing_and_counts_nothing_twice(kafka_bootstrap: str,
                                                                           topic_prefix: str, tmp_path: Path) -> None:
    ref = tmp_path / "reference.parquet"
    frame(4000, seed=1).drop(columns=["score"]).to_parquet(ref)
    models = {"m": str(ref)}
    n = 8000
    msgs = stream_messages(list(models), n)
    app_id = f"{topic_prefix}one"

    def worker(k: int) -> WorkerProcess:
        return WorkerProcess(kafka_bootstrap, topic_prefix, app_id=app_id, home=tmp_path / f"w{k}", models=models,
                             extra_env=QUIET).start()

    w = worker(0)
    redelivered, recovery = 0, []
    try:
        w.wait_ready()
        prod = PacedProducer(kafka_bootstrap, topic_prefix, msgs, per_s=40)
        prod.start()
        for k, at in enumerate((0.3, 0.65), start=1):
            # messages seen, not events counted: a restarted worker skips (and does not count) redeliveries
            w.wait_for(lambda s, at=at: s["messages"] >= at * len(msgs), timeout_s=60)
            w.kill()  # SIGKILL mid-stream: processed but uncommitted messages will be redelivered
            t_kill = time.monotonic()
            w = worker(k)
            w.wait_for(lambda s: s["events"] > 0 or s["redelivered"] > 0, timeout_s=60)
            recovery.append(time.monotonic() - t_kill)
            redelivered += (w.stats() or {}).get("redelivered", 0)
        prod.join(60)
        ids = {i for _, kw in msgs for i in kw["prediction_ids"]}
        figures = check_against_uninterrupted(kafka_bootstrap, topic_prefix, models, tmp_path / "base", ids)
        redelivered = max(redelivered, (w.stats() or {}).get("redelivered", 0))
    finally:
        w.stop()
    print(f"\none worker, 2 SIGKILLs: {figures}; redelivered and skipped >= {redelivered}; "
          f"recovery (kill -> next step) {', '.join(f'{r:.1f} s' for r in recovery)}")


@pytest.mark.system
@pytest.mark.timeout(240)
def test_two_workers_sigkill_and_rejoin_lose_nothing_and_count_nothing_twice(kafka_bootstrap: str,
                                                                            topic_prefix: str, tmp_path: Path) -> None:
    ref = tmp_path / "reference.parquet"
    frame(4000, seed=1).drop(columns=["score"]).to_parquet(ref)
    names = ["m0", "m1", "m2", "m3", "m4", "m5"]
    models = {m: str(ref) for m in names}
    n = 3000
    msgs = stream_messages(names, n)
    app_id = f"{topic_prefix}two"

    def worker(tag: str) -> WorkerProcess:
        return WorkerProcess(kafka_bootstrap, topic_prefix, app_id=app_id, home=tmp_path / tag, models=models,
                             extra_env=QUIET).start()

    a, b = worker("a"), worker("b")
    try:
        a.wait_ready()
        b.wait_ready()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # both members hold input partitions
            pa = {p for p in (a.stats() or {}).get("assignment", []) if "predictions" in p}
            pb = {p for p in (b.stats() or {}).get("assignment", []) if "predictions" in p}
            if pa and pb and not pa & pb and len(pa | pb) == 4:
                break
            time.sleep(0.3)
        prod = PacedProducer(kafka_bootstrap, topic_prefix, msgs, per_s=60)
        prod.start()
        a.wait_for(lambda s: s["events"] >= 0.2 * n, timeout_s=60)
        a.kill()  # SIGKILL one member mid-stream: b takes its partitions over from the state topic
        t_kill = time.monotonic()
        b.wait_for(lambda s: len([p for p in s["assignment"] if "predictions" in p]) == 4, timeout_s=60)
        takeover_s = time.monotonic() - t_kill
        while prod.sent < 0.6 * len(msgs) and prod.is_alive():
            time.sleep(0.2)
        a = worker("a2")  # a new member joins mid-stream: partitions move back, b hands its state over
        a.wait_ready()
        prod.join(60)
        ids = {i for _, kw in msgs for i in kw["prediction_ids"]}
        figures = check_against_uninterrupted(kafka_bootstrap, topic_prefix, models, tmp_path / "base", ids)
        redelivered = (a.stats() or {}).get("redelivered", 0) + (b.stats() or {}).get("redelivered", 0)
    finally:
        a.stop()
        b.stop()
    print(f"\ntwo workers, SIGKILL + rejoin: {figures}; redelivered and skipped {redelivered}; "
          f"takeover after SIGKILL {takeover_s:.1f} s")


def test_a_prediction_id_written_twice_by_a_producer_retry_is_counted_once(tmp_path: Path) -> None:
    ref = tmp_path / "reference.parquet"
    frame(4000, seed=1).drop(columns=["score"]).to_parquet(ref)
    settings = Settings(home=tmp_path, worker={"models": {"m": str(ref)}}, mlflow={"enabled": False})
    pipe = build_pipeline(settings)
    [(_, kw)] = stream_messages(["m"], PER_MESSAGE)
    body = orjson.dumps({"schema": "glassbox.prediction-batch/v1", "model": "m", "prediction_id": kw["prediction_ids"],
                         "timestamp": kw["timestamps"], "features": kw["features"], "prediction": kw["predictions"]})
    pipe.on_predictions([RawMessage("p", 0, 0, body)])
    pipe.on_predictions([RawMessage("p", 0, 1, body)])  # the same events again, at the next offset
    assert pipe.monitors.get("m").to_state()["events"] == PER_MESSAGE

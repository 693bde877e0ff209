"""The worker on the embedded broker: what it says, validation, dead letters, sharing partitions, surviving
SIGKILL."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import orjson
import pytest

from stream.events import PREDICTION_BATCH_SCHEMA, prediction_event
from stream.producer import Producer
from tests.kafka_util import WorkerProcess, read_json
from tests.synth import frame

T0 = 1_700_000_000_000


def good(i: int, model: str = "m") -> dict:
    return prediction_event(prediction_id=f"p{i}", model=model, timestamp=T0 + i,
                            features={"x": i * 0.5, "c": "ab"[i % 2], "flag": i % 3 == 0}, prediction=i % 2,
                            scores={"1": 0.25, "0": 0.75})


# Ten ways to break the contract, each naming the field the dead letter must point at.
MALFORMED = [
    ("prediction_id", lambda e: e.pop("prediction_id")),
    ("timestamp", lambda e: e.__setitem__("timestamp", "yesterday")),
    ("features", lambda e: e.__setitem__("features", [1, 2])),
    ("features.x", lambda e: e["features"].__setitem__("x", {"nested": 1})),
    ("prediction", lambda e: e.__setitem__("prediction", None)),
    ("schema", lambda e: e.__setitem__("schema", "glassbox.prediction/v9")),
    ("surprise", lambda e: e.__setitem__("surprise", 1)),
    ("scores.1", lambda e: e["scores"].__setitem__("1", 1.7)),
    ("model", lambda e: e.__setitem__("model", "")),
    ("prediction_id", lambda e: e.__setitem__("prediction_id", 12345)),
]


@pytest.mark.system
def test_worker_validates_and_deadletters(kafka_bootstrap: str, topic_prefix: str, tmp_path) -> None:
    expected_bad: list[str] = []
    with WorkerProcess(kafka_bootstrap, topic_prefix, app_id=f"{topic_prefix}w", home=tmp_path) as worker:
        worker.wait_ready()
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for i in range(10_000):
                ev = good(i)
                if i % 100 == 7:  # 100 malformed, 10 of each kind
                    fld, breaker = MALFORMED[(i // 100) % 10]
                    breaker(ev)
                    expected_bad.append(fld)
                prod.send_raw(prod.predictions_topic, orjson.dumps(ev), key="m")
            n = 500
            prod.send_raw(prod.predictions_topic, orjson.dumps({
                "schema": PREDICTION_BATCH_SCHEMA, "model": "m", "prediction_id": [f"b{i}" for i in range(n)],
                "timestamp": [T0 + 20_000 + i for i in range(n)],
                "features": {"x": [float(i) for i in range(n)], "c": ["a"] * n, "flag": [True] * n},
                "prediction": [1] * n,
            }), key="m")
        stats = worker.wait_for(lambda s: s["events"] + s["deadlettered"] >= 10_400 + 100, timeout_s=90)
        assert stats["events"] == 10_400
        assert stats["deadlettered"] == 100
        assert worker.proc.poll() is None, "worker must stay healthy"
        # still healthy: it keeps processing after the bad input
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            prod.send_prediction(**{k: v for k, v in good(99_999).items() if k != "schema"})
        worker.wait_for(lambda s: s["events"] == 10_401)
    dead = read_json(kafka_bootstrap, f"{topic_prefix}deadletter")
    assert len(dead) == 100
    assert sorted(d["field"] for d in dead) == sorted(expected_bad)
    for d in dead:
        assert d["field"] in d["error"] or d["field"].split(".")[0] in d["error"]
        assert d["topic"] == f"{topic_prefix}predictions" and d["offset"] >= 0 and d["raw"]


@pytest.mark.system
@pytest.mark.timeout(240)
def test_two_workers_share_partitions_and_survive_sigkill(kafka_bootstrap: str, topic_prefix: str, tmp_path) -> None:
    app_id = f"{topic_prefix}pair"
    models = [f"model-{k}" for k in range(24)]  # keys spread over the 6 partitions
    total = 12_000
    a = WorkerProcess(kafka_bootstrap, topic_prefix, app_id=app_id, home=tmp_path / "a", partitions=6).start()
    b = WorkerProcess(kafka_bootstrap, topic_prefix, app_id=app_id, home=tmp_path / "b", partitions=6).start()
    try:
        a.wait_ready()
        b.wait_ready()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for the rebalance to settle with both members
            sa, sb = a.stats() or {}, b.stats() or {}
            pa = {p for p in sa.get("assignment", []) if "predictions" in p}
            pb = {p for p in sb.get("assignment", []) if "predictions" in p}
            if pa and pb and not pa & pb and len(pa | pb) == 6:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"partitions not shared: {sa.get('assignment')} / {sb.get('assignment')}")
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for i in range(total // 2):
                m = models[i % len(models)]
                prod.send_prediction(**{k: v for k, v in good(i, m).items() if k != "schema"})
        a.wait_for(lambda s: s["events"] > 0)
        a.kill()  # SIGKILL mid-stream
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for i in range(total // 2, total):
                m = models[i % len(models)]
                prod.send_prediction(**{k: v for k, v in good(i, m).items() if k != "schema"})
        b.wait_for(lambda s: len([p for p in s["assignment"] if "predictions" in p]) == 6, timeout_s=60)
        audit = read_json(kafka_bootstrap, f"{topic_prefix}audit")
        seen = {pid for rec in audit for pid in rec["ids"]}
        deadline = time.monotonic() + 60
        while len(seen) < total and time.monotonic() < deadline:
            time.sleep(1)
            seen = {pid for rec in read_json(kafka_bootstrap, f"{topic_prefix}audit") for pid in rec["ids"]}
        assert seen == {f"p{i}" for i in range(total)}, f"lost {total - len(seen)} events; b: {b.stats()}"
    finally:
        a.stop()
        b.stop()


@pytest.mark.system
@pytest.mark.timeout(240)
def test_worker_says_what_it_does_and_alerts_carry_their_runbook(kafka_bootstrap: str, topic_prefix: str,
                                                                   tmp_path) -> None:
    """Started by hand, the worker prints its broker, topics, models with their references, where /stats and
    /metrics listen and its MLflow run; then one line per alert and periodic progress; no terminal control
    sequence and no MLflow chatter in a log file. The alerts on the topic link to a runbook that exists."""
    ref_path = tmp_path / "reference.parquet"
    frame(5_000, seed=1).drop(columns=["score"]).to_parquet(ref_path)
    n = 6_000
    events = frame(n, seed=2, scenario="mean_shift", at=2_000).drop(columns=["score", "label"])
    features = [c for c in events.columns if c != "prediction"]
    with WorkerProcess(kafka_bootstrap, topic_prefix, app_id=f"{topic_prefix}say", home=tmp_path / "w",
                       models={"m": str(ref_path)}, audit=False, args=("--progress-interval", "1"),
                       extra_env={"GLASSBOX_ATTRIBUTION__ENABLED": "false", "GLASSBOX_LOG_LEVEL": ""}) as worker:
        worker.wait_ready(timeout_s=120)
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for lo in range(0, n, 500):
                part = events.iloc[lo:lo + 500]
                prod.send_prediction_batch(
                    model="m", prediction_ids=[f"e{i}" for i in range(lo, lo + len(part))],
                    timestamps=[T0 + i * 10 for i in range(lo, lo + len(part))],
                    features={c: part[c].tolist() for c in features}, predictions=part["prediction"].tolist())
        worker.wait_for(lambda s: s["events"] == n and s["alerts"] > 0, timeout_s=90)
        deadline = time.monotonic() + 10
        while "progress: 6,000 events" not in worker.log() and time.monotonic() < deadline:
            time.sleep(0.3)
    out = worker.log()
    port = worker.web_port
    for needle in (f"broker {kafka_bootstrap}", f"reads {topic_prefix}predictions, {topic_prefix}labels",
                   f"writes {topic_prefix}alerts, {topic_prefix}deadletter", f"model m: reference {ref_path}",
                   f"stats at http://127.0.0.1:{port}/stats, metrics at http://127.0.0.1:{port}/metrics",
                   f"assigned partitions: {topic_prefix}labels", "progress: 6,000 events"):
        assert needle in out, (needle, out[-3000:])
    assert re.search(r"MLflow run [0-9a-f]{32} \(\S+\) on sqlite:///", out), out[-3000:]
    assert re.search(r"WARNING glassbox\.worker: alert firing: warning m data_drift feature=num_\d+ \w+=", out), out
    alert_lines = re.findall(r"glassbox\.worker: alert (?:firing|resolved): ", out)
    assert "\x1b" not in out, "terminal control sequences in a log file"
    for chatter in ("Updating database tables", "alembic", "Traceback"):
        assert chatter not in out, (chatter, out[-3000:])

    alerts = read_json(kafka_bootstrap, f"{topic_prefix}alerts")
    assert len(alert_lines) == len(alerts) > 0  # one line per alert published
    for a in alerts:
        link = a["links"]["runbook"]
        assert link.startswith("file://") and link.endswith(f"/{a['monitor']}.md"), link
        runbook = Path(unquote(urlparse(link).path))
        assert runbook.is_file() and runbook.read_text().startswith("#"), runbook

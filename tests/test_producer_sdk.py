"""The producer SDK as a model server uses it: light to import, and its events reach the broker intact.

A fresh interpreter imports ``stream.producer`` and publishes a prediction, a columnar batch and a label to the
embedded broker; the test reads them back and parses them with the event contract (:mod:`stream.events`).
The same script runs in the wheel test, in an environment that has only the base (SDK) dependencies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from stream.events import InvalidEvent
from stream.pipeline.parse_events import parse_label, parse_labels, parse_prediction
from stream.producer import Producer
from tests.kafka_util import read_topic

# What a model server must not pay for when it only publishes events.
HEAVY = ("stream.settings", "mlflow", "evidently", "shap", "faust", "pandas", "prometheus_client", "river",
         "sklearn", "matplotlib", "pydantic_settings", "detectors", "stream.worker", "stream.pipeline")

SDK_SCRIPT = """
import json, sys
from stream.producer import Producer
from stream.kafka.config import KafkaConfig

heavy = json.loads(sys.argv[3])
bootstrap, prefix = sys.argv[1], sys.argv[2]
with Producer(bootstrap, topic_prefix=prefix, kafka=KafkaConfig(connect_timeout_s=20)) as p:
    p.send_prediction(prediction_id="p1", model="churn", timestamp="2026-01-01T00:00:00Z",
                      features={"age": 42, "plan": "pro", "spend": None}, prediction=0.83, scores={"1": 0.83})
    p.send_prediction_batch(model="churn", prediction_ids=["b1", "b2", "b3"],
                            timestamps=[1767225601000, 1767225602000, 1767225603000],
                            features={"age": [30, 31, 32], "plan": ["free", "pro", None]},
                            predictions=[0, 1, 0])
    p.send_label(prediction_id="p1", model="churn", timestamp=1767225660000, label=1)
    p.flush()
print(json.dumps(sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))))
"""


def run_sdk(python: str | Path, bootstrap: str, prefix: str, cwd: Path) -> list[str]:
    """Run :data:`SDK_SCRIPT` with ``python`` from ``cwd``; the heavy modules it had imported at the end."""
    out = subprocess.run([str(python), "-c", SDK_SCRIPT, bootstrap, prefix, json.dumps(HEAVY)], cwd=cwd,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_published(bootstrap: str, prefix: str) -> None:
    """The script's events, as the worker would parse them: keyed by model, stamped with event time."""
    preds = read_topic(bootstrap, f"{prefix}predictions")
    labels = read_topic(bootstrap, f"{prefix}labels")
    assert [r.key for r in preds] == [b"churn", b"churn"] and [r.key for r in labels] == [b"churn"]
    single, batch = (parse_prediction(r.value) for r in preds)
    assert single.ids == ["p1"] and single.timestamps == [1767225600000] == [preds[0].timestamp]
    assert single.row == {"age": 42, "plan": "pro", "spend": None} and single.scores == {"1": [0.83]}
    assert batch.ids == ["b1", "b2", "b3"] and preds[1].timestamp == 1767225603000
    assert list(batch.features["age"]) == [30, 31, 32] and list(batch.prediction) == [0, 1, 0]
    label = parse_label(labels[0].value)
    assert (label.prediction_id, label.label, labels[0].timestamp) == ("p1", 1, 1767225660000)


def test_importing_the_producer_pulls_in_no_worker_stack(tmp_path: Path) -> None:
    code = ("import json, sys; from stream.producer import Producer, ProducerError; "
            "from stream.kafka.config import KafkaConfig; print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         check=True)
    loaded = set(json.loads(out.stdout))
    assert "stream.producer" in loaded and "stream.events" in loaded  # the check sees what was imported
    assert not {m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)}


def test_settings_reuse_the_sdks_kafka_config() -> None:
    from stream.kafka.config import KafkaConfig
    from stream.settings import Settings

    assert Settings.model_fields["kafka"].annotation is KafkaConfig
    assert Settings(kafka={"bootstrap": "k:9092"}).kafka == KafkaConfig(bootstrap="k:9092")


def test_producer_sdk_against_the_embedded_broker(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    assert run_sdk(sys.executable, kafka_bootstrap, topic_prefix, tmp_path) == []
    check_published(kafka_bootstrap, topic_prefix)


# -- batching ---------------------------------------------------------------------------------------------------

T0 = 1_767_225_600_000


def events_of(records: list[Any]) -> list[tuple[bytes, list[str]]]:
    """(key, prediction ids) per message, parsed as the worker parses them."""
    out = []
    for r in records:
        doc = orjson.loads(r.value)
        ids = [lab.prediction_id for lab in parse_labels(r.value)] if "label" in doc["schema"] else \
            parse_prediction(r.value).ids
        out.append((r.key, ids))
    return out


class RecordingProducer(Producer):
    """The real producer, noting the order in which it hands messages to Kafka."""

    def __init__(self, *args: Any, **kw: Any):
        self.sent: list[tuple[str, list[str]]] = []
        super().__init__(*args, **kw)

    def _publish(self, topic: str, key: str | None, data: bytes | None, timestamp_ms: int | None,
                 partition: int | None = None) -> None:
        doc = orjson.loads(data or b"{}")
        ids = doc.get("prediction_id")
        self.sent.append((topic, ids if isinstance(ids, list) else [ids]))
        super()._publish(topic, key, data, timestamp_ms, partition)


def test_threads_share_a_producer_and_labels_follow_their_predictions(kafka_bootstrap: str,
                                                                      topic_prefix: str) -> None:
    n_threads, per_thread = 4, 1500
    p = RecordingProducer(kafka_bootstrap, topic_prefix=topic_prefix, batch_events=200, linger_ms=200)

    def work(t: int) -> None:
        for i in range(per_thread):
            pid = f"t{t}-{i}"
            model = f"m{i % 2}"
            p.send_prediction(prediction_id=pid, model=model, timestamp=T0 + i, features={"x": i, "c": "ab"[t % 2]},
                              prediction=i % 2)
            if i % 3 == 0:
                p.send_label(prediction_id=pid, model=model, timestamp=T0 + i + 1, label=1)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    p.flush()
    p.close()
    preds = events_of(read_topic(kafka_bootstrap, f"{topic_prefix}predictions"))
    labels = events_of(read_topic(kafka_bootstrap, f"{topic_prefix}labels"))
    want = {f"t{t}-{i}" for t in range(n_threads) for i in range(per_thread)}
    got = [pid for _, ids in preds for pid in ids]
    assert len(got) == len(want) and set(got) == want  # every prediction once
    assert sorted(pid for _, ids in labels for pid in ids) == sorted(x for x in want if int(x.split("-")[1]) % 3 == 0)
    assert len(preds) <= len(got) / 20 and max(len(ids) for _, ids in preds) == 200  # batched
    for key, ids in preds:  # keyed by model; each thread's events of a model in the order it sent them
        assert {f"m{int(pid.split('-')[1]) % 2}".encode() for pid in ids} == {key}
    for t in range(n_threads):
        for m in (0, 1):
            mine = [int(pid.split("-")[1]) for key, ids in preds if key == f"m{m}".encode() for pid in ids
                    if pid.startswith(f"t{t}-")]
            assert mine == sorted(mine) and len(mine) == per_thread // 2
    published: set[str] = set()
    for topic, ids in p.sent:  # no label was handed to Kafka before its prediction
        if topic.endswith("predictions"):
            published.update(ids)
        else:
            assert set(ids) <= published


def test_a_batch_goes_out_when_full_after_linger_and_within_buffer_bytes(kafka_bootstrap: str,
                                                                         topic_prefix: str) -> None:
    topic = f"{topic_prefix}predictions"
    with Producer(kafka_bootstrap, topic_prefix=topic_prefix, batch_events=500, linger_ms=300) as p:
        for i in range(1200):
            p.send_prediction(prediction_id=f"a{i}", model="m", timestamp=T0 + i, features={"x": float(i)},
                              prediction=0)
        p.send_label(prediction_id="a0", model="m", label=0, timestamp=T0 + 5)
        time.sleep(1.2)  # no flush: the linger publishes the last 200 and the label
        assert [len(ids) for _, ids in events_of(read_topic(kafka_bootstrap, topic))] == [500, 500, 200]
        assert [ids for _, ids in events_of(read_topic(kafka_bootstrap, f"{topic_prefix}labels"))] == [["a0"]]
    prefix2 = topic_prefix + "mem."
    with Producer(kafka_bootstrap, topic_prefix=prefix2, batch_events=500, linger_ms=60_000,
                  buffer_bytes=20_000) as p:
        for i in range(300):
            p.send_prediction(prediction_id=f"b{i}", model="m", timestamp=T0 + i,
                              features={f"f{k}": "v" * 20 for k in range(20)}, prediction=1)
            assert p.buffered_bytes + p.pending_bytes <= p.buffer_bytes + 1000
    sizes = [len(ids) for _, ids in events_of(read_topic(kafka_bootstrap, f"{prefix2}predictions"))]
    assert sum(sizes) == 300 and len(sizes) > 1 and max(sizes) < 100  # memory, not batch_events, cut them


def test_an_invalid_event_is_sent_alone_and_dead_letters_alone(kafka_bootstrap: str, topic_prefix: str) -> None:
    with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as p:
        for i, x in enumerate([1.0, [1, 2], 3.0]):
            p.send_prediction(prediction_id=f"p{i}", model="m", timestamp=T0 + i, features={"x": x}, prediction=0)
        p.flush()  # the three above were one batch: each goes alone
        for i in range(3):
            p.send_prediction(prediction_id=f"q{i}", model="m", timestamp=T0 + i, features={"x": 1.0}, prediction=0)
    outcomes = []
    for r in read_topic(kafka_bootstrap, f"{topic_prefix}predictions"):
        try:
            outcomes.append(parse_prediction(r.value).ids)
        except InvalidEvent as err:
            outcomes.append(err.reason)
    assert outcomes == [["p0"], "bad_type", ["p2"], ["q0", "q1", "q2"]]


def test_numpy_values_batch_and_an_event_that_is_not_json_is_reported(kafka_bootstrap: str,
                                                                      topic_prefix: str) -> None:
    import numpy as np
    import pytest

    from stream.producer import ProducerError

    p = Producer(kafka_bootstrap, topic_prefix=topic_prefix, linger_ms=60_000)
    for i in range(3):
        p.send_prediction(prediction_id=f"n{i}", model="m", timestamp=T0 + i,
                          features={"x": np.float32(i), "k": np.int64(i), "b": np.bool_(i % 2)},
                          prediction=np.float64(0.5))
    p.flush()
    p.send_prediction(prediction_id="big", model="m", timestamp=T0, features={"x": 2**70}, prediction=1)
    p.send_prediction(prediction_id="fine", model="m", timestamp=T0, features={"x": 1}, prediction=1)
    with pytest.raises(ProducerError, match="'big' of model 'm' is not JSON"):
        p.flush()
    p.close()
    got = [parse_prediction(r.value) for r in read_topic(kafka_bootstrap, f"{topic_prefix}predictions")]
    assert [c.ids for c in got] == [["n0", "n1", "n2"], ["fine"]]
    assert got[0].features["x"].tolist() == [0.0, 1.0, 2.0] and got[0].prediction.tolist() == [0.5] * 3


EXIT_SCRIPT = """
import sys
from stream.producer import Producer
p = Producer(sys.argv[1], topic_prefix=sys.argv[2], linger_ms=60_000)
for i in range(50):
    p.send_prediction(prediction_id=f"e{i}", model="m", timestamp=1767225600000 + i, features={"x": i}, prediction=1)
    p.send_label(prediction_id=f"e{i}", model="m", timestamp=1767225600000 + i, label=1)
"""


def test_buffered_events_are_published_at_interpreter_exit(kafka_bootstrap: str, topic_prefix: str,
                                                           tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", EXIT_SCRIPT, kafka_bootstrap, topic_prefix], cwd=tmp_path, check=True,
                   timeout=60)
    preds = events_of(read_topic(kafka_bootstrap, f"{topic_prefix}predictions"))
    labels = events_of(read_topic(kafka_bootstrap, f"{topic_prefix}labels"))
    assert preds == [(b"m", [f"e{i}" for i in range(50)])] and labels == [(b"m", [f"e{i}" for i in range(50)])]


def test_with_kafka_unreachable_batching_stays_within_buffer_bytes_then_fails_clearly(tmp_path: Path) -> None:
    """The batching path under an outage: buffered plus unacknowledged bytes stay bounded, then a send fails
    after ``max_block_ms`` naming the cause, and what was accepted is delivered once Kafka is back."""
    from stream.producer import ProducerError
    from tests.test_reliability_outage import broker_behind_proxy

    with broker_behind_proxy(tmp_path / "tansu.log") as (proxy, bootstrap):
        prod = Producer(bootstrap, topic_prefix="o.", buffer_bytes=256 * 1024, max_block_ms=500, batch_events=100)
        try:
            prod.send_raw(prod.predictions_topic, b"{}", key="m")
            prod.flush()  # metadata known, connection up
            proxy.pause()
            accepted, err = 0, None
            for i in range(5000):
                try:
                    prod.send_prediction(prediction_id=f"o{i}", model="m", timestamp=T0 + i,
                                         features={"x": "y" * 900}, prediction=1)
                    accepted += 1
                except ProducerError as e:
                    err = str(e)
                    break
                assert prod.buffered_bytes + prod.pending_bytes <= prod.buffer_bytes + 2000
            assert err is not None and "producer buffer full" in err and "max_block_ms" in err, (accepted, err)
            assert accepted > 100 and accepted * 900 <= 256 * 1024, accepted
        finally:
            proxy.resume()
            prod.flush(30)
            prod.close()
        got = [pid for _, ids in events_of(read_topic(bootstrap, "o.predictions")[1:]) for pid in ids]
        assert got == [f"o{i}" for i in range(accepted)]

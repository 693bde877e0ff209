"""The producer SDK as a model server uses it: light to import, and its events reach the broker intact.

A fresh interpreter imports ``stream.producer`` and publishes a prediction, a columnar batch and a label to the
embedded broker; the test reads them back and parses them with the event contract (:mod:`stream.events`).
The same script runs in the wheel test, in an environment that has only the base (SDK) dependencies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from stream.pipeline.parse_events import parse_label, parse_prediction
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

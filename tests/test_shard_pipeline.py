"""Sharded models in the pipeline (in process, no broker): one fold and one label join per partition, and a label
that lands on another partition than its prediction is counted and raises the label-join pipeline checks."""

from __future__ import annotations

from pathlib import Path

import orjson

from stream.pipeline.pipeline import RawMessage
from stream.pipeline.shards import ShardedMonitors
from stream.settings import Settings
from stream.worker.agents import build_pipeline
from stream.worker.health import HealthSample, PipelineHealth, PipelineHealthConfig
from tests.helpers import write_reference

T0 = 1_700_000_000_000


def predictions(partition: int, offset: int, ids: list[str], t0: int) -> RawMessage:
    doc = {"schema": "glassbox.prediction-batch/v1", "model": "m", "prediction_id": ids,
           "timestamp": [t0 + 10 * i for i in range(len(ids))], "features": {"x": [0.1] * len(ids)},
           "prediction": [1] * len(ids)}
    return RawMessage("glassbox.predictions", partition, offset, orjson.dumps(doc))


def labels(partition: int, offset: int, ids: list[str], t: int) -> RawMessage:
    doc = {"schema": "glassbox.label-batch/v1", "model": "m", "prediction_id": ids, "timestamp": [t] * len(ids),
           "label": [1] * len(ids)}
    return RawMessage("glassbox.labels", partition, offset, orjson.dumps(doc))


def test_a_label_on_another_partition_is_counted_and_alerts(tmp_path: Path) -> None:
    ref = write_reference(tmp_path / "ref.parquet")
    s = Settings(home=tmp_path, mlflow={"enabled": False}, detection={"window_ms": 1000, "min_window_events": 10},
                 worker={"models": {"m": str(ref)}, "sharded_models": ["m"], "label_ttl_s": 5})
    pipe = build_pipeline(s)
    assert isinstance(pipe.monitors, ShardedMonitors)
    a = [f"a{i}" for i in range(200)]
    b = [f"b{i}" for i in range(200)]
    pipe.on_predictions([predictions(0, 0, a, T0), predictions(1, 0, b, T0)])
    pipe.on_labels([labels(0, 0, a[:100], T0 + 2000),  # on their predictions' partition: joined
                    labels(1, 1, a[100:], T0 + 2000)])  # keyed wrong: on partition 1, where no 'a' prediction is
    pipe.on_predictions([predictions(0, 1, [f"a{i}" for i in range(200, 400)], T0 + 20_000),  # event time moves
                         predictions(1, 2, [f"b{i}" for i in range(200, 400)], T0 + 20_000)])  # past the TTL
    j0, j1 = pipe.joins["m#0"].counters(), pipe.joins["m#1"].counters()
    assert j0["matched"] == 100 and j0["expired_predictions"] == 100  # 'a' predictions whose labels went astray
    assert j1["unmatched_labels"] == 100 and j1["matched"] == 0  # the strays: counted, not dropped silently
    assert pipe.counters.per_model["m#0"]["outcomes"] == 100
    shards = {k: m for k, m in pipe.monitors.items()}
    assert set(shards) == {"m#0", "m#1"} and shards["m#0"].events == 400  # the fold is per partition
    windows = [p["key"] - T0 // 1000 for p in shards["m#0"].take_outbox() if p["key"] is not None]
    assert windows == [0, 1, 20]  # partials of the windows its events passed (the open one, 21, waits)
    health = PipelineHealth(PipelineHealthConfig(min_label_coverage=0.8, max_late_label_rate=0.2, min_messages=10,
                                                 fire_after=1), name="w")
    zero = {k: {} for k in pipe.joins}
    health.evaluate(HealthSample(now=0, last_event_at=0, joins=zero))
    fired = {(a["feature"], a["model"]) for a in health.evaluate(HealthSample(
        now=1, last_event_at=1, joins={k: j.counters() for k, j in pipe.joins.items()})) if a["status"] == "firing"}
    assert ("label_coverage", "m#0") in fired and ("late_label_rate", "m#1") in fired

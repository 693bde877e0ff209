"""The live worker on the embedded broker and ``glassbox replay`` on the same events raise the same alerts."""

from __future__ import annotations

import pytest

from stream.backtest.file_replay import ReplayOptions, replay_file
from stream.producer import Producer
from tests.kafka_util import WorkerProcess, read_json
from tests.synth import frame

T0 = 1_700_000_000_000


def identity(alert: dict) -> tuple:
    w = alert["window"]
    return (alert["fingerprint"], alert["monitor"], alert["feature"], alert["status"], w["index"], w["start"],
            w["end"], w["events"], alert["value"], alert["threshold"])


@pytest.mark.system
@pytest.mark.timeout(240)
def test_live_worker_matches_file_replay(kafka_bootstrap: str, topic_prefix: str, tmp_path) -> None:
    n, at = 12_000, 6_000
    ref = frame(8_000, seed=1).drop(columns=["score"])
    events = frame(n, seed=2, scenario="mean_shift", at=at).drop(columns=["score"])
    events.insert(0, "timestamp", T0 + events.index.to_numpy() * 10)
    events.insert(0, "prediction_id", [f"e{i}" for i in range(n)])
    ref_path, events_path = tmp_path / "reference.parquet", tmp_path / "events.parquet"
    ref.to_parquet(ref_path)
    events.to_parquet(events_path)

    expected = replay_file(events_path, ref_path, ReplayOptions(model="m")).alerts
    assert any(a["monitor"] == "data_drift" for a in expected), "the scenario must raise data drift"

    features = [c for c in events.columns if c not in ("prediction_id", "timestamp", "prediction", "label")]
    with WorkerProcess(kafka_bootstrap, topic_prefix, app_id=f"{topic_prefix}eq", home=tmp_path / "w",
                       models={"m": str(ref_path)}, audit=False) as worker:
        worker.wait_ready()
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for lo in range(0, n, 400):  # columnar messages, as a busy model server would send
                part = events.iloc[lo:lo + 400]
                prod.send_prediction_batch(
                    model="m", prediction_ids=part["prediction_id"].tolist(), timestamps=part["timestamp"].tolist(),
                    features={c: [None if v != v else v for v in part[c].tolist()] for c in features},
                    predictions=part["prediction"].tolist(),
                )
            prod.flush()
            for i, row in enumerate(events.itertuples(index=False)):  # labels after their predictions
                prod.send_label(prediction_id=row.prediction_id, model="m", label=int(row.label),
                                timestamp=T0 + i * 10 + 5)
        worker.wait_for(lambda s: s["events"] == n and s["per_model"].get("m", {}).get("outcomes", 0) == n,
                        timeout_s=120)
        worker.wait_for(lambda s: s["alerts"] >= len(expected), timeout_s=30)
    live = read_json(kafka_bootstrap, f"{topic_prefix}alerts")
    assert sorted(map(identity, live)) == sorted(map(identity, expected))
    for a in live:  # live alerts point at Kafka offsets, replayed ones at file rows
        assert a["source"]["partition"] >= 0 and a["source"]["offset_start"] <= a["source"]["offset_end"]

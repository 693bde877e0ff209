"""Sharded models, the pure core: partial windows of any split, merged by the combiner, close like one pass.

The unsharded :class:`ModelMonitor` fed the whole stream is the reference answer. The same events split at random
over shards (each fed in random chunks), their partials merged by a :class:`Combiner`, must give the same data
drift, data quality and performance alerts (every field but the source range), and concept drift within twice the
unsharded delay.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors.batch import EventBatch, OutcomeBatch
from detectors.config import DetectionConfig
from detectors.monitor import ModelMonitor
from detectors.partials import Combiner, ShardMonitor
from detectors.profile import ReferenceProfile, build_profile
from tests.synth import FEATURES, frame

T0 = 1_700_000_000_000
STEP_MS = 10  # 1,000 events per 10-s window
CFG = DetectionConfig(window_ms=10_000, min_window_events=100)
N, AT = 16_000, 8_000


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return build_profile(frame(20_000, seed=1), label="label", features=FEATURES)


def _stream(scenario: str) -> tuple[EventBatch, OutcomeBatch]:
    df = frame(N, seed=5, scenario=scenario, at=AT)
    if scenario == "missing":  # and a drift of num_10
        df.loc[AT:, "num_10"] += 0.5 * df["num_10"].std()
    t = T0 + np.arange(N, dtype=np.int64) * STEP_MS
    ids = np.array([f"p{i}" for i in range(N)], dtype=object)
    batch = EventBatch.from_columns(ids=ids, timestamps=t, features={c: df[c].to_numpy() for c in FEATURES},
                                    prediction=df["prediction"].to_numpy())
    outcomes = OutcomeBatch(ids=ids, timestamps=t, label_timestamps=t, prediction=batch.prediction.astype(float),
                            label=df["label"].to_numpy().astype(float), partitions=np.full(N, -1, np.int64),
                            offsets=np.arange(N, dtype=np.int64))
    return batch, outcomes


def _take(o: OutcomeBatch, m: np.ndarray) -> OutcomeBatch:
    return OutcomeBatch(ids=o.ids[m], timestamps=o.timestamps[m], label_timestamps=o.label_timestamps[m],
                        prediction=o.prediction[m], label=o.label[m], partitions=o.partitions[m], offsets=o.offsets[m])


def _unsharded(profile: ReferenceProfile, batch: EventBatch, outcomes: OutcomeBatch) -> list[dict[str, Any]]:
    mon = ModelMonitor(profile, CFG, model="m")
    mon.estimation = None  # not merged across shards
    alerts = []
    for a in range(0, N, 700):
        sl = np.zeros(N, bool)
        sl[a:a + 700] = True
        alerts += mon.observe(batch.take(sl))
        alerts += mon.observe_outcomes(_take(outcomes, sl))
    return alerts


def _sharded(profile: ReferenceProfile, batch: EventBatch, outcomes: OutcomeBatch, shards: int, seed: int,
             *, resend: bool = False, restart_at: int | None = None) -> tuple[list[dict[str, Any]], Combiner]:
    rng = np.random.default_rng(seed)
    of = rng.integers(0, shards, N)
    mons = [ShardMonitor(profile, CFG, model="m", shard=s) for s in range(shards)]
    comb = Combiner(ModelMonitor(profile, CFG, model="m"), shards)
    alerts: list[dict[str, Any]] = []
    pos, applied = 0, 0
    while pos < N:  # shards progress in turns of random chunk sizes; partials reach the combiner in between
        size = int(rng.integers(50, 1500))
        sl = np.zeros(N, bool)
        sl[pos:pos + size] = True
        pos += size
        for s, mon in enumerate(mons):
            mine = sl & (of == s)
            mon.observe(batch.take(mine))
            mon.observe_outcomes(_take(outcomes, mine))
            sent = mon.take_outbox()
            for p in sent + (sent if resend else []):
                alerts += comb.add(p, now=0.0)
                applied += 1
            if sent:
                mon.ack(sent[-1]["seq"])
        if restart_at is not None and applied >= restart_at:
            restart_at = None
            mons = [ShardMonitor.from_state(profile, CFG, "m", None, m.to_state()) for m in mons]
            comb = Combiner.from_state(ModelMonitor.from_state(profile, CFG, "m", None, comb.to_state()["monitor"]),
                                       shards, 30.0, comb.to_state())
    return alerts, comb


def _key(a: dict[str, Any]) -> tuple[Any, ...]:
    return a["fingerprint"], a["status"], a["monitor"], a["feature"], a["value"], a["threshold"], a["event_time"], \
        tuple(sorted(a["window"].items())), a["summary"]


def _split(alerts: list[dict[str, Any]], until: int) -> tuple[set[Any], list[dict[str, Any]]]:
    exact = {_key(a) for a in alerts if a["monitor"] != "concept_drift" and a["event_time"] < until}
    return exact, [a for a in alerts if a["monitor"] == "concept_drift"]


@pytest.mark.parametrize(("scenario", "shards", "seed"), [("missing", 3, 2), ("concept_flip", 4, 3)])
def test_merged_partials_give_the_unsharded_alerts(profile: ReferenceProfile, scenario: str, shards: int,
                                                   seed: int) -> None:
    batch, outcomes = _stream(scenario)
    want = _unsharded(profile, batch, outcomes)
    got, comb = _sharded(profile, batch, outcomes, shards, seed)
    until = (comb.last_closed + 1) * CFG.window_ms  # the combiner holds the windows no later event has ended
    w_exact, w_concept = _split(want, until)
    g_exact, g_concept = _split(got, until)
    monitors = {k[2] for k in w_exact}
    assert monitors >= ({"data_quality", "data_drift"} if scenario == "missing" else {"performance"}), monitors
    assert g_exact == w_exact
    assert comb.monitor.events == sum(1 for t in batch.timestamps if t < until)
    change = T0 + AT * STEP_MS
    first = [min((a["event_time"] for a in c if a["status"] == "firing" and a["event_time"] >= change), default=None)
             for c in (w_concept, g_concept)]
    if scenario == "concept_flip":
        assert first[0] is not None and first[1] is not None
        assert first[1] - change <= 2 * (first[0] - change)
    assert not [a for a in g_concept if a["status"] == "firing" and a["event_time"] < change]


def test_resent_partials_and_restarts_change_nothing(profile: ReferenceProfile) -> None:
    batch, outcomes = _stream("mean_shift")
    plain, c1 = _sharded(profile, batch, outcomes, 3, seed=7)
    again, c2 = _sharded(profile, batch, outcomes, 3, seed=7, resend=True, restart_at=20)
    assert [_key(a) for a in plain] == [_key(a) for a in again]
    assert c2.duplicates > 0 and c1.duplicates == 0
    assert c1.monitor.events == c2.monitor.events


def test_an_idle_shard_holds_a_window_only_for_the_allowed_lateness(profile: ReferenceProfile) -> None:
    batch, _ = _stream("none")
    shard = ShardMonitor(profile, CFG, model="m", shard=0)
    shard.observe(batch.take(batch.timestamps < T0 + 35_000))  # windows 0-2 ended, 3 open
    comb = Combiner(ModelMonitor(profile, CFG, model="m"), shards=4, allowed_lateness_s=30.0)
    for p in shard.take_outbox():
        comb.add(p, now=100.0)
    assert comb.closed == 0 and len(comb.open_windows) == 3  # shards 1-3 never reported
    assert comb.tick(now=129.0) == [] and comb.closed == 0
    comb.tick(now=130.0)
    assert comb.closed == 3 and comb.by_lateness == 3  # shard 0's events ended all three: none waits for more
    late = ShardMonitor(profile, CFG, model="m", shard=1)
    late.observe(batch.take(batch.timestamps < T0 + 15_000))  # shard 1 reports window 0, long closed
    for p in late.take_outbox():
        comb.add(p, now=131.0)
    assert comb.late_partials == 1
    assert comb.open[min(comb.open)].n == 1000  # counted into the oldest open window, not dropped


def test_sharding_needs_event_time_windows(profile: ReferenceProfile) -> None:
    with pytest.raises(ValueError, match="window_ms"):
        ShardMonitor(profile, DetectionConfig(window=500), model="m")

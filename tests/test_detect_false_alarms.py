"""False-alarm rate of the default settings on no-change streams over 20 seeds (slow: ``-m slow``).

Each seed draws its own reference (20,000 rows) and stream (100,000 rows, 100 windows, labels joined) from
the same population; every firing alert is a false alarm. Run ``pytest -m slow -s`` to see the figures.
"""

from __future__ import annotations

import pytest
import synth

from detectors.profile import build_profile
from stream.backtest.file_replay import ReplayOptions, replay_frames

SEEDS = 20


@pytest.mark.slow
def test_false_alarm_rate_over_20_seeds(request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("20 x 100k-event replays (~20 s): run with -m slow")
    per_seed = []
    effect: dict[int, float] = {}  # horizon (windows) -> largest statistic over its threshold
    for seed in range(SEEDS):
        prof = build_profile(synth.frame(20_000, seed=5000 + seed), label="label", scores=["score"])
        res = replay_frames(synth.frame(100_000, seed=6000 + seed), prof, ReplayOptions(score_cols=["score"]))
        for w in res.windows:
            for c in w.get("columns", {}).values() if w["kind"] == "predictions" else ():
                for h in c["horizons"]:
                    effect[h["windows"]] = max(effect.get(h["windows"], 0.0), h["effect"])
        fired = [a for a in res.alerts if a["status"] == "firing"]
        per_seed.append(fired)
        assert len(fired) <= 1, fired
    n_alerts = sum(len(f) for f in per_seed)
    n_streams = sum(1 for f in per_seed if f)
    windows = SEEDS * 100
    print(f"\nfalse alarms: {n_alerts} firing alerts in {SEEDS} no-change streams ({n_streams} streams with any), "
          f"{n_alerts / windows:.4f} per window, {n_alerts / SEEDS:.2f} per 100k-event stream; largest effect per "
          f"horizon {', '.join(f'{h}: {e:.2f}' for h, e in sorted(effect.items()))}; "
          + "; ".join(f"seed {s}: {a['monitor']}/{a['feature']} row {a['row']}"
                      for s, f in enumerate(per_seed) for a in f))
    assert n_streams <= 2
    assert sorted(effect) == [1, 2, 5, 10, 20]

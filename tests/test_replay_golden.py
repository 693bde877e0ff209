"""File replay gives the alerts stored in ``tests/data/replay_golden_alerts.jsonl``, byte for byte.

The input is deterministic (seeded synthetic streams, several drifts, labels, string categories, timestamps);
the stored file was written by the replay code of its commit, so a speed change that moves one alert, one
number or one key fails here. A change that is meant to change detection regenerates the file with one
command, in a commit that says why:

    uv run python tests/test_replay_golden.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # run as a script: the same imports as under pytest
    sys.path[:0] = [str(HERE.parent), str(HERE)]

import synth  # noqa: E402

from stream.backtest.file_replay import ReplayOptions, dumps_alerts, replay_file  # noqa: E402

GOLDEN = HERE / "data" / "replay_golden_alerts.jsonl"
SEGMENTS = [  # (rows, seed, scenario, change row within the segment)
    (30_000, 501, "mean_shift", 10_000),
    (30_000, 502, "new_category", 10_000),
    (30_000, 503, "concept_flip", 10_000),
    (30_000, 504, "missing", 15_000),
    (20_000, 505, "cat_double", 5_000),
]


def golden_input(d: Path) -> tuple[Path, Path]:
    """The reference and events parquet files of the golden replay, written into ``d``."""
    ref = synth.frame(20_000, seed=500)
    ev = pd.concat([synth.frame(n, seed=s, scenario=sc, at=at) for n, s, sc, at in SEGMENTS], ignore_index=True)
    ev.insert(0, "timestamp", 1_767_225_600_000 + 250 * ev.index.to_numpy())
    ref.to_parquet(d / "ref.parquet")
    ev.to_parquet(d / "events.parquet")
    return d / "ref.parquet", d / "events.parquet"


def golden_alerts(d: Path) -> bytes:
    """Alerts of the golden replays: labels joined at once, then 700 rows late with a smaller chunk size."""
    ref, ev = golden_input(d)
    out = b""
    for opts in (ReplayOptions(score_cols=["score"]),
                 ReplayOptions(score_cols=["score"], label_delay=700, chunk_rows=10_000, window=500)):
        out += dumps_alerts(replay_file(ev, ref, opts).alerts)
    return out


def test_replay_alerts_match_the_stored_file(tmp_path: Path) -> None:
    got = golden_alerts(tmp_path)
    want = GOLDEN.read_bytes()
    assert got.count(b"\n") > 10, "the golden input raises alerts"
    lines = (got.count(b"\n"), want.count(b"\n"))
    assert got == want, (f"alerts differ from {GOLDEN.name} ({lines[0]} vs {lines[1]} lines); "
                         "regenerate only for an intended detection change: uv run python tests/test_replay_golden.py")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_bytes(golden_alerts(Path(tmp)))
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size:,} bytes)")

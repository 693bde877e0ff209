"""File replay gives the alerts stored in ``tests/data/replay_golden_alerts.jsonl``, byte for byte.

The input is deterministic (seeded synthetic streams, several drifts, labels, string categories, timestamps);
the stored file was written by the replay code of its commit, so a speed change that moves one alert, one
number or one key fails here. Floating point is not the same on every CPU (numpy dispatches its math to the
vector units it finds: the last digits of a quantile move, and with them the reference's digest): on a machine
whose profile digest is the stored one the bytes must be equal, elsewhere every field must be, floats to 1e-9.
A change that is meant to change detection regenerates the file with one command, in a commit that says why:

    uv run python tests/test_replay_golden.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # run as a script: the same imports as under pytest
    sys.path[:0] = [str(HERE.parent), str(HERE)]

import synth  # noqa: E402

from detectors.config import DetectionConfig  # noqa: E402
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


def golden_alerts(d: Path, keep_windows: bool = True, config: DetectionConfig | None = None) -> bytes:
    """Alerts of the golden replays: labels joined at once, then 700 rows late with a smaller chunk size.
    ``keep_windows``: whether the replays keep window records (a replay without them skips building the
    results of windows where nothing happens)."""
    ref, ev = golden_input(d)
    out = b""
    for opts in (ReplayOptions(score_cols=["score"], keep_windows=keep_windows, config=config),
                 ReplayOptions(score_cols=["score"], label_delay=700, chunk_rows=10_000, window=500,
                               keep_windows=keep_windows, config=config)):
        out += dumps_alerts(replay_file(ev, ref, opts).alerts)
    return out


def _digests(alerts: list[dict[str, Any]]) -> set[str]:
    return {a["evidence"]["reference"]["digest"] for a in alerts}


def _same(got: Any, want: Any, where: str = "") -> list[str]:
    """Where ``got`` and ``want`` differ: types, keys, strings and integers exactly, floats to 1e-9 relative."""
    if isinstance(want, float) or isinstance(got, float):
        ok = isinstance(got, (int, float)) and isinstance(want, (int, float)) and math.isclose(
            got, want, rel_tol=1e-9, abs_tol=1e-12)
        return [] if ok else [f"{where}: {got!r} != {want!r}"]
    if isinstance(want, dict) and isinstance(got, dict):
        if got.keys() != want.keys():
            return [f"{where}: keys {sorted(got)} != {sorted(want)}"]
        return [d for k in want for d in _same(got[k], want[k], f"{where}.{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True)) for d in _same(g, w, f"{where}[{i}]")]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


@pytest.mark.parametrize("keep_windows", [True, False], ids=["with window records", "without"])
def test_replay_alerts_match_the_stored_file(tmp_path: Path, keep_windows: bool) -> None:
    got = golden_alerts(tmp_path, keep_windows)
    want = GOLDEN.read_bytes()
    assert got.count(b"\n") > 10, "the golden input raises alerts"
    lines = (got.count(b"\n"), want.count(b"\n"))
    hint = "regenerate only for an intended detection change: uv run python tests/test_replay_golden.py"
    assert lines[0] == lines[1], f"{lines[0]} alerts, {GOLDEN.name} holds {lines[1]}; {hint}"
    got_alerts, want_alerts = ([orjson.loads(x) for x in b.splitlines()] for b in (got, want))
    if _digests(got_alerts) == _digests(want_alerts):  # the floats of the machine that wrote the file
        assert got == want, f"alerts differ from {GOLDEN.name} byte for byte; {hint}"
        return
    assert len(_digests(got_alerts)) == 1, "one reference, one digest"
    for a in (*got_alerts, *want_alerts):  # another CPU's last digits: everything else must agree
        a["evidence"]["reference"]["digest"] = "-"
        a.pop("alert_id", None)  # derived from the digest
    diffs = [d for i, (g, w) in enumerate(zip(got_alerts, want_alerts, strict=True)) for d in _same(g, w, f"[{i}]")]
    assert not diffs, f"alerts differ from {GOLDEN.name}: {diffs[:5]}; {hint}"


def test_alerts_do_not_depend_on_keeping_window_records(tmp_path: Path) -> None:
    """Alerts that need two windows to fire and two to resolve: windows counting towards a transition are
    closed in full without records too."""
    config = DetectionConfig(fire_after=2, resolve_after=2)
    with_records = golden_alerts(tmp_path, True, config)
    statuses = {orjson.loads(a)["status"] for a in with_records.splitlines()}
    assert statuses == {"firing", "resolved"}
    assert golden_alerts(tmp_path, False, config) == with_records


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_bytes(golden_alerts(Path(tmp)))
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size:,} bytes)")

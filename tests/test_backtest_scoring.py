"""Scoring alerts against known change points: the rule on hand-made alerts, then a known stream end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import synth

from detectors.scoring import EventClock, TruthError, parse_truth, score
from stream.cli import main as cli


def alert(monitor: str, row: int, feature: str | None = None, status: str = "firing", model: str = "m") -> dict:
    return {"monitor": monitor, "feature": feature, "status": status, "row": row, "event_time": 1000 * row,
            "model": model}


def test_matching_rule_by_hand() -> None:
    alerts = [
        alert("data_drift", 999, "x"),  # before any change: false alarm
        alert("data_drift", 2999, "x", "resolved"),  # resolved alerts are not scored
        alert("data_drift", 4999, "x"),  # first after the change at 4,000 (x): detection, delay 999
        alert("data_drift", 5999, "y"),  # y did not change (the change is scoped to x): false alarm
        alert("data_drift", 6999, "x"),  # x again, same change: a repeat, not a false alarm
        alert("data_drift", 9999, "x"),  # after the change's end (9,000): false alarm
        alert("concept_drift", 7100),  # concept change at 7,000: detection, delay 100
        alert("performance", 7999),  # no performance change in the truth: false alarm
    ]
    truth = parse_truth({"changes": [
        {"row": 4000, "time": 4_000_000, "monitor": "data_drift", "feature": "x", "end_row": 9000},
        {"row": 7000, "time": 7_000_000, "monitor": "concept_drift"},
        {"row": 8000, "time": 8_000_000, "monitor": "data_quality", "name": "never seen"},
    ]})
    s = score(alerts, truth, span_rows=12_000, span_ms=12_000_000)
    dd, cd, perf, dq, all_ = (s.monitor(m) for m in ("data_drift", "concept_drift", "performance", "data_quality",
                                                     "all"))
    assert (dd.changes, dd.detections, dd.missed, dd.false_alarms, dd.repeats) == (1, 1, 0, 3, 1)
    assert dd.delays_rows == [999] and dd.delays_ms == [999_000]
    assert dd.mtbfa_rows == 4000.0 and dd.mtbfa_ms == 4_000_000.0  # 12,000 rows / 3 false alarms
    assert (cd.detections, cd.delays_rows, cd.false_alarms, cd.mtbfa_rows) == (1, [100], 0, None)
    assert (perf.changes, perf.false_alarms) == (0, 1)
    assert (dq.changes, dq.detections, dq.missed, dq.missed_changes) == (1, 0, 1, ["never seen (data_quality)"])
    # all monitors together: 3 changes, 2 detected, 1 missed; 4 false alarms (3 drift + 1 performance)
    assert (all_.changes, all_.detections, all_.missed, all_.false_alarms) == (3, 2, 1, 4)


def test_unscoped_change_and_next_change_bound_detection() -> None:
    """An unscoped change is detected by any monitor; a change is active only until the next one of its scope."""
    alerts = [alert("data_drift", 1500, "a"), alert("data_drift", 2600, "b"), alert("data_drift", 3500, "a")]
    truth = parse_truth([{"row": 1000}, {"row": 2500}, {"row": 3000}])
    s = score(alerts, truth, span_rows=4000)
    dd = s.monitor("data_drift")
    assert [m.delay_rows for m in dd.matches] == [500, 100, 500]
    assert (dd.detections, dd.missed, dd.false_alarms) == (3, 0, 0)
    assert s.monitor("data_drift").mtbfa_rows is None


def test_time_truth_uses_the_window_clock_for_rows() -> None:
    """Kafka alerts have no row: it comes from the window records (exact at a prediction window's end)."""
    windows = [{"kind": "predictions", "model": "m", "index": i, "start": 10_000 * i, "end": 10_000 * i + 9_990,
                "events": 1000} for i in range(6)]
    alerts = [{"monitor": "data_drift", "feature": "x", "status": "firing", "model": "m", "row": None,
               "event_time": 39_990, "window": {"index": 3, "events": 1000}}]
    clock = EventClock.from_windows(windows)
    s = score(alerts, parse_truth([{"time": 25_000, "monitor": "data_drift"}]), clock=clock)
    dd = s.monitor("data_drift")
    assert dd.delays_ms == [14_990]
    assert dd.delays_rows == [3999 - 2500]  # t=25,000 is row 2,500 (start of window 2 + 500 of 999 steps)
    assert s.span_rows == 6000 and s.span_ms == 59_990


@pytest.mark.parametrize(("doc", "message"), [
    ({"changes": [{"monitor": "data_drift"}]}, "changes[0]: needs 'row' or 'time'"),
    ({"changes": [{"row": -5}]}, "changes[0].row: expected a row number >= 0"),
    ([{"row": 5, "monitor": "drift"}], "changes[0].monitor: 'drift' is not one of"),
    ([{"time": "yesterday"}], "changes[0].time: 'yesterday' is not an RFC 3339 time"),
    ([{"row": 1, "colour": "red"}], "changes[0]: unknown key 'colour'"),
    ({"change": []}, "unknown key 'change'"),
    ("row 5", "expected {\"changes\": [...]}"),
])
def test_malformed_truth_is_named(doc: Any, message: str) -> None:
    with pytest.raises(TruthError, match=re.escape(message)):
        parse_truth(doc)


# a known stream, end to end ---------------------------------------------------------------------------------
@pytest.fixture
def glassbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)

    def run(*args: Any) -> int:
        try:
            cli.main(["replay", *map(str, args)])
        except SystemExit as e:
            return int(e.code or 0)
        return 0

    return run


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """30,000 rows one second apart: num_10 shifts by 3 sd at row 10,000, the concept flips at row 20,000."""
    d = tmp_path_factory.mktemp("scoring")
    ref = synth.frame(20_000, seed=21).drop(columns=["score"])
    ev = synth.frame(30_000, seed=22, scenario="concept_flip", at=20_000).drop(columns=["score"])
    ev.loc[10_000:, "num_10"] += 3.0 * ev["num_10"].std()
    ev.insert(0, "timestamp", pd.date_range("2026-03-01", periods=len(ev), freq="s", tz="UTC"))
    ref.to_parquet(d / "ref.parquet")
    ev.to_parquet(d / "events.parquet")
    (d / "truth.json").write_text(json.dumps({"changes": [
        {"row": 10_000, "monitor": "data_drift", "feature": "num_10"},
        {"time": "2026-03-01T05:33:20Z", "monitor": "concept_drift"},  # row 20,000
        {"row": 25_000, "monitor": "data_quality", "name": "phantom"},  # nothing happens there: missed
    ]}))
    return {"dir": d, "ref": d / "ref.parquet", "events": d / "events.parquet", "truth": d / "truth.json"}


def _table_row(out: str, monitor: str) -> list[str]:
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == monitor and len(cells) == 9:
            return cells
    raise AssertionError(f"no score row for {monitor} in:\n{out}")


def test_known_stream_scores_match_hand_computation(known, glassbox, tmp_path: Path, capsys) -> None:
    out_path = tmp_path / "alerts.jsonl"
    rc = glassbox(known["events"], "--reference", known["ref"], "--truth", known["truth"], "--alerts-out", out_path)
    out = capsys.readouterr().out
    assert rc == 0
    alerts = [orjson.loads(x) for x in out_path.read_bytes().splitlines()]
    firing = [a for a in alerts if a["status"] == "firing"]

    # data drift: windows of 1,000 rows; the first window after the shift is rows 10,000..10,999, so the
    # detection is at row 10,999: 999 rows and 999 s (16.6 min) late. Every other data_drift firing is false.
    dd_false = [a for a in firing if a["monitor"] == "data_drift" and not (a["feature"] == "num_10"
                                                                           and a["row"] >= 10_000)]
    assert _table_row(out, "data_drift")[1:] == ["1", "1", "0", str(len(dd_false)), "999", "16.6 min",
                                                 _mtbfa(30_000, len(dd_false)), _mtbfa_time(29_999_000, len(dd_false))]

    # concept drift: the first concept_drift firing at or after row 20,000 detects the flip
    cd = [a for a in firing if a["monitor"] == "concept_drift"]
    first = min(a["row"] for a in cd if a["row"] >= 20_000)
    cd_false = [a for a in cd if a["row"] < 20_000]
    row = _table_row(out, "concept_drift")
    assert row[1:5] == ["1", "1", "0", str(len(cd_false))]
    assert row[5] == f"{first - 20_000:,}"

    # the phantom data-quality change is missed; performance has no change in the truth, so all its firings
    # are false alarms
    assert _table_row(out, "data_quality")[1:4] == ["1", "0", "1"]
    perf = [a for a in firing if a["monitor"] == "performance"]
    if perf:
        assert _table_row(out, "performance")[4] == str(len(perf))
    all_false = len(dd_false) + len(cd_false) + len(perf) + sum(
        1 for a in firing if a["monitor"] not in ("data_drift", "concept_drift", "performance"))
    assert _table_row(out, "all")[1:5] == ["3", "2", "1", str(all_false)]

    written = json.loads((tmp_path / "alerts.score.json").read_text())
    assert written["monitors"]["data_drift"]["delays_rows"] == [999]
    assert written["monitors"]["data_drift"]["delays_ms"] == [999_000]
    assert written["monitors"]["data_quality"]["missed_changes"] == ["phantom (data_quality)"]


def _mtbfa(rows: int, n: int) -> str:
    return "-" if n == 0 else f"{rows / n:,.0f}"


def _mtbfa_time(ms: int, n: int) -> str:
    from stream.cli.replay_print import _fmt_ms

    return _fmt_ms(ms / n) if n else "-"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON"),
    ('{"changes": [{"monitor": "data_drift"}]}', "changes[0]: needs 'row' or 'time'"),
    ('{"changes": []}', "lists no change points"),
])
def test_malformed_truth_file_fails_with_one_line(known, glassbox, tmp_path: Path, capsys, content, message) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text(content)
    rc = glassbox(known["events"], "--reference", known["ref"], "--truth", truth)
    err = capsys.readouterr().err
    assert rc != 0 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_missing_truth_file_fails_with_one_line(known, glassbox, tmp_path: Path, capsys) -> None:
    rc = glassbox(known["events"], "--reference", known["ref"], "--truth", tmp_path / "nope.json")
    err = capsys.readouterr().err
    assert rc != 0 and "no such truth file" in err and len(err.strip().splitlines()) == 1, err


def test_compare_scores_two_rule_sets_on_a_file(known, glassbox, tmp_path: Path, capsys) -> None:
    """B overrides only what it names: half-length windows detect the shift after 499 rows instead of 999."""
    a_toml, b_toml = tmp_path / "a.toml", tmp_path / "b.toml"
    a_toml.write_text("[detection]\nresolve_after = 2\n")
    b_toml.write_text("[detection]\nwindow = 500\n")
    rc = glassbox(known["events"], "--reference", known["ref"], "--config", a_toml, "--compare", b_toml,
                  "--truth", known["truth"], "--alerts-out", tmp_path / "a.jsonl")
    out = capsys.readouterr().out
    assert rc == 0
    assert "alerts per monitor" in out and "where they differ" in out
    score = json.loads((tmp_path / "a.score.json").read_text())
    assert score[str(a_toml)]["monitors"]["data_drift"]["delays_rows"] == [999]
    assert score[str(b_toml)]["monitors"]["data_drift"]["delays_rows"] == [499]
    b = [orjson.loads(x) for x in (tmp_path / "a.compare.jsonl").read_bytes().splitlines()]
    assert {x["window"]["events"] for x in b if x["monitor"] == "data_drift"} == {500}
    # B keeps A's resolve_after = 2 (it only changed the window)
    assert "no change detected in 2 outcome windows" in (tmp_path / "a.compare.jsonl").read_text()

"""Issue 14: the Evidently report an alert links to judges each column as the alert did.

A 0.15 sd shift and a 10-point category move fire; Evidently's own verdict on the window headlines no dataset
drift (2 of 25 columns is under its drift share 0.5). Given the window record's verdicts, the report names the
same drifted features in the same order (effect, largest first), headlines dataset drift and names the
horizon that decided.
"""

from __future__ import annotations

import pandas as pd
import pytest
import shifts
import synth

from detectors.profile import build_profile
from stream.backtest.file_replay import ReplayOptions, replay_frames
from stream.cli.alerts import alerts_table, in_display_order
from stream.evidence.evidently_report import build_snapshot

AT = 5_000


@pytest.fixture(scope="module")
def fired_window() -> tuple[pd.DataFrame, pd.DataFrame, dict, list[dict]]:
    ref = synth.frame(20_000, seed=1000)
    prof = build_profile(ref, label="label", scores=["score"])
    events = shifts.shifted(shifts.shifted(synth.frame(12_000, seed=7), "mean", 0.15, at=AT, seed=7),
                            "category", 0.10, at=AT, seed=7)
    res = replay_frames(events, prof, ReplayOptions(score_cols=["score"], keep_windows=True))
    drift = [a for a in res.alerts if a["status"] == "firing" and a["monitor"] == "data_drift"]
    assert shifts.NUMERIC in [a["feature"] for a in drift], "the small shift fires"
    index = next(a for a in drift if a["feature"] == shifts.NUMERIC)["window"]["index"]
    rec = next(w for w in res.windows if w["kind"] == "predictions" and w["index"] == index)
    same = [a for a in drift if a["window"]["index"] == index]
    window = events.iloc[rec["start"]:rec["end"] + 1]  # no timestamp column: event time is the row number
    assert len(window) == rec["events"]
    return window, ref, rec, same


def test_report_names_the_alerts_features_in_effect_order(fired_window) -> None:
    window, ref, rec, alerts = fired_window
    features = [c for c in synth.NUM + synth.CAT if c in window.columns]
    plain = build_snapshot(window, ref, features=features, prediction=None, sample_size=1000, seed=3)
    judged = build_snapshot(window, ref, features=features, prediction=None, sample_size=1000, seed=3,
                            verdicts=rec["columns"])
    fired = [a["feature"] for a in in_display_order(alerts)]
    assert plain.drift_share < 0.5, "Evidently's own verdict headlines no dataset drift under a firing alert"
    assert judged.drifted_columns == rec["drifted"] and set(fired) <= set(rec["drifted"])
    assert [c for c in judged.drifted_columns if c in fired] == fired, "alerts tail's order is the report's"
    assert judged.drift_share > 0
    col = judged.column_drift[shifts.NUMERIC]
    assert col["drifted"] and col["score"] == pytest.approx(rec["columns"][shifts.NUMERIC]["value"])
    assert col["threshold"] == pytest.approx(rec["columns"][shifts.NUMERIC]["threshold"])
    hz = rec["columns"][shifts.NUMERIC]["horizon"]
    over = f"{hz['windows']} window{'s' if hz['windows'] > 1 else ''} / {hz['events']:,} events"
    assert col["method"] == f"glassbox wasserstein, calibrated, {over}"
    html = judged.to_html()
    assert col["method"] in html and "Dataset Drift is detected" in html


def test_alerts_tail_shows_effect_and_horizon(fired_window) -> None:
    from rich.console import Console

    _, _, _, alerts = fired_window
    console = Console(width=260, record=True)
    console.print(alerts_table(in_display_order(alerts)))
    text = console.export_text()
    a = alerts[0]
    assert f"{a['evidence']['effect']:.2f}" in text and "drifted features by effect" in text
    assert f"{a['evidence']['horizon']['windows']} w" in text

"""The backtest timeline: 30 features as small multiples, rendered by headless Chromium; the PNG is an image."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import synth

from stream.backtest.file_replay import ReplayOptions, replay_file
from stream.backtest.timeline import build_timeline
from stream.cli import main as cli
from tests import browser

EXTRA = [f"extra_{i}" for i in range(5)]  # 25 synthetic features + 5 = 30


def _with_extra(df, seed: int):
    rng = np.random.default_rng(seed)
    for i, c in enumerate(EXTRA):
        df[c] = rng.normal(i, 1.0 + i, len(df))
    return df


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("timeline")
    ref = _with_extra(synth.frame(10_000, seed=31).drop(columns=["score"]), 1)
    ev = _with_extra(synth.frame(16_000, seed=32, scenario="concept_flip", at=8_000).drop(columns=["score"]), 2)
    ev.loc[8_000:, "num_7"] += 3.0 * ev["num_7"].std()
    ev.loc[8_000:, "extra_3"] += 2.0 * ev["extra_3"].std()
    ev.insert(0, "timestamp", 1_772_323_200_000 + np.arange(len(ev)) * 500)
    ref.to_parquet(d / "ref.parquet")
    ev.to_parquet(d / "events.parquet")
    (d / "truth.json").write_text(json.dumps([{"row": 8_000}]))
    return {"dir": d, "ref": d / "ref.parquet", "events": d / "events.parquet", "truth": d / "truth.json"}


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


def test_panels_drifted_first(stream) -> None:
    res = replay_file(stream["events"], stream["ref"], ReplayOptions(window=1000))
    tl = build_timeline(res.windows, res.alerts)
    names = [p.name for p in tl.panels]
    assert len(names) == 30 + 1 + 1  # 30 features, the prediction, performance
    firing = [a for a in res.alerts if a["status"] == "firing"]
    fired = {a["feature"] or "performance" for a in firing}  # concept and performance alerts: one panel
    assert {"num_7", "extra_3"} <= fired
    assert set(names[: len(fired)]) == fired  # every panel that fired comes before every one that did not
    assert tl.x_is_time
    span = next(p for p in tl.panels if p.name == "num_7").spans[0]
    assert span.start == 1_772_323_200_000 + 8_999 * 500  # the first window after the shift ends at row 8,999


@pytest.mark.skipif(browser.chromium_path() is None, reason="chromium not installed")
def test_html_renders_every_panel_in_chromium_and_png_is_an_image(stream, glassbox, tmp_path: Path, capsys) -> None:
    html_path, png_path = tmp_path / "timeline.html", tmp_path / "timeline.png"
    rc = glassbox(stream["events"], "--reference", stream["ref"], "--truth", stream["truth"], "--plot", html_path,
                  "--plot", png_path, "--alerts-out", tmp_path / "a.jsonl")
    assert rc == 0, capsys.readouterr().err
    dom = browser.dump_dom(html_path.as_uri())
    panels = re.findall(r'<div class="panel[^"]*" data-panel="([^"]+)"', dom)
    assert len(panels) == 32
    # plotly.js ran: every panel holds a rendered plot (the class is added by plotly.js, not in the file)
    assert len(re.findall(r'class="[^"]*js-plotly-plot', dom)) == 32
    assert "js-plotly-plot" not in html_path.read_text()[-200_000:]
    assert panels[0].split(" (")[0] in ("num_7", "extra_3", "performance", "prediction")
    text = browser.visible_text(dom)
    assert "32 panels" in text and "row 8000" in text  # the true change point is annotated

    import matplotlib.image as mpimg

    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(png_path)
    assert img.ndim == 3 and img.shape[0] > 1000 and img.shape[1] > 800  # 11 rows x 3 columns of panels


def test_plot_path_must_be_html_or_png(stream, glassbox, tmp_path: Path, capsys) -> None:
    rc = glassbox(stream["events"], "--reference", stream["ref"], "--plot", tmp_path / "t.pdf")
    err = capsys.readouterr().err
    assert rc != 0 and "expected a .html or .png path" in err and len(err.strip().splitlines()) == 1

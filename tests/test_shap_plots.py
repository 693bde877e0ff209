"""SHAP artifacts: real PNGs of non-trivial size (opened with Pillow and matplotlib) and the values table."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from detectors.attribution import ModelExplainer
from stream.evidence.shap_plots import PNG_SIGNATURE, beeswarm_png, summary_bar_png, write_artifacts, write_table

warnings.filterwarnings("ignore", category=UserWarning)
FEATURES = ["tenure", "charges", "calls", "age", "plan"]


@pytest.fixture(scope="module")
def attribution():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(800, 4)), columns=FEATURES[:4])
    df["plan"] = rng.integers(0, 3, len(df)).astype(float)
    df.loc[::25, "age"] = np.nan
    y = (df.tenure - df.charges + 0.5 * df.plan + rng.normal(0, 0.5, len(df)) > 0).astype(int)
    model = RandomForestClassifier(30, max_depth=5, random_state=0).fit(df[FEATURES], y)
    return ModelExplainer(model, FEATURES).explain(df.iloc[:200])


def _check_png(path: Path) -> None:
    from matplotlib.image import imread
    from PIL import Image

    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE
    assert len(raw) > 5_000, f"{path.name} is only {len(raw)} bytes"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= 600 and im.size[1] >= 200
        pixels = np.asarray(im.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # drawn, not blank
    assert imread(path).ndim == 3


def test_plots_are_valid_pngs_of_nontrivial_size(attribution, tmp_path: Path) -> None:
    bar = summary_bar_png(attribution, tmp_path / "bar.png")
    swarm = beeswarm_png(attribution, tmp_path / "swarm.png", output="1")
    for p in (bar, swarm):
        _check_png(p)
    # headless and deterministic: the same values draw the same file
    again = beeswarm_png(attribution, tmp_path / "swarm2.png", output="1")
    assert again.read_bytes() == swarm.read_bytes()


def test_table_columns_are_the_features(attribution, tmp_path: Path) -> None:
    csv = pd.read_csv(write_table(attribution, tmp_path / "values.csv"))
    parquet = pd.read_parquet(write_table(attribution, tmp_path / "values.parquet", output="0"))
    assert list(csv.columns) == FEATURES == list(parquet.columns)
    assert len(csv) == len(parquet) == 200
    assert np.allclose(csv.to_numpy(), attribution.values[:, :, 1])
    assert np.allclose(parquet.to_numpy(), attribution.values[:, :, 0])


def test_write_artifacts_in_a_folder(attribution, tmp_path: Path) -> None:
    paths = write_artifacts(attribution, tmp_path / "snapshot-7", prefix="window_7", table_format="parquet")
    assert {p.name for p in paths.values()} == {"window_7_summary_bar.png", "window_7_beeswarm.png",
                                                "window_7_values.parquet"}
    _check_png(paths["bar"])
    _check_png(paths["beeswarm"])
    assert list(pd.read_parquet(paths["table"]).columns) == FEATURES

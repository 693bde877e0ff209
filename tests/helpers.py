"""Helpers shared by test files: a small reference table on disk and a worker's pipeline over it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stream.pipeline.pipeline import Pipeline
from stream.settings import Settings
from stream.worker.agents import build_pipeline


def write_reference(path: Path, n: int = 3000, seed: int = 7) -> Path:
    """A parquet reference of a binary model: numeric ``x`` and ``y``, categorical ``c``, prediction, label."""
    rng = np.random.default_rng(seed)
    pd.DataFrame({"x": rng.normal(size=n), "y": rng.exponential(2.0, size=n),
                  "c": rng.choice(["a", "b", "c"], size=n), "prediction": rng.integers(0, 2, n),
                  "label": rng.integers(0, 2, n)}).to_parquet(path)
    return path


def worker_pipeline(home: Path, models: dict[str, str] | None = None, *, window: int = 500,
                    label_ttl_s: float = 5, audit: bool = False, max_message_bytes: int = 8 << 20) -> Pipeline:
    """The pipeline a worker builds from its settings (no MLflow); ``models`` maps names to reference files."""
    s = Settings(home=home, worker={"models": models or {}, "label_ttl_s": label_ttl_s}, mlflow={"enabled": False},
                 detection={"window": window}, kafka={"max_message_bytes": max_message_bytes})
    pipe = build_pipeline(s)
    pipe.audit = audit
    return pipe

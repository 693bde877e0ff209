"""The demo's production traffic: a seeded stream of churn predictions in four phases, with late labels.

The inputs come from the same generator as the reference (:mod:`stream.demo.training`'s
``make_dataset``), and the predictions are the registered model's own outputs on them, so what the monitor
sees is what it would see in production:

1. **clean**: inputs and labels like the reference (no alert should fire here);
2. **data drift**: half the customers now come from one region and ``data_usage_gb`` moves up by one standard
   deviation (a marketing push in a heavy-usage region; neither feature is in the churn rule, so the model's
   error stays where it was);
3. **concept drift**: inputs like the reference again, but churn now follows another rule (a competitor's
   offer: long-tenure customers on long contracts leave, month-to-month ones stay), so the error rate jumps;
4. **data quality**: an upstream join breaks: ``monthly_charges`` goes missing for a quarter of the rows and
   a payment method the model never saw (``crypto``) appears; the changed churn rule of phase 3 persists.

Phase boundaries fall on window boundaries. Labels arrive ``label_delay`` to ``2 * label_delay`` rows after
their prediction (out of order); the labels of the last rows arrive at the end.

>>> [(p.name, p.start, p.end) for p in plan_phases(12_000)]
[('clean', 0, 3000), ('data drift', 3000, 6000), ('concept drift', 6000, 9000), ('data quality', 9000, 12000)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

DRIFT_SHIFT = {"region": 0.5, "data_usage_gb": 1.0}  # std units (numeric) or share moved to the rarest category
MISSING_FEATURE, MISSING_RATE = "monthly_charges", 0.25
NEW_CATEGORY_FEATURE, NEW_CATEGORY, NEW_CATEGORY_RATE = "payment_method", "crypto", 0.15
MIN_ROWS = 8_000
NUMERIC = ("age", "tenure_months", "monthly_charges", "support_calls", "data_usage_gb")  # as in the example


@dataclass(frozen=True)
class Phase:
    """Rows ``[start, end)`` of the stream and the change injected there (``monitor``: what should fire)."""

    name: str
    start: int
    end: int
    monitor: str | None
    description: str

    def __contains__(self, row: int) -> bool:
        return self.start <= row < self.end


def plan_phases(rows: int, window: int = 1000) -> list[Phase]:
    """Four phases of about a quarter of ``rows`` each, boundaries on multiples of ``window``."""
    if rows < 4 * window:
        raise ValueError(f"the demo stream needs at least {4 * window} rows (4 phases of a window), got {rows}")
    b = [0, *((k * rows // 4) // window * window for k in (1, 2, 3)), rows]
    drift = ", ".join(f"{c} +{s:g} sd" if c in NUMERIC else f"{c}: {s:.0%} moved to its rarest value"
                      for c, s in DRIFT_SHIFT.items())
    specs = [
        ("clean", None, "inputs and labels like the reference"),
        ("data drift", "data_drift", f"{drift}"),
        ("concept drift", "concept_drift", "inputs like the reference; churn follows another rule"),
        ("data quality", "data_quality",
         f"{MISSING_FEATURE} {MISSING_RATE:.0%} missing; new {NEW_CATEGORY_FEATURE} {NEW_CATEGORY!r}"),
    ]
    return [Phase(name, b[i], b[i + 1], monitor, desc) for i, (name, monitor, desc) in enumerate(specs)]


def changed_rule_labels(df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Churn under the new concept: long-tenure, long-contract customers leave; month-to-month ones stay."""
    logit = (-0.9 - 1.8 * (df.contract == "month-to-month") + 1.2 * (df.contract == "two-year")
             + 0.06 * (df.tenure_months - 28) + 0.05 * (df.monthly_charges - 70) - 0.4 * (df.support_calls - 1.5))
    return (rng.random(len(df)) < 1 / (1 + np.exp(-logit.to_numpy(dtype=float)))).astype(int)


@dataclass
class DemoStream:
    """The whole stream, one row per prediction, in publishing order.

    ``frame`` columns: ``prediction_id``, ``timestamp`` (epoch ms), the features, ``prediction``, ``score``
    (probability of churn), ``label``, ``label_row`` (the row after which the label is published) and
    ``phase`` (index into ``phases``).
    """

    frame: pd.DataFrame
    phases: list[Phase]
    features: list[str]
    categorical: list[str]
    model: str = "churn"
    label_order: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # rows, by label arrival

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def first_change_row(self) -> int:
        return self.phases[1].start

    def phase_of(self, row: int) -> Phase:
        for p in self.phases:
            if row in p:
                return p
        return self.phases[-1]

    def row_of_time(self, ts_ms: int) -> int:
        """The last row whose event time is at or before ``ts_ms`` (-1 before the stream)."""
        return int(np.searchsorted(self.frame["timestamp"].to_numpy(), ts_ms, side="right")) - 1

    def prediction_batch(self, start: int, end: int) -> dict[str, Any]:
        """Keyword arguments of :meth:`stream.producer.Producer.send_prediction_batch` for rows ``[start, end)``."""
        part = self.frame.iloc[start:end]
        feats = {}
        for c in self.features:
            col = part[c]
            feats[c] = [None if pd.isna(v) else v for v in col.tolist()]
        return {
            "model": self.model, "prediction_ids": part["prediction_id"].tolist(),
            "timestamps": part["timestamp"].astype(int).tolist(), "features": feats,
            "predictions": part["prediction"].astype(int).tolist(), "scores": {"score": part["score"].tolist()},
        }

    def labels_due(self, published_rows: int, already: int) -> tuple[int, Iterator[dict[str, Any]]]:
        """Labels whose ``label_row`` is below ``published_rows``, skipping the first ``already`` of them in
        arrival order; returns the new count and ``send_label`` keyword arguments with the arrival time."""
        lr = self.frame["label_row"].to_numpy()[self.label_order]
        upto = int(np.searchsorted(lr, published_rows, side="left")) if published_rows < len(self) else len(lr)
        ids = self.frame["prediction_id"].to_numpy()
        labels = self.frame["label"].to_numpy()
        ts = self.frame["timestamp"].to_numpy()
        last_ts = int(ts[-1]) if len(ts) else 0

        def gen() -> Iterator[dict[str, Any]]:
            for row in self.label_order[already:upto]:
                arrive = int(self.frame["label_row"].iat[row])
                t = int(ts[arrive]) if arrive < len(ts) else last_ts + 1
                yield {"prediction_id": str(ids[row]), "model": self.model, "label": int(labels[row]), "timestamp": t}

        return upto, gen()


def make_stream(
    predict_proba: Callable[[pd.DataFrame], np.ndarray],
    *,
    rows: int = 30_000,
    seed: int = 7,
    label_delay: int = 300,
    start_ms: int = 1_800_000_000_000,
    events_per_second: float = 1500.0,
    window: int = 1000,
    model: str = "churn",
) -> DemoStream:
    """Build the four-phase stream; ``predict_proba`` is the model's (rows -> [P(0), P(1)])."""
    from stream.demo import training as ex

    phases = plan_phases(rows, window)
    rng = np.random.default_rng(seed)
    parts = []
    for k, p in enumerate(phases):
        n = p.end - p.start
        shift = DRIFT_SHIFT if p.monitor == "data_drift" else None
        df = ex.make_dataset(n, seed=seed * 100 + k, shift=shift).reset_index(drop=True)
        if p.monitor in ("concept_drift", "data_quality"):
            df[ex.LABEL] = changed_rule_labels(df, rng)
        if p.monitor == "data_quality":
            df[NEW_CATEGORY_FEATURE] = df[NEW_CATEGORY_FEATURE].astype(object)
            df.loc[rng.random(n) < NEW_CATEGORY_RATE, NEW_CATEGORY_FEATURE] = NEW_CATEGORY
            df.loc[rng.random(n) < MISSING_RATE, MISSING_FEATURE] = np.nan
        df["phase"] = k
        parts.append(df)
    frame = pd.concat(parts, ignore_index=True)
    proba = np.asarray(predict_proba(frame[ex.FEATURES]))
    frame["score"] = proba[:, 1].round(6)
    frame["prediction"] = (proba[:, 1] >= 0.5).astype(int)
    frame["label"] = frame[ex.LABEL].astype(int)
    n = len(frame)
    frame.insert(0, "prediction_id", [f"p{i:06d}" for i in range(n)])
    step = 1000.0 / events_per_second
    frame.insert(1, "timestamp", (start_ms + np.floor(np.arange(n) * step)).astype(np.int64))
    delays = label_delay + rng.integers(0, max(label_delay, 1), n)
    frame["label_row"] = np.arange(n) + delays
    order = np.argsort(frame["label_row"].to_numpy(), kind="stable")
    cols = ["prediction_id", "timestamp", *ex.FEATURES, "prediction", "score", "label", "label_row", "phase"]
    return DemoStream(frame=frame[cols], phases=phases, features=list(ex.FEATURES),
                      categorical=list(ex.CATEGORICAL), model=model, label_order=order)

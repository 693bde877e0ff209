"""One window of the attribution monitor: its sampled events, and explaining them off the hot path.

:class:`WindowSample` is what a closed window hands to the executor (JSON-safe, so it survives a restart);
:class:`WindowExplainer` explains it with the model's SHAP explainer and scores its mean |SHAP| vector
against the reference's (:mod:`detectors.attribution_stats`); :class:`AttributionResult` is what comes back,
skipped with a reason when the model failed or the time budget ran out. The monitor itself is
:class:`detectors.attribution_monitor.AttributionMonitor`.

>>> s = WindowSample(index=3, window={"index": 3, "start": 0, "end": 9, "events": 10}, src=(-1, 0, 9),
...                  columns={"x": np.array([1.0, 2.0])}, positions=np.array([2, 7]))
>>> back = WindowSample.from_dict(s.to_dict())
>>> len(back), back.frame(["x"])["x"].tolist(), back.src
(2, [1.0, 2.0], (-1, 0, 9))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from detectors.attribution import Attribution, BudgetExceeded, ModelExplainer
from detectors.attribution_config import AttributionConfig
from detectors.attribution_stats import attribution_distance, ndcg
from detectors.reservoir import from_json_values, json_values


@dataclass
class WindowSample:
    """The sampled events of one closed window: what :meth:`AttributionMonitor.explain_window` needs."""

    index: int
    window: dict[str, Any]  # index, start, end, events
    src: tuple[int, int, int]  # partition (-1: file), first offset (row), last offset (row)
    columns: dict[str, np.ndarray]
    positions: np.ndarray  # position of each sampled event in the window

    def frame(self, features: Sequence[str]) -> pd.DataFrame:
        return pd.DataFrame({f: self.columns[f] for f in features})

    def __len__(self) -> int:
        return len(self.positions)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "window": dict(self.window), "src": list(self.src),
                "positions": self.positions.tolist(),
                "columns": {n: {"kind": c.dtype.kind, "values": json_values(c)} for n, c in self.columns.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowSample:
        return cls(index=int(d["index"]), window=dict(d["window"]), src=tuple(int(v) for v in d["src"]),
                   columns={n: from_json_values(c["values"], c["kind"]) for n, c in d["columns"].items()},
                   positions=np.asarray(d["positions"], np.int64))


@dataclass
class AttributionResult:
    """What explaining one window's sample produced (``skipped`` with a ``reason`` when it could not)."""

    index: int
    window: dict[str, Any]
    src: tuple[int, int, int]
    rows: int
    skipped: bool = False
    reason: str | None = None
    mean_abs: np.ndarray | None = None  # mean |SHAP| per feature
    distance: float | None = None
    ndcg: float | None = None
    attribution: Attribution | None = field(default=None, repr=False)  # per-row values, for artifacts
    cost_s: float = 0.0  # diagnostics only (monotonic clock): never in alerts, records or state


class WindowExplainer:
    """The executor side of the monitor: explains a :class:`WindowSample` and scores it against the reference.

    Holds the explainer (and so the model), the reference vector and the settings, nothing that changes:
    it reads no monitor state, so it can run in a thread, or be pickled once into a worker process (our own
    in-memory model going to our own child process; nothing from outside is unpickled).
    """

    def __init__(self, explainer: ModelExplainer, reference: np.ndarray, config: AttributionConfig, seed: int,
                 clock: Callable[[], float] = time.monotonic):
        self.explainer = explainer
        self.reference = np.asarray(reference, np.float64)
        self.config = config
        self.seed = int(seed)
        self.clock = clock

    def window_seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])

    def __call__(self, sample: WindowSample) -> AttributionResult:
        """Never raises: failures and budget overruns come back as skipped results."""
        clock = self.clock
        t0 = clock()
        budget = self.config.budget_s
        should_stop = None if budget is None else (lambda: clock() - t0 > budget)
        base = {"index": sample.index, "window": sample.window, "src": sample.src, "rows": len(sample)}
        if len(sample) == 0:
            return AttributionResult(**base, skipped=True, reason="empty")
        try:
            att = self.explainer.explain(sample.frame(self.explainer.features), seed=self.window_seed(sample.index),
                                         should_stop=should_stop)
        except BudgetExceeded:
            return AttributionResult(**base, skipped=True, reason="budget", cost_s=clock() - t0)
        except Exception as err:  # noqa: BLE001 - a model failing on live data must not stop the monitor
            return AttributionResult(**base, skipped=True, reason=f"error: {type(err).__name__}: {err}"[:300],
                                     cost_s=clock() - t0)
        win = att.mean_abs()
        return AttributionResult(
            **base, mean_abs=win, distance=float(attribution_distance(self.reference, win)),
            ndcg=float(ndcg(self.reference, win, self.config.ndcg_k)), attribution=att, cost_s=clock() - t0)

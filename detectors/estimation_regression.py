"""Estimated MAE of a regression model per prediction window, before the labels arrive (direct loss estimation).

NannyML's direct loss estimation (DLE) fits a model of the absolute error on the reference's features and
prediction; a window's expected MAE is the mean of that model's output over its rows. Here the error model is a
small regression tree on the numeric features and the prediction, fitted once when the profile is built
(:mod:`detectors.estimation_regression_fit`) and stored as plain JSON in the profile. A window is its integer
counts per leaf, and its estimated MAE is those counts times the leaves' mean absolute errors: the same formula
for null windows resampled from the reference's leaf frequencies, which give the band (quantiles at the shared
false-alarm budget, widened to at least ``performance_min_relative`` of the reference MAE). A rise above the band
fires ``estimated_performance`` (``feature`` ``mae``, degradation), a fall below it an improvement, through the
same hysteresis.

Like CBPE it sees only what moves the inputs: a window whose rows move into regions where the reference's
errors were larger. Errors that grow within a region (concept drift) are invisible until the labels arrive;
then the realized MAE, the estimate's error and a persistent gap are recorded as for classification.

>>> import numpy as np, pandas as pd
>>> from detectors.profile import build_profile
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(4000, 2))  # the model predicts x; its errors are four times larger where z > 1
>>> ref = pd.DataFrame({"x": x[:, 0], "z": x[:, 1], "prediction": x[:, 0],
...                     "label": x[:, 0] + rng.normal(size=4000) * np.where(x[:, 1] > 1, 2.0, 0.5)})
>>> est = RegressionEstimationMonitor(build_profile(ref, label="label", task="regression"), DetectionConfig(), 0.01)
>>> lo, hi = est.limits(1000)
>>> bool(lo < est.model.reference < hi)
True
>>> shifted = EventBatch.from_columns(ids=[str(i) for i in range(1000)], timestamps=np.arange(1000),
...                                  features={"x": x[:1000, 0], "z": x[:1000, 1] + 1.5}, prediction=x[:1000, 0])
>>> est.add(est.columns([shifted]), 0, 1000)  # a window whose rows moved into the noisy region
>>> bool(est.counts @ est.model.leaf_mae / 1000 > hi)
True
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from detectors.batch import EventBatch, OutcomeBatch
from detectors.calibration import normal_quantile, tail_quantile
from detectors.config import DetectionConfig
from detectors.estimation_common import estimate_alert, realize_complete
from detectors.estimation_regression_fit import ErrorModel
from detectors.hysteresis import Hysteresis
from detectors.profile import ReferenceProfile

TRACKED = 128  # closed windows kept waiting for their labels
METRIC = "mae"


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


class RegressionEstimationMonitor:
    """Direct loss estimation on one regression model's prediction windows (the interface of
    :class:`detectors.estimation.EstimationMonitor`, which creates it for regression profiles)."""

    def __init__(self, profile: ReferenceProfile, config: DetectionConfig, alpha: float):
        self.model = ErrorModel(profile.estimation)
        self.config = config
        self.alpha = alpha / 2  # two-sided
        self._z = normal_quantile(self.alpha)
        self.hyst = Hysteresis(config.fire_after, config.resolve_after)
        self._limits: dict[int, tuple[float, float]] = {}
        self._tracked: deque[dict[str, Any]] = deque()
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._errors: deque[tuple[float, float]] = deque(maxlen=config.estimation_gap_windows)
        self.records: list[dict[str, Any]] = []
        self.keep_records = True  # False: closed and realized windows leave no record (their state is kept)
        self.counts = np.zeros(len(self.model.leaf_mae), np.int64)

    # windows ----------------------------------------------------------------------------------------------
    def columns(self, batches: list[EventBatch]) -> tuple[np.ndarray, np.ndarray]:
        """The leaf of each row of ``batches`` (concatenated; -1 without a finite prediction), and an empty
        array (the shape :class:`detectors.estimation.EstimationMonitor` uses)."""
        parts = []
        for b in batches:
            cols = [b.features.get(c) for c in self.model.columns[:-1]] + [b.prediction]
            parts.append(np.column_stack([np.full(len(b), np.nan) if c is None or c.dtype.kind not in "fiub"
                                          else c.astype(np.float64, copy=False) for c in cols]))
        x = np.concatenate(parts) if len(parts) > 1 else parts[0]
        leaves = self.model.leaves(x)
        return np.where(np.isfinite(x[:, -1]), leaves, -1), np.empty(0)

    def add(self, cols: tuple[np.ndarray, np.ndarray] | None, a: int, b: int) -> None:
        """Add rows ``a:b`` of :meth:`columns` to the open window."""
        if cols is None:
            return
        leaves = cols[0][a:b]
        self.counts += np.bincount(leaves[leaves >= 0], minlength=len(self.counts))

    def limits(self, n: int) -> tuple[float, float]:
        """The alert band of the estimated MAE on windows of ``n`` rows under no change."""
        key = int(float(f"{n:.2g}"))
        lim = self._limits.get(key)
        if lim is not None:
            return lim
        m = self.model
        n_eff = max(round(key * m.rows / (key + m.rows)), 1)  # the reference's own error folded in
        rng = np.random.default_rng(self.config.seed + 18)  # afresh per size: the same band after a restart
        draws = rng.multinomial(n_eff, m.counts / m.counts.sum(), size=self.config.calibration_resamples)
        null = draws @ m.leaf_mae / n_eff
        d = self.config.performance_min_relative * m.reference
        lim = (min(-tail_quantile(-null, self.alpha), m.reference - d), max(tail_quantile(null, self.alpha),
                                                                             m.reference + d))
        if len(self._limits) < 64:
            self._limits[key] = lim
        return lim

    def close(self, window: dict[str, Any], src: tuple[int, int, int], testable: bool) -> list[dict[str, Any]]:
        """Close the prediction window: its estimate record and alert transitions."""
        n = int(self.counts.sum())
        if n == 0:
            return []
        c = self.counts.astype(np.float64)
        est = float(c @ self.model.leaf_mae / n)
        se = math.sqrt(float(c @ (self.model.leaf_var + self.model.leaf_mae ** 2)) / n - est ** 2) / math.sqrt(n)
        lo, hi = self.limits(n)
        out: list[dict[str, Any]] = []
        tested = testable and n >= min(self.config.min_window_events, window["events"])
        if tested:
            direction = "degradation" if est > hi else "improvement" if est < lo else None
            status = self.hyst.update(direction is not None, direction)
            if status is not None:
                out.append(self._alert(status, est, (lo, hi), window, src, n))
        interval = {METRIC: {"lo": est - 3 * se, "hi": est + 3 * se}}
        if self.keep_records:
            self.records.append({"kind": "estimation", **window, "scored": n, "tested": tested,
                                 "estimated": {METRIC: est}, "band": {METRIC: {"lo": lo, "hi": hi}},
                                 "interval": interval})
        self._tracked.append({"rec": {"index": window["index"], "start": window["start"], "end": window["end"],
                                      "events": window["events"], "estimated": {METRIC: est}, "se": se},
                              "abs": 0.0, "labelled": 0, "done": False})
        self.counts[:] = 0
        while len(self._tracked) > TRACKED:
            old = self._tracked.popleft()
            if not old["done"] and old["labelled"] >= 30:
                self._realize(old)
        if self._pending:
            pend, self._pending = self._pending, []
            for ts, err in pend:
                self._assign(ts, err)
        return out

    def _alert(self, status: str, v: float, lim: tuple[float, float], window: dict[str, Any],
               src: tuple[int, int, int], n: int) -> dict[str, Any]:
        h = self.hyst
        thr = lim[0] if status == "firing" and h.direction != "degradation" else lim[1]
        return estimate_alert(metric=METRIC, name="MAE", detector="dle", status=status, direction=h.direction,
                              value=v, band=lim, threshold=thr, reference=self.model.reference, window=window,
                              src=src, events=n, unit="events", resolve_after=self.config.resolve_after)

    # labels -----------------------------------------------------------------------------------------------
    def observe_outcomes(self, batch: OutcomeBatch, codes: None = None) -> None:
        """Add the absolute errors of labelled outcomes to their prediction windows (by prediction event time);
        a fully labelled window gets its realized record (``codes``: none, a regression has no classes)."""
        pred = np.asarray(batch.prediction, np.float64) if batch.prediction.dtype.kind in "fiub" else None
        lab = np.asarray(batch.label, np.float64) if batch.label.dtype.kind in "fiub" else None
        if pred is None or lab is None:
            return
        self._assign(np.asarray(batch.timestamps, np.int64), np.abs(lab - pred))

    def _assign(self, ts: np.ndarray, err: np.ndarray) -> None:
        if not self._tracked:
            self._pending.append((ts, err))
            return
        ends = np.array([t["rec"]["end"] for t in self._tracked], np.int64)
        w = np.searchsorted(ends, ts, side="left")
        later = w >= len(ends)
        if later.any():
            self._pending.append((ts[later], err[later]))
            if sum(len(p[0]) for p in self._pending) > 4 * max(self.config.window, 1000):
                self._pending.pop(0)
        keep = ~later & (ts >= self._tracked[0]["rec"]["start"]) & np.isfinite(err)
        if not keep.any():
            return
        nw = len(ends)
        labelled = np.bincount(w[keep], minlength=nw)
        total = np.bincount(w[keep], weights=err[keep], minlength=nw)
        for i in np.flatnonzero(labelled).tolist():
            self._tracked[i]["labelled"] += int(labelled[i])
            self._tracked[i]["abs"] += float(total[i])
        realize_complete(self._tracked, self._realize)

    def _realize(self, t: dict[str, Any]) -> None:
        t["done"] = True
        rec = t["rec"]
        real = t["abs"] / t["labelled"]
        est = rec["estimated"][METRIC]
        self._errors.append((est - real, rec["se"]))
        if not self.keep_records:
            return
        self.records.append({"kind": "estimation_realized", "index": rec["index"], "start": rec["start"],
                             "end": rec["end"], "events": rec["events"], "labelled": t["labelled"],
                             "estimated": {METRIC: est}, "realized": {METRIC: _num(real)},
                             "error": {METRIC: _num(est - real)},
                             "interval": {METRIC: {"lo": est - 3 * rec["se"], "hi": est + 3 * rec["se"]}},
                             "gap": self._gap()})

    def _gap(self) -> dict[str, Any] | None:
        if len(self._errors) < (self._errors.maxlen or 1):
            return None
        errs = np.array([e for e, _ in self._errors])
        var = sum(se ** 2 for _, se in self._errors) / len(errs) ** 2
        var += float(self.model.counts @ self.model.leaf_var) / self.model.rows ** 2  # the fit's own error
        bound = max(self.config.performance_min_relative * self.model.reference, self._z * math.sqrt(var))
        mean = float(errs.mean())
        return {"mean_error": mean, "bound": bound, "condition": abs(mean) > bound, "windows": len(errs)}

    # state ------------------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {"counts": self.counts.tolist(), "hyst": self.hyst.to_state(),
                "tracked": [dict(t) for t in self._tracked],
                "pending": [[ts.tolist(), e.tolist()] for ts, e in self._pending],
                "errors": [list(e) for e in self._errors]}

    def load_state(self, st: dict[str, Any]) -> None:
        self.counts = np.asarray(st["counts"], np.int64)
        self.hyst.load_state(st["hyst"])
        self._tracked = deque(dict(t) for t in st["tracked"])
        self._pending = [(np.asarray(ts, np.int64), np.asarray(e, np.float64)) for ts, e in st["pending"]]
        self._errors.extend((float(a), float(b)) for a, b in st["errors"])

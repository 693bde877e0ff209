"""Estimated performance per prediction window, before the labels arrive (``estimated_performance``).

The calibration fitted on the labelled reference (:mod:`detectors.estimation_fit`) turns a window's scores
into its expected confusion matrix: expected accuracy, precision, recall, F1 and ROC AUC (one-vs-rest macro
for multiclass). The band is the reference's own window-to-window sampling error: null windows of the same
size are drawn from the reference's cells (with the reference's own error folded in, as for the drift
thresholds), their quantiles at the shared false-alarm budget widened to at least ``performance_min_delta``
around the reference estimate. An estimate outside the band fires ``estimated_performance`` (degradation or
improvement) through the same hysteresis as the other monitors.

When a window's labels arrive, its realized metrics are recorded next to the estimate, with the estimate's
error, and a persistent gap (``gap.condition``: the mean error of the last ``estimation_gap_windows`` realized
windows beyond its sampling error) says the calibration no longer holds (concept drift, to which CBPE is blind
by design). The gap is a record, not an alert: when a window's last label arrives depends on how predictions
and labels interleave, and alerts must not (``concept_drift`` and ``performance`` alert on the labels).

>>> import pandas as pd
>>> from detectors.batch import EventBatch
>>> from detectors.config import DetectionConfig
>>> from detectors.monitor import ModelMonitor
>>> from detectors.profile import build_profile
>>> rng = np.random.default_rng(1)
>>> def rows(x):  # a logistic model on x, right about 84% of the time on the reference
...     s = 1 / (1 + np.exp(-3 * x))
...     return s, (s > 0.5).astype(int), (rng.random(len(x)) < s).astype(int)
>>> s, p, y = rows(rng.normal(size=6000))
>>> ref = pd.DataFrame({"x": rng.normal(size=6000), "prediction": p, "label": y, "1": s})
>>> mon = ModelMonitor(build_profile(ref, label="label", scores=["1"]), DetectionConfig(window=1000))
>>> s, p, _ = rows(np.r_[rng.normal(size=3000), rng.normal(0, 0.3, size=3000)])  # into the unsure region
>>> b = EventBatch.from_columns(ids=np.arange(6000).astype(str), timestamps=np.arange(6000),
...                             features={"x": rng.normal(size=6000)}, prediction=p, scores={"1": s})
>>> [(a["monitor"], a["direction"], a["row"]) for a in mon.observe(b) if a["monitor"] == "estimated_performance"]
[('estimated_performance', 'degradation', 3999)]
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict, deque
from typing import Any

import numpy as np
import orjson

from detectors.batch import EventBatch, OutcomeBatch
from detectors.calibration import normal_quantile, tail_quantile
from detectors.config import DetectionConfig
from detectors.encoding import CategoryIndex
from detectors.estimation_common import estimate_alert, realize_complete
from detectors.estimation_fit import METRICS, Calibration, binary_estimates, metrics
from detectors.estimation_regression import RegressionEstimationMonitor
from detectors.hysteresis import Hysteresis
from detectors.outcomes import ClassCodes
from detectors.profile import ReferenceProfile

TRACKED = 128  # closed windows kept waiting for their labels
MIN_REALIZED = 30  # labelled outcomes a window needs for a realized record when it leaves tracking
BANDS_SIZE = 256  # (calibration, window size) bands remembered per process

_BANDS: OrderedDict[tuple[str, int], dict[str, tuple[float, float, float]]] = OrderedDict()


def _num(x: Any) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class EstimationMonitor:
    """CBPE on one model's prediction windows; created by :meth:`create` when the profile allows it."""

    def __init__(self, profile: ReferenceProfile, config: DetectionConfig, alpha: float):
        self.cal = cal = Calibration(profile.estimation)
        self.config = config
        self.metrics = list(config.estimation_metrics)
        self.alpha = alpha / 2 / max(len(self.metrics), 1)  # two-sided, split over the alerting metrics
        self._z = normal_quantile(self.alpha)
        self.index = CategoryIndex(cal.classes)
        self.hyst = {m: Hysteresis(config.fire_after, config.resolve_after) for m in self.metrics}
        # what a band depends on besides the window size: monitors of the same calibration share bands
        self._band_key = hashlib.sha256(orjson.dumps(
            [profile.estimation, self.alpha, config.calibration_resamples, config.performance_min_delta,
             config.seed], option=orjson.OPT_SORT_KEYS)).hexdigest()
        self._limits_of_n: dict[int, dict[str, tuple[float, float, float]]] = {}  # by size, of remembered bands
        self._tracked: deque[dict[str, Any]] = deque()
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._errors: deque[tuple[float, float, int]] = deque(maxlen=config.estimation_gap_windows)
        self.records: list[dict[str, Any]] = []
        self.keep_records = True  # False: closed and realized windows leave no record (their state is kept)
        self._plan: dict[str, Any] | None = None  # binary, count windows: the estimates of a fold's full windows
        # binary: the last prediction batch's predictions and scores, their class codes and score bins (-1: none),
        # which its outcomes find again when they arrive as the same arrays (a replay joining labels at once)
        none = np.empty(0)
        self._looked_up: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = (none, none, none, none)
        self._reset()

    @classmethod
    def create(cls, profile: ReferenceProfile, config: DetectionConfig,
               alpha: float) -> EstimationMonitor | RegressionEstimationMonitor | None:
        """The monitor (regression: :class:`RegressionEstimationMonitor`, the estimated MAE), or None (no
        labels in the reference, no scores for a classifier, or ``estimation_metrics`` empty)."""
        fit = getattr(profile, "estimation", None)
        if not fit or not config.estimation_metrics:
            return None
        if profile.task == "regression":
            return RegressionEstimationMonitor(profile, config, alpha) if fit.get("kind") == "regression" else None
        return cls(profile, config, alpha)

    def _reset(self) -> None:
        cal = self.cal
        self.conf = np.zeros((cal.k, cal.k))
        self.hist = np.zeros((cal.k, cal.n_primary, 2)) if not cal.binary else np.zeros((cal.n_primary, 2))
        self.cells = np.zeros(2 * cal.n_primary, np.int64)  # binary: events per (predicted class, score bin)
        self.scored = 0
        self._fresh = True  # nothing added to the window yet
        self._est: dict[str, float | None] | None = None  # the window's estimate, when planned

    # windows ----------------------------------------------------------------------------------------------
    def columns(self, batches: list[EventBatch]) -> tuple[np.ndarray, np.ndarray] | None:
        """Per row of ``batches`` (concatenated), what :meth:`add` counts, computed once per batch: the cell
        (predicted class, primary score bin; -1 without a known class or a finite score) and, multiclass only,
        the calibrated probabilities next to each class score's bin (rows x 2k; empty for binary). None
        without scores."""
        cal = self.cal
        cols = cal.score_columns
        if not any(b.scores and cols[0] in b.scores for b in batches):
            return None
        pred = np.concatenate([b.prediction for b in batches]) if len(batches) > 1 else batches[0].prediction
        codes, _ = self.index.lookup(pred)
        if cal.binary:  # one score column: its bin is the cell's
            parts = [b.scores[cols[0]] if b.scores and cols[0] in b.scores else np.full(len(b), np.nan)
                     for b in batches]
            s1 = np.concatenate(parts) if len(parts) > 1 else np.asarray(parts[0], np.float64)
            finite = np.isfinite(s1)
            b1 = cal.bins(s1[:, None])[0]
            self._looked_up = (pred, codes, s1, np.where(finite, b1, -1))
            return np.where((codes >= 0) & finite, codes * cal.n_primary + b1, -1), np.empty((0, 0))
        parts = [np.column_stack([b.scores[c] if b.scores and c in b.scores else np.full(len(b), np.nan)
                                  for c in cols]) for b in batches]
        s = np.concatenate(parts) if len(parts) > 1 else parts[0]
        ok = (codes >= 0) & (np.isfinite(s[:, 0]) if s.shape[1] == 1 else np.isfinite(s).all(axis=1))
        s = np.where(ok[:, None], s, 0.0)
        bins = cal.bins(s)
        cells = np.where(ok, codes * cal.n_primary + cal.primary_bins(s, np.maximum(codes, 0), bins), -1)
        return cells, np.column_stack([cal.probabilities(s, bins), *bins])

    def add(self, cols: tuple[np.ndarray, np.ndarray] | None, a: int, b: int) -> None:
        """Add rows ``a:b`` of :meth:`columns` to the open window."""
        if cols is None:
            return
        fresh, self._fresh, self._est = self._fresh, False, None
        if fresh and self.cal.binary and self.config.window_ms is None and b - a == self.config.window:
            self._planned(cols, a)
            return
        cells, extra = cols[0][a:b], cols[1][a:b]
        if (cells < 0).any():
            ok = cells >= 0
            cells, extra = cells[ok], extra[ok] if len(extra) else extra
        if not len(cells):
            return
        cal = self.cal
        k = cal.k
        if cal.binary:  # P(positive) depends on the bin only: integer counts per cell suffice
            self.cells += np.bincount(cells, minlength=2 * cal.n_primary)
        else:
            q, bins = extra[:, :k], extra[:, k:].astype(np.int64)
            pred = cells // cal.n_primary
            self.conf += np.stack([np.bincount(pred, weights=q[:, c], minlength=k) for c in range(k)], axis=1)
            for c in range(k):
                e = np.bincount(bins[:, c], weights=q[:, c], minlength=cal.n_primary)
                self.hist[c, :, 0] += e
                self.hist[c, :, 1] += np.bincount(bins[:, c], minlength=cal.n_primary) - e
        self.scored += len(cells)

    def _planned(self, cols: tuple[np.ndarray, np.ndarray], a: int) -> None:
        """Rows ``a:a + window`` are a whole window: its counts and estimate from the plan of the batch's
        whole windows from ``a`` on (made here on first use: the windows of a batch after the first are
        whole, back to back)."""
        size = self.config.window
        plan = self._plan
        if plan is None or plan["cols"] is not cols or a < plan["start"] or (a - plan["start"]) % size \
                or (a - plan["start"]) // size >= len(plan["counts"]):
            cal = self.cal
            width = 2 * cal.n_primary
            nw = (len(cols[0]) - a) // size
            cells = cols[0][a: a + nw * size]
            ok = cells >= 0
            slot = np.repeat(np.arange(nw) * width, size)
            counts = np.bincount((slot + cells)[ok], minlength=nw * width).reshape(nw, width)
            plan = self._plan = {"cols": cols, "start": a, "counts": counts, "scored": counts.sum(axis=1).tolist(),
                                 "est": [{k: _num(v) for k, v in est.items()}
                                         for est in binary_estimates(cal, counts)]}
        i = (a - plan["start"]) // size
        self.cells = plan["counts"][i].copy()
        self.scored = plan["scored"][i]
        self._est = plan["est"][i]

    def _binary_sums(self) -> None:
        """Expected confusion and positives/negatives per bin of the window's cell counts."""
        cal = self.cal
        c = self.cells.reshape(2, cal.n_primary).astype(np.float64)
        p = cal.probs[0]
        e_pred = c @ p
        self.conf[:, cal.positive] = e_pred
        self.conf[:, 1 - cal.positive] = c.sum(axis=1) - e_pred
        per_bin = c.sum(axis=0)
        self.hist[:, 0] = per_bin * p
        self.hist[:, 1] = per_bin - self.hist[:, 0]

    def limits(self, n: int) -> dict[str, tuple[float, float, float]]:
        """Per metric, the alert band ``(lo, hi)`` of the estimate on windows of ``n`` scored events under no
        change, and the realized metric's sampling error on such windows (NannyML's confidence band is the
        estimate plus or minus three of them). Drawn from the seed afresh for each size (the same band whatever
        sizes came before, after a restart too) and remembered in the process."""
        lim = self._limits_of_n.get(n)
        if lim is not None:
            return lim
        key = int(float(f"{n:.2g}"))  # event-time windows vary in size: two significant digits are enough
        lim = _BANDS.get((self._band_key, key))
        if lim is None:
            lim = _BANDS[(self._band_key, key)] = self._band(key)
            while len(_BANDS) > BANDS_SIZE:
                _BANDS.popitem(last=False)
        if len(self._limits_of_n) < 64:
            self._limits_of_n[n] = lim
        return lim

    def _band(self, n: int) -> dict[str, tuple[float, float, float]]:
        """:meth:`limits` of windows of ``n`` scored events, drawn."""
        cal = self.cal
        rng = np.random.default_rng(self.config.seed + 18)
        p = cal.cells / cal.cells.sum()
        # the reference's own sampling error is folded in by drawing n * n_ref / (n + n_ref) events: the estimate
        # minus the reference's metric then has the spread of the real comparison
        n_eff = max(round(n * cal.rows / (n + cal.rows)), 1)
        draws = rng.multinomial(n_eff, p, size=self.config.calibration_resamples).astype(np.float64)
        conf, hist = cal.cell_sums(draws)
        null = metrics(conf, hist, cal.positive)
        # realized windows of the same cells: true classes drawn from each cell's calibrated probabilities
        counts = draws.astype(np.int64)
        if cal.binary:  # one binomial per cell is ~20x faster than a multinomial of two
            pos = rng.binomial(counts, np.clip(cal.cell_probs[:, cal.positive], 0.0, 1.0))
            truth = np.stack([counts - pos, pos] if cal.positive == 1 else [pos, counts - pos], axis=-1)
        else:
            cp = np.where(cal.cells[:, None] > 0, cal.cell_probs, 1.0)
            truth = rng.multinomial(counts, cp / cp.sum(-1, keepdims=True))
        real_conf = truth.reshape(len(draws), cal.k, cal.n_primary, cal.k).sum(axis=2).astype(np.float64)
        real_hist = None
        if cal.binary:
            e = truth.reshape(len(draws), cal.k, cal.n_primary, cal.k)[..., cal.positive].sum(axis=1)
            real_hist = np.stack([e, draws.reshape(len(draws), cal.k, cal.n_primary).sum(axis=1) - e], -1)
        real = metrics(real_conf, real_hist, cal.positive)
        d = self.config.performance_min_delta
        lim = {}
        for m in METRICS:
            ref, x = cal.reference.get(m), null[m]
            if ref is None or x is None:
                continue
            x = np.asarray(x)[np.isfinite(x)]
            lo, hi = -tail_quantile(-x, self.alpha), tail_quantile(x, self.alpha)
            r = np.asarray(real[m])
            lim[m] = (min(lo, ref - d), max(hi, ref + d), float(np.std(r[np.isfinite(r)])))
        return lim

    def close(self, window: dict[str, Any], src: tuple[int, int, int], testable: bool) -> list[dict[str, Any]]:
        """Close the prediction window: its estimate record and alert transitions (none without scores)."""
        n = self.scored
        if n == 0:  # the model published no scores in this window: nothing to estimate or to record
            return []
        est = self._est
        if est is None:
            if self.cal.binary:
                self._binary_sums()
            est = {k: _num(v) for k, v in metrics(self.conf, self.hist, self.cal.positive).items()}
        band = self.limits(n) if n else {}
        out: list[dict[str, Any]] = []
        tested = testable and n >= min(self.config.min_window_events, window["events"])
        for m in self.metrics:
            v, lim = est.get(m), band.get(m)
            if not tested or v is None or lim is None:
                continue
            direction = "degradation" if v < lim[0] else "improvement" if v > lim[1] else None
            status = self.hyst[m].update(direction is not None, direction)
            if status is not None:
                out.append(self._alert(m, status, v, lim, window, src, n))
        interval = {m: {"lo": est[m] - 3 * se, "hi": est[m] + 3 * se} for m, (_, _, se) in band.items()
                    if est.get(m) is not None}
        if self.keep_records:
            self.records.append({"kind": "estimation", **window, "scored": n, "tested": tested, "estimated": est,
                                 "band": {m: {"lo": lo, "hi": hi} for m, (lo, hi, _) in band.items() if m in self.hyst},
                                 "interval": interval})
        k = self.cal.k
        slim = {"index": window["index"], "start": window["start"], "end": window["end"], "events": window["events"],
                "estimated": est, "interval": interval, "src": list(src)}  # what realizing needs (in state)
        self._tracked.append({"rec": slim, "conf": np.zeros((k, k), np.int64),
                              "hist": np.zeros((self.cal.n_primary, 2)), "labelled": 0, "done": False})
        self._reset()
        while len(self._tracked) > TRACKED:
            old = self._tracked.popleft()
            if not old["done"] and old["labelled"] >= MIN_REALIZED:
                self._realize([old])
        if self._pending:
            pend, self._pending = self._pending, []
            for ts, pred, lab, b in pend:
                self._assign(ts, pred, lab, b)
        return out

    def _alert(self, m: str, status: str, v: float, lim: tuple[float, float, float], window: dict[str, Any],
               src: tuple[int, int, int], n: int) -> dict[str, Any]:
        h = self.hyst[m]
        thr = lim[0] if status != "firing" or h.direction == "degradation" else lim[1]
        return estimate_alert(metric=m, name=m, detector="cbpe", status=status, direction=h.direction, value=v,
                              band=(lim[0], lim[1]), threshold=thr, reference=self.cal.reference[m], window=window,
                              src=src, events=n, unit="scored events", resolve_after=self.config.resolve_after)

    # labels -----------------------------------------------------------------------------------------------
    def observe_outcomes(self, batch: OutcomeBatch, codes: ClassCodes | None = None) -> None:
        """Count labelled outcomes into the prediction windows they belong to (by prediction event time);
        a fully labelled window gets its realized record. ``codes``: the batch looked up among the same classes
        (:meth:`detectors.outcomes.OutcomeMonitor.codes`), else looked up here."""
        seen_pred, seen_codes, seen_scores, seen_bins = self._looked_up
        if codes is not None and codes.classes == self.cal.classes:
            pred, lab = codes.pred, codes.label
        else:  # the predictions of the last prediction batch come back joined with their labels: looked up there
            pred = seen_codes if batch.prediction is seen_pred else self.index.lookup(batch.prediction)[0]
            lab = self.index.lookup(batch.label)[0]
        b = np.full(len(batch), -1, np.int64)
        if self.cal.binary and batch.scores and self.cal.score_columns[0] in batch.scores:
            s = np.asarray(batch.scores[self.cal.score_columns[0]], np.float64)
            b = seen_bins if s is seen_scores else np.where(np.isfinite(s), self.cal.bins(s[:, None])[0], -1)
        self._assign(np.asarray(batch.timestamps, np.int64), pred, lab, b)

    def _assign(self, ts: np.ndarray, pred: np.ndarray, lab: np.ndarray, b: np.ndarray) -> None:
        """Count labelled outcomes (prediction times ``ts``, class codes, score bins) into the tracked windows
        they belong to; outcomes of windows not closed yet wait, those of windows no longer tracked go."""
        if not self._tracked:
            self._pending.append((ts.copy(), pred, lab, b))  # the times may be the caller's array
            return
        ends = np.array([t["rec"]["end"] for t in self._tracked], np.int64)
        start = self._tracked[0]["rec"]["start"]
        nw = len(ends)
        if len(ts) > 1 and bool(np.all(ts[1:] >= ts[:-1])):  # in prediction order (a replay): search the ends
            last = np.searchsorted(ts, ends, side="right")  # outcomes up to each window's end
            lo, hi = int(np.searchsorted(ts, start, side="left")), int(last[-1])
            if hi < len(ts):
                self._wait(ts[hi:].copy(), pred[hi:], lab[hi:], b[hi:])  # the times may be the caller's array
            if lo >= hi:
                return
            labelled = np.diff(np.clip(last, lo, hi), prepend=lo)
            w = np.repeat(np.arange(nw), labelled)
            pred, lab, b = pred[lo:hi], lab[lo:hi], b[lo:hi]
        else:
            w = np.searchsorted(ends, ts, side="left")
            later = w >= nw
            if later.any():
                self._wait(ts[later], pred[later], lab[later], b[later])
            keep = ~later & (ts >= start)
            if not keep.all():
                if not keep.any():
                    return
                w, pred, lab, b = w[keep], pred[keep], lab[keep], b[keep]
            labelled = np.bincount(w, minlength=nw)
        k, nb = self.cal.k, self.cal.n_primary
        ok = (pred >= 0) & (lab >= 0)
        cells = (w * k + pred) * k + lab
        conf = np.bincount(cells if ok.all() else cells[ok], minlength=nw * k * k).reshape(nw, k, k)
        okb = ok & (b >= 0)
        hist = None
        if okb.any():
            bins = (w * nb + b) * 2 + (lab != self.cal.positive)
            hist = np.bincount(bins if okb.all() else bins[okb], minlength=nw * nb * 2).reshape(nw, nb, 2)
        hit = np.flatnonzero(labelled).tolist()
        counts = labelled.tolist()
        for i in hit:
            t = self._tracked[i]
            t["labelled"] += counts[i]
            t["conf"] += conf[i]
            if hist is not None:
                t["hist"] += hist[i]
        complete: list[dict[str, Any]] = []
        realize_complete(self._tracked, complete.append)
        self._realize(complete)

    def _wait(self, ts: np.ndarray, pred: np.ndarray, lab: np.ndarray, b: np.ndarray) -> None:
        """Outcomes of windows not closed yet wait for them (a bounded buffer: labels far ahead of their
        predictions go)."""
        self._pending.append((ts, pred, lab, b))
        if sum(len(p[0]) for p in self._pending) > 4 * max(self.config.window, 1000):
            self._pending.pop(0)

    def _realize(self, ts: list[dict[str, Any]]) -> None:
        """Realized records of the fully labelled windows ``ts``, in order (their metrics computed at once)."""
        if not ts:
            return
        if self.cal.binary:
            reals = _realized_binary(np.stack([t["conf"] for t in ts]), np.stack([t["hist"] for t in ts]),
                                     self.cal.positive)
        else:
            reals = [metrics(t["conf"].astype(np.float64), None, self.cal.positive) for t in ts]
        for t, real in zip(ts, reals, strict=True):
            t["done"] = True
            self._realized(t, {k: _num(v) for k, v in real.items()})

    def _realized(self, t: dict[str, Any], real: dict[str, float | None]) -> None:
        rec = t["rec"]
        conf = t["conf"]
        est = rec["estimated"]
        err = {m: est[m] - real[m] for m in METRICS if est.get(m) is not None and real.get(m) is not None}
        labelled = int(conf.sum())
        gap = None
        if "accuracy" in err and labelled:
            self._errors.append((err["accuracy"], real["accuracy"], labelled))
            gap = self._gap() if self.keep_records else None
        if not self.keep_records:
            return
        self.records.append({"kind": "estimation_realized", "index": rec["index"], "start": rec["start"],
                             "end": rec["end"], "events": rec["events"], "labelled": labelled, "estimated": est,
                             "realized": real, "error": err, "interval": rec["interval"],
                             "gap": gap})

    def _gap(self) -> dict[str, Any] | None:
        if len(self._errors) < (self._errors.maxlen or 1):
            return None
        errs = np.array([e for e, _, _ in self._errors])
        var = sum(a * (1 - a) / n for _, a, n in self._errors) / len(errs) ** 2
        ref = self.cal.reference["accuracy"] or 0.5
        var += ref * (1 - ref) / self.cal.rows  # the calibration's own error does not average out
        bound = max(self.config.performance_min_delta, self._z * float(np.sqrt(var)))
        mean = float(errs.mean())
        return {"mean_error": mean, "bound": bound, "condition": abs(mean) > bound, "windows": len(errs)}

    # state ------------------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "conf": self.conf.tolist(), "hist": self.hist.tolist(), "cells": self.cells.tolist(),
            "scored": self.scored,
            "hyst": {m: h.to_state() for m, h in self.hyst.items()},
            "tracked": [{"rec": t["rec"], "conf": t["conf"].tolist(), "hist": t["hist"].tolist(),
                         "labelled": t["labelled"], "done": t["done"]} for t in self._tracked],
            "pending": [[x.tolist() for x in p] for p in self._pending],
            "errors": [list(e) for e in self._errors],
        }

    def load_state(self, st: dict[str, Any]) -> None:
        self.conf = np.asarray(st["conf"], np.float64).reshape(self.conf.shape)
        self.hist = np.asarray(st["hist"], np.float64).reshape(self.hist.shape)
        self.cells = np.asarray(st["cells"], np.int64)
        self.scored = int(st["scored"])
        for m, h in st["hyst"].items():
            if m in self.hyst:
                self.hyst[m].load_state(h)
        self._tracked = deque({"rec": t["rec"], "conf": np.asarray(t["conf"], np.int64),
                               "hist": np.asarray(t["hist"], np.float64), "labelled": int(t["labelled"]),
                               "done": bool(t["done"])} for t in st["tracked"])
        self._pending = [tuple(np.asarray(x, np.int64) for x in p) for p in st["pending"]]  # type: ignore[misc]
        self._errors.extend((float(a), float(b), int(c)) for a, b, c in st["errors"])


def _realized_binary(conf: np.ndarray, hist: np.ndarray, positive: int) -> list[dict[str, Any]]:
    """:func:`~detectors.estimation_fit.metrics` of realized binary windows (integer counts: confusion
    ``(windows, pred, true)``, positives/negatives per score bin ``(windows, bins, 2)``; the AUC only where
    every labelled outcome has its bin). Sums of counts and half-counts are exact, so these are the same
    floats as one window at a time."""
    neg = 1 - positive
    tp, fp = conf[:, positive, positive].tolist(), conf[:, positive, neg].tolist()
    fn, tn = conf[:, neg, positive].tolist(), conf[:, neg, neg].tolist()
    e, f = hist[..., 0], hist[..., 1]
    below = (e * (np.cumsum(f, axis=1) - 0.5 * f)).sum(axis=1).tolist()
    pairs = (e.sum(axis=1) * f.sum(axis=1)).tolist()
    binned = hist.sum(axis=(1, 2)).tolist()

    def ratio(a: float, b: float) -> float:
        return a / b if b else math.nan

    out = []
    for i in range(len(conf)):
        a, b, c, d = float(tp[i]), float(fp[i]), float(fn[i]), float(tn[i])
        n = a + b + c + d
        auc = ratio(below[i], pairs[i]) if binned[i] >= n > 0 else None
        out.append({"accuracy": ratio(a + d, n), "precision": ratio(a, a + b), "recall": ratio(a, a + c),
                    "f1": ratio(2 * a, 2 * a + b + c), "roc_auc": auc})
    return out

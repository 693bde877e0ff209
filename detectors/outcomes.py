"""Labelled outcomes: concept drift on the per-event error stream and performance per window.

Each joined outcome becomes an error value: 0/1 for classification, the absolute error scaled by the
reference's 99th percentile (clipped to 1) for regression. A River detector (ADWIN by default) watches
that stream event by event; a detected change fires ``concept_drift`` at once, with its direction
(degradation when the error rose, improvement when it fell). Every ``outcome_window`` outcomes, the
window's accuracy / F1 / AUC (or MAE / RMSE) is compared with the reference performance: a significant
change beyond a minimum effect fires ``performance``, again with its direction.

Buffers hold at most one window of outcomes; the windows a batch closes get their metrics all at once (row-wise
over the windows, the same floats as one window at a time), so results do not depend on how outcomes were
chunked.

>>> import pandas as pd
>>> from detectors.profile import build_profile
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 2, 5000)
>>> ref = pd.DataFrame({"x": rng.normal(size=5000), "prediction": np.where(rng.random(5000) < 0.9, y, 1 - y),
...                     "label": y})  # the reference model is right 90% of the time
>>> mon = OutcomeMonitor(build_profile(ref, label="label"), DetectionConfig(window=500), alpha=0.001)
>>> label = rng.integers(0, 2, 4000)
>>> wrong = rng.random(4000) < np.r_[np.full(2000, 0.1), np.full(2000, 0.4)]  # errors rise at outcome 2000
>>> t = np.arange(4000)
>>> batch = OutcomeBatch(ids=t.astype(str).astype(object), timestamps=t, label_timestamps=t,
...                      prediction=np.where(wrong, 1 - label, label).astype(float), label=label.astype(float))
>>> [(r["monitor"], r["status"], r["direction"], r["event_time"]) for r in mon.observe(batch)][:2]
[('concept_drift', 'firing', 'degradation', 2079), ('performance', 'firing', 'degradation', 2499)]
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import numpy as np

from detectors import river_state
from detectors.batch import OutcomeBatch
from detectors.calibration import binomial_floor, binomial_limit, normal_quantile
from detectors.config import DetectionConfig
from detectors.encoding import CategoryIndex
from detectors.hysteresis import Hysteresis
from detectors.performance_metrics import window_classification_metrics, window_regression_metrics
from detectors.profile import ReferenceProfile
from detectors.river_drift import detector_class
from detectors.values import canon

RECENT = 64  # errors averaged for the level after a detected change


class ClassCodes(NamedTuple):
    """A batch of outcomes looked up among ``classes``: codes (-1: unknown or missing) and missing masks of the
    predictions and of the labels; the outcome and estimation monitors share them."""

    pred: np.ndarray
    pred_missing: np.ndarray
    label: np.ndarray
    label_missing: np.ndarray
    classes: list[str]


def make_detector(config: DetectionConfig) -> Any:
    """The River detector for the error stream, as configured (River is imported here, only the detector's
    module: see :mod:`detectors.river_drift`; a replay without labels imports none of it)."""
    name = config.concept_detector
    if name == "adwin":
        return detector_class("ADWIN")(delta=config.concept_delta)
    if name == "ddm":
        return detector_class("DDM")()
    if name == "hddm_w":
        return detector_class("HDDMW")()
    if name == "hddm_a":
        return detector_class("HDDMA")()
    raise ValueError(f"unknown concept detector {name!r}")


class OutcomeMonitor:
    """Concept drift and performance of one model, fed with joined outcomes in arrival order."""

    def __init__(self, profile: ReferenceProfile, config: DetectionConfig, alpha: float):
        self.profile = profile
        self.config = config
        self.alpha = alpha
        self.window = config.outcome_window or config.window
        self.regression = profile.task == "regression"
        self.classes = CategoryIndex(profile.classes)
        self.positive = profile.classes.index(profile.positive_class) if profile.positive_class else None
        perf = profile.performance or {}
        self.reference = {k: v for k, v in perf.items() if v is not None}
        scale = perf.get("abs_error_q99") if self.regression else 1.0
        if not scale or not math.isfinite(scale) or scale <= 0:
            lab = profile.columns.get(profile.label or "") if profile.label else None
            scale = max(getattr(lab, "std", 1.0) or 1.0, 1e-12)
        self.scale = float(scale)
        score_col = None
        if profile.scores and profile.positive_class is not None:
            score_col = profile.positive_class if profile.positive_class in profile.scores else profile.scores[-1]
        self.score_col = score_col
        self._detector: Any = None  # made on first use (see make_detector)
        self.concept = Hysteresis(1, config.resolve_after)
        self.perf = Hysteresis(config.fire_after, config.resolve_after)
        self.index = 0
        self.outcomes = 0
        self.dropped = 0  # outcomes without a usable label or prediction
        self.detections = 0
        self.records: list[dict[str, Any]] = []  # closed outcome windows, drained by the model monitor
        self.keep_records = True  # False: closed windows leave no record
        self._sum = 0.0  # error sum and count since the detector last restarted (for the level before)
        self._k = 0
        self._ring = np.zeros(0)  # the last RECENT errors (for the level after a change)
        self._reset_window()
        self._limits = self._performance_limits(self.window)

    # window -----------------------------------------------------------------------------------------------
    def _reset_window(self) -> None:
        self.win: dict[str, Any] = {"n": 0, "start": None, "end": None, "first": None, "last": None,
                                    "detections": 0}
        self.buf: dict[str, list[np.ndarray]] = {"err": [], "pred": [], "label": [], "score": [], "e": []}

    def _performance_limits(self, n: int) -> dict[str, float] | None:
        ref = self.reference
        a = self.alpha / 2
        if self.regression:
            if "mae" not in ref or "abs_error_std" not in ref:
                return None
            se = ref["abs_error_std"] * math.sqrt(1.0 / n + 1.0 / max(ref.get("n", n), 1.0))
            z = normal_quantile(a)
            mae = ref["mae"]
            rel = self.config.performance_min_relative
            return {"hi": max(mae + z * se, mae * (1 + rel)), "lo": min(mae - z * se, mae * (1 - rel)),
                    "reference": mae}
        if "error_rate" not in ref:
            return None
        n_ref = max(ref.get("n", 1.0), 1.0)
        p0 = (ref["error_rate"] * n_ref + 1) / (n_ref + 2)
        d = self.config.performance_min_delta
        hi = max(float(binomial_limit(n, p0, a)) / n, p0 + d)
        lo_k = float(binomial_floor(n, p0, a))
        lo = min(lo_k / n, p0 - d)
        # in accuracy terms: below acc_lo is a degradation, above acc_hi an improvement
        return {"acc_lo": 1.0 - hi, "acc_hi": 1.0 - lo, "reference": 1.0 - ref["error_rate"]}

    # errors -----------------------------------------------------------------------------------------------
    def codes(self, batch: OutcomeBatch) -> ClassCodes | None:
        """The class codes (and missing masks) of the batch's predictions and labels; None for regression."""
        if self.regression:
            return None
        return ClassCodes(*self.classes.lookup(batch.prediction), *self.classes.lookup(batch.label),
                          self.classes.categories)

    def _errors(self, batch: OutcomeBatch, codes: ClassCodes | None) -> dict[str, np.ndarray]:
        pred, label = batch.prediction, batch.label
        if self.regression:
            p = _floats(pred)
            y = _floats(label)
            e = p - y
            ok = ~np.isnan(e)
            err = np.minimum(np.abs(e) / self.scale, 1.0)
            return {"ok": ok, "err": err, "e": e}
        pc, pmiss, lc, lmiss, _ = codes or self.codes(batch)  # type: ignore[misc]
        ok = ~(pmiss | lmiss)
        err = (pc != lc).astype(np.float64)
        unknown = np.flatnonzero(ok & ((pc < 0) | (lc < 0)))
        for i in unknown:  # classes the reference never saw: compare their canonical names
            err[i] = float(canon(pred[i]) != canon(label[i]))
        out = {"ok": ok, "err": err, "pred": pc, "label": lc}
        if self.score_col is not None and batch.scores and self.score_col in batch.scores:
            out["score"] = np.asarray(batch.scores[self.score_col], np.float64)
        return out

    # feeding ----------------------------------------------------------------------------------------------
    def observe(self, batch: OutcomeBatch, codes: ClassCodes | None = None) -> list[dict[str, Any]]:
        """Feed joined outcomes; returns transition records (turned into alerts by the caller). ``codes``: the
        batch's :meth:`codes` when the caller looked them up already.

        The whole batch is handled at once: errors, the detector's scan, and the metrics of every outcome
        window it closes (row-wise over the windows); detections and window closes then run in order."""
        out: list[dict[str, Any]] = []
        n = len(batch)
        ev = self._errors(batch, codes)
        ok = ev["ok"]
        idx = np.flatnonzero(ok)
        m = len(idx)
        self.dropped += n - m
        if m == 0:
            return out
        cols = {k: v if m == n else v[idx] for k, v in ev.items() if k != "ok"}
        errs = cols["err"]
        ts = batch.label_timestamps
        parts = batch.partitions if len(batch.partitions) else np.full(n, -1, np.int64)
        offs = batch.offsets if len(batch.offsets) else np.arange(n, dtype=np.int64)
        size, base, done = self.window, self.win["n"], self.outcomes
        hits = self._scan(errs)
        recent = np.concatenate([self._ring, errs])
        lag = len(self._ring)
        closing = (base + m) // size
        stats = self._window_stats(cols, closing) if closing else []
        h = 0
        for r in range(closing + 1):
            lo, hi = max(r * size - base, 0), min((r + 1) * size - base, m)
            if lo >= hi:
                break
            w = self.win
            if w["n"] == 0:
                w["start"] = int(ts[idx[lo]])
                w["first"] = (int(parts[idx[lo]]), int(offs[idx[lo]]))
            while h < len(hits) and hits[h][0] < hi:
                i, s_i, k_i = hits[h]
                h += 1
                j = int(idx[i])
                last = recent[max(lag + i + 1 - RECENT, 0): lag + i + 1]
                after = float(last.mean())
                rest = k_i - len(last)
                before = float((s_i - last.sum()) / rest) if rest > 0 else float(s_i / k_i)
                self.detections += 1
                w["detections"] += 1
                direction = "degradation" if after >= before else "improvement"
                status = self.concept.update(True, direction)
                if status is not None:
                    out.append(self._concept_record(status, direction, before, after, j, ts, parts, offs,
                                                    w["n"] + i - lo + 1, done + i + 1))
            w["n"] += hi - lo
            w["end"] = int(ts[idx[hi - 1]])
            w["last"] = (int(parts[idx[hi - 1]]), int(offs[idx[hi - 1]]))
            if r < closing:
                out.extend(self._close(*stats[r]))
        self._ring = recent[-RECENT:].copy()
        self.outcomes += m
        rest_at = closing * size - base
        if rest_at < m:
            for k, v in cols.items():
                if closing:
                    self.buf[k] = [v[rest_at:]]
                else:
                    self.buf[k].append(v)
        return out

    def _window_stats(self, cols: dict[str, np.ndarray], closing: int) -> list[tuple[dict[str, Any], float]]:
        """Metrics and mean error of the ``closing`` outcome windows made of the buffered outcomes followed
        by ``cols`` (the batch's joined outcomes), computed for all windows at once."""
        size = self.window
        take = closing * size - self.win["n"]

        def rows(k: str) -> np.ndarray:
            return np.concatenate([*self.buf[k], cols[k][:take]]).reshape(closing, size)

        err = rows("err")
        err_mean = np.mean(err, axis=1).tolist()
        if self.regression:
            metrics = window_regression_metrics(rows("e"))
            return list(zip(metrics, err_mean, strict=True))
        scores, scored = None, None
        if "score" in cols:  # a window's AUC needs every outcome's score (earlier batches may have had none)
            scored = np.ones(closing, bool)
            buffered = sum(len(x) for x in self.buf["score"])
            if buffered != self.win["n"]:
                scored[0] = False
                head = np.full(self.win["n"], np.nan)
            else:
                head = np.concatenate(self.buf["score"]) if buffered else np.zeros(0)
            scores = np.concatenate([head, cols["score"][:take]]).reshape(closing, size)
        metrics = window_classification_metrics(rows("pred"), rows("label"), n_classes=len(self.profile.classes),
                                                positive=self.positive, scores=scores, scored=scored)
        for met, e in zip(metrics, err_mean, strict=True):
            met["accuracy"] = float(1.0 - e)
            met["error_rate"] = float(e)
        return list(zip(metrics, err_mean, strict=True))

    @property
    def detector(self) -> Any:
        """The River detector, made on first use."""
        if self._detector is None:
            self._detector = make_detector(self.config)
        return self._detector

    def _scan(self, errs: np.ndarray) -> list[tuple[int, float, int]]:
        """Run the River detector over the errors: ``(position, error sum, count)`` since the detector's
        last restart at each detection. This loop is the only per-event Python of the core."""
        det = self.detector
        s, k = self._sum, self._k
        xs = errs.tolist()
        hits: list[tuple[int, float, int]] = []
        if isinstance(det, detector_class("ADWIN")) and hasattr(det, "_helper") and hasattr(det, "_reset"):
            # ADWIN's Rust core directly (River's wrapper adds ~0.3 us per event); River restarts ADWIN
            # after a detection, which is done here at once instead of on the next update
            # (updates run in C up to the next detection; the sums are sequential, as s += x per event)
            if det.drift_detected:
                det._reset()
            pos, n = 0, len(xs)
            while pos < n:
                hit = next(itertools.compress(itertools.count(pos), map(det._helper.update, xs[pos:])), None)
                end = n if hit is None else hit + 1
                s = float(np.cumsum(np.concatenate(([s], errs[pos:end])))[-1])
                k += end - pos
                if hit is not None:
                    hits.append((hit, s, k))
                    s, k = 0.0, 0
                    det._reset()
                pos = end
            det._drift_detected = False
        else:
            upd = det.update
            for i, x in enumerate(xs):
                upd(x)
                s += x
                k += 1
                if det.drift_detected:
                    hits.append((i, s, k))
                    s, k = 0.0, 0
        self._sum, self._k = s, k
        return hits

    def _window_ref(self, events: int | None = None, end: int | None = None) -> dict[str, Any]:
        return {"index": self.index, "start": self.win["start"], "end": self.win["end"] if end is None else end,
                "events": self.win["n"] if events is None else events}

    def _concept_record(self, status: str, direction: str, before: float, after: float, j: int,
                        ts: np.ndarray, parts: np.ndarray, offs: np.ndarray, events: int,
                        outcomes: int) -> dict[str, Any]:
        stat = "scaled_abs_error" if self.regression else "error_rate"
        name = self.config.concept_detector.upper()
        if status == "firing":
            verb = "rose" if direction == "degradation" else "fell"
            summary = f"concept drift: {stat.replace('_', ' ')} {verb} from {before:.3g} to {after:.3g} ({name})"
        else:
            summary = f"concept drift resolved: no change in {self.config.resolve_after} outcome windows"
        first = self.win["first"] or (int(parts[j]), int(offs[j]))
        return {
            "monitor": "concept_drift", "feature": None, "status": status, "direction": direction,
            "detector": self.config.concept_detector, "statistic": stat, "value": after, "threshold": before,
            "threshold_kind": "dynamic", "window": self._window_ref(events=events, end=int(ts[j])),
            "event_time": int(ts[j]), "src": (int(parts[j]), first[1], int(offs[j])),
            "summary": summary,
            "evidence": {"level_before": before, "level_after": after, "detector": self.config.concept_detector,
                         "outcomes": outcomes},
        }

    def _close(self, metrics: dict[str, Any], err_mean: float) -> list[dict[str, Any]]:
        """Close the full outcome window, given its metrics and mean error (see :meth:`_window_stats`)."""
        out: list[dict[str, Any]] = []
        n = self.win["n"]
        lim = self._limits if n == self.window else self._performance_limits(n)
        cond, direction, stat, value, thr = False, None, None, None, None
        if lim is not None:
            if self.regression:
                stat, value = "mae", metrics["mae"]
                if value > lim["hi"]:
                    cond, direction, thr = True, "degradation", lim["hi"]
                elif value < lim["lo"]:
                    cond, direction, thr = True, "improvement", lim["lo"]
                else:
                    thr = lim["hi"]
            else:
                stat, value = "accuracy", metrics["accuracy"]
                if value < lim["acc_lo"]:
                    cond, direction, thr = True, "degradation", lim["acc_lo"]
                elif value > lim["acc_hi"]:
                    cond, direction, thr = True, "improvement", lim["acc_hi"]
                else:
                    thr = lim["acc_lo"]
        win = self._window_ref()
        last = self.win["last"]
        src = (last[0], self.win["first"][1], last[1])
        status = self.perf.update(cond, direction) if lim is not None else None
        if status is not None:
            ref = lim["reference"] if lim else None
            if status == "firing":
                summary = (f"performance {direction}: {stat} {value:.4g} vs reference {ref:.4g} "
                           f"(bound {thr:.4g}) over {n} labelled outcomes")
            else:
                summary = f"performance back within bounds: {stat} {value:.4g} vs reference {ref:.4g}"
            out.append({
                "monitor": "performance", "feature": None, "status": status,
                "direction": direction if status == "firing" else self.perf.direction,
                "detector": "binomial" if not self.regression else "z_test", "statistic": stat, "value": value,
                "threshold": thr, "threshold_kind": "calibrated", "window": win, "event_time": self.win["end"],
                "src": src, "summary": summary,
                "evidence": {"metrics": metrics, "reference": {k: self.reference.get(k) for k in
                                                               ("accuracy", "f1", "auc", "mae", "rmse")}},
            })
        # concept drift clears per outcome window without a detection
        cstatus = self.concept.update(self.win["detections"] > 0, self.concept.direction)
        if cstatus == "resolved":
            rec = {
                "monitor": "concept_drift", "feature": None, "status": "resolved",
                "direction": self.concept.direction, "detector": self.config.concept_detector,
                "statistic": "scaled_abs_error" if self.regression else "error_rate",
                "value": err_mean, "threshold": None, "threshold_kind": "dynamic", "window": win,
                "event_time": self.win["end"], "src": src,
                "summary": f"concept drift resolved: no change detected in {self.config.resolve_after} outcome windows",
                "evidence": {"level": err_mean},
            }
            out.append(rec)
        if self.keep_records:
            self.records.append({
                "kind": "outcomes", "index": self.index, "start": self.win["start"], "end": self.win["end"],
                "events": n, "metrics": metrics, "reference": dict(self.reference),
                "decision": {"statistic": stat, "value": value, "threshold": thr, "condition": cond,
                             "direction": direction},
                "concept_detections": self.win["detections"],
            })
        self.index += 1
        self._reset_window()
        return out

    # state ------------------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        buf = {k: np.concatenate(v).tolist() if v else [] for k, v in self.buf.items()}
        return {
            "index": self.index, "outcomes": self.outcomes, "dropped": self.dropped, "detections": self.detections,
            "sum": self._sum, "k": self._k, "ring": self._ring.tolist(), "win": dict(self.win),
            "buf": buf, "detector": river_state.dumps(self.detector), "concept": self.concept.to_state(),
            "perf": self.perf.to_state(),
        }

    def load_state(self, st: dict[str, Any]) -> None:
        self.index, self.outcomes = int(st["index"]), int(st["outcomes"])
        self.dropped, self.detections = int(st["dropped"]), int(st["detections"])
        self._sum, self._k = float(st["sum"]), int(st["k"])
        self._ring = np.asarray(st["ring"], np.float64)
        w = dict(st["win"])
        w["first"] = tuple(w["first"]) if w["first"] is not None else None
        w["last"] = tuple(w["last"]) if w["last"] is not None else None
        self.win = w
        dtypes = {"err": np.float64, "e": np.float64, "score": np.float64, "pred": np.int64, "label": np.int64}
        self.buf = {k: ([np.asarray(v, dtypes[k])] if v else []) for k, v in st["buf"].items()}
        self._detector = river_state.loads(st["detector"])
        self.concept.load_state(st["concept"])
        self.perf.load_state(st["perf"])


def _floats(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind == "f":
        return x
    try:
        return x.astype(np.float64)
    except (TypeError, ValueError):
        out = np.full(len(x), np.nan)
        for i, v in enumerate(x):
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                out[i] = float(v)
        return out

"""Confidence-based performance estimation (CBPE): the calibration fitted once on the labelled reference.

NannyML's CBPE calibrates the model's scores on the labelled reference; a window's expected confusion matrix
then follows from its calibrated scores alone, without labels. Here each class score is cut into quantile
bins of the reference (at most :data:`BINS`) and the rate of that class per bin is made monotone with
isotonic regression (pool-adjacent-violators, weighted by the bin counts); multiclass probabilities are
normalised to sum to one, as NannyML does. A window is summarised by integer counts of (predicted class,
bin of the primary score) cells plus, per class, positives/negatives expected (or seen) per score bin, and
every metric comes from those sums (:func:`metrics`), so live windows, realized windows (labels instead of
probabilities) and null windows resampled from the reference's cells share one formula.

The fitted calibration is plain JSON stored in the reference profile (``ReferenceProfile.estimation``).

>>> import pandas as pd
>>> rng = np.random.default_rng(0)
>>> s = rng.random(4000)
>>> df = pd.DataFrame({"prediction": (s > 0.5).astype(int), "label": (rng.random(4000) < s).astype(int), "1": s})
>>> fit = fit_estimation(df, prediction="prediction", label="label", scores=["1"], classes=["0", "1"],
...                      positive="1")
>>> round(Calibration(fit).reference["accuracy"], 2), fit["reference_realized"]  # estimated vs realized
(0.74, 0.74375)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from detectors.cut_grid import CutGrid
from detectors.values import canon_series

BINS = 50  # quantile bins per class score (fewer on small references: at least MIN_PER_BIN rows each)
MIN_PER_BIN = 40
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def isotonic(rate: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Non-decreasing least-squares fit of ``rate`` with ``weight`` (pool adjacent violators).

    >>> isotonic(np.array([0.1, 0.3, 0.2, 0.9]), np.array([1.0, 1.0, 1.0, 1.0])).tolist()
    [0.1, 0.25, 0.25, 0.9]
    """
    vals: list[float] = []
    wts: list[float] = []
    sizes: list[int] = []
    for r, w in zip(rate.tolist(), weight.tolist(), strict=True):
        vals.append(r)
        wts.append(w)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w2 = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w2 if w2 > 0 else (vals[-2] + vals[-1]) / 2
            sz = sizes[-2] + sizes[-1]
            del vals[-1], wts[-1], sizes[-1]
            vals[-1], wts[-1], sizes[-1] = v, w2, sz
    return np.repeat(np.asarray(vals), sizes)


def _codes(s: pd.Series, classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(v, -1) if v is not None else -1 for v in canon_series(s)], np.int64)


def fit_estimation(df: pd.DataFrame, *, prediction: str, label: str, scores: list[str], classes: list[str],
                   positive: str | None) -> dict[str, Any]:
    """The calibration of ``scores`` against ``label`` on the reference ``df`` ({} when it cannot be fitted).

    Binary: the score of ``positive`` (else the last score column); multiclass: one score column per class,
    named as the class. Rows with a missing score, prediction or label are left out.
    """
    k = len(classes)
    if k < 2 or not scores:
        return {}
    if k == 2:
        score_cols = [positive if positive in scores else scores[-1]]
        pos = classes.index(positive) if positive in classes else k - 1
        calibrated = [pos]
    else:
        if not set(classes) <= set(scores):
            return {}
        score_cols, calibrated, pos = list(classes), list(range(k)), None
    pred, lab = _codes(df[prediction], classes), _codes(df[label], classes)
    s = np.column_stack([pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64) for c in score_cols])
    ok = (pred >= 0) & (lab >= 0) & np.isfinite(s).all(axis=1)
    pred, lab, s = pred[ok], lab[ok], s[ok]
    n = len(pred)
    if n < 2 * MIN_PER_BIN or len(np.unique(lab)) < 2:
        return {}
    n_bins = int(max(2, min(BINS, n // MIN_PER_BIN)))
    edges, probs = [], []
    for j, c in enumerate(calibrated):
        cuts = np.unique(np.quantile(s[:, j], np.linspace(0, 1, n_bins + 1)[1:-1]))
        b = np.searchsorted(cuts, s[:, j], side="right")
        cnt = np.bincount(b, minlength=len(cuts) + 1).astype(np.float64)
        hit = np.bincount(b, weights=(lab == c).astype(np.float64), minlength=len(cuts) + 1)
        rate = np.divide(hit, cnt, out=np.full(len(cnt), np.nan), where=cnt > 0)
        filled = cnt > 0
        p = np.interp(np.arange(len(cnt)), np.flatnonzero(filled), isotonic(rate[filled], cnt[filled]))
        edges.append(cuts.tolist())
        probs.append(p.tolist())
    fit: dict[str, Any] = {"classes": list(classes), "positive": pos, "score_columns": score_cols,
                           "edges": edges, "probs": probs, "rows": n}
    cal = Calibration(fit)
    q = cal.probabilities(s)
    primary = cal.primary_bins(s, pred)
    cells = pred * cal.n_primary + primary
    counts = np.bincount(cells, minlength=k * cal.n_primary)
    qsum = np.stack([np.bincount(cells, weights=q[:, c], minlength=k * cal.n_primary) for c in range(k)], axis=1)
    mean_q = np.divide(qsum, counts[:, None], out=np.zeros_like(qsum), where=counts[:, None] > 0)
    fit["cells"] = counts.tolist()
    fit["cell_probs"] = mean_q.round(6).tolist()
    fit["reference_realized"] = float(np.mean(pred == lab))
    return fit


class Calibration:
    """The fitted calibration as arrays: calibrated probabilities, cell summaries and reference metrics."""

    def __init__(self, fit: dict[str, Any]):
        self.classes: list[str] = list(fit["classes"])
        self.k = len(self.classes)
        self.positive: int | None = fit["positive"]
        self.score_columns: list[str] = list(fit["score_columns"])
        self.edges = [np.asarray(e, np.float64) for e in fit["edges"]]
        self._grids = [CutGrid(e) for e in self.edges]
        self.probs = [np.asarray(p, np.float64) for p in fit["probs"]]
        self.rows = int(fit["rows"])
        self.binary = self.k == 2
        self.n_primary = len(self.probs[0]) if self.binary else max(len(p) for p in self.probs)
        self.cells = np.asarray(fit.get("cells", []), np.float64)
        self.cell_probs = np.asarray(fit.get("cell_probs", []), np.float64).reshape(len(self.cells), self.k)
        self.reference: dict[str, float | None] = {}
        if len(self.cells):
            conf, hist = self.cell_sums(self.cells)
            self.reference = {k: None if v is None else float(v)
                              for k, v in metrics(conf, hist, self.positive).items()}

    def bins(self, s: np.ndarray) -> list[np.ndarray]:
        """Per calibrated score column, each row's bin (``s`` is rows x score columns)."""
        return [g.bins(s[:, j]) for j, g in enumerate(self._grids)]

    def probabilities(self, s: np.ndarray, bins: list[np.ndarray] | None = None) -> np.ndarray:
        """Calibrated class probabilities (rows x classes) of the score rows ``s``."""
        bins = self.bins(s) if bins is None else bins
        if self.binary:
            p = self.probs[0][bins[0]]
            q = np.column_stack([1.0 - p, p])
            return q if self.positive == 1 else q[:, ::-1]
        q = np.column_stack([self.probs[j][b] for j, b in enumerate(bins)])
        total = q.sum(axis=1, keepdims=True)
        return np.divide(q, total, out=np.full_like(q, 1.0 / self.k), where=total > 0)

    def primary_bins(self, s: np.ndarray, pred: np.ndarray, bins: list[np.ndarray] | None = None) -> np.ndarray:
        """The cell bin of each row: the positive score's bin (binary), the predicted class's (multiclass)."""
        bins = self.bins(s) if bins is None else bins
        if self.binary:
            return bins[0]
        return np.stack(bins, axis=1)[np.arange(len(pred)), pred]

    def cell_sums(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Expected confusion (``..., pred, true``) and, binary only, expected positives/negatives per
        positive-score bin (``..., bins, 2``) of windows given as cell counts (``..., cells``)."""
        c = counts.reshape(*counts.shape[:-1], self.k, self.n_primary)
        cp = self.cell_probs.reshape(self.k, self.n_primary, self.k)
        conf = np.einsum("...jb,jbc->...jc", c, cp)
        if not self.binary:
            return conf, None
        pos = cp[..., self.positive]  # (pred, bins)
        e = np.einsum("...jb,jb->...b", c, pos)
        f = c.sum(axis=-2) - e
        return conf, np.stack([e, f], axis=-1)


def metrics(conf: np.ndarray, hist: np.ndarray | None, positive: int | None) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (binary: of ``positive``; else macro) and ROC AUC from a confusion
    matrix (``..., pred, true``; expected or realized) and per-score-bin positives/negatives (``..., bins,
    2``, bins in increasing score, ties within a bin counted half). Arrays of metrics for stacked inputs.

    >>> conf = np.array([[40.0, 10.0], [5.0, 45.0]])
    >>> m = metrics(conf, np.array([[5.0, 40.0], [45.0, 10.0]]), positive=1)
    >>> [round(float(m[k]), 3) for k in METRICS]
    [0.85, 0.9, 0.818, 0.857, 0.85]
    """
    if conf.shape == (2, 2) and positive is not None:
        return _binary_metrics(conf, hist, positive)
    n = conf.sum(axis=(-2, -1))
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    predicted = conf.sum(axis=-1)
    actual = conf.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = tp.sum(axis=-1) / n
        prec = tp / predicted
        rec = tp / actual
        f1 = 2 * tp / (predicted + actual)
        if positive is not None:
            prec, rec, f1 = prec[..., positive], rec[..., positive], f1[..., positive]
        else:
            prec, rec, f1 = (np.nanmean(x, axis=-1) for x in (prec, rec, f1))
        auc = None
        if hist is not None:  # multiclass: (..., classes, bins, 2), one-vs-rest, macro
            e, f = hist[..., 0], hist[..., 1]
            below = np.cumsum(f, axis=-1) - f
            auc = (e * (below + 0.5 * f)).sum(axis=-1) / (e.sum(axis=-1) * f.sum(axis=-1))
            if positive is None:
                auc = np.nanmean(auc, axis=-1)
    return {"accuracy": acc, "precision": prec, "recall": rec, "f1": f1, "roc_auc": auc}


def _binary_metrics(conf: np.ndarray, hist: np.ndarray | None, positive: int) -> dict[str, Any]:
    """:func:`metrics` of one binary window in plain floats (the per-window hot path)."""
    if hist is None:
        return _binary_metrics_of(conf.tolist(), None, None, positive)
    e, f = hist[:, 0], hist[:, 1]
    return _binary_metrics_of(conf.tolist(), float(e @ (np.cumsum(f) - 0.5 * f)), float(e.sum()) * float(f.sum()),
                              positive)


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _binary_metrics_of(c: list[list[float]], below: float | None, pairs: float | None,
                       positive: int) -> dict[str, Any]:
    """The binary metrics of a confusion matrix (nested lists) and, for the AUC, the positive-negative pairs
    ranked right (ties half) and all pairs."""
    neg = 1 - positive
    tp, fp, fn, tn = c[positive][positive], c[positive][neg], c[neg][positive], c[neg][neg]
    n = tp + fp + fn + tn
    auc = None if below is None or pairs is None else _ratio(below, pairs)
    return {"accuracy": _ratio(tp + tn, n), "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn), "roc_auc": auc}


def binary_estimates(cal: Calibration, counts: np.ndarray) -> list[dict[str, Any]]:
    """:func:`metrics` of binary windows given as cell counts (windows x cells), each window's expected
    confusion and per-bin positives/negatives formed as for one window alone: products by the stacked matrix
    product (one BLAS call per window, as for one window), sums of counts, the bins' columns kept strided.

    >>> fit = {"classes": ["0", "1"], "positive": 1, "score_columns": ["1"], "edges": [[0.5]],
    ...        "probs": [[0.2, 0.9]], "rows": 100}
    >>> [round(v, 3) for v in binary_estimates(Calibration(fit), np.array([[3, 0, 0, 7]]))[0].values()]
    [0.87, 0.9, 0.913, 0.906, 0.844]
    """
    pos = cal.positive
    assert cal.binary and pos is not None
    m, nb = len(counts), cal.n_primary
    c = counts.reshape(m, 2, nb).astype(np.float64)
    p = cal.probs[0]
    e_pred = c @ p
    conf = np.empty((m, 2, 2))
    conf[:, :, pos] = e_pred
    conf[:, :, 1 - pos] = c.sum(axis=2) - e_pred
    per_bin = c.sum(axis=1)
    hist = np.empty((m, nb, 2))
    hist[:, :, 0] = per_bin * p
    hist[:, :, 1] = per_bin - hist[:, :, 0]
    e, f = hist[:, :, 0], hist[:, :, 1]
    below = (e[:, None, :] @ (np.cumsum(f, axis=1) - 0.5 * f)[:, :, None])[:, 0, 0].tolist()
    pairs = [float(a) * float(b) for a, b in zip(e.sum(axis=1).tolist(), f.sum(axis=1).tolist(), strict=True)]
    return [_binary_metrics_of(cw, below[i], pairs[i], pos) for i, cw in enumerate(conf.tolist())]

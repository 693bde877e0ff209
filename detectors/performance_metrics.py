"""Model performance metrics over one window of labelled outcomes, vectorised with numpy.

Classes are integer codes (``-1`` = a class the reference never saw); regression works on the signed
error ``prediction - label``.

>>> import numpy as np
>>> classification_metrics(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]), n_classes=2, positive=1)["f1"]
0.8
>>> regression_metrics(np.array([1.0, -1.0, 2.0]))["mae"]
1.3333333333333333
"""

from __future__ import annotations

import numpy as np


def auc_score(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for the boolean ``positive`` (Mann-Whitney U with midranks for ties)."""
    ok = ~np.isnan(scores)
    scores, positive = scores[ok], positive[ok]
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), np.float64)
    # midranks: each run of equal scores gets the mean of its 1-based positions
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    mid = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mid, ends - starts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def classification_metrics(
    pred: np.ndarray,
    label: np.ndarray,
    *,
    n_classes: int,
    positive: int | None = None,
    scores: np.ndarray | None = None,
) -> dict[str, float | None]:
    """Accuracy, error rate, F1 (binary: of ``positive``; else macro) and AUC (binary with scores)."""
    n = len(label)
    if n == 0:
        return {"accuracy": None, "error_rate": None, "f1": None, "auc": None}
    correct = pred == label
    acc = float(correct.mean())
    if positive is not None:
        tp = int(np.sum(correct & (label == positive)))
        fp = int(np.sum((pred == positive) & (label != positive)))
        fn = int(np.sum((pred != positive) & (label == positive)))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    else:
        k = n_classes
        p = np.where(pred < 0, k, pred)
        lab = np.where(label < 0, k, label)
        conf = np.bincount(lab * (k + 1) + p, minlength=(k + 1) ** 2).reshape(k + 1, k + 1)[:k, :k]
        tp_c = np.diag(conf).astype(np.float64)
        support = np.bincount(lab, minlength=k + 1)[:k]
        predicted = np.bincount(p, minlength=k + 1)[:k]
        denom = support + predicted
        present = denom > 0
        f1 = float(np.mean(2 * tp_c[present] / denom[present])) if present.any() else None
    auc = None
    if scores is not None and positive is not None:
        auc = auc_score(scores, label == positive)
    return {"accuracy": acc, "error_rate": 1.0 - acc, "f1": f1, "auc": auc}


def regression_metrics(error: np.ndarray) -> dict[str, float | None]:
    """MAE, RMSE and bias of the signed errors ``prediction - label``."""
    if len(error) == 0:
        return {"mae": None, "rmse": None, "bias": None}
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error * error))),
        "bias": float(np.mean(error)),
    }

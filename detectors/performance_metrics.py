"""Model performance metrics over one window of labelled outcomes, vectorised with numpy.

Classes are integer codes (``-1`` = a class the reference never saw); regression works on the signed
error ``prediction - label``.

>>> import numpy as np
>>> classification_metrics(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]), n_classes=2, positive=1)["f1"]
0.8
>>> regression_metrics(np.array([1.0, -1.0, 2.0]))["mae"]
1.3333333333333333

The ``window_*`` functions compute the same metrics, to the last bit, for many equal-size windows at once
(rows of 2-D arrays): integer counts, exact half-integer rank sums and row-wise reductions (which numpy
sums exactly as it sums each row alone).

>>> window_auc(np.array([[0.1, 0.4, 0.35, 0.8], [0.3, 0.3, 0.3, 0.3]]), np.array([[0, 0, 1, 1], [0, 1, 0, 1]]) > 0)
[0.75, 0.5]
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


def window_auc(scores: np.ndarray, positive: np.ndarray) -> list[float | None]:
    """:func:`auc_score` of each row of ``scores`` (windows x n) for the boolean ``positive`` (same shape)."""
    w, n = scores.shape
    ok = ~np.isnan(scores)
    pos = positive & ok
    n_pos = pos.sum(axis=1).tolist()
    n_ok = ok.sum(axis=1).tolist()
    # sorted rows (NaN last: the finite scores keep their ranks among themselves)
    flat = (np.argsort(scores, axis=1) + (np.arange(w) * n)[:, None]).ravel()
    s = scores.ravel()[flat].reshape(w, n)
    p = pos.ravel()[flat].reshape(w, n)
    # rank sums are integers (half-integers with ties): exact in any order of summation
    rank_sum = (p * np.arange(1, n + 1)).sum(axis=1).astype(np.float64)
    tied = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1)) if n > 1 else np.zeros(0, np.int64)
    if len(tied):  # midranks: each run of equal scores gets the mean of its 1-based positions
        st, pt = s[tied].ravel(), p[tied].ravel()
        new = np.ones(len(st), bool)
        new[1:] = st[1:] != st[:-1]
        new[::n] = True  # runs never cross windows
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], len(st)]
        mid = (2 * (starts % n) + (ends - starts) + 1) / 2.0
        rank_sum[tied] = np.where(pt, np.repeat(mid, ends - starts), 0.0).reshape(len(tied), n).sum(axis=1)
    out: list[float | None] = []
    for r, k, m in zip(rank_sum.tolist(), n_pos, n_ok, strict=True):
        n_neg = m - k
        out.append(None if k == 0 or n_neg == 0 else float((r - k * (k + 1) / 2.0) / (k * n_neg)))
    return out


def window_classification_metrics(
    pred: np.ndarray,
    label: np.ndarray,
    *,
    n_classes: int,
    positive: int | None = None,
    scores: np.ndarray | None = None,
    scored: np.ndarray | None = None,
) -> list[dict[str, float | None]]:
    """:func:`classification_metrics` of each row of ``pred`` / ``label`` (windows x n); the AUC only for the
    rows where ``scored`` (default: all) when ``scores`` are given."""
    w, n = label.shape
    if n == 0 or positive is None:
        sc = [None if scores is None or (scored is not None and not scored[i]) else scores[i] for i in range(w)]
        return [classification_metrics(pred[i], label[i], n_classes=n_classes, positive=positive, scores=sc[i])
                for i in range(w)]
    correct = pred == label
    acc = (correct.sum(axis=1) / n).tolist()
    is_pos, said_pos = label == positive, pred == positive
    tp = (correct & is_pos).sum(axis=1).tolist()
    fp = (said_pos & ~is_pos).sum(axis=1).tolist()
    fn = (~said_pos & is_pos).sum(axis=1).tolist()
    auc: list[float | None] = [None] * w
    if scores is not None:
        rows = np.arange(w) if scored is None else np.flatnonzero(scored)
        if len(rows):
            for i, a in zip(rows.tolist(), window_auc(scores[rows], is_pos[rows]), strict=True):
                auc[i] = a
    return [{"accuracy": a, "error_rate": 1.0 - a, "f1": 2 * t / (2 * t + p + f) if t + p + f else None, "auc": u}
            for a, t, p, f, u in zip(acc, tp, fp, fn, auc, strict=True)]


def window_regression_metrics(error: np.ndarray) -> list[dict[str, float | None]]:
    """:func:`regression_metrics` of each row of ``error`` (windows x n)."""
    if error.shape[1] == 0:
        return [regression_metrics(e) for e in error]
    mae = np.mean(np.abs(error), axis=1).tolist()
    rmse = np.sqrt(np.mean(error * error, axis=1)).tolist()
    bias = np.mean(error, axis=1).tolist()
    return [{"mae": a, "rmse": r, "bias": b} for a, r, b in zip(mae, rmse, bias, strict=True)]

"""How far a window's attributions moved from the reference's: statistics on mean |SHAP| vectors.

:func:`attribution_distance` is half the L1 distance of the normalised vectors (0 = same shares, 1 = disjoint),
:func:`ndcg` scores the window's feature ranking with the reference's shares as relevance (1 = same order), as
the cloud monitors' feature-attribution drift does; :func:`top_movers` names the features that moved most.
The vectors come from :mod:`detectors.attribution` records (:func:`mean_abs_vector`, :func:`stored_abs_rows`).

>>> ref, win = np.array([0.6, 0.3, 0.1]), np.array([0.1, 0.3, 0.6])
>>> round(float(attribution_distance(ref, ref)), 6), round(float(attribution_distance(ref, win)), 6)
(0.0, 0.5)
>>> round(float(ndcg(ref, ref)), 6), round(float(ndcg(ref, win)), 3)
(1.0, 0.702)
>>> [m["feature"] for m in top_movers(["a", "b", "c"], ref, win, k=2)]
['a', 'c']
>>> mean_abs_vector({"mean_abs_shap": {"b": 0.5}}, ["a", "b"]).tolist()
[0.0, 0.5]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def normalise(v: np.ndarray) -> np.ndarray:
    """Shares along the last axis (uniform when the sum is 0)."""
    v = np.maximum(np.asarray(v, np.float64), 0.0)
    s = v.sum(axis=-1, keepdims=True)
    uniform = np.full_like(v, 1.0 / max(v.shape[-1], 1))
    return np.where(s > 0, v / np.where(s > 0, s, 1.0), uniform)


def attribution_distance(reference: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Normalised L1 distance in [0, 1] between mean |SHAP| vectors (last axis), broadcast over the rest."""
    return 0.5 * np.abs(normalise(window) - normalise(reference)).sum(axis=-1)


def ndcg(reference: np.ndarray, window: np.ndarray, k: int | None = None) -> np.ndarray:
    """nDCG of the window's feature ranking (by mean |SHAP|, descending) with the reference's shares as
    relevance, over the top ``k`` (default all) features; broadcast over leading axes of ``window``."""
    rel = normalise(reference)
    win = np.asarray(window, np.float64)
    f = win.shape[-1]
    k = f if k is None else max(1, min(int(k), f))
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    order = np.argsort(-win, axis=-1, kind="stable")[..., :k]
    relb = np.broadcast_to(rel, win.shape)
    dcg = (np.take_along_axis(relb, order, axis=-1) * disc).sum(axis=-1)
    ideal = (np.sort(rel, axis=-1)[..., ::-1][..., :k] * disc).sum(axis=-1)
    return np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 1.0)


def top_movers(features: Sequence[str], reference: np.ndarray, window: np.ndarray,
               k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` features whose mean |SHAP| changed most (absolute change; ties by feature order)."""
    ref, win = np.asarray(reference, np.float64), np.asarray(window, np.float64)
    change = win - ref
    order = np.argsort(-np.abs(change), kind="stable")[:k]
    rs, ws = normalise(ref), normalise(win)
    return [{"feature": features[i], "reference_mean_abs_shap": float(ref[i]), "window_mean_abs_shap": float(win[i]),
             "change": float(change[i]), "reference_share": float(rs[i]), "window_share": float(ws[i])}
            for i in order]


def mean_abs_vector(record: dict[str, Any], features: Sequence[str]) -> np.ndarray:
    """A record's mean |SHAP| per feature in ``features`` order (0 for features it lacks)."""
    m = record.get("mean_abs_shap") or {}
    return np.array([float(m.get(f, 0.0)) for f in features], np.float64)


def stored_abs_rows(record: dict[str, Any] | None, features: Sequence[str]) -> np.ndarray | None:
    """A record's per-row |SHAP| as ``(rows, features)`` in ``features`` order; None when the record has none
    or does not cover every feature."""
    if not record or not record.get("abs_shap_rows"):
        return None
    have = [str(f) for f in record.get("features") or []]
    if not set(features) <= set(have):
        return None
    m = np.asarray(record["abs_shap_rows"], np.float64)
    if m.ndim != 2 or m.shape[1] != len(have) or not np.isfinite(m).all():
        return None
    return m[:, [have.index(str(f)) for f in features]]

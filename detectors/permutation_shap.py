"""Permutation SHAP, model-agnostic: the estimator of ``shap.PermutationExplainer`` with an independent masker.

Vectorised over rows, with antithetic permutations (each permutation followed by its reverse) and a small
background sample; string columns are coded as numbers for the masker and decoded before the model sees them.
The values add up: ``base + values.sum(features) == model output`` for every row and output.

>>> import pandas as pd
>>> def predict(frame):  # a linear model with one output
...     return (2.0 * frame["a"] + (frame["c"] == "y")).to_numpy()[:, None]
>>> bg = pd.DataFrame({"a": [0.0, 1.0], "c": ["x", "y"]})
>>> phi, base = permutation_values(predict, pd.DataFrame({"a": [3.0], "c": ["y"]}), bg, 2,
...                                np.random.default_rng(0))
>>> phi[0, :, 0].tolist(), base.tolist()
([5.0, 0.5], [1.5])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

MAX_MASKED_ROWS = 200_000  # model inputs per permutation-SHAP call (bounds memory)


def chunk_rows(features: int, background: int, limit: int) -> int:
    """Rows explained per model call: at most ``limit``, and at most :data:`MAX_MASKED_ROWS` model inputs."""
    per_row = (features + 1) * background
    return max(1, min(limit, MAX_MASKED_ROWS // max(per_row, 1)))


def _codes(x: pd.DataFrame, bg: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[list[Any] | None]]:
    """Rows and background as one numeric matrix each (string columns as category codes)."""
    xs, bs, cats = [], [], []
    for f in x.columns:
        a, b = x[f].to_numpy(), bg[f].to_numpy()
        if a.dtype.kind in "fiub" and b.dtype.kind in "fiub":
            xs.append(a.astype(np.float64))
            bs.append(b.astype(np.float64))
            cats.append(None)
            continue
        table: dict[Any, int] = {}
        for v in (*b.tolist(), *a.tolist()):
            table.setdefault(v, len(table))
        xs.append(np.array([table[v] for v in a.tolist()], np.float64))
        bs.append(np.array([table[v] for v in b.tolist()], np.float64))
        cats.append(list(table))
    return np.column_stack(xs), np.column_stack(bs), cats


def _decode(m: np.ndarray, features: list[str], cats: list[list[Any] | None]) -> pd.DataFrame:
    cols: dict[str, Any] = {}
    for j, f in enumerate(features):
        c = cats[j]
        cols[f] = m[:, j] if c is None else np.asarray(c, dtype=object)[m[:, j].astype(np.int64)]
    return pd.DataFrame(cols)


def permutation_values(predict: Callable[[pd.DataFrame], np.ndarray], x: pd.DataFrame, background: pd.DataFrame,
                       permutations: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values ``(rows, features, outputs)`` of the rows of ``x`` and the base values ``(outputs,)``;
    ``predict`` maps a frame with the columns of ``x`` to ``(rows, outputs)``; ``permutations`` is even."""
    features = [str(f) for f in x.columns]
    xm, bm, cats = _codes(x, background[features])
    n, f = xm.shape
    m = len(bm)

    def model(z: np.ndarray) -> np.ndarray:
        return predict(_decode(z, features, cats))

    base = model(bm).mean(axis=0)
    n_out = len(base)
    phi = np.zeros((n, f, n_out))
    perm = np.arange(f)
    for p in range(permutations):
        perm = rng.permutation(f) if p % 2 == 0 else perm[::-1]
        z = np.broadcast_to(bm, (n, f, m, f)).copy()  # step j (1..f): features perm[:j] from the row
        for j in range(f):
            z[:, j:, :, perm[j]] = xm[:, None, None, perm[j]]
        out = model(z.reshape(-1, f)).reshape(n, f, m, n_out).mean(axis=2)
        prev = np.concatenate([np.broadcast_to(base, (n, 1, n_out)), out[:, :-1]], axis=1)
        phi[:, perm, :] += out - prev
    return phi / permutations, base

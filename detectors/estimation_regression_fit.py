"""Direct loss estimation (DLE) for regression models: the error model fitted once on the labelled reference.

NannyML's DLE fits a model of the absolute error on the reference's features and prediction. Here it is a small
regression tree (scikit-learn's ``DecisionTreeRegressor``, imported when fitting: at most :data:`LEAVES` leaves of
at least :data:`MIN_LEAF_SHARE` of the reference each) on the numeric features and the prediction, exported as
plain JSON into the reference profile (``ReferenceProfile.estimation``, ``kind`` ``regression``) and walked with
numpy by :class:`ErrorModel`. The monitor is :mod:`detectors.estimation_regression`.

>>> import pandas as pd
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(6000, 2))
>>> y = x[:, 0] + rng.normal(size=6000) * np.where(x[:, 1] > 1, 2.0, 0.3)  # noisier where x2 > 1
>>> fit = fit_error_model(pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "prediction": x[:, 0], "label": y}),
...                       features=["x1", "x2"], prediction="prediction", label="label")
>>> model = ErrorModel(fit)
>>> grid = np.array([[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # x1, x2, prediction
>>> [round(float(v), 1) for v in model.leaf_mae[model.leaves(grid)]]
[0.2, 1.3]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

LEAVES = 32  # leaves of the error tree
MIN_LEAF_SHARE = 0.02  # each leaf holds at least this share of the reference rows
MIN_ROWS = 500  # labelled reference rows needed to fit
FIT_ROWS = 10_000  # rows the tree is grown on (a seeded sample: 0.1 s here, 0.5 s on 20,000 rows x 21 columns)


def fit_error_model(df: pd.DataFrame, *, features: list[str], prediction: str, label: str) -> dict[str, Any]:
    """The error model of ``|label - prediction|`` on the numeric ``features`` and the prediction ({} when the
    reference is too small or has no numeric input); JSON-ready."""
    from sklearn.tree import DecisionTreeRegressor

    cols = [f for f in features if pd.api.types.is_numeric_dtype(df[f]) and not pd.api.types.is_bool_dtype(df[f])]
    cols.append(prediction)
    x = df[cols].to_numpy(np.float64)
    err = np.abs(pd.to_numeric(df[label], errors="coerce").to_numpy(np.float64) - x[:, -1])
    ok = np.isfinite(err) & np.isfinite(x[:, -1])
    x, err = x[ok], err[ok]
    if len(err) < MIN_ROWS:
        return {}
    fill = np.nanmedian(x, axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = np.where(np.isnan(x), fill, x)
    big = float(np.finfo(np.float32).max)  # the tree splits in float32: infinities and beyond are its extremes
    x = np.clip(x, -big, big)
    fit_rows = np.random.default_rng(0).permutation(len(err))[:FIT_ROWS]  # the leaves' statistics use every row
    tree = DecisionTreeRegressor(max_leaf_nodes=LEAVES, min_samples_leaf=max(20, int(MIN_LEAF_SHARE * len(fit_rows))),
                                 random_state=0).fit(x[fit_rows], err[fit_rows]).tree_
    is_leaf = tree.children_left < 0
    leaf_of_node = np.cumsum(is_leaf) - 1  # nodes -> leaf numbers
    leaf = leaf_of_node[tree.apply(x.astype(np.float32))]
    n_leaves = int(is_leaf.sum())
    count = np.bincount(leaf, minlength=n_leaves).astype(np.float64)
    mae = np.bincount(leaf, weights=err, minlength=n_leaves) / count
    sq = np.bincount(leaf, weights=err ** 2, minlength=n_leaves) / count
    return {"kind": "regression", "columns": cols, "fill": fill.tolist(),
            "feature": np.where(is_leaf, -1, tree.feature).tolist(), "threshold": tree.threshold.tolist(),
            "left": np.where(is_leaf, -1, tree.children_left).tolist(),
            "right": np.where(is_leaf, -1, tree.children_right).tolist(),
            "leaf_of_node": np.where(is_leaf, leaf_of_node, -1).tolist(),
            "counts": count.astype(int).tolist(), "leaf_mae": mae.tolist(), "leaf_sq": sq.tolist(),
            "rows": int(len(err)), "reference_mae": float(err.mean())}


class ErrorModel:
    """The fitted error model as arrays: leaf of each row, and the leaves' mean absolute errors."""

    def __init__(self, fit: dict[str, Any]):
        self.columns: list[str] = list(fit["columns"])
        self.fill = np.asarray(fit["fill"], np.float64)
        self.feature = np.asarray(fit["feature"], np.int64)
        self.threshold = np.asarray(fit["threshold"], np.float64)
        self.left = np.asarray(fit["left"], np.int64)
        self.right = np.asarray(fit["right"], np.int64)
        self.leaf_of_node = np.asarray(fit["leaf_of_node"], np.int64)
        self.counts = np.asarray(fit["counts"], np.float64)
        self.leaf_mae = np.asarray(fit["leaf_mae"], np.float64)
        self.leaf_var = np.maximum(np.asarray(fit["leaf_sq"], np.float64) - self.leaf_mae ** 2, 0.0)
        self.rows = int(fit["rows"])
        self.reference = float(self.counts @ self.leaf_mae / self.counts.sum())

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """The leaf of each row of ``x`` (rows x :attr:`columns`; NaN takes the reference median)."""
        x = np.where(np.isnan(x), self.fill, x).astype(np.float32)  # the tree's thresholds are float32 splits
        node = np.zeros(len(x), np.int64)
        rows = np.arange(len(x))
        for _ in range(len(self.feature)):
            inner = self.feature[node] >= 0
            if not inner.any():
                break
            f = np.maximum(self.feature[node], 0)
            go_left = x[rows, f] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.leaf_of_node[node]

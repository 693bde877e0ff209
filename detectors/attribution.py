"""SHAP attributions of a model on a frame, and their JSON summaries (what is stored with the reference).

:class:`ModelExplainer` picks the explainer once per model:

- **tree** models (scikit-learn trees and ensembles, anything ``shap.TreeExplainer`` accepts), also as the last
  step of a scikit-learn ``Pipeline``: the preprocessing is applied and the SHAP values of its output columns
  are summed back onto the input features they came from (one-hot columns onto their category column), which
  keeps the values exact and additive;
- anything else: **permutation SHAP** (:mod:`detectors.permutation_shap`) with a small seeded background
  sample of the reference.

Values always have a class axis: ``(rows, features, outputs)``, where outputs are the classes (probability or
log-odds, as the model's explainer space is) or a single regression output, as shap 0.51 returns them for
classifiers. Every result adds up: ``base_values + values.sum(features) == model output``.

How far a window's attributions moved from the reference's is measured in :mod:`detectors.attribution_stats`;
the permutation estimator is :mod:`detectors.permutation_shap`.

>>> from sklearn.tree import DecisionTreeRegressor
>>> X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
>>> exp = ModelExplainer(DecisionTreeRegressor(random_state=0).fit(X, 2 * X["a"]), ["a", "b"])
>>> att = exp.explain(X)
>>> exp.kind, att.values.shape, bool(np.allclose(att.explained_output()[:, 0], 2 * X["a"]))
('tree', (4, 2, 1), True)
>>> top_features(attributions_record(att), 1)[0]["feature"]
'a'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from detectors.permutation_shap import chunk_rows, permutation_values

ATTRIBUTIONS_SCHEMA = "glassbox.attributions/v1"


class BudgetExceeded(RuntimeError):
    """The caller's ``should_stop`` said the time budget is spent before every row was explained."""


# --------------------------------------------------------------------------------------------- results
@dataclass
class Attribution:
    """SHAP values of some rows: ``values`` is ``(rows, features, outputs)``, ``base_values`` ``(outputs,)``."""

    values: np.ndarray
    base_values: np.ndarray
    features: list[str]
    outputs: list[str]
    output_space: str  # probability | log_odds | prediction
    explainer: str  # tree | permutation
    data: pd.DataFrame  # the explained rows (features)

    def abs_rows(self) -> np.ndarray:
        """|SHAP| per row and feature, averaged over outputs: ``(rows, features)``."""
        return np.abs(self.values).mean(axis=2)

    def mean_abs(self) -> np.ndarray:
        """Mean |SHAP| per feature (averaged over outputs)."""
        return self.abs_rows().mean(axis=0) if len(self.values) else np.zeros(len(self.features))

    def mean_abs_per_output(self) -> np.ndarray:
        """Mean |SHAP| per output and feature: ``(outputs, features)``."""
        return np.abs(self.values).mean(axis=0).T

    def explained_output(self) -> np.ndarray:
        """``base + sum of contributions`` per row and output: the model output the values explain."""
        return self.base_values[None, :] + self.values.sum(axis=1)

    def output_index(self, output: int | str | None = None) -> int:
        """Index of an output by name or position; default the last (the positive class of a binary model)."""
        if output is None:
            return len(self.outputs) - 1
        if isinstance(output, str):
            if output not in self.outputs:
                raise ValueError(f"unknown output {output!r}; the model's outputs are {self.outputs}")
            return self.outputs.index(output)
        return int(output)

    def table(self, output: int | str | None = None) -> pd.DataFrame:
        """SHAP values of one output as a table: one row per explained row, the features as columns."""
        o = self.output_index(output)
        return pd.DataFrame(self.values[:, :, o], columns=list(self.features))


# --------------------------------------------------------------------------------------------- models
def unwrap_model(model: Any) -> Any:
    """The estimator inside an MLflow pyfunc model (sklearn flavour), else ``model`` itself."""
    if hasattr(model, "get_raw_model") and not hasattr(model, "fit"):
        try:
            return model.get_raw_model()
        except NotImplementedError:
            pass
    if hasattr(model, "unwrap_python_model") and not hasattr(model, "fit"):
        return model.unwrap_python_model()
    return model


def _is_pipeline(model: Any) -> bool:
    return hasattr(model, "steps") and hasattr(model, "__getitem__") and len(model.steps) > 1


def _group_matrix(names_out: Sequence[str], features: Sequence[str]) -> np.ndarray:
    """``(outputs, features)`` 0/1 matrix: which input feature each preprocessed column came from."""
    g = np.zeros((len(names_out), len(features)))
    for j, name in enumerate(map(str, names_out)):
        stripped = name.split("__", 1)[1] if "__" in name else name
        best = -1
        for i, f in enumerate(features):
            if (stripped == f or stripped.startswith(f + "_")) and (best < 0 or len(f) > len(features[best])):
                best = i
        if best < 0:
            raise ValueError(f"cannot map preprocessed column {name!r} to an input feature")
        g[j, best] = 1.0
    return g


def _is_classifier(model: Any) -> bool:
    return hasattr(model, "classes_") and hasattr(model, "predict_proba")


class ModelExplainer:
    """SHAP for one model over ``features``; see the module docstring for the choice of explainer.

    ``background`` (a frame with the features) is needed only by the model-agnostic explainer; it is
    subsampled to ``background_rows`` with ``seed``. ``explain`` is thread-safe (no shared mutable state).
    """

    def __init__(self, model: Any, features: Sequence[str], background: pd.DataFrame | None = None, *,
                 seed: int = 42, background_rows: int = 30, permutations: int = 4, algorithm: str = "auto",
                 chunk_rows: int = 50):
        self.model = unwrap_model(model)
        self.features = [str(f) for f in features]
        self.seed = int(seed)
        self.permutations = max(2, int(permutations) + int(permutations) % 2)
        self.chunk_rows = max(1, int(chunk_rows))
        self.classifier = _is_classifier(self.model)
        self.classes = [str(c) for c in getattr(self.model, "classes_", [])]
        self._tree: Any = None
        self._prep: Any = None
        self._groups: np.ndarray | None = None
        self._background: pd.DataFrame | None = None
        self.kind = ""
        if algorithm not in ("auto", "tree", "permutation"):
            raise ValueError(f"unknown algorithm {algorithm!r}: auto, tree or permutation")
        if algorithm in ("auto", "tree"):
            err = self._setup_tree()
            if err is not None and algorithm == "tree":
                raise ValueError(f"not a tree model shap.TreeExplainer can explain: {err}")
        if self._tree is None:
            if background is None or len(background) == 0:
                raise ValueError(f"{type(self.model).__name__} is not a tree model: model-agnostic SHAP needs a "
                                 f"background sample (the reference data)")
            bg = background[self.features]
            if len(bg) > background_rows:
                rng = np.random.default_rng([self.seed, 0xB6])
                bg = bg.iloc[np.sort(rng.choice(len(bg), background_rows, replace=False))]
            self._background = bg.reset_index(drop=True)
            self.kind = "permutation"
            self._probe_outputs()

    # setup --------------------------------------------------------------------------------------------------
    def _setup_tree(self) -> str | None:
        import shap

        est, prep = self.model, None
        if _is_pipeline(est):
            prep, est = est[:-1], est[-1]
        try:
            tree = shap.TreeExplainer(est)
            groups = _group_matrix(prep.get_feature_names_out(), self.features) if prep is not None else None
        except Exception as err:  # noqa: BLE001 - shap raises several types for unsupported models
            return f"{type(err).__name__}: {err}"
        self._tree, self._prep, self._groups, self.kind = tree, prep, groups, "tree"
        self._estimator = est
        self.expected = np.atleast_1d(np.asarray(tree.expected_value, np.float64))
        n_out = len(self.expected)
        if self.classifier and n_out == len(self.classes) and n_out > 1:
            self.outputs = list(self.classes)
        elif self.classifier:
            self.outputs = self.classes[-1:] or ["output"]
        else:
            self.outputs = ["prediction"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
        if not self.classifier:
            self.output_space = "prediction"
        elif hasattr(est, "decision_function"):
            self.output_space = "log_odds"
        else:
            self.output_space = "probability"
        return None

    def _probe_outputs(self) -> None:
        out = self._predict_frame(self._background.iloc[:1])
        if self.classifier:
            self.outputs, self.output_space = list(self.classes), "probability"
        else:
            self.outputs = ["prediction"] if out.shape[1] == 1 else [f"output_{i}" for i in range(out.shape[1])]
            self.output_space = "prediction"

    # prediction ----------------------------------------------------------------------------------------------
    def _predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        fn = self.model.predict_proba if self.classifier else self.model.predict
        out = np.asarray(fn(frame), np.float64)
        return out.reshape(len(frame), -1)

    def predict_output(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's own output, in the space the SHAP values explain: ``(rows, outputs)``."""
        x = frame[self.features]
        if self.kind == "tree" and self.output_space == "log_odds":
            out = np.asarray(self.model.decision_function(x), np.float64).reshape(len(x), -1)
            return out if out.shape[1] == len(self.outputs) else out[:, -len(self.outputs):]
        out = self._predict_frame(x)
        return out if out.shape[1] == len(self.outputs) else out[:, -len(self.outputs):]

    def global_importance(self) -> dict[str, float] | None:
        """The model's own global feature importance (``feature_importances_`` or |coef|), per input feature."""
        est = self.model[-1] if _is_pipeline(self.model) else self.model
        imp = getattr(est, "feature_importances_", None)
        if imp is None and getattr(est, "coef_", None) is not None:
            coef = np.abs(np.atleast_2d(np.asarray(est.coef_, np.float64)))
            imp = coef.mean(axis=0)
        if imp is None:
            return None
        imp = np.asarray(imp, np.float64).ravel()
        if self._groups is not None and len(imp) == self._groups.shape[0]:
            imp = imp @ self._groups
        elif _is_pipeline(self.model) and len(imp) != len(self.features):
            try:
                imp = imp @ _group_matrix(self.model[:-1].get_feature_names_out(), self.features)
            except Exception:  # noqa: BLE001 - cannot be mapped to the inputs: not reported
                return None
        if len(imp) != len(self.features):
            return None
        return {f: float(v) for f, v in zip(self.features, imp, strict=True)}

    # explanation --------------------------------------------------------------------------------------------
    def explain(self, frame: pd.DataFrame, *, seed: int | None = None,
                should_stop: Callable[[], bool] | None = None) -> Attribution:
        """SHAP values of every row of ``frame`` (its ``features`` columns). ``seed`` drives the permutations
        of the model-agnostic explainer (default the explainer's seed). ``should_stop`` is asked between
        chunks of rows; when it returns True, :class:`BudgetExceeded` is raised."""
        x = frame[self.features].reset_index(drop=True)
        parts: list[np.ndarray] = []
        base = None
        rng = np.random.default_rng([self.seed if seed is None else int(seed), 0x5A]) if self.kind != "tree" else None
        chunk = (self.chunk_rows if self.kind == "tree"
                 else chunk_rows(len(self.features), len(self._background), self.chunk_rows))
        for lo in range(0, len(x), chunk):
            if lo and should_stop is not None and should_stop():
                raise BudgetExceeded(f"explained {lo} of {len(x)} rows within the budget")
            part = x.iloc[lo:lo + chunk]
            if self.kind == "tree":
                vals = self._tree_values(part)
                base = self.expected
            else:
                vals, base = permutation_values(self._predict_frame, part, self._background, self.permutations, rng)
            parts.append(vals)
        if base is None:
            base = self.expected if self.kind == "tree" else self._predict_frame(self._background).mean(axis=0)
        values = np.concatenate(parts) if parts else np.zeros((0, len(self.features), len(self.outputs)))
        return Attribution(values=values, base_values=np.asarray(base, np.float64), features=list(self.features),
                           outputs=list(self.outputs), output_space=self.output_space, explainer=self.kind, data=x)

    def _tree_values(self, x: pd.DataFrame) -> np.ndarray:
        z: Any = x
        if self._prep is not None:
            z = self._prep.transform(x)
            if hasattr(z, "toarray"):
                z = z.toarray()
            z = np.asarray(z, np.float64)
        raw = self._tree.shap_values(z, check_additivity=False)
        vals = np.stack(raw, axis=-1) if isinstance(raw, list) else np.asarray(raw, np.float64)
        if vals.ndim == 2:
            vals = vals[:, :, None]
        if self._groups is not None:
            vals = np.einsum("rjo,jf->rfo", vals, self._groups)
        return vals


# --------------------------------------------------------------------------------------------- records
def sample_rows(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``frame``, chosen with ``seed``, in their original order."""
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    rng = np.random.default_rng([int(seed), 0x3F])
    return frame.iloc[np.sort(rng.choice(len(frame), max_rows, replace=False))].reset_index(drop=True)


def attributions_record(att: Attribution, explainer: ModelExplainer | None = None, *,
                        seed: int | None = None) -> dict[str, Any]:
    """The JSON-ready summary of an :class:`Attribution`: mean |SHAP| per feature and per output."""
    per_out = att.mean_abs_per_output()
    rec: dict[str, Any] = {
        "schema": ATTRIBUTIONS_SCHEMA,
        "explainer": att.explainer,
        "output_space": att.output_space,
        "outputs": list(att.outputs),
        "features": list(att.features),
        "rows": len(att.values),
        "seed": seed,
        "base_values": [float(v) for v in att.base_values],
        "mean_abs_shap": {f: float(v) for f, v in zip(att.features, att.mean_abs(), strict=True)},
        "mean_abs_shap_per_output": {o: {f: float(v) for f, v in zip(att.features, per_out[i], strict=True)}
                                     for i, o in enumerate(att.outputs)},
    }
    if explainer is not None:
        imp = explainer.global_importance()
        rec["model_importance"] = imp
        est = explainer.model[-1] if _is_pipeline(explainer.model) else explainer.model
        rec["model_importance_kind"] = (None if imp is None else "feature_importances_"
                                        if hasattr(est, "feature_importances_") else "abs_coef")
        rec["model_class"] = f"{type(est).__module__}.{type(est).__qualname__}"
    return rec


def reference_attributions(model: Any, reference_df: pd.DataFrame, features: Sequence[str], seed: int = 42,
                           max_rows: int = 500, *, explainer: ModelExplainer | None = None,
                           rows: bool = True) -> dict[str, Any]:
    """SHAP summary of the reference (at most ``max_rows`` rows, seeded): what is stored with the profile.

    Holds mean |SHAP| per feature and per output, the base values, the model's own global importance when it
    has one, and the explainer used. With ``rows``, also ``abs_shap_rows``: |SHAP| per explained row and
    feature (averaged over outputs, ``features`` order), from which the attribution monitor calibrates its
    thresholds without explaining the reference again. Plain JSON.
    """
    exp = explainer or ModelExplainer(model, features, reference_df, seed=seed)
    att = exp.explain(sample_rows(reference_df, max_rows, seed), seed=seed)
    rec = attributions_record(att, exp, seed=seed)
    rec["max_rows"] = int(max_rows)
    if rows:
        rec["abs_shap_rows"] = att.abs_rows().tolist()
    return rec


def top_features(record: dict[str, Any], k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` features of largest mean |SHAP| in a record, with their share and the model's own importance.

    >>> top_features({"mean_abs_shap": {"a": 0.25, "b": 0.75}, "model_importance": {"a": 0.4, "b": 0.6}}, 1)
    [{'feature': 'b', 'mean_abs_shap': 0.75, 'share': 0.75, 'model_importance': 0.6}]
    """
    m = {str(f): float(v) for f, v in (record.get("mean_abs_shap") or {}).items()}
    imp = record.get("model_importance") or {}
    total = sum(m.values())
    order = sorted(m, key=lambda f: -m[f])[:k]
    return [{"feature": f, "mean_abs_shap": m[f], "share": m[f] / total if total > 0 else 0.0,
             "model_importance": None if f not in imp else float(imp[f])} for f in order]


def explain_one(explainer: ModelExplainer, row: pd.DataFrame, output: int | str | None = None) -> dict[str, Any]:
    """Explain one prediction: each feature's contribution (largest |value| first), the base value and the
    model's output; ``output`` picks the class (default: the predicted class of a classifier)."""
    if len(row) != 1:
        raise ValueError(f"explain one row at a time (got {len(row)})")
    att = explainer.explain(row)
    model_out = explainer.predict_output(row)[0]
    if output is None and explainer.classifier and len(att.outputs) > 1:
        o = int(np.argmax(model_out))
    else:
        o = att.output_index(output)
    contrib = att.values[0, :, o]
    order = np.argsort(-np.abs(contrib), kind="stable")
    base = float(att.base_values[o])
    explained = base + float(contrib.sum())
    out = float(model_out[o])
    values = att.data.iloc[0]
    return {
        "output": att.outputs[o],
        "output_space": att.output_space,
        "explainer": att.explainer,
        "base_value": base,
        "model_output": out,
        "explained_output": explained,
        "additivity_error": abs(explained - out) if math.isfinite(out) else None,
        "contributions": [{"feature": att.features[i], "value": _plain(values.iloc[i]),
                           "contribution": float(contrib[i])} for i in order],
    }


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v

"""SHAP attributions: exact additivity per explainer kind, the reference record, the drift statistics."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from detectors.attribution import ModelExplainer, explain_one, reference_attributions
from detectors.attribution_stats import attribution_distance, ndcg, normalise, top_movers

NUM = ["a", "b", "c", "d"]
FEATURES = [*NUM, "plan"]

warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(1500, 4)), columns=NUM)
    df["plan"] = rng.choice(["basic", "plus", "pro"], len(df))
    df["y"] = ((df.a + 0.5 * df.b + (df.plan == "pro") + rng.normal(0, 0.3, len(df))) > 0.3).astype(int)
    df["target"] = 2 * df.a - df.b + 0.1 * rng.normal(size=len(df))
    return df


def _pipeline(final: object) -> Pipeline:
    pre = ColumnTransformer([("num", StandardScaler(), NUM),
                             ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["plan"])])
    return Pipeline([("pre", pre), ("model", final)])


def _models(df: pd.DataFrame) -> dict[str, tuple[object, list[str], str, str]]:
    """name -> (fitted model, features, expected explainer kind, expected output space)."""
    return {
        "rf": (RandomForestClassifier(40, max_depth=6, random_state=0).fit(df[NUM], df.y), NUM, "tree",
               "probability"),
        "gb": (GradientBoostingClassifier(n_estimators=30, random_state=0).fit(df[NUM], df.y), NUM, "tree",
               "log_odds"),
        "rf_regressor": (RandomForestRegressor(20, max_depth=8, random_state=0).fit(df[NUM], df.target), NUM,
                         "tree", "prediction"),
        "pipeline_rf": (_pipeline(RandomForestClassifier(40, max_depth=6, random_state=0))
                        .fit(df[FEATURES], df.y), FEATURES, "tree", "probability"),
        "pipeline_logistic": (_pipeline(LogisticRegression()).fit(df[FEATURES], df.y), FEATURES, "permutation",
                              "probability"),
    }


@pytest.fixture(scope="module")
def models(frame: pd.DataFrame) -> dict[str, tuple[object, list[str], str, str]]:
    return _models(frame)


def _direct_output(model: object, x: pd.DataFrame, space: str) -> np.ndarray:
    if space == "probability":
        return model.predict_proba(x)
    if space == "log_odds":
        return np.asarray(model.decision_function(x)).reshape(len(x), -1)
    return np.asarray(model.predict(x)).reshape(len(x), -1)


def test_every_explainer_adds_up_to_the_model_output(frame: pd.DataFrame, models: dict) -> None:
    rows = frame.iloc[:120]
    for name, (model, feats, kind, space) in models.items():
        exp = ModelExplainer(model, feats, frame, seed=1)
        att = exp.explain(rows)
        assert exp.kind == kind, name
        assert att.output_space == space, name
        assert att.values.shape[:2] == (len(rows), len(feats)), name
        direct = _direct_output(model, rows[feats], space)
        assert np.abs(att.explained_output() - direct).max() < 1e-6, name
        if kind == "tree" and exp.classifier and space == "probability":
            assert att.outputs == ["0", "1"] and att.values.shape[2] == 2  # shap 0.51's class axis


def test_pipeline_attributions_land_on_the_input_features(frame: pd.DataFrame, models: dict) -> None:
    model = models["pipeline_rf"][0]
    att = ModelExplainer(model, FEATURES, frame).explain(frame.iloc[:300])
    imp = dict(zip(FEATURES, att.mean_abs(), strict=True))
    assert imp["a"] > imp["b"] > max(imp["c"], imp["d"])
    assert imp["plan"] > max(imp["c"], imp["d"])  # the one-hot columns were summed onto "plan"


def test_permutation_explainer_is_seeded(frame: pd.DataFrame, models: dict) -> None:
    model = models["pipeline_logistic"][0]
    exp = ModelExplainer(model, FEATURES, frame, seed=3)
    a = exp.explain(frame.iloc[:40], seed=11).values
    b = ModelExplainer(model, FEATURES, frame, seed=3).explain(frame.iloc[:40], seed=11).values
    assert np.array_equal(a, b)


def test_reference_record_is_json_and_deterministic(frame: pd.DataFrame, models: dict) -> None:
    model = models["pipeline_rf"][0]
    rec = reference_attributions(model, frame, FEATURES, seed=5, max_rows=300)
    again = reference_attributions(model, frame, FEATURES, seed=5, max_rows=300)
    assert json.loads(json.dumps(rec)) == rec == again
    assert rec["rows"] == 300 and rec["explainer"] == "tree"
    assert set(rec["mean_abs_shap"]) == set(FEATURES)
    assert set(rec["mean_abs_shap_per_output"]) == {"0", "1"}
    assert rec["model_importance_kind"] == "feature_importances_"
    assert set(rec["model_importance"]) == set(FEATURES)
    assert abs(sum(rec["model_importance"].values()) - 1.0) < 1e-9
    top = max(rec["mean_abs_shap"], key=rec["mean_abs_shap"].get)
    assert top == max(rec["model_importance"], key=rec["model_importance"].get) == "a"


def test_explain_one_orders_contributions_and_adds_up(frame: pd.DataFrame, models: dict) -> None:
    model = models["rf"][0]
    res = explain_one(ModelExplainer(model, NUM), frame.iloc[[7]][NUM])
    contrib = [c["contribution"] for c in res["contributions"]]
    assert [abs(c) for c in contrib] == sorted((abs(c) for c in contrib), reverse=True)
    assert abs(res["base_value"] + sum(contrib) - res["model_output"]) < 1e-6
    proba = model.predict_proba(frame.iloc[[7]][NUM])[0]
    assert res["output"] == str(model.classes_[np.argmax(proba)])
    assert res["model_output"] == pytest.approx(proba.max(), abs=1e-12)


def test_statistics() -> None:
    ref = np.array([0.5, 0.3, 0.15, 0.05])
    assert attribution_distance(ref, 10 * ref) == pytest.approx(0.0)  # scale-free
    assert attribution_distance(ref, np.array([0, 0, 0, 1.0])) == pytest.approx(0.95)
    assert ndcg(ref, ref * 3) == pytest.approx(1.0)
    swapped = ndcg(ref, np.array([0.3, 0.5, 0.15, 0.05]))
    reversed_ = ndcg(ref, ref[::-1].copy())
    assert 1.0 > swapped > reversed_ > 0.0
    batch = np.stack([ref, ref[::-1], np.array([0.3, 0.5, 0.15, 0.05])])
    assert np.allclose(ndcg(ref, batch), [1.0, reversed_, swapped])
    assert np.allclose(attribution_distance(np.stack([ref] * 3), batch),
                       [float(attribution_distance(ref, w)) for w in batch])
    assert normalise(np.zeros(4)).tolist() == [0.25] * 4
    movers = top_movers(["a", "b", "c", "d"], ref, np.array([0.1, 0.3, 0.15, 0.45]), k=2)
    assert [m["feature"] for m in movers] == ["a", "d"]
    assert movers[0]["reference_mean_abs_shap"] == 0.5 and movers[0]["window_mean_abs_shap"] == 0.1

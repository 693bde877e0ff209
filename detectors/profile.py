"""The reference profile: everything windows are compared with, computed once from the reference table.

Numeric columns keep a fixed bin layout (8 tail bins of one standard deviation below the reference minimum,
quantile bins between minimum and maximum, 8 tail bins above the maximum) with the reference's count per
bin; categorical columns keep their category counts. Windows are binned into the same layout, so every
drift statistic, the calibrated null distributions and the data-quality rates come from integer counts.
The profile is plain JSON and round-trips exactly.

>>> import pandas as pd
>>> df = pd.DataFrame({"x": [0.1, 0.5, 0.9, 0.3], "c": ["a", "b", "a", None], "prediction": [1, 0, 1, 1]})
>>> p = build_profile(df)
>>> p.task, p.features, p.column_types["c"]
('binary', ['x', 'c'], 'categorical')
>>> ReferenceProfile.from_json(p.to_json()) == p
True
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import orjson
import pandas as pd

from detectors.estimation_fit import fit_estimation
from detectors.estimation_regression_fit import fit_error_model
from detectors.performance_metrics import classification_metrics, regression_metrics
from detectors.values import canon_series, is_categorical_dtype, numeric_values

PROFILE_SCHEMA = "glassbox.profile/v1"
Task = Literal["binary", "multiclass", "regression"]
TAIL_BINS = 8  # bins of one reference sd beyond each end of the reference range
COARSE_BINS = 10  # quantile groups inside the range for PSI / Jensen-Shannon on numeric columns
MAX_FLOAT = float(np.finfo(np.float64).max)


@dataclass
class NumericColumn:
    """A numeric column: moments, range and the reference's counts over a fixed bin layout.

    Bin ``i`` holds ``cuts[i-1] <= x < cuts[i]`` (bin 0: below ``cuts[0]``); the last cut is the largest
    float, so infinities and NaN fall past the layout and count as missing. Bins ``lo .. hi-1`` are the
    reference range ``[min, max]``.
    """

    name: str
    role: str  # feature | prediction | score | label
    count: int  # present values
    missing: int
    mean: float
    std: float
    min: float
    max: float
    cuts: list[float]
    counts: list[int]  # one per bin, len(cuts) bins
    lo: int
    hi: int
    groups: list[int]  # coarse group (0..COARSE_BINS+1) of each bin, for PSI / Jensen-Shannon
    kind: str = "numeric"

    @property
    def n_bins(self) -> int:
        return len(self.cuts)


@dataclass
class CategoricalColumn:
    """A categorical column: category counts (canonical strings), the rest lumped as ``other``."""

    name: str
    role: str
    count: int
    missing: int
    categories: list[str]
    counts: list[int]
    other: int  # reference values of categories beyond max_categories
    truncated: bool  # True when categories were cut: unseen values then cannot be told from rare ones
    singletons: int  # categories seen once (Good-Turing estimate of the unseen mass)
    kind: str = "categorical"

    @property
    def n_bins(self) -> int:
        return len(self.categories) + 2  # categories, other, unseen


Column = NumericColumn | CategoricalColumn


@dataclass
class ReferenceProfile:
    """What the monitor compares windows with. ``columns`` holds features, prediction, scores and label."""

    rows: int
    task: Task
    features: list[str]
    prediction: str | None
    label: str | None
    scores: list[str]
    classes: list[str]  # canonical class names (classification), sorted
    positive_class: str | None  # binary: the class scores refer to (the last sorted class)
    columns: dict[str, Column]
    performance: dict[str, float | None] = field(default_factory=dict)
    id_col: str | None = None
    timestamp_col: str | None = None
    name: str | None = None
    schema: str = PROFILE_SCHEMA
    estimation: dict[str, Any] = field(default_factory=dict)  # score calibration (detectors.estimation_fit)

    @property
    def column_types(self) -> dict[str, str]:
        """``numeric`` or ``categorical`` for every profiled column (features, prediction, scores, label)."""
        return {name: col.kind for name, col in self.columns.items()}

    @property
    def monitored(self) -> list[str]:
        """Columns tested per window: features, then prediction, then scores."""
        extra = ([self.prediction] if self.prediction else []) + list(self.scores)
        return list(self.features) + [c for c in extra if c not in self.features]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["digest"] = self.digest
        return d

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS).decode()

    @property
    def digest(self) -> str:
        """16 hex of the sha256 of the profile's canonical JSON (without the digest itself): its keys sorted at
        every level (orjson keeps a dataclass's fields in their order, so the JSON is read back and written sorted:
        the bytes of ``asdict`` sorted, without its deep copy, 100x faster)."""
        raw = orjson.dumps(orjson.loads(orjson.dumps(self)), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReferenceProfile:
        d = dict(d)
        d.pop("digest", None)
        cols: dict[str, Column] = {}
        for name, c in d.pop("columns").items():
            c = dict(c)
            kind = c.get("kind")
            cols[name] = NumericColumn(**c) if kind == "numeric" else CategoricalColumn(**c)
        return cls(columns=cols, **d)

    @classmethod
    def from_json(cls, s: str | bytes) -> ReferenceProfile:
        return cls.from_dict(orjson.loads(s))


def infer_task(prediction: pd.Series | None, label: pd.Series | None) -> Task:
    """binary / multiclass / regression from the label (else the prediction) column.

    Strings and bools are classes; integral numbers with at most 20 distinct values are classes too.
    """
    s = label if label is not None and label.notna().any() else prediction
    if s is None:
        return "regression"
    vals = s.dropna()
    nu = vals.nunique()
    if is_categorical_dtype(s):
        return "binary" if nu <= 2 else "multiclass"
    x = numeric_values(vals)
    x = x[~np.isnan(x)]
    integral = bool(np.all(x == np.round(x)))
    if integral and nu <= 2:
        return "binary"
    if integral and nu <= 20:
        return "multiclass"
    return "regression"


def _numeric_column(name: str, role: str, s: pd.Series, bins: int) -> NumericColumn:
    x = numeric_values(s)
    present = x[~np.isnan(x)]
    missing = int(len(x) - len(present))
    if len(present) == 0:
        raise ValueError(f"column {name!r} has no numeric values in the reference")
    lo_v, hi_v = float(present.min()), float(present.max())
    mean, std = float(present.mean()), float(present.std())
    step = std if std > 0 else max(abs(lo_v), 1.0) * 0.1
    q = np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    above = np.nextafter(hi_v, np.inf)
    cuts = np.concatenate([
        lo_v - step * np.arange(TAIL_BINS, 0, -1),
        [lo_v],
        q[(q > lo_v) & (q < above)],
        [above],
        above + step * np.arange(1, TAIL_BINS + 1),
        [MAX_FLOAT],
    ])
    cuts = np.unique(cuts)
    counts = np.bincount(np.searchsorted(cuts, present, side="right"), minlength=len(cuts) + 1)[: len(cuts)]
    lo = int(np.searchsorted(cuts, lo_v, side="right"))
    hi = int(np.searchsorted(cuts, above, side="right"))
    # coarse groups: 0 below range, 1..COARSE_BINS quantile groups of the reference inside, last above
    cdf_left = np.concatenate([[0], np.cumsum(counts)[:-1]]) / len(present)
    inside = 1 + np.minimum(COARSE_BINS - 1, np.floor(cdf_left * COARSE_BINS + 1e-9)).astype(int)
    groups = np.where(np.arange(len(cuts)) < lo, 0, np.where(np.arange(len(cuts)) >= hi, COARSE_BINS + 1, inside))
    return NumericColumn(
        name=name, role=role, count=int(len(present)), missing=missing, mean=mean, std=std, min=lo_v, max=hi_v,
        cuts=[float(c) for c in cuts], counts=[int(c) for c in counts], lo=lo, hi=hi,
        groups=[int(g) for g in groups],
    )


def _categorical_column(name: str, role: str, s: pd.Series, max_categories: int) -> CategoricalColumn:
    c = canon_series(s)
    missing = int(c.isna().sum())
    vc = c.dropna().value_counts()
    # deterministic order: by count desc, then by name
    items = sorted(vc.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    truncated = len(items) > max_categories
    kept = items[: max_categories - 1] if truncated else items
    other = int(sum(int(v) for _, v in items[len(kept):]))
    return CategoricalColumn(
        name=name, role=role, count=int(vc.sum()), missing=missing,
        categories=[str(k) for k, _ in kept], counts=[int(v) for _, v in kept], other=other,
        truncated=truncated, singletons=int(sum(1 for _, v in items if int(v) == 1)),
    )


def _reference_performance(
    df: pd.DataFrame, task: Task, prediction: str, label: str, scores: list[str], classes: list[str],
    positive: str | None,
) -> dict[str, float | None]:
    both = df[[prediction, label] + scores].dropna(subset=[prediction, label])
    if len(both) == 0:
        return {}
    if task == "regression":
        err = numeric_values(both[prediction]) - numeric_values(both[label])
        err = err[~np.isnan(err)]
        ae = np.abs(err)
        perf: dict[str, float | None] = {"n": float(len(err))} | regression_metrics(err)
        perf |= {
            "abs_error_std": float(ae.std()),
            "sq_error_std": float((err * err).std()),
            "abs_error_q99": float(np.quantile(ae, 0.99)) if len(ae) else None,
        }
        return perf
    index = {c: i for i, c in enumerate(classes)}
    pred = np.array([index.get(v, -1) for v in canon_series(both[prediction])], dtype=np.int64)
    lab = np.array([index.get(v, -1) for v in canon_series(both[label])], dtype=np.int64)
    pos = index.get(positive) if positive is not None else None
    score = None
    if scores and pos is not None:
        col = positive if positive in scores else scores[-1]
        score = numeric_values(both[col])
    return {"n": float(len(lab))} | classification_metrics(pred, lab, n_classes=len(classes), positive=pos,
                                                           scores=score)


def build_profile(
    df: pd.DataFrame,
    *,
    prediction: str | None = "prediction",
    label: str | None = None,
    scores: list[str] | None = None,
    task: str | None = None,
    categorical: list[str] | None = None,
    features: list[str] | None = None,
    id_col: str | None = None,
    timestamp_col: str | None = None,
    name: str | None = None,
    bins: int = 50,
    max_categories: int = 200,
) -> ReferenceProfile:
    """Profile a reference table: one row per prediction, features in the other columns.

    ``features`` defaults to every column without a role (prediction, label, scores, id, timestamp).
    Column types are inferred (strings, bools, categoricals -> categorical; numbers -> numeric) and
    ``categorical`` forces columns to categorical. ``task`` is inferred from the label (else the prediction).
    """
    scores = list(scores or [])
    cols = set(df.columns)
    for role, col in (("prediction", prediction), ("label", label), ("id", id_col), ("timestamp", timestamp_col)):
        if col is not None and col not in cols:
            have = ", ".join(map(str, df.columns))
            raise ValueError(f"{role} column {col!r} is not in the reference (columns: {have})")
    for col in scores + list(categorical or []) + list(features or []):
        if col not in cols:
            raise ValueError(f"column {col!r} is not in the reference")
    if len(df) == 0:
        raise ValueError("the reference table is empty")
    roles = {c for c in (prediction, label, id_col, timestamp_col) if c is not None} | set(scores)
    feats = list(features) if features is not None else [str(c) for c in df.columns if c not in roles]
    forced = set(categorical or [])
    if task is None:
        task = infer_task(df[prediction] if prediction else None, df[label] if label else None)
    if task not in ("binary", "multiclass", "regression"):
        raise ValueError(f"unknown task {task!r}; allowed: binary, multiclass, regression")

    columns: dict[str, Column] = {}
    for f in feats:
        s = df[f]
        if f in forced or is_categorical_dtype(s):
            columns[f] = _categorical_column(f, "feature", s, max_categories)
        else:
            columns[f] = _numeric_column(f, "feature", s, bins)

    classes: list[str] = []
    positive: str | None = None
    if task != "regression":
        seen: set[str] = set()
        for col in (prediction, label):
            if col is not None:
                seen |= {v for v in canon_series(df[col]).dropna()}
        classes = sorted(seen)
        positive = classes[-1] if task == "binary" and classes else None
    for role, col in (("prediction", prediction), ("label", label)):
        if col is None or col in columns:
            continue
        if task == "regression":
            columns[col] = _numeric_column(col, role, df[col], bins)
        else:
            columns[col] = _categorical_column(col, role, df[col], max_categories)
    for sc in scores:
        if sc not in columns:
            columns[sc] = _numeric_column(sc, "score", df[sc], bins)

    perf: dict[str, float | None] = {}
    if prediction is not None and label is not None:
        perf = _reference_performance(df, task, prediction, label, scores, classes, positive)
    estimation = ({} if not (prediction and label) else  # estimated performance (estimation_fit, _regression)
                  fit_error_model(df, features=feats, prediction=prediction, label=label) if task == "regression"
                  else fit_estimation(df, prediction=prediction, label=label, scores=scores, classes=classes,
                                      positive=positive))
    return ReferenceProfile(
        rows=int(len(df)), task=task, features=feats, prediction=prediction, label=label, scores=scores,
        classes=classes, positive_class=positive, columns=columns, performance=perf, id_col=id_col,
        timestamp_col=timestamp_col, name=name, estimation=estimation,
    )

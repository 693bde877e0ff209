"""Evidently snapshots of one window against the reference sample (pure: no I/O, no wall clock).

A snapshot is an Evidently 0.7 report of a bounded, seeded sample of the window versus a bounded, seeded
sample of the reference: data drift (per column and share of drifted columns), a data summary, and
classification or regression quality when labels are joined. The same window, reference and seed always
give the same metrics (``WindowSnapshot.to_dict()``); the snapshot's timestamp is the window's event time.

With ``verdicts`` (the window record's column verdicts: statistic, value, threshold, drift, effect, horizon),
the report judges each column as glassbox did: each column's drift test is glassbox's own (registered with
Evidently as ``glassbox:<column>``, named after the statistic, threshold kind and the horizon that decided, e.g.
"glassbox wasserstein, calibrated, 5 windows / 5,000 events"), with glassbox's value and threshold, columns are
listed by effect (largest first, as in the alert and ``alerts tail``), and the dataset counts as drifted when
any column is, as alerts do. So the report a firing alert links to says "Detected" for the feature that fired,
whatever its sample shows under Evidently's fixed 0.1.

With ``estimate`` (the window's ``estimation`` record: performance estimated from the scores, before the labels),
the snapshot carries the estimated metrics with their alert band and the reference's estimate: in
``to_dict()["glassbox"]["estimated_performance"]`` and, as text, in the snapshot's metadata
(``estimated_<metric>``), which Evidently's UI shows with the snapshot (:func:`estimate_summary`).

Evidently is imported lazily (about 3 s), so importing this module is free.

>>> sample_frame(pd.DataFrame({"x": range(10)}), 3, seed=1)["x"].tolist()
[3, 4, 7]
>>> drifted("Wasserstein distance (normed)", 0.3, 0.1), drifted("K-S p_value", 0.3, 0.05)
(True, False)
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_SAMPLE_SIZE = 5000
MIN_LABELED_ROWS = 30
_VERDICT_LOCK = threading.Lock()  # the glassbox:<column> tests live in Evidently's global registry while a report runs


def sample_frame(df: pd.DataFrame, n: int, *, seed: int) -> pd.DataFrame:
    """At most ``n`` rows of ``df``, drawn without replacement with ``seed``, kept in their original order."""
    if len(df) <= n:
        return df.reset_index(drop=True)
    rows = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    return df.iloc[rows].reset_index(drop=True)


def drifted(method: str, score: float, threshold: float) -> bool:
    """Evidently's rule: a p-value drifts below its threshold, a distance at or above it."""
    if score is None or (isinstance(score, float) and np.isnan(score)):
        return False
    return score < threshold if "p_value" in method else score >= threshold


def event_time(ms: int | None) -> dt.datetime:
    """A window's event time (epoch ms) as the naive UTC datetime Evidently stores."""
    return dt.datetime.fromtimestamp((ms or 0) / 1000, dt.UTC).replace(tzinfo=None)


@dataclass
class WindowSnapshot:
    """The Evidently snapshot of a window plus the facts glassbox reads from it."""

    snapshot: Any  # evidently.core.report.Snapshot
    drift_share: float
    drifted_columns: list[str]
    column_drift: dict[str, dict[str, Any]]  # column -> score, method, threshold, drifted
    quality: dict[str, Any] = field(default_factory=dict)  # metric name -> value, when labels were joined
    rows: dict[str, int] = field(default_factory=dict)  # current / reference / labeled sample sizes
    metadata: dict[str, str] = field(default_factory=dict)
    estimated: dict[str, dict[str, float | None]] = field(default_factory=dict)  # metric -> value, lo, hi

    def to_html(self) -> str:
        """Standalone HTML (plotly inlined, about 4 MB), safe whatever the column names and values hold."""
        return html_safe_data(self.snapshot.get_html_str(as_iframe=False))

    def to_dict(self) -> dict[str, Any]:
        """Evidently's metrics and tests plus glassbox's summary; JSON-ready and deterministic."""
        return json.loads(json.dumps({
            "glassbox": {
                "drift_share": self.drift_share,
                "drifted_columns": self.drifted_columns,
                "column_drift": self.column_drift,
                "quality": self.quality,
                "rows": self.rows,
                "metadata": self.metadata,
                "estimated_performance": self.estimated,
            },
            "evidently": self.snapshot.dict(),
        }, default=_json_default, sort_keys=True))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


_DRAW = re.compile(r"^\s*window\.drawDashboard\((\w+),", re.MULTILINE)


def html_safe_data(page: str) -> str:
    """Evidently embeds the report's data as one-line JSON in a ``<script>`` (``var ID = {...};``); a
    ``</script>`` inside a column name or a category value would end that script and inject HTML. Inside
    those lines ``<``, ``>`` and ``&`` can only be in JSON strings, where ``\\u003c`` etc. mean the same.

    >>> html_safe_data('<script>\\n    var d1 = {"c": "</script>"};\\n</script>\\nwindow.drawDashboard(d1,')
    '<script>\\n    var d1 = {"c": "\\\\u003c/script\\\\u003e"};\\n</script>\\nwindow.drawDashboard(d1,'
    """
    found = _DRAW.findall(page)
    if not found:
        return page
    ident = found[-1]
    heads = (f"    var {ident} = ", f"    var additional_graphs_{ident} = ")
    lines = page.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(heads):
            lines[i] = line.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return "\n".join(lines)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (dt.datetime, dt.date)):
        return o.isoformat()
    return str(o)


def _split_columns(
    df: pd.DataFrame, features: Sequence[str], categorical: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    cats = set(categorical or ())
    num, cat = [], []
    for c in features:
        if c in cats or not (pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])):
            cat.append(c)
        else:
            num.append(c)
    return num, cat


def _as_labels(s: pd.Series) -> pd.Series:
    """Class labels Evidently accepts (int or str): integral floats become int64, anything else str."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        v = s.to_numpy(dtype=float)
        if np.all(np.isfinite(v)) and np.all(v == np.round(v)):
            return pd.Series(v.astype(np.int64), index=s.index, name=s.name)
    return s.astype(str)


def _merge(snapshots: list[Any], *, name: str | None, timestamp: dt.datetime, metadata: dict[str, str],
           tags: list[str]) -> Any:
    """One Evidently snapshot holding the metrics and widgets of several (public serialization model)."""
    from evidently.core.report import Snapshot
    from evidently.core.serialization import ReportModel, SnapshotModel

    models = [s.to_snapshot_model() for s in snapshots]
    merged = SnapshotModel(
        report=ReportModel(items=[]),
        name=name,
        timestamp=timestamp,
        metadata=metadata,
        tags=tags,
        metric_results={k: v for m in models for k, v in m.metric_results.items()},
        top_level_metrics=[k for m in models for k in m.top_level_metrics],
        widgets=[w for m in models for w in m.widgets],
        tests_widgets=[w for m in models for w in m.tests_widgets],
    )
    return Snapshot.load_model(merged)


def build_snapshot(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    features: Sequence[str],
    prediction: str | None = "prediction",
    label: str | None = None,
    task: str | None = None,
    categorical: Sequence[str] | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 42,
    window_end_ms: int | None = None,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    drift_share: float = 0.5,
    min_labeled: int = MIN_LABELED_ROWS,
    distances: bool = True,
    verdicts: Mapping[str, Mapping[str, Any]] | None = None,
    estimate: Mapping[str, Any] | None = None,
) -> WindowSnapshot:
    """Evidently report of ``current`` (one window) against ``reference``.

    ``task`` is the profile's ``"binary"``, ``"multiclass"`` or ``"regression"`` (``"classification"`` is
    accepted too); when None it is inferred from the reference's prediction column.
    Quality metrics run when ``label`` is a column of ``current`` with at least ``min_labeled`` joined labels
    (rows without a label are left out of quality only) and the reference has labels too.
    ``distances=True`` fixes the drift methods to normed Wasserstein (numeric) and Jensen-Shannon
    (categorical), threshold 0.1, whatever the sample size, so "drift score" means the same thing in every
    window of a dashboard; ``False`` keeps Evidently's size-dependent defaults (p-values below 1,000 rows).
    ``verdicts`` (column -> glassbox's verdict in the window record) makes the report judge as glassbox did
    (module docstring); columns without one keep the methods above. ``estimate`` (the window's ``estimation``
    record) adds its estimated performance (module docstring).
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Regression, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset, DataSummaryPreset, RegressionPreset

    missing = [c for c in features if c not in current.columns or c not in reference.columns]
    if missing:
        raise KeyError(f"snapshot columns missing from the window or the reference: {missing}")
    has_pred = prediction is not None and prediction in current.columns and prediction in reference.columns
    if task is None and has_pred:
        task = "regression" if pd.api.types.is_float_dtype(reference[prediction]) else "classification"
    task = "regression" if task == "regression" else "classification"
    cols = list(features) + ([prediction] if has_pred else [])
    use_label = (label is not None and label in current.columns and label in reference.columns
                 and int(current[label].notna().sum()) >= min_labeled)
    keep = cols + ([label] if use_label else [])
    cur = sample_frame(current[keep], sample_size, seed=seed)
    ref = sample_frame(reference[keep], sample_size, seed=seed + 1)

    num, cat = _split_columns(ref, features, categorical)
    pred_cat = [prediction] if has_pred and task == "classification" else []
    pred_num = [prediction] if has_pred and task == "regression" else []
    base_dd = DataDefinition(numerical_columns=num + pred_num, categorical_columns=cat + pred_cat)
    timestamp = event_time(window_end_ms)
    estimated = estimate_summary(estimate)
    meta = {k: str(v) for k, v in (metadata or {}).items()} | {
        f"estimated_{m}": _estimate_text(e) for m, e in estimated.items()}
    methods: dict[str, Any] = {"num_method": "wasserstein", "cat_method": "jensenshannon"} if distances else {}
    judged = {c: v for c, v in (verdicts or {}).items() if c in cols and v.get("value") is not None}
    if judged:
        cols = ranked_columns(cols, judged)
        drift_share = 1.0 / len(cols)  # one drifted column is a drifted dataset, as for alerts
    with _VERDICT_LOCK:
        names = _register_verdicts(judged)
        try:
            if names:
                methods["per_column_method"] = names
                methods["per_column_threshold"] = {c: float(v["threshold"]) for c, v in judged.items()
                                                   if v.get("threshold") is not None}
            parts = [
                Report([DataDriftPreset(columns=cols, drift_share=drift_share, **methods),
                        DataSummaryPreset()]).run(
                    Dataset.from_pandas(cur[cols], data_definition=base_dd),
                    Dataset.from_pandas(ref[cols], data_definition=base_dd),
                    timestamp=timestamp,
                )
            ]
        finally:
            _unregister(names)
    rows = {"current": len(cur), "reference": len(ref), "labeled": 0}
    if use_label and has_pred:
        lab_cur = cur[cur[label].notna()][[prediction, label]].reset_index(drop=True)
        lab_ref = ref[ref[label].notna()][[prediction, label]].reset_index(drop=True)
        rows["labeled"] = len(lab_cur)
        if task == "classification":
            lab_cur, lab_ref = lab_cur.apply(_as_labels), lab_ref.apply(_as_labels)
            classes = set(lab_ref[label].unique()) | set(lab_ref[prediction].unique())
            spec = (BinaryClassification(target=label, prediction_labels=prediction, pos_label=max(classes))
                    if len(classes) <= 2 else MulticlassClassification(target=label, prediction_labels=prediction))
            qdd = DataDefinition(categorical_columns=[prediction, label], classification=[spec])
            preset = ClassificationPreset()
        else:
            qdd = DataDefinition(numerical_columns=[prediction, label],
                                 regression=[Regression(target=label, prediction=prediction)])
            preset = RegressionPreset()
        parts.append(Report([preset]).run(
            Dataset.from_pandas(lab_cur, data_definition=qdd),
            Dataset.from_pandas(lab_ref, data_definition=qdd),
            timestamp=timestamp,
        ))
    snap = _merge(parts, name=name, timestamp=timestamp, metadata=meta, tags=list(tags))
    out = _summarise(snap, rows=rows, metadata=meta, quality_from=parts[1:] if len(parts) > 1 else [],
                     verdicts=judged)
    out.estimated = estimated
    return out


def estimate_summary(estimate: Mapping[str, Any] | None) -> dict[str, dict[str, float | None]]:
    """Metric -> ``{value, lo, hi}`` (``lo``/``hi``: the alert band, None for metrics that do not alert) of an
    ``estimation`` window record.

    >>> estimate_summary({"estimated": {"accuracy": 0.7, "f1": None}, "band": {"accuracy": {"lo": 0.74, "hi": 0.82}}})
    {'accuracy': {'value': 0.7, 'lo': 0.74, 'hi': 0.82}}
    >>> _estimate_text(_["accuracy"])
    '0.7 (below its band 0.74..0.82)'
    """
    out: dict[str, dict[str, float | None]] = {}
    band = (estimate or {}).get("band") or {}
    for m, v in ((estimate or {}).get("estimated") or {}).items():
        if v is None or not np.isfinite(v):
            continue
        b = band.get(m) or {}
        out[m] = {"value": float(v), "lo": b.get("lo"), "hi": b.get("hi")}
    return out


def _estimate_text(e: Mapping[str, float | None]) -> str:
    v, lo, hi = e["value"], e.get("lo"), e.get("hi")
    if lo is None or hi is None:
        return f"{v:.4g}"
    where = "below its band" if v < lo else "above its band" if v > hi else "within its band"
    return f"{v:.4g} ({where} {lo:.4g}..{hi:.4g})"


def ranked_columns(cols: Sequence[str], verdicts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``cols`` by glassbox's effect, largest first (columns without a verdict last, in their order).

    >>> ranked_columns(["a", "b", "c"], {"a": {"effect": 0.5}, "b": {"effect": 2.0}})
    ['b', 'a', 'c']
    """
    return sorted(cols, key=lambda c: -float((verdicts.get(c) or {}).get("effect") or -1.0))


def verdict_label(v: Mapping[str, Any]) -> str:
    """How a glassbox verdict names its test in the report.

    >>> verdict_label({"statistic": "wasserstein", "threshold_kind": "calibrated",
    ...                "horizon": {"windows": 5, "events": 5000}})
    'glassbox wasserstein, calibrated, 5 windows / 5,000 events'
    """
    hz = v.get("horizon") or {}
    w = hz.get("windows")
    over = f", {w} window{'s' if w != 1 else ''} / {hz['events']:,} events" if w else ""
    return f"glassbox {v.get('statistic')}, {v.get('threshold_kind', 'calibrated')}{over}"


def _register_verdicts(verdicts: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """One Evidently stat test per judged column returning glassbox's value and verdict; column -> its name."""
    if not verdicts:
        return {}
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    names = {}
    for col, v in verdicts.items():
        name = f"glassbox:{col}"
        value, drift = float(v["value"]), bool(v["drift"])
        register_stattest(
            StatTest(name=name, display_name=verdict_label(v),
                     allowed_feature_types=[ColumnType.Numerical, ColumnType.Categorical]),
            lambda _ref, _cur, _kind, _thr, value=value, drift=drift: (value, drift))
        names[col] = name
    return names


def _unregister(names: Mapping[str, str]) -> None:
    from evidently.legacy.calculations.stattests import registry

    for name in names.values():
        for test in registry._registered_stat_tests.pop(name, {}).values():
            registry._impls.pop(test, None)


def _summarise(snap: Any, *, rows: dict[str, int], metadata: dict[str, str], quality_from: list[Any],
               verdicts: Mapping[str, Mapping[str, Any]]) -> WindowSnapshot:
    share, column_drift = 0.0, {}
    for m in snap.dict()["metrics"]:
        cfg = m.get("config", {})
        kind = cfg.get("type", "")
        if kind.endswith(":DriftedColumnsCount"):
            share = float(m["value"]["share"])
        elif kind.endswith(":ValueDrift"):
            score = float(m["value"])
            col, v = cfg["column"], verdicts.get(cfg["column"])
            column_drift[col] = {
                "score": score,
                "method": verdict_label(v) if v else cfg.get("method"),
                "threshold": cfg.get("threshold"),
                "drifted": bool(v["drift"]) if v else drifted(cfg.get("method", ""), score,
                                                                cfg.get("threshold", 0.1)),
            }
            if v:
                column_drift[col] |= {"effect": v.get("effect"), "horizon": v.get("horizon")}
    quality: dict[str, Any] = {}
    for q in quality_from:
        for m in q.dict()["metrics"]:
            v = m.get("value")
            if isinstance(v, dict) and "mean" in v:  # MAE, MeanError: {mean, std}
                v = v["mean"]
            if isinstance(v, (int, float, np.number)):
                quality[m["metric_name"].split("(")[0]] = float(v)
    return WindowSnapshot(
        snapshot=snap,
        drift_share=share,
        drifted_columns=(ranked_columns([c for c, d in column_drift.items() if d["drifted"]], verdicts) if verdicts
                         else sorted(c for c, d in column_drift.items() if d["drifted"])),
        column_drift=column_drift,
        quality=quality,
        rows=rows,
        metadata=metadata,
    )

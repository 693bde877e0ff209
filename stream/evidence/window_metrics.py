"""Window records as MLflow metrics: safe metric names, the compact metric set of a closed window, and which
windows to log when there are more than a time budget allows.

>>> flatten_metrics({"x": {"psi": 0.2, "n": 3, "name": "a"}, "ok": True, "bad": float("nan")})
{'x/psi': 0.2, 'x/n': 3.0, 'ok': 1.0}
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from detectors.values import finite_number

METRICS_PER_BATCH = 1000  # MLflow's per-request limit on metrics (and total entities)
KEY_BAD = re.compile(r"[^0-9A-Za-z_\-. /]")


def metric_key(*parts: Any) -> str:
    """An MLflow-safe metric name from parts (``/``-joined, other characters replaced by ``_``)."""
    return "/".join(KEY_BAD.sub("_", str(p)) for p in parts if p not in (None, ""))


def flatten_metrics(stats: Any, prefix: str = "") -> dict[str, float]:
    """Finite numbers from nested mappings/dataclasses/pydantic models as ``a/b/c`` keys; the rest is dropped."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        stats = dataclasses.asdict(stats)
    elif hasattr(stats, "model_dump"):
        stats = stats.model_dump()
    elif hasattr(stats, "to_dict") and not isinstance(stats, Mapping):
        stats = stats.to_dict()
    out: dict[str, float] = {}
    if isinstance(stats, Mapping):
        for k, v in stats.items():
            out.update(flatten_metrics(v, metric_key(prefix, k)))
        return out
    if isinstance(stats, bool):
        return {prefix: float(stats)} if prefix else {}
    try:
        import numpy as np

        if isinstance(stats, np.generic):
            stats = stats.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(stats, (int, float)) and not isinstance(stats, bool) and math.isfinite(stats) and prefix:
        return {prefix: float(stats)}
    return out


def window_fields(record: Any) -> tuple[int, int | None, dict[str, float]]:
    """``(index, end event time ms, metrics)`` of a closed-window record from ``ModelMonitor.drain_windows()``.

    Accepts a mapping, a dataclass or a pydantic model with ``index``, ``end`` (ms), ``events`` and per-column
    statistics (any nesting); every finite number except index/start/end becomes a metric, prefixed with the
    record's ``kind`` (``predictions`` / ``outcomes``) when it has one; booleans become 0/1.

    >>> window_fields({"kind": "predictions", "index": 2, "start": 0, "end": 99, "events": 100,
    ...                "columns": {"x": {"value": 0.3, "drift": True}}})
    (2, 99, {'predictions/events': 100.0, 'predictions/columns/x/value': 0.3, 'predictions/columns/x/drift': 1.0})
    """
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        data = dataclasses.asdict(record)
    elif hasattr(record, "model_dump"):
        data = record.model_dump()
    elif isinstance(record, Mapping):
        data = dict(record)
    else:
        data = {k: getattr(record, k) for k in dir(record) if not k.startswith("_")
                and not callable(getattr(record, k))}
    index = int(data["index"])
    end = data.get("end")
    kind = data.get("kind") if isinstance(data.get("kind"), str) else ""
    rest = {k: v for k, v in data.items() if k not in ("index", "start", "end", "model", "model_version", "kind")}
    return index, None if end is None else int(end), flatten_metrics(rest, kind)


@functools.lru_cache(maxsize=1 << 16)
def cached_key(*parts: str) -> str:
    """:func:`metric_key`, memoised (the same names recur every window)."""
    return metric_key(*parts)


_QUALITY_RATES = ("missing_rate", "domain_rate", "unseen_rate", "type_error_rate")


def compact_window_metrics(record: Mapping[str, Any]) -> tuple[int, int | None, dict[str, float]]:
    """``(index, end event time ms, metrics)``: the compact metric set of one closed-window record from
    ``ModelMonitor.drain_windows()`` (the full record goes to the ``windows/`` artifact).

    Prediction windows (``predictions/...``): ``events``, ``tested``, ``drifted_columns``, ``drift_share``
    (drifted / monitored columns), ``quality_columns`` (columns failing a quality check), the largest
    ``missing_rate`` / ``domain_rate`` / ``unseen_rate`` / ``type_error_rate`` over the columns (as
    ``<rate>_max``), and per monitored column ``columns/<col>/value`` (the tested statistic),
    ``columns/<col>/threshold`` (when there is one) and ``columns/<col>/drift`` (0/1).
    Outcome windows (``outcomes/...``): ``events``, ``metrics/<name>`` (accuracy, error_rate, f1, auc or mae,
    rmse, bias), ``decision/value``, ``decision/threshold``, ``decision/condition`` and ``concept_detections``.
    Estimation windows (``estimation/...``, at the prediction window's step): ``scored``, ``tested``,
    ``estimated/<metric>`` and, for the alerting metrics, their alert band ``band/<metric>/lo`` and ``hi``; once the
    window's labels are in (record ``estimation_realized``, logged at the same step), ``labelled``,
    ``realized/<metric>``, ``error/<metric>`` (estimated - realized) and ``gap/mean_error``, ``gap/bound``,
    ``gap/condition``.
    Any other record falls back to :func:`window_fields` (every number).

    >>> compact_window_metrics({"kind": "predictions", "index": 2, "start": 0, "end": 99, "events": 100,
    ...     "tested": True, "drifted": ["x"], "columns": {"x": {"value": 0.3, "threshold": 0.1, "drift": True,
    ...     "missing_rate": 0.02, "quality_failed": 0, "psi": 0.5}}})[2]  # doctest: +NORMALIZE_WHITESPACE
    {'predictions/events': 100.0, 'predictions/tested': 1.0, 'predictions/drifted_columns': 1.0,
     'predictions/drift_share': 1.0, 'predictions/quality_columns': 0.0, 'predictions/missing_rate_max': 0.02,
     'predictions/columns/x/value': 0.3, 'predictions/columns/x/threshold': 0.1, 'predictions/columns/x/drift': 1.0}
    """
    kind = record.get("kind") if isinstance(record, Mapping) else None
    if kind in ("estimation", "estimation_realized"):
        return _estimation_metrics(record)
    if kind not in ("predictions", "outcomes"):
        return window_fields(record)
    index, end = int(record["index"]), record.get("end")
    out: dict[str, float] = {}
    events = finite_number(record.get("events"))
    if events is not None:
        out[cached_key(kind, "events")] = events
    if kind == "predictions":
        columns: Mapping[str, Mapping[str, Any]] = record.get("columns") or {}
        if "tested" in record:
            out[cached_key(kind, "tested")] = float(bool(record["tested"]))
        drifted = sum(1 for c in columns.values() if c.get("drift"))
        out[cached_key(kind, "drifted_columns")] = float(drifted)
        out[cached_key(kind, "drift_share")] = drifted / len(columns) if columns else 0.0
        out[cached_key(kind, "quality_columns")] = float(sum(1 for c in columns.values() if c.get("quality_failed")))
        worst: dict[str, float] = {}
        for c in columns.values():
            for rate in _QUALITY_RATES:
                v = c.get(rate)
                if v is not None and (rate not in worst or v > worst[rate]):
                    worst[rate] = v
        for rate, v in worst.items():
            f = finite_number(v)
            if f is not None:
                out[cached_key(kind, f"{rate}_max")] = f
        for name, c in columns.items():
            for field in ("value", "threshold", "drift"):
                f = finite_number(c.get(field))
                if f is not None:
                    out[cached_key(kind, "columns", name, field)] = f
    else:
        for name, v in (record.get("metrics") or {}).items():
            f = finite_number(v)
            if f is not None:
                out[cached_key(kind, "metrics", name)] = f
        decision = record.get("decision") or {}
        for field in ("value", "threshold", "condition"):
            f = finite_number(decision.get(field))
            if f is not None:
                out[cached_key(kind, "decision", field)] = f
        f = finite_number(record.get("concept_detections"))
        if f is not None:
            out[cached_key(kind, "concept_detections")] = f
    return index, None if end is None else int(end), out


def _estimation_metrics(record: Mapping[str, Any]) -> tuple[int, int | None, dict[str, float]]:
    """The ``estimation/...`` metrics of an ``estimation`` or ``estimation_realized`` record.

    >>> _estimation_metrics({"kind": "estimation_realized", "index": 3, "end": 99, "labelled": 100,
    ...     "estimated": {"accuracy": 0.8}, "realized": {"accuracy": 0.75}, "error": {"accuracy": 0.05},
    ...     "gap": None})[2]
    {'estimation/labelled': 100.0, 'estimation/realized/accuracy': 0.75, 'estimation/error/accuracy': 0.05}
    """
    out: dict[str, float] = {}
    fields = ("scored", "tested") if record.get("kind") == "estimation" else ("labelled",)
    for field in fields:
        f = finite_number(record.get(field))
        if f is not None:
            out[cached_key("estimation", field)] = f
    groups = ("estimated",) if record.get("kind") == "estimation" else ("realized", "error")
    for group in groups:
        for name, v in (record.get(group) or {}).items():
            f = finite_number(v)
            if f is not None:
                out[cached_key("estimation", group, name)] = f
    for name, b in (record.get("band") or {}).items():
        for side in ("lo", "hi"):
            f = finite_number(b.get(side))
            if f is not None:
                out[cached_key("estimation", "band", name, side)] = f
    for field, v in (record.get("gap") or {}).items():
        f = finite_number(v)
        if f is not None and field != "windows":
            out[cached_key("estimation", "gap", field)] = f
    end = record.get("end")
    return int(record["index"]), None if end is None else int(end), out


def compact_width(record: Mapping[str, Any]) -> int:
    """About how many metrics :func:`compact_window_metrics` gives for ``record`` (without computing them)."""
    if record.get("kind") == "outcomes":
        return 12
    if record.get("kind") == "estimation":
        return 2 + len(record.get("estimated") or ()) + 2 * len(record.get("band") or ())
    if record.get("kind") == "estimation_realized":
        return 4 + 2 * len(record.get("realized") or ())
    return 3 * len(record.get("columns") or ()) + 9


def select_windows(keep: Sequence[bool], group: Sequence[Any], width: Sequence[int], budget: int) -> list[int]:
    """Which of the pending windows to log within ``budget`` metrics: all of them when they fit; else every
    ``keep`` window (those where an alert fired or resolved) and the latest of each ``group`` (model), then
    evenly spaced others as the budget allows. Returns positions, in order.

    >>> select_windows([False] * 10, ["m"] * 10, [1] * 10, 4)
    [0, 3, 6, 9]
    >>> select_windows([False, True, False, False, False], ["m"] * 5, [1] * 5, 2)
    [1, 4]
    """
    n = len(keep)
    if sum(width) <= budget:
        return list(range(n))
    latest = {g: i for i, g in enumerate(group)}
    must = sorted({i for i in range(n) if keep[i]} | set(latest.values()))
    left = budget - sum(width[i] for i in must)
    taken = set(must)
    others = [i for i in range(n) if i not in taken]
    if others and left > 0:
        avg = sum(width[i] for i in others) / len(others)
        k = min(len(others), int(left // max(avg, 1e-9)))
        if k > 0:  # evenly spaced, counted back from the latest
            step = len(others) / k
            taken.update(others[len(others) - int((j + 1) * step)] for j in range(k))
    return sorted(taken)


def as_mapping(record: Any) -> Mapping[str, Any]:
    """``record`` (a mapping, dataclass, pydantic model or plain object) as a mapping."""
    if isinstance(record, Mapping):
        return record
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    if hasattr(record, "model_dump"):
        return record.model_dump()
    return {k: getattr(record, k) for k in dir(record) if not k.startswith("_") and not callable(getattr(record, k))}

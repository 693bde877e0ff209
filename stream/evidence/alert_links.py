"""The links and evidence an alert carries: its window's Evidently report and dashboard, the monitoring run, the
reference dataset (name, digest, URI) and the git commit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AlertContext:
    """What an alert's links and evidence come from (any part may be None)."""

    run: Any = None  # MonitoringRun
    snapshots: Any = None  # SnapshotService
    references: Mapping[str, Any] = field(default_factory=dict)  # model -> ReferenceInfo (or dict)
    git_commit: str | None = None


def enrich_alert(alert: Mapping[str, Any], ctx: AlertContext) -> dict[str, Any]:
    """A copy of ``alert`` with ``links.report`` / ``links.mlflow_run`` / ``links.dashboard`` and the
    evidence's reference dataset name and digest and git commit (identity fields are left untouched)."""
    out = dict(alert)
    model = out.get("model") or ""
    window = (out.get("window") or {}).get("index")
    links = dict(out.get("links") or {})
    if ctx.snapshots is not None:
        snap = ctx.snapshots.links_for(model, window)
        links.update({k: v for k, v in snap.items() if k in ("report", "dashboard") and v})
        if snap.get("report_json"):
            links.setdefault("report_json", snap["report_json"])
    if ctx.run is not None and ctx.run.link:
        links["mlflow_run"] = ctx.run.link
    for k in ("runbook", "dashboard", "report", "mlflow_run"):
        links.setdefault(k, None)
    evidence = dict(out.get("evidence") or {})
    ref = ctx.references.get(model)
    if ref is not None:
        get = ref.get if isinstance(ref, Mapping) else lambda k, r=ref: getattr(r, k, None)
        evidence.update({"reference_dataset": get("name"), "reference_digest": get("digest"),
                         "reference_uri": get("uri")})
    commit = ctx.git_commit
    if commit is None and ctx.run is not None:
        commit = _run_commit(ctx.run)
    evidence["git_commit"] = commit
    if ctx.run is not None and getattr(ctx.run, "run_id", None):
        evidence["mlflow_run_id"] = ctx.run.run_id
    out["links"], out["evidence"] = links, evidence
    return out


def _run_commit(run: Any) -> str | None:
    return getattr(run, "git_commit", None)

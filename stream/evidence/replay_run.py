"""The MLflow monitoring run of one ``glassbox replay``: what was read, against which reference, under which
configuration, and what came out (alerts, window metrics), with the same lineage as the worker's run.

>>> replay_run_name({"file": "/data/events.parquet"}), replay_run_name({"topic": "glassbox.predictions"})
('replay events.parquet', 'replay kafka://glassbox.predictions')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stream.evidence.monitoring_run import MonitoringRun
from stream.evidence.window_metrics import as_mapping, compact_width, compact_window_metrics, select_windows

REPLAY_METRIC_BUDGET = 20_000
"""Window metric values a replay logs at most (MLflow's store takes about 1 ms each): beyond it, every window that
raised or resolved an alert and evenly spaced others; every window stays in full in the ``windows/`` artifact."""


def replay_run_name(inputs: Mapping[str, Any]) -> str:
    """A short run name: the file's name or the topic."""
    if inputs.get("file"):
        return f"replay {Path(str(inputs['file'])).name}"
    return f"replay kafka://{inputs.get('topic')}"


def record_replay(settings: Any, outcome: Any, *, request: Mapping[str, Any],
                  compare: Any | None = None) -> MonitoringRun:
    """Record ``outcome`` (a :class:`stream.backtest.outcomes.Outcome`: alerts, window records, summary, inputs,
    references) as a finished ``kind="replay"`` run of ``settings.mlflow``; ``request`` (the replay's options) and
    the settings are its configuration; ``compare`` (rule set B's outcome) adds ``compare/alerts.jsonl``."""
    mc = settings.mlflow
    config = {"replay": dict(request), **settings.model_dump(mode="json")}
    run = MonitoringRun(mc.tracking_uri, experiment=mc.experiment, artifact_root=mc.artifact_root, kind="replay",
                        run_name=replay_run_name(outcome.inputs), project=settings.project, env=settings.env,
                        config=config, source=outcome.inputs, system_metrics=False, mlflow_ui_url=mc.ui_url)
    with run:
        for model, ref in outcome.references.items():
            run.add_model(model, ref.get("model_version"), reference_name=ref.get("name"),
                          reference_digest=ref.get("digest"), reference_uri=ref.get("uri"))
        log_replay(run, outcome)
        if compare is not None:
            lines = "".join(json.dumps(a, sort_keys=True, default=str) + "\n" for a in compare.alerts)
            run.log_text(lines, "compare/alerts.jsonl")
            run.log_dict({"rule_set": compare.name, "summary": compare.summary}, "compare/summary.json")
    return run


def log_replay(run: MonitoringRun, result: Any, *, model: str | None = None,
               budget: int = REPLAY_METRIC_BUDGET) -> int:
    """Record a replay's result (``alerts``, ``windows``, ``summary``, as ``stream.backtest.file_replay.ReplayResult``)
    in ``run``: every window record in the ``windows/`` artifact (per the records' ``model``, else ``model``), the
    compact metrics of at most ``budget`` values' worth of windows (alert windows first; the rest counted as
    ``windows_thinned``), its alerts for the table, its summary as ``replay_summary.json``. Returns the metrics
    logged."""
    name = model or (result.alerts[0]["model"] if result.alerts else None) or result.summary.get("model", "model")
    records = [as_mapping(r) for r in result.windows]
    models = [str(r.get("model") or name) for r in records]
    alerted = {(str(a.get("model")), (a.get("window") or {}).get("index")) for a in result.alerts}
    for m in dict.fromkeys(models):
        run.record_windows(m, [r for r, rm in zip(records, models, strict=True) if rm == m])
    keep = [(m, r.get("index")) in alerted for r, m in zip(records, models, strict=True)]
    chosen = select_windows(keep, models, [compact_width(r) for r in records], budget)
    run.windows_thinned += len(records) - len(chosen)
    n = run.log_compact_many((models[i], compact_window_metrics(records[i])) for i in chosen)
    run.log_alerts(result.alerts)
    run.log_dict(result.summary, "replay_summary.json")
    return n

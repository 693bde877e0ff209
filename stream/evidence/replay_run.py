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
from stream.evidence.window_metrics import as_mapping


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


def log_replay(run: MonitoringRun, result: Any, *, model: str | None = None) -> int:
    """Record a replay's result (``alerts``, ``windows``, ``summary``, as ``stream.backtest.file_replay.ReplayResult``)
    in ``run``: its window records as metrics (per the records' ``model``, else ``model``), its alerts for the
    table, its summary as ``replay_summary.json``. Returns the metrics logged."""
    name = model or (result.alerts[0]["model"] if result.alerts else None) or result.summary.get("model", "model")
    per_model: dict[str, list[Any]] = {}
    for rec in result.windows:
        per_model.setdefault(str(as_mapping(rec).get("model") or name), []).append(rec)
    n = sum(run.log_windows(m, records) for m, records in per_model.items())
    run.log_alerts(result.alerts)
    run.log_dict(result.summary, "replay_summary.json")
    return n

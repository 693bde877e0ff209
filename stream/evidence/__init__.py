"""The glass box: MLflow references and monitoring runs, lineage, Evidently snapshots and the SHAP service.

References: :mod:`~stream.evidence.reference_base` (types, URIs, files) and :mod:`~stream.evidence.reference`
(log and load). Monitoring runs: :mod:`~stream.evidence.monitoring_run` (the run),
:mod:`~stream.evidence.window_metrics` (windows as metrics), :mod:`~stream.evidence.window_spool` (full window
records), :mod:`~stream.evidence.window_logger` (the live worker's budgeted logging),
:mod:`~stream.evidence.replay_run` (a replay's run) and :mod:`~stream.evidence.recorder` (the worker's
``Evidence``, offsets included). Snapshots: :mod:`~stream.evidence.snapshot_render` (in the executor),
:mod:`~stream.evidence.snapshots` (the service) and :mod:`~stream.evidence.alert_links` (what alerts link to).

Heavy libraries (mlflow, evidently, shap, matplotlib) are imported here and only here, lazily, and the expensive
work runs in an idle-priority process pool (:mod:`~stream.evidence.idle_pool`) off the worker's hot path.
"""

"""The glass box: MLflow references and monitoring runs, lineage, Evidently snapshots and the SHAP service.

Heavy libraries (mlflow, evidently, shap, matplotlib) are imported here and only here, lazily, and the expensive
work runs in an idle-priority process pool (:mod:`~stream.evidence.idle_pool`) off the worker's hot path.
"""

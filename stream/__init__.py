"""glassbox's event-driven shell around the pure core in :mod:`detectors`.

Sub-packages by responsibility: :mod:`~stream.kafka` (clients, embedded broker, topics, Faust app, state topic),
:mod:`~stream.pipeline` (parse, label join, monitors: no Faust), :mod:`~stream.worker` (agents, health,
metrics), :mod:`~stream.evidence` (MLflow, Evidently, SHAP), :mod:`~stream.backtest` (file and topic replay),
:mod:`~stream.alerting` (rules, lifecycle, notifiers), :mod:`~stream.cli` and :mod:`~stream.demo`. At the top:
the event contract (:mod:`~stream.events`), the settings, and the producer SDK (:mod:`~stream.producer`).
"""

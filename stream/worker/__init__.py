"""The live worker: Faust agents on the predictions and labels topics, pipeline health and Prometheus metrics.

The agents hand each batch to :class:`stream.pipeline.pipeline.Pipeline` and publish what it returns (alerts,
dead letters, state). Evidence (MLflow, Evidently, SHAP) is optional and attached from :mod:`stream.evidence`.
"""

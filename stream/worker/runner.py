"""Run the monitoring worker: build its pipeline and evidence, say what it serves, consume until stopped.

``glassbox worker`` calls :func:`run_worker` with the settings and the Kafka to use; logging is configured by
the caller. The MLflow run (if any) is closed FINISHED on a clean stop and FAILED otherwise.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stream.worker.report import log, log_startup


def run_worker(settings: Any, bootstrap: str, *, embedded: bool = False, progress_s: float = 30.0) -> None:
    """Run until SIGTERM or Ctrl-C (raises ``SystemExit`` as Faust does)."""
    from stream.kafka.faust_app import faust_worker, make_app
    from stream.kafka.state_topic import TopicState
    from stream.kafka.topics import ensure_topics, warn_uncompacted
    from stream.worker.agents import build_pipeline, register_monitor, tune_gc

    ensure_topics(settings, bootstrap)
    asyncio.run(warn_uncompacted(settings, bootstrap))
    fapp = make_app(settings, bootstrap=bootstrap)
    pipeline = build_pipeline(settings, TopicState(settings, bootstrap))
    evidence = None
    if settings.mlflow.enabled and settings.worker.models:
        from stream.evidence.recorder import Evidence
        from stream.evidence.window_spool import recover_spools

        recover_spools(settings.mlflow.tracking_uri)  # window records of a worker killed on this host

        evidence = Evidence(settings, pipeline.monitors, source={"kafka_bootstrap": bootstrap,
                                                                 "topic": settings.topic("predictions")})
    attribution = None
    if settings.attribution.enabled and settings.worker.models:
        from stream.evidence.shap_service import AttributionService

        attribution = AttributionService(settings, pipeline.monitors)
        attribution.prepare()
    register_monitor(fapp, settings, pipeline, evidence, attribution, progress_s=progress_s)
    log_startup(settings, bootstrap, embedded=embedded, run=evidence.run if evidence is not None else None,
                progress_s=progress_s)
    tune_gc()
    status = "FAILED"
    try:
        faust_worker(fapp).execute_from_commandline()
        status = "FINISHED"
    except SystemExit as stop:
        status = "FINISHED" if not stop.code else "FAILED"
        raise
    finally:
        if attribution is not None:
            attribution.close()
        if evidence is not None:
            evidence.close(status)
        c = pipeline.counters
        log.info("stopped (%s): %d events, %d alerts", status.lower(), c.events, c.alerts,
                 extra={"fields": {"status": status, "events": c.events, "alerts": c.alerts}})

"""``glassbox worker``: the monitoring worker (Faust agents on the predictions and labels topics)."""

from __future__ import annotations

from typing import Annotated

import typer

from stream.cli.options import ConfigOpt, LogFormatOpt, LogLevelOpt, kafka_bootstrap, settings_from, setup_logging


def worker_command(
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    progress_interval: Annotated[float, typer.Option(
        "--progress-interval", min=0, help="seconds between progress lines (events/s, lag); 0: none")] = 30.0,
) -> None:
    """Run the monitoring worker: says what it serves, logs every alert it raises and its progress."""
    from stream.worker.runner import run_worker

    setup_logging(log_level, log_format)
    settings = settings_from(config)
    with kafka_bootstrap(settings, announce=False) as bootstrap:
        run_worker(settings, bootstrap, embedded=not settings.kafka.bootstrap, progress_s=progress_interval)

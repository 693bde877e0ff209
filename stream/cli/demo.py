"""``glassbox demo``: the command-line face of :func:`stream.demo.run.run_demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stream.demo.home import DEFAULT_HOME


def demo_command(
    keep_running: Annotated[bool, typer.Option("--keep-running", help="leave broker, worker, notifier and the "
                                               "MLflow and Evidently UIs up until Ctrl-C")] = False,
    home: Annotated[Path, typer.Option(help="demo folder (wiped at start when the demo made it)")] = DEFAULT_HOME,
    rows: Annotated[int, typer.Option(min=8000, help="events in the stream (4 phases)")] = 30_000,
    speed: Annotated[float, typer.Option(min=0, help="events per second (0: as fast as possible)")] = 1500.0,
    seed: Annotated[int, typer.Option(help="seed of the stream")] = 7,
) -> None:
    """Run the whole product on an embedded broker: train, stream, drift, live alerts, reports."""
    from stream.demo.home import DemoOptions
    from stream.demo.run import run_demo
    from stream.evidence.lineage import quiet_store_logs

    quiet_store_logs()
    run_demo(DemoOptions(home=home, rows=rows, speed=speed, seed=seed, keep_running=keep_running))

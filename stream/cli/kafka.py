"""``glassbox broker`` (the embedded Kafka-compatible broker) and ``glassbox produce`` (a table onto a topic)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from stream.cli.options import ConfigOpt, kafka_bootstrap, settings_from
from stream.errors import UserError


def broker_command(port: Annotated[int, typer.Option(help="port on 127.0.0.1; 0 picks a free one")] = 0) -> None:
    """Run the embedded Kafka-compatible broker until Ctrl-C and print its bootstrap address."""
    import signal
    import threading

    from stream.kafka.broker import EmbeddedBroker

    with EmbeddedBroker(port or None) as b:
        typer.echo(b.bootstrap)
        sys.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.is_set() and b.process and b.process.poll() is None:
                stop.wait(0.5)


def produce_command(
    file: Annotated[Path, typer.Argument(help=".parquet, .csv or .jsonl, one row per prediction")],
    model: Annotated[str, typer.Option(help="model name (the message key)")],
    batch: Annotated[int, typer.Option(min=1, help="events per message (1 = one event per message)")] = 500,
    id_col: Annotated[str | None, typer.Option(help="prediction id column; default: the row number")] = None,
    timestamp_col: Annotated[str | None, typer.Option(help="event time column; default: now + row ms")] = None,
    prediction_col: Annotated[str, typer.Option(help="prediction column")] = "prediction",
    label_col: Annotated[str | None, typer.Option(help="also publish this column as label events")] = None,
    config: ConfigOpt = None,
) -> None:
    """Publish a table of predictions (and optionally labels) to the predictions topic."""
    from stream.backtest.produce_file import produce_file
    from stream.backtest.table_files import TableError

    settings = settings_from(config)
    with kafka_bootstrap(settings) as bootstrap:
        try:
            n = produce_file(file, model=model, bootstrap=bootstrap, settings=settings, batch=batch, id_col=id_col,
                             timestamp_col=timestamp_col, prediction_col=prediction_col, label_col=label_col)
        except TableError as err:  # a file the user named: unreadable, missing columns
            raise UserError(str(err)) from None
    typer.echo(f"published {n} predictions of {model!r} to {settings.topic('predictions')}")

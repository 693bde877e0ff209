"""``glassbox``: the command line. Every command fails with one line on stderr, never a traceback."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from stream.cli.options import ConfigOpt, kafka_bootstrap, settings_from
from stream.errors import UsageError, UserError

# typer vendors click; its exception classes are reachable through the public BadParameter.
_UsageError = typer.BadParameter.__mro__[1]
_ClickException = typer.BadParameter.__mro__[2]

app = typer.Typer(
    name="glassbox",
    help="Streaming drift monitor: Kafka predictions and labels in, explained alerts out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

@app.command()
def broker(port: Annotated[int, typer.Option(help="port on 127.0.0.1; 0 picks a free one")] = 0) -> None:
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


@app.command()
def worker(config: ConfigOpt = None) -> None:
    """Run the monitoring worker (Faust agents on the predictions and labels topics)."""
    import faust

    from stream.kafka.faust_app import make_app
    from stream.kafka.state_topic import TopicState
    from stream.kafka.topics import ensure_topics
    from stream.worker.agents import build_pipeline, register_monitor, tune_gc

    settings = settings_from(config)
    with kafka_bootstrap(settings) as bootstrap:
        ensure_topics(settings, bootstrap)
        fapp = make_app(settings, bootstrap=bootstrap)
        pipeline = build_pipeline(settings, TopicState(settings, bootstrap))
        evidence = None
        if settings.mlflow.enabled and settings.worker.models:
            from stream.evidence.recorder import Evidence

            evidence = Evidence(settings, pipeline.monitors, source={"kafka_bootstrap": bootstrap,
                                                                     "topic": settings.topic("predictions")})
        attribution = None
        if settings.attribution.enabled and settings.worker.models:
            from stream.evidence.shap_service import AttributionService

            attribution = AttributionService(settings, pipeline.monitors)
            attribution.prepare()
        register_monitor(fapp, settings, pipeline, evidence, attribution)
        tune_gc()
        loglevel = os.environ.get("GLASSBOX_LOG_LEVEL", "WARNING")
        status = "FAILED"
        try:
            faust.Worker(fapp, loglevel=loglevel, quiet=True).execute_from_commandline()
            status = "FINISHED"
        except SystemExit as stop:
            status = "FINISHED" if not stop.code else "FAILED"
            raise
        finally:
            if attribution is not None:
                attribution.close()
            if evidence is not None:
                evidence.close(status)


@app.command()
def produce(
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
    from stream.kafka.produce_file import produce_file

    settings = settings_from(config)
    with kafka_bootstrap(settings) as bootstrap:
        n = produce_file(file, model=model, bootstrap=bootstrap, settings=settings, batch=batch, id_col=id_col,
                         timestamp_col=timestamp_col, prediction_col=prediction_col, label_col=label_col)
    typer.echo(f"published {n} predictions of {model!r} to {settings.topic('predictions')}")


def _register_optional() -> None:
    """Commands that live next to the code they drive."""
    with contextlib.suppress(ImportError):
        from stream.cli.replay import replay_command

        app.command("replay")(replay_command)
    with contextlib.suppress(ImportError):
        from stream.cli.reference import reference_app

        app.add_typer(reference_app, name="reference")
    with contextlib.suppress(ImportError):
        from stream.demo.main import demo_command

        app.command("demo")(demo_command)
    with contextlib.suppress(ImportError):
        from stream.cli.explain import explain_command

        app.command("explain")(explain_command)
    with contextlib.suppress(ImportError):
        from stream.cli.alerts import alerts_app, silence_app

        app.add_typer(alerts_app, name="alerts")
        app.add_typer(silence_app, name="silence")


_register_optional()


def main(argv: list[str] | None = None) -> None:
    """Entry point: turn usage errors and :class:`UserError` into one line on stderr."""
    try:
        rv = app(args=argv, prog_name="glassbox", standalone_mode=False)
    except _UsageError as err:
        where = f" (see {err.ctx.command_path} --help)" if getattr(err, "ctx", None) else ""
        print(f"glassbox: error: {err.format_message()}{where}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("glassbox: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except _ClickException as err:
        print(f"glassbox: error: {err.format_message()}", file=sys.stderr)
        sys.exit(err.exit_code)
    except UserError as err:
        print(f"glassbox: error: {err}", file=sys.stderr)
        sys.exit(2 if isinstance(err, UsageError) else 1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:  # a defect: one line, the traceback on request
        if os.environ.get("GLASSBOX_DEBUG"):
            raise
        print(f"glassbox: internal error: {type(err).__name__}: {err} (GLASSBOX_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        sys.exit(70)
    sys.exit(rv if isinstance(rv, int) else 0)

"""What every command shares: the ``--config`` option, loading settings, the Kafka to talk to, logging options
and keeping MLflow's own log lines off a command's output."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from stream.settings import Settings

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="glassbox.toml to read")]
LogLevelOpt = Annotated[str | None, typer.Option(
    "--log-level", help="DEBUG, INFO, WARNING or ERROR (default: $GLASSBOX_LOG_LEVEL or INFO)")]
LogFormatOpt = Annotated[str | None, typer.Option(
    "--log-format", help="text or json, one object per line (default: $GLASSBOX_LOG_FORMAT or text)")]


def settings_from(config: Path | None) -> Settings:
    """The settings of ``config`` (or the defaults and ``GLASSBOX_*`` environment variables)."""
    from stream.settings import load_settings

    return load_settings(config)


def setup_logging(level: str | None, fmt: str | None) -> None:
    """Configure logging for a long-running command from its ``--log-level`` and ``--log-format``."""
    from stream.cli.logs import configure_logging, resolve
    from stream.evidence.lineage import quiet_store_logs

    configure_logging(*resolve(level, fmt))
    quiet_store_logs()


@contextlib.contextmanager
def kafka_bootstrap(settings: Settings, *, announce: bool = True) -> Iterator[str]:
    """The configured Kafka (checked reachable), or an embedded broker for the duration of the block."""
    from stream.kafka.broker import EmbeddedBroker, check_reachable

    if settings.kafka.bootstrap:
        check_reachable(settings.kafka.bootstrap, settings.kafka.connect_timeout_s)
        yield settings.kafka.bootstrap
        return
    with EmbeddedBroker() as broker:
        if announce:
            typer.echo(f"embedded broker at {broker.bootstrap} (set GLASSBOX_KAFKA__BOOTSTRAP to use another Kafka)",
                       err=True)
        yield broker.bootstrap

"""What every command shares: the ``--config`` option, loading settings, and the Kafka to talk to."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from stream.settings import Settings

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="glassbox.toml to read")]


def settings_from(config: Path | None) -> Settings:
    """The settings of ``config`` (or the defaults and ``GLASSBOX_*`` environment variables)."""
    from stream.settings import load_settings

    return load_settings(config)


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

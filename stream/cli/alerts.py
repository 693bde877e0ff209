"""``glassbox silence add|list|expire`` and ``glassbox alerts tail|notify``.

Silences live on the compacted topic ``<prefix>silences`` of the configured Kafka (``kafka.bootstrap``), which
every notifier reads to its end before each batch, so a silence added here applies at once on every replica.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from stream.cli.options import ConfigOpt, LogFormatOpt, LogLevelOpt, kafka_bootstrap, settings_from, setup_logging
from stream.errors import UserError

silence_app = typer.Typer(help="Mute alert notifications for a while.", no_args_is_help=True,
                          add_completion=False, rich_markup_mode=None)
alerts_app = typer.Typer(help="Read and deliver alerts.", no_args_is_help=True, add_completion=False,
                         rich_markup_mode=None)

MATCHER_KEYS = ("model", "monitor", "feature", "severity")
T = TypeVar("T")


def _settings(config: Path | None) -> Any:
    return settings_from(config)


def _shared(config: Path | None, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(shared_state)`` against the configured Kafka, with the silences read to their end."""
    import asyncio

    from stream.alerting.shared import SharedState
    from stream.alerting.store import AlertingStore, state_path
    from stream.kafka.broker import check_reachable

    settings = _settings(config)
    if not settings.kafka.bootstrap:
        raise UserError("silences live on Kafka: set GLASSBOX_KAFKA__BOOTSTRAP (the notifiers' broker)")
    check_reachable(settings.kafka.bootstrap, settings.kafka.connect_timeout_s)
    shared = SharedState(settings, settings.kafka.bootstrap, AlertingStore(state_path(settings)))
    shared.ensure_topics()

    async def run() -> T:
        try:
            await shared.sync_silences()
            return await action(shared)
        finally:
            await shared.close()

    return asyncio.run(run())


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def parse_matchers(items: list[str]) -> dict[str, str]:
    """``["model=churn", "monitor=data_drift"]`` -> dict; only model, monitor, feature and severity."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in MATCHER_KEYS or not value:
            raise UserError(f"bad matcher {item!r}: use KEY=VALUE with KEY one of {', '.join(MATCHER_KEYS)}")
        out[key] = value
    if not out:
        raise UserError("give at least one matcher, e.g. model=churn monitor=data_drift")
    return out


@silence_app.command("add")
def silence_add(
    matchers: Annotated[list[str], typer.Argument(help="KEY=VALUE (model, monitor, feature, severity; globs ok)")],
    duration: Annotated[str, typer.Option("--duration", "-d", help="e.g. 30m, 2h, 1d")] = "2h",
    comment: Annotated[str | None, typer.Option(help="why")] = None,
    author: Annotated[str | None, typer.Option(help="who (default: $USER)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a silence; prints its id."""
    from stream.alerting.config import parse_duration

    try:
        seconds = parse_duration(duration)
    except ValueError as err:
        raise UserError(str(err)) from None
    if seconds <= 0:
        raise UserError("--duration must be positive")
    who = author or os.environ.get("USER") or getpass.getuser()
    from stream.alerting.shared import new_silence

    s = new_silence(parse_matchers(matchers), seconds, created_by=who, comment=comment)

    async def add(shared: Any) -> None:
        await shared.publish_silence(s)

    _shared(config, add)
    typer.echo(f"{s.id}  silences {' '.join(f'{k}={v}' for k, v in s.matchers.items())} until {_when(s.ends_at)}")


@silence_app.command("list")
def silence_list(
    all_: Annotated[bool, typer.Option("--all", help="include expired silences")] = False,
    config: ConfigOpt = None,
) -> None:
    """List active silences (or all with --all)."""
    from rich.console import Console
    from rich.table import Table

    now = time.time()
    async def read(shared: Any) -> list[Any]:
        return shared.store.silences(now=now, include_inactive=all_)

    rows = _shared(config, read)
    table = Table("id", "matchers", "starts", "ends", "state", "by", "comment")
    for s in rows:
        state = "active" if s.active(now) else ("expired" if s.expired_at or s.ends_at <= now else "pending")
        ends = s.ends_at if s.expired_at is None else min(s.ends_at, s.expired_at)
        table.add_row(s.id, " ".join(f"{k}={v}" for k, v in s.matchers.items()), _when(s.starts_at),
                      _when(ends), state, s.created_by or "", s.comment or "")
    Console(width=160).print(table if rows else "no silences")


@silence_app.command("expire")
def silence_expire(
    silence_id: Annotated[str, typer.Argument(help="id from `glassbox silence list`")],
    config: ConfigOpt = None,
) -> None:
    """End a silence now."""
    async def expire(shared: Any) -> bool:
        return await shared.expire_silence(silence_id)

    if not _shared(config, expire):
        raise UserError(f"no active silence {silence_id!r}")
    typer.echo(f"expired {silence_id}")


SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def effect_of(a: dict[str, Any]) -> float | None:
    """A drift alert's effect (statistic over threshold, comparable across columns), else None."""
    e = (a.get("evidence") or {}).get("effect")
    return float(e) if isinstance(e, (int, float)) else None


def in_display_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts by event time; within one time, the largest effect first (the order of the replay's ranking and
    of the Evidently report the alert links to).

    >>> [a["feature"] for a in in_display_order([{"event_time": 2, "feature": "a", "evidence": {"effect": 1.5}},
    ...     {"event_time": 2, "feature": "b", "evidence": {"effect": 3.0}}, {"event_time": 1, "feature": "c"}])]
    ['c', 'b', 'a']
    """
    return sorted(rows, key=lambda a: (a.get("event_time") or 0, -(effect_of(a) or 0.0)))


def alerts_table(rows: list[dict[str, Any]]) -> Any:
    """A rich table of alert records (newest last), with each drift alert's effect and the horizon that fired;
    the caption ranks the features of firing drift alerts by effect, as ``glassbox replay`` does."""
    from rich.table import Table

    from stream.alerting.messages import fmt_time
    from stream.cli.replay_print import drift_leaders

    ranked = drift_leaders(rows)
    table = Table("event time", "status", "severity", "model", "monitor", "feature", "statistic", "value",
                  "threshold", "effect", "horizon", "summary", title="glassbox alerts",
                  caption=("drifted features by effect: " + ", ".join(f"{f} {e:.2f}" for f, e in ranked))
                  if ranked else None)
    for a in rows:
        sev = a.get("severity", "")
        status = a.get("status", "")
        value = a.get("value")
        threshold = a.get("threshold")
        effect = effect_of(a)
        hz = (a.get("evidence") or {}).get("horizon")
        table.add_row(
            fmt_time(a.get("event_time")), status, f"[{SEVERITY_STYLE.get(sev, '')}]{sev}[/]",
            str(a.get("model")), str(a.get("monitor")), str(a.get("feature") or "-"), str(a.get("statistic")),
            "-" if value is None else f"{value:.4g}", "-" if threshold is None else f"{threshold:.4g}",
            "-" if effect is None else f"{effect:.2f}",
            f"{hz['windows']} w / {hz['events']:,} ev" if isinstance(hz, dict) and "windows" in hz else "-",
            str(a.get("summary") or ""),
            style="dim" if status == "resolved" else None,
        )
    return table


def _consumer(settings: Any, bootstrap: str, topic: str) -> Any:
    from kafka import KafkaConsumer, TopicPartition

    from stream.kafka.clients import kafka_python_kwargs

    consumer = KafkaConsumer(**kafka_python_kwargs(settings.kafka, bootstrap), enable_auto_commit=False, group_id=None,
                             auto_offset_reset="earliest")
    deadline = time.monotonic() + 10
    parts = consumer.partitions_for_topic(topic)
    while parts is None and time.monotonic() < deadline:
        time.sleep(0.2)
        parts = consumer.partitions_for_topic(topic)
    tps = [TopicPartition(topic, p) for p in sorted(parts or [])]
    consumer.assign(tps)
    if tps:
        consumer.seek_to_beginning(*tps)
    return consumer


@alerts_app.command("tail")
def alerts_tail(
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    severity: Annotated[str | None, typer.Option(help="only this severity (critical, warning, info)")] = None,
    last: Annotated[int, typer.Option(min=1, help="rows kept on screen")] = 20,
    once: Annotated[bool, typer.Option("--once", help="print what is there and exit")] = False,
    config: ConfigOpt = None,
) -> None:
    """Show alerts from the alerts topic in a live table (the last --last rows, then new ones as they come)."""
    import orjson
    from rich.console import Console
    from rich.live import Live

    settings = _settings(config)
    if not settings.kafka.bootstrap:
        raise UserError("no Kafka to read: set GLASSBOX_KAFKA__BOOTSTRAP (e.g. the address `glassbox broker` printed)")
    if severity is not None and severity not in SEVERITY_STYLE:
        raise UserError(f"--severity must be one of {', '.join(SEVERITY_STYLE)}")
    rows: deque[dict[str, Any]] = deque(maxlen=last)
    consumer = _consumer(settings, settings.kafka.bootstrap, settings.topic("alerts"))

    def poll(timeout_ms: int) -> int:
        n = 0
        for records in consumer.poll(timeout_ms=timeout_ms, max_records=1000).values():
            for rec in records:
                try:
                    a = orjson.loads(rec.value)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(a, dict) or (model and a.get("model") != model) or (
                    severity and a.get("severity") != severity
                ):
                    continue
                rows.append(a)
                n += 1
        return n

    console = Console(width=200)
    try:
        if once:
            idle_until = time.monotonic() + 1.5
            while time.monotonic() < idle_until:
                if poll(300):
                    idle_until = time.monotonic() + 1.5
            console.print(alerts_table(in_display_order(list(rows))))
            return
        with Live(alerts_table(in_display_order(list(rows))), console=console, refresh_per_second=4) as live:
            while True:
                if poll(500):
                    live.update(alerts_table(in_display_order(list(rows))))
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


@alerts_app.command("notify")
def alerts_notify(config: ConfigOpt = None, log_level: LogLevelOpt = None, log_format: LogFormatOpt = None) -> None:
    """Run the notifier worker: deliver alerts to Slack, PagerDuty, the desktop and the log."""
    from stream.alerting.agent import run_notifier

    setup_logging(log_level, log_format)
    settings = _settings(config)
    with kafka_bootstrap(settings, announce=False) as bootstrap:
        run_notifier(settings, bootstrap, embedded=not settings.kafka.bootstrap)

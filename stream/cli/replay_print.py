"""What ``glassbox replay`` prints: the alerts, the topic summary, two rule sets side by side, the score, and a
progress bar on stderr for topic replays."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from stream.backtest.outcomes import Outcome

if TYPE_CHECKING:
    from detectors.scoring import BacktestScore


class ProgressBar:
    """A rich progress bar on stderr: records read of the range, events/s and ETA."""

    def __init__(self, what: str):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>12} events/s"), TimeRemainingColumn(),
            console=Console(file=sys.stderr), transient=False, refresh_per_second=4,
        )
        self.task = self.progress.add_task(what, total=None, rate="-")
        self.progress.start()
        self._t0 = time.perf_counter()

    def update(self, stats: Any, events: int) -> None:
        dt = max(time.perf_counter() - self._t0, 1e-9)
        self.progress.update(self.task, completed=stats.messages + stats.skipped, total=stats.total(),
                             rate=f"{events / dt:,.0f}")

    def close(self) -> None:
        self.progress.stop()


def console() -> Any:
    from rich.console import Console

    return Console(file=sys.stdout, width=132, highlight=False)


def print_alerts(alerts: list[dict[str, Any]], limit: int = 15) -> None:
    from rich.table import Table

    c = console()
    if not alerts:
        c.print("[green]no alerts[/]")
        return
    t = Table(title=f"{len(alerts)} alert transitions", title_justify="left")
    for col in ("event time", "where", "status", "monitor", "feature", "statistic", "value", "threshold", "effect",
                "horizon"):
        t.add_column(col, justify="right" if col in ("value", "threshold", "effect") else "left")
    for a in alerts[:limit]:
        src = a.get("source") or {}
        where = f"row {a['row']}" if a.get("row") is not None else (
            f"p{src.get('partition')}@{src.get('offset_end')}" if src else "-")
        ev = a.get("evidence") or {}
        hz = ev.get("horizon") or {}
        t.add_row(_when(a["event_time"]), where, a["status"], a["monitor"], a["feature"] or "-", a["statistic"],
                  "-" if a["value"] is None else f"{a['value']:.4g}",
                  "-" if a["threshold"] is None else f"{a['threshold']:.4g}",
                  "-" if ev.get("effect") is None else f"{ev['effect']:.2f}",
                  f"{hz['windows']} w / {hz['events']:,} ev" if isinstance(hz, dict) and "windows" in hz else "-")
    c.print(t)
    if len(alerts) > limit:
        c.print(f"[dim]... and {len(alerts) - limit} more[/]")
    ranked = drift_leaders(alerts)
    if ranked:
        c.print("drifted features by effect (statistic / threshold): "
                + ", ".join(f"{f} {e:.2f}" for f, e in ranked))


def drift_leaders(alerts: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Features of firing drift alerts, each with its largest effect, largest first.

    >>> drift_leaders([{"status": "firing", "monitor": "data_drift", "feature": "a", "evidence": {"effect": 1.2}},
    ...                {"status": "firing", "monitor": "data_drift", "feature": "b", "evidence": {"effect": 3.0}}])
    [('b', 3.0), ('a', 1.2)]
    """
    best: dict[str, float] = {}
    for a in alerts:
        effect = (a.get("evidence") or {}).get("effect")
        if a.get("status") == "firing" and a.get("monitor") in ("data_drift", "prediction_drift") and a.get("feature") \
                and effect is not None:
            best[a["feature"]] = max(effect, best.get(a["feature"], 0.0))
    return sorted(best.items(), key=lambda fe: -fe[1])


def print_kafka_summary(s: dict[str, Any]) -> None:
    c = console()
    c.print(f"[bold]{s['source']}[/]" + (f" + {s['labels_topic']}" if s.get("labels_topic") else "")
            + f" ({s['range']}, {s['method']}): {s['messages']:,} messages, {s['events']:,} events, "
            f"{s['labels']:,} labels in {s['seconds']:.2f} s ({s['events_per_second']:,.0f} events/s)")
    if s.get("deadlettered"):
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["deadletter_reasons"].items()))
        c.print(f"[yellow]{s['deadlettered']:,} messages would be dead-lettered[/] ({reasons})")
    spans = ", ".join(f"{k} {a}..{b}" for k, (a, b) in sorted(s["partitions"].items()))
    c.print(f"[dim]offsets replayed: {spans}[/]")


def _when(t: int | None) -> str:
    """Event time for people: ISO 8601 for real epochs, the raw number for row-based times."""
    if t is None:
        return "-"
    if t >= 631_152_000_000:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return str(t)


def _history(alerts: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[tuple[str, int]]]:
    out: dict[tuple[Any, ...], list[tuple[str, int]]] = {}
    for a in alerts:
        out.setdefault((a.get("model"), a["monitor"], a.get("feature")), []).append((a["status"], a["event_time"]))
    return out


def _fmt_history(h: list[tuple[str, int]], limit: int = 3) -> str:
    if not h:
        return "never"
    s = ", ".join(f"{st} {_when(t)}" for st, t in h[:limit])
    return s + (f" (+{len(h) - limit})" if len(h) > limit else "")


def compare_table(a: Outcome, b: Outcome, limit: int = 20) -> dict[str, Any]:
    """Print alert counts per monitor for two rule sets side by side, and the conditions (model, monitor,
    feature) whose alert history differs between them."""
    from rich.table import Table

    c = console()
    ca = Counter((x["monitor"], x["status"]) for x in a.alerts)
    cb = Counter((x["monitor"], x["status"]) for x in b.alerts)
    monitors = sorted({m for m, _ in ca} | {m for m, _ in cb})
    t = Table(title="alerts per monitor (firing / resolved)", title_justify="left")
    t.add_column("monitor")
    t.add_column(f"A: {a.name}", justify="right")
    t.add_column(f"B: {b.name}", justify="right")
    t.add_column("B - A (firing)", justify="right")
    rows = {}
    for m in monitors:
        fa, fb = ca[(m, "firing")], cb[(m, "firing")]
        rows[m] = {"a": {"firing": fa, "resolved": ca[(m, "resolved")]},
                   "b": {"firing": fb, "resolved": cb[(m, "resolved")]}}
        t.add_row(m, f"{fa} / {ca[(m, 'resolved')]}", f"{fb} / {cb[(m, 'resolved')]}",
                  f"{fb - fa:+d}" if fb != fa else "=")
    c.print(t)
    ha, hb = _history(a.alerts), _history(b.alerts)
    keys = sorted(set(ha) | set(hb), key=lambda k: tuple("" if x is None else str(x) for x in k))
    differ = [k for k in keys if ha.get(k, []) != hb.get(k, [])]
    if not differ:
        c.print("[green]both rule sets raise the same alerts at the same event times[/]")
    else:
        d = Table(title=f"where they differ ({len(differ)} conditions)", title_justify="left")
        for col in ("monitor", "feature", "A", "B"):
            d.add_column(col)
        first = {k: min([t for _, t in ha.get(k, []) + hb.get(k, [])] or [0]) for k in differ}
        for k in sorted(differ, key=lambda k: first[k])[:limit]:
            d.add_row(k[1], k[2] or "-", _fmt_history(ha.get(k, [])), _fmt_history(hb.get(k, [])))
        c.print(d)
        if len(differ) > limit:
            c.print(f"[dim]... and {len(differ) - limit} more[/]")
    return {"monitors": rows, "differ": [list(k) for k in differ]}


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 86_400_000:
        return f"{v / 86_400_000:.2f} d"
    if a >= 3_600_000:
        return f"{v / 3_600_000:.2f} h"
    if a >= 60_000:
        return f"{v / 60_000:.1f} min"
    if a >= 1000:
        return f"{v / 1000:.1f} s"
    return f"{v:.0f} ms"


def _fmt_rows(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def print_score(sc: BacktestScore, name: str | None = None) -> None:
    """The scoring table: one row per monitor (and ``all``)."""
    from rich.table import Table

    c = console()
    t = Table(title="score against the truth" + (f" ({name})" if name else ""), title_justify="left")
    t.add_column("monitor", no_wrap=True, min_width=16)
    for col in ("changes", "detected", "missed", "false alarms", "delay rows", "delay time", "MTBFA rows",
                "MTBFA time"):
        t.add_column(col, justify="right", no_wrap=True)
    for m in sc.monitors:
        t.add_row(m.monitor, str(m.changes), str(m.detections), str(m.missed), str(m.false_alarms),
                  _fmt_rows(m.mean_delay_rows), _fmt_ms(m.mean_delay_ms), _fmt_rows(m.mtbfa_rows),
                  _fmt_ms(m.mtbfa_ms))
    c.print(t)
    for m in sc.monitors:
        for d in m.matches:
            c.print(f"  {m.monitor}: {d.change} detected by {d.monitor}"
                    + (f"/{d.feature}" if d.feature else "")
                    + f" after {_fmt_rows(d.delay_rows)} rows, {_fmt_ms(d.delay_ms)}")

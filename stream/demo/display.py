"""What the demo shows: a live table on a terminal, plain lines otherwise (logs, tests), and the summary."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEV_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


@dataclass
class Progress:
    phase: str = "starting"
    published: int = 0
    labels: int = 0
    processed: int = 0
    joined: int = 0
    note: str = ""




def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def alert_line(a: dict[str, Any]) -> str:
    """One plain line per alert (non-terminal output, and the log)."""
    d = a.get("demo", {})
    when = dt.datetime.fromtimestamp((a.get("event_time") or 0) / 1000).strftime("%H:%M:%S")
    return (f"ALERT {a['status'].upper():8} {a['severity']:8} {a['monitor']:16} {a['model']}"
            f"{'/' + a['feature'] if a.get('feature') else ''}  {a.get('statistic')} {_num(a.get('value'))}"
            f" vs {_num(a.get('threshold'))}  at {when} row {d.get('row')} ({d.get('phase')})")


class Display:
    """A rich Live view (alerts table + progress) on a terminal; plain lines otherwise (logs, tests)."""

    def __init__(self, console: Any, total: int, phases: list[Any]):
        self.console = console
        self.total = total
        self.phases = phases
        self.progress = Progress()
        self.rows: list[dict[str, Any]] = []
        self.live: Any = None
        self.t0 = time.monotonic()

    def __enter__(self) -> Display:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(*exc)
            self.live = None

    def phase(self, text: str) -> None:
        self.progress.phase = text
        if self.live is None:
            from rich.markup import escape

            self.console.print(f"[bold]== {escape(text)}[/]")
        self.refresh()

    def alert(self, a: dict[str, Any]) -> None:
        self.rows.append(a)
        if self.live is None:
            style = "dim" if a["status"] == "resolved" else SEV_STYLE.get(a["severity"], "")
            self.console.print(alert_line(a), style=style, highlight=False, markup=False)
        self.refresh()

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render())

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table("time", "model", "monitor", "feature", "status", "severity", "value vs threshold", "row",
                      "phase", title="glassbox alerts (live)", expand=False)
        for a in self.rows[-18:]:
            d = a.get("demo", {})
            when = dt.datetime.fromtimestamp((a.get("event_time") or 0) / 1000).strftime("%H:%M:%S")
            sev = a["severity"]
            table.add_row(when, a["model"], a["monitor"], a.get("feature") or "-", a["status"],
                          Text(sev, style=SEV_STYLE.get(sev, "")),
                          f"{_num(a.get('value'))} vs {_num(a.get('threshold'))}", str(d.get("row")),
                          str(d.get("phase")), style="dim" if a["status"] == "resolved" else None)
        p = self.progress
        bar_w = 30
        done = int(bar_w * p.published / max(self.total, 1))
        head = Text(f" {p.phase} {p.note}", style="bold")
        line = Text(f" [{'#' * done}{'.' * (bar_w - done)}] sent {p.published:,}/{self.total:,} events, "
                    f"{p.labels:,} labels | worker {p.processed:,} events, {p.joined:,} labels | "
                    f"{len(self.rows)} alerts | {time.monotonic() - self.t0:.0f}s")
        return Group(table, head, line)



def print_summary(console: Any, s: dict[str, Any], urls: dict[str, str]) -> None:
    from rich.panel import Panel
    from rich.table import Table

    table = Table("monitor", "firing", "resolved", "first firing at row", "injected at row", box=None)
    injected = {p["monitor"]: p["start"] for p in s["phases"] if p["monitor"]}
    for monitor, c in s["counts"].items():
        table.add_row(monitor, str(c.get("firing", 0)), str(c.get("resolved", 0)),
                      str(s["first_firing_row"].get(monitor, "-")), str(injected.get(monitor, "-")))
    early = (f"no alert before the first injected change (row {s['first_change_row']:,})" if not s["early_alerts"]
             else f"{len(s['early_alerts'])} alert(s) before the first change at row {s['first_change_row']:,}")
    lines = [
        f"{s['alerts']} alerts from {s['rows']:,} events in {s['seconds']:.0f}s; {early}.",
        f"missing: {', '.join(s['missing'])}" if s["missing"] else "data drift, concept drift and data quality "
        "problems were each detected.",
        f"notified through: {', '.join(s['receivers'])} (notifier log: {s['logs']}/notifier.log)",
        f"alerts as JSON lines: {s['alerts_file']}",
        *[f"Evidently report ({m}): {p}" for m, p in s["reports"].items()],
        *([f"all reports of the run: {Path(next(iter(s['reports'].values()))).parent}"] if s["reports"] else []),
        "",
        *([f"MLflow UI:    {urls['mlflow']}"] if "mlflow" in urls else [f"MLflow UI:    {s['commands']['mlflow']}"]),
        *([f"Evidently UI: {urls['evidently']}"] if "evidently" in urls
          else [f"Evidently UI: {s['commands']['evidently']}"]),
    ]
    from rich.console import Group
    from rich.text import Text

    console.print(Panel(Group(table, Text(""), Text("\n".join(lines))), title="glassbox demo: summary",
                        expand=False))


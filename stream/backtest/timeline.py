"""The backtest timeline: each monitored statistic over time with its threshold, the alert spans and the true
change points, as small multiples (one panel per model and column, plus one per model for performance and one
for estimated performance).

Panels come from the closed-window records of a replay (``kind`` ``predictions``: per-column statistic,
value, threshold, drift; ``kind`` ``outcomes``: the performance decision; ``kind`` ``estimation`` and
``estimation_realized``: the estimated accuracy with its band, and the realized accuracy once the window's labels
arrived, drawn together) and from its alerts: a span runs
from a ``firing`` alert to the next ``resolved`` one of the same fingerprint (or to the end). Panels whose
column fired come first (earliest first), then those with the most drifted windows, so with 30 features
the drifted ones are on top. The x axis is the event time when the stream has real timestamps, else the
input row.

``write_html`` writes one self-contained page (plotly.js inlined once, works offline) with one
``<div class="panel">`` per panel; ``write_png`` draws the same panels with matplotlib (Agg).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors.scoring import ChangePoint, EventClock
from detectors.values import finite_number

MIN_EPOCH_MS = 631_152_000_000  # 1990: below this, "times" are row numbers
PNG_MAX_PANELS = 60
PANEL_MONITORS = {"data_drift", "prediction_drift", "data_quality"}
OUTCOME_MONITORS = {"concept_drift", "performance"}
ESTIMATED = "estimated performance"  # the panel of the estimated_performance monitor
COLORS = {"data_drift": "#d62728", "prediction_drift": "#9467bd", "data_quality": "#ff7f0e",
          "concept_drift": "#d62728", "performance": "#8c564b", "estimated_performance": "#e377c2"}
SHORT = {"data_drift": "drift", "prediction_drift": "drift", "data_quality": "quality", "concept_drift": "concept",
         "performance": "performance", "estimated_performance": "estimated"}
REALIZED_COLOR = "#ff7f0e"


@dataclass
class Span:
    monitor: str
    start: float
    end: float | None  # None: still firing at the end of the replay
    severity: str


@dataclass
class Panel:
    model: str | None
    name: str  # column name, or "performance"
    statistic: str
    x: list[float] = field(default_factory=list)
    value: list[float | None] = field(default_factory=list)
    threshold: list[float | None] = field(default_factory=list)
    drift: list[bool] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    changes: list[tuple[float, str]] = field(default_factory=list)
    realized: list[tuple[float, float]] = field(default_factory=list)  # estimated panels: (x, realized metric)

    @property
    def title(self) -> str:
        m = f"{self.model} · " if self.model else ""
        return f"{m}{self.name} ({self.statistic})"

    def order_key(self) -> tuple[int, float, int, str]:
        first = min((s.start for s in self.spans), default=math.inf)
        return (0 if self.spans else 1, first, -sum(self.drift), self.title)


@dataclass
class Timeline:
    panels: list[Panel]
    x_is_time: bool
    title: str = "glassbox backtest"


def _xval(t: int | None, row: int | None, x_is_time: bool) -> float | None:
    v = t if x_is_time else row
    return None if v is None else float(v)


def build_timeline(windows: Sequence[Mapping[str, Any]], alerts: Iterable[Mapping[str, Any]],
                   changes: Sequence[ChangePoint] = (), *, title: str = "glassbox backtest") -> Timeline:
    """Panels from window records and alerts (and change points), drifted first."""
    clock = EventClock.from_windows(windows)
    starts = [int(w["start"]) for w in windows if w.get("start") is not None]
    x_is_time = bool(starts) and min(starts) >= MIN_EPOCH_MS
    panels: dict[tuple[str | None, str], Panel] = {}
    for w in windows:
        model = w.get("model")
        if w.get("kind", "predictions") == "predictions":
            row = clock.window_end_row(model, int(w["index"]))
            x = _xval(w.get("end"), row, x_is_time)
            if x is None:
                continue
            for col, r in (w.get("columns") or {}).items():
                p = panels.get((model, col))
                if p is None:
                    p = panels[(model, col)] = Panel(model, col, str(r.get("statistic")))
                p.x.append(x)
                p.value.append(finite_number(r.get("value")))
                p.threshold.append(finite_number(r.get("threshold")))
                p.drift.append(bool(r.get("drift")))
        elif str(w.get("kind")).startswith("estimation"):
            _add_estimate(panels, w, clock, x_is_time)
        else:
            d = w.get("decision") or {}
            if d.get("statistic") is None:
                continue
            end = w.get("end")
            x = _xval(end, clock.row_at(model, int(end)) if end is not None else None, x_is_time)
            if x is None:
                continue
            p = panels.get((model, "performance"))
            if p is None:
                p = panels[(model, "performance")] = Panel(model, "performance", str(d["statistic"]))
            p.x.append(x)
            p.value.append(finite_number(d.get("value")))
            p.threshold.append(finite_number(d.get("threshold")))
            p.drift.append(bool(d.get("condition")))
    _add_spans(panels, alerts, clock, x_is_time)
    for c in changes:
        t = c.time if c.time is not None else clock.time_at(c.model, c.row) if c.row is not None else None
        row = c.row if c.row is not None else clock.row_at(c.model, c.time) if c.time is not None else None
        x = _xval(t, row, x_is_time)
        if x is None:
            continue
        for (model, name), p in panels.items():
            if c.model not in (None, model):
                continue
            if c.feature is not None and c.feature != name:
                continue
            if c.monitor in OUTCOME_MONITORS and name != "performance":
                continue
            if c.monitor in PANEL_MONITORS and name == "performance":
                continue
            p.changes.append((x, c.label()))
    ordered = sorted(panels.values(), key=Panel.order_key)
    return Timeline(ordered, x_is_time, title)


def _add_estimate(panels: dict[tuple[str | None, str], Panel], w: Mapping[str, Any], clock: EventClock,
                  x_is_time: bool) -> None:
    """An estimation record: the estimate and its band's degradation bound, or (once labelled) the realized value."""
    model = w.get("model")
    est = w.get("estimated") or {}
    metric = "accuracy" if "accuracy" in est else next(iter(est), None)
    if metric is None:
        return
    x = _xval(w.get("end"), clock.window_end_row(model, int(w["index"])), x_is_time)
    if x is None:
        return
    p = panels.get((model, ESTIMATED))
    if p is None:
        p = panels[(model, ESTIMATED)] = Panel(model, ESTIMATED, f"estimated {metric}; orange: realized")
    if w.get("kind") == "estimation_realized":
        v = finite_number((w.get("realized") or {}).get(metric))
        if v is not None:
            p.realized.append((x, v))
        return
    p.x.append(x)
    v = finite_number(est.get(metric))
    side = "hi" if metric == "mae" else "lo"  # the band's degradation side: an error rises, a score falls
    bound = finite_number(((w.get("band") or {}).get(metric) or {}).get(side))
    p.value.append(v)
    p.threshold.append(bound)
    p.drift.append(v is not None and bound is not None and (v > bound if side == "hi" else v < bound))


def _add_spans(panels: dict[tuple[str | None, str], Panel], alerts: Iterable[Mapping[str, Any]],
               clock: EventClock, x_is_time: bool) -> None:
    open_: dict[str, tuple[Panel, Span]] = {}
    for a in alerts:
        mon = a.get("monitor")
        model = a.get("model")
        if mon in PANEL_MONITORS:
            p = panels.get((model, a.get("feature"))) or panels.get((None, a.get("feature")))
        elif mon in OUTCOME_MONITORS:
            p = panels.get((model, "performance")) or panels.get((None, "performance"))
        elif mon == "estimated_performance":
            p = panels.get((model, ESTIMATED)) or panels.get((None, ESTIMATED))
        else:
            p = None
        if p is None:
            continue
        row = a.get("row")
        if row is None:
            w = a.get("window") or {}
            row = clock.window_end_row(model, int(w["index"])) if mon in PANEL_MONITORS and "index" in w \
                else clock.row_at(model, int(a.get("event_time", 0)))
        x = _xval(a.get("event_time"), row, x_is_time)
        if x is None:
            continue
        fp = str(a.get("fingerprint") or (model, mon, a.get("feature")))
        if a.get("status") == "firing":
            if fp not in open_:
                span = Span(str(mon), x, None, str(a.get("severity", "warning")))
                p.spans.append(span)
                open_[fp] = (p, span)
        elif fp in open_:
            open_.pop(fp)[1].end = x


# HTML ---------------------------------------------------------------------------------------------------------
def _x_for_plotly(xs: Sequence[float], x_is_time: bool) -> list[Any]:
    if not x_is_time:
        return list(xs)
    return [datetime.fromtimestamp(v / 1000, UTC).isoformat() for v in xs]


def _figure(p: Panel, tl: Timeline, x_end: float) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    xs = _x_for_plotly(p.x, tl.x_is_time)
    fig.add_trace(go.Scatter(x=xs, y=p.value, mode="lines+markers", name=p.statistic, marker={"size": 4},
                             line={"color": "#1f77b4", "width": 1.5}))
    if any(t is not None for t in p.threshold):
        fig.add_trace(go.Scatter(x=xs, y=p.threshold, mode="lines", name="threshold",
                                 line={"color": "#555", "dash": "dash", "width": 1}))
    dx = [x for x, d in zip(xs, p.drift, strict=True) if d]
    dy = [v for v, d in zip(p.value, p.drift, strict=True) if d]
    if dx:
        fig.add_trace(go.Scatter(x=dx, y=dy, mode="markers", name="drift", marker={"color": "#d62728", "size": 6}))
    if p.realized:
        fig.add_trace(go.Scatter(x=_x_for_plotly([x for x, _ in p.realized], tl.x_is_time),
                                 y=[v for _, v in p.realized], mode="lines+markers", name="realized",
                                 marker={"size": 4}, line={"color": REALIZED_COLOR, "width": 1.5}))
    labelled: set[str] = set()
    for s in p.spans:
        x0, x1 = _x_for_plotly([s.start, s.end if s.end is not None else x_end], tl.x_is_time)
        fig.add_vrect(x0=x0, x1=x1, fillcolor=COLORS.get(s.monitor, "#d62728"), opacity=0.15, line_width=0)
        if s.monitor not in labelled:  # name each monitor once, at its first span
            labelled.add(s.monitor)
            fig.add_annotation(x=x0, y=0 if s.monitor == "data_quality" else 1, yref="paper",
                               text=SHORT.get(s.monitor, s.monitor), showarrow=False, xanchor="left",
                               yanchor="bottom" if s.monitor == "data_quality" else "top",
                               font={"size": 9, "color": COLORS.get(s.monitor, "#d62728")})
    for x, label in p.changes:
        xv = _x_for_plotly([x], tl.x_is_time)[0]
        fig.add_shape(type="line", x0=xv, x1=xv, y0=0, y1=1, yref="paper",
                      line={"color": "#2ca02c", "width": 2, "dash": "dot"})
        fig.add_annotation(x=xv, y=1.0, yref="paper", text=html.escape(label), showarrow=False,
                           font={"size": 9, "color": "#2ca02c"}, xanchor="right", yanchor="top")
    fig.update_layout(title={"text": html.escape(p.title), "font": {"size": 12}}, height=230,
                      margin={"l": 45, "r": 10, "t": 30, "b": 30}, showlegend=False, template="plotly_white")
    fig.update_xaxes(title_text=None if tl.x_is_time else "row")
    return fig


def write_html(tl: Timeline, path: str | os.PathLike[str]) -> Path:
    """A self-contained HTML page, one ``<div class="panel">`` per panel (plotly.js inlined once)."""
    from plotly.offline import get_plotlyjs

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    x_end = max((max(p.x) for p in tl.panels if p.x), default=0.0)
    divs = []
    for i, p in enumerate(tl.panels):
        fig = _figure(p, tl, x_end)
        body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"panel-{i}",
                           config={"displayModeBar": False, "responsive": True})
        cls = "panel fired" if p.spans else "panel"
        divs.append(f'<div class="{cls}" data-panel="{html.escape(p.title)}">{body}</div>')
    fired = sum(1 for p in tl.panels if p.spans)
    head = (f"<h1>{html.escape(tl.title)}</h1><p class='summary'>{len(tl.panels)} panels, {fired} with alerts "
            "(shaded: firing until resolved; dashed: threshold; dotted green: true change points)</p>")
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(tl.title)}</title>"
        "<style>body{font-family:sans-serif;margin:12px}"
        ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:8px}"
        ".panel{border:1px solid #ddd;border-radius:4px}.panel.fired{border-color:#d62728}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"{head}<div class='grid'>{''.join(divs)}</div></body></html>"
    )
    out.write_text(page, encoding="utf-8")
    return out


# PNG ----------------------------------------------------------------------------------------------------------
def write_png(tl: Timeline, path: str | os.PathLike[str], *, columns: int = 3,
              max_panels: int = PNG_MAX_PANELS) -> Path:
    """The same panels as a PNG grid (matplotlib, Agg); beyond ``max_panels`` the least drifted are left out."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    panels = tl.panels[:max_panels] or [Panel(None, "no windows", "-")]
    cols = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.0 * rows), squeeze=False)
    x_end = max((max(p.x) for p in panels if p.x), default=0.0)

    def conv(v: float) -> Any:
        return datetime.fromtimestamp(v / 1000, UTC) if tl.x_is_time else v

    for ax, p in zip(axes.flat, panels, strict=False):
        xs = [conv(v) for v in p.x]
        ax.plot(xs, [math.nan if v is None else v for v in p.value], lw=1.2, color="#1f77b4")
        if any(t is not None for t in p.threshold):
            ax.plot(xs, [math.nan if t is None else t for t in p.threshold], lw=0.8, ls="--", color="#555")
        if p.realized:
            ax.plot([conv(x) for x, _ in p.realized], [v for _, v in p.realized], lw=1.2, color=REALIZED_COLOR)
        for s in p.spans:
            ax.axvspan(conv(s.start), conv(s.end if s.end is not None else x_end),
                       color=COLORS.get(s.monitor, "#d62728"), alpha=0.15, lw=0)
        for x, _ in p.changes:
            ax.axvline(conv(x), color="#2ca02c", ls=":", lw=1.5)
        ax.set_title(p.title, fontsize=8, color="#d62728" if p.spans else "black")
        ax.tick_params(labelsize=6)
        if tl.x_is_time:
            ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=4))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
        else:
            ax.xaxis.set_major_locator(plt.MaxNLocator(4))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    more = len(tl.panels) - len(panels)
    fig.suptitle(tl.title + (f" (+{more} panels not shown)" if more > 0 else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.0 * rows)))
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def write_plot(windows: Sequence[Mapping[str, Any]], alerts: Iterable[Mapping[str, Any]],
               changes: Sequence[ChangePoint], path: str | os.PathLike[str], *,
               title: str = "glassbox backtest") -> Path:
    """``.html`` or ``.png`` by the path's suffix."""
    tl = build_timeline(windows, list(alerts), changes, title=title)
    suffix = Path(path).suffix.lower()
    if suffix in (".html", ".htm"):
        return write_html(tl, path)
    if suffix == ".png":
        return write_png(tl, path)
    raise ValueError(f"--plot {path}: expected a .html or .png path")

"""Score alerts against known change points: detections, delays, false alarms, misses, per monitor.

A *truth* is a list of :class:`ChangePoint`: where the stream changed, by input row and/or event time,
optionally for one model, monitor and feature (and optionally until where, for a transient change).

**Matching rule.** Only ``firing`` alerts count. A change point is *active* from its position until the
next change point with the same scope (model, monitor, feature), or until its ``end`` when one is given.
A firing alert is *explained* by a change when it matches the change's scope (an unset field matches
anything) and lies inside its active interval; the latest-starting such change explains it. The first
explained alert of a change is its **detection** (delay = alert position - change position, in rows and
in event time when both are known); later explained alerts are *repeats* (not false alarms: the stream has
changed). A firing alert that no change explains is a **false alarm**; a change with no explained alert is
**missed**. **Mean time between false alarms** is the scored span (rows, and ms) divided by the number of
false alarms (``None`` when there were none).

Scores are reported per monitor (every monitor that fired or that the truth names) and for ``all``
monitors together. Positions of alerts: ``row`` when the alert carries it (file replay), else the row
derived from the closed-window records (:class:`~detectors.event_clock.EventClock`): exact at prediction-window
ends, linear within a window for per-event monitors. Nothing here reads files or clocks; results depend on inputs only.

>>> alerts = [
...     {"monitor": "data_drift", "feature": "x", "status": "firing", "row": 499, "event_time": 499, "model": "m"},
...     {"monitor": "data_drift", "feature": "x", "status": "firing", "row": 2999, "event_time": 2999, "model": "m"},
... ]
>>> s = score(alerts, parse_truth({"changes": [{"row": 2500, "time": 2500, "monitor": "data_drift"}]}),
...           span_rows=4000, span_ms=4000)
>>> m = s.monitor("data_drift")
>>> m.detections, m.delays_rows, m.false_alarms, m.missed, m.mtbfa_rows
(1, [499], 1, 0, 4000.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from detectors.alert import MONITORS
from detectors.event_clock import EventClock

ALL = "all"
WINDOW_MONITORS = ("data_drift", "prediction_drift", "data_quality")  # decided at prediction-window ends
_KEYS = {"row", "time", "model", "monitor", "feature", "end_row", "end_time", "name"}


class TruthError(ValueError):
    """A truth specification that cannot be used; the message names the entry and the field."""


@dataclass(frozen=True)
class ChangePoint:
    """Where the stream changed (``row``: 0-based input row of the model's stream; ``time``: epoch ms)."""

    row: int | None = None
    time: int | None = None
    model: str | None = None
    monitor: str | None = None
    feature: str | None = None
    end_row: int | None = None
    end_time: int | None = None
    name: str | None = None

    def scope(self) -> tuple[str | None, str | None, str | None]:
        return self.model, self.monitor, self.feature

    def matches(self, alert: Mapping[str, Any]) -> bool:
        return ((self.model is None or self.model == alert.get("model"))
                and (self.monitor is None or self.monitor == alert.get("monitor"))
                and (self.feature is None or self.feature == alert.get("feature")))

    def label(self) -> str:
        if self.row is not None:
            where = f"row {self.row}"
        elif self.time is not None and self.time >= 631_152_000_000:  # a real epoch: ISO 8601
            where = datetime.fromtimestamp(self.time / 1000, UTC).isoformat().replace("+00:00", "Z")
        else:
            where = f"time {self.time}"
        scope = "/".join(x for x in self.scope() if x)
        return (self.name or where) + (f" ({scope})" if scope else "")


def _time(v: Any, where: str) -> int:
    if isinstance(v, bool) or v is None:
        raise TruthError(f"{where}: expected epoch milliseconds or an RFC 3339 time, got {v!r}")
    if isinstance(v, (int, float)) and math.isfinite(v):
        return int(v)
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("z", "Z"))
        except ValueError:
            raise TruthError(f"{where}: {v!r} is not an RFC 3339 time") from None
        if dt.tzinfo is None:
            raise TruthError(f"{where}: {v!r} has no UTC offset")
        return int(dt.timestamp() * 1000)
    raise TruthError(f"{where}: expected epoch milliseconds or an RFC 3339 time, got {type(v).__name__}")


def _row(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TruthError(f"{where}: expected a row number >= 0, got {v!r}")
    return v


def _name(v: Any, where: str) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        raise TruthError(f"{where}: expected a non-empty string, got {v!r}")
    return v


def parse_truth(doc: Any) -> list[ChangePoint]:
    """Change points from ``{"changes": [...]}`` or a bare list of ``{"row"|"time": ..., ...}`` objects.

    >>> parse_truth([{"time": "2026-01-01T00:00:00Z", "monitor": "concept_drift"}])[0].time
    1767225600000
    """
    items = doc.get("changes") if isinstance(doc, dict) else doc
    if isinstance(doc, dict) and (set(doc) - {"changes", "description", "seed"}):
        raise TruthError(f"unknown key {sorted(set(doc) - {'changes', 'description', 'seed'})[0]!r} "
                         "(expected 'changes')")
    if not isinstance(items, list):
        raise TruthError("expected {\"changes\": [...]} or a list of change points")
    out: list[ChangePoint] = []
    for i, it in enumerate(items):
        where = f"changes[{i}]"
        if not isinstance(it, dict):
            raise TruthError(f"{where}: expected an object, got {type(it).__name__}")
        extra = set(it) - _KEYS
        if extra:
            raise TruthError(f"{where}: unknown key {sorted(extra)[0]!r} (allowed: {', '.join(sorted(_KEYS))})")
        if it.get("row") is None and it.get("time") is None:
            raise TruthError(f"{where}: needs 'row' or 'time'")
        mon = _name(it.get("monitor"), f"{where}.monitor")
        if mon is not None and mon not in MONITORS:
            raise TruthError(f"{where}.monitor: {mon!r} is not one of {', '.join(MONITORS)}")
        cp = ChangePoint(
            row=None if it.get("row") is None else _row(it["row"], f"{where}.row"),
            time=None if it.get("time") is None else _time(it["time"], f"{where}.time"),
            model=_name(it.get("model"), f"{where}.model"), monitor=mon,
            feature=_name(it.get("feature"), f"{where}.feature"),
            end_row=None if it.get("end_row") is None else _row(it["end_row"], f"{where}.end_row"),
            end_time=None if it.get("end_time") is None else _time(it["end_time"], f"{where}.end_time"),
            name=_name(it.get("name"), f"{where}.name"),
        )
        if cp.end_row is not None and cp.row is not None and cp.end_row <= cp.row:
            raise TruthError(f"{where}: end_row must be after row")
        if cp.end_time is not None and cp.time is not None and cp.end_time <= cp.time:
            raise TruthError(f"{where}: end_time must be after time")
        out.append(cp)
    return out


@dataclass
class Match:
    change: str
    monitor: str
    feature: str | None
    row: int | None
    time: int | None
    delay_rows: int | None
    delay_ms: int | None


@dataclass
class MonitorScore:
    monitor: str
    changes: int = 0
    detections: int = 0
    missed: int = 0
    false_alarms: int = 0
    repeats: int = 0
    delays_rows: list[int] = field(default_factory=list)
    delays_ms: list[int] = field(default_factory=list)
    mtbfa_rows: float | None = None
    mtbfa_ms: float | None = None
    matches: list[Match] = field(default_factory=list)
    missed_changes: list[str] = field(default_factory=list)
    false_alarm_at: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mean_delay_rows(self) -> float | None:
        return sum(self.delays_rows) / len(self.delays_rows) if self.delays_rows else None

    @property
    def mean_delay_ms(self) -> float | None:
        return sum(self.delays_ms) / len(self.delays_ms) if self.delays_ms else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean_delay_rows"], d["mean_delay_ms"] = self.mean_delay_rows, self.mean_delay_ms
        return d


@dataclass
class BacktestScore:
    monitors: list[MonitorScore]
    span_rows: int | None
    span_ms: int | None

    def monitor(self, name: str) -> MonitorScore:
        for m in self.monitors:
            if m.monitor == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"span_rows": self.span_rows, "span_ms": self.span_ms,
                "monitors": {m.monitor: m.to_dict() for m in self.monitors},
                "rule": "first firing alert inside a change's active interval (until the next change with the "
                        "same scope, or its end) is its detection; unexplained firing alerts are false alarms"}


@dataclass
class _Pos:
    row: int | None
    time: int | None


def _alert_pos(a: Mapping[str, Any], clock: EventClock | None) -> _Pos:
    t = a.get("event_time")
    row = a.get("row")
    if row is None and clock:
        w = a.get("window") or {}
        if a.get("monitor") in WINDOW_MONITORS and w.get("index") is not None:
            row = clock.window_end_row(a.get("model"), int(w["index"]))
        if row is None and t is not None:
            row = clock.row_at(a.get("model"), int(t))
    return _Pos(None if row is None else int(row), None if t is None else int(t))


def _change_pos(c: ChangePoint, clock: EventClock | None) -> _Pos:
    row, t = c.row, c.time
    if clock:
        if row is None and t is not None:
            row = clock.row_at(c.model, t)
        if t is None and row is not None:
            t = clock.time_at(c.model, row)
    return _Pos(row, t)


def _unit(c: ChangePoint) -> str:
    return "row" if c.row is not None else "time"


def _at(p: _Pos, unit: str) -> int | None:
    return p.row if unit == "row" else p.time


def _intervals(changes: Sequence[ChangePoint], clock: EventClock | None) -> list[tuple[ChangePoint, _Pos, float]]:
    """Each change with its position and the end of its active interval (in the change's own unit)."""
    out = []
    for ci, c in enumerate(changes):
        unit = _unit(c)
        start = _at(_change_pos(c, clock), unit)
        end: float = math.inf
        if unit == "row" and c.end_row is not None:
            end = c.end_row
        elif unit == "time" and c.end_time is not None:
            end = c.end_time
        for oi, o in enumerate(changes):
            if oi == ci or o.scope() != c.scope():
                continue
            o_at = o.row if unit == "row" else o.time
            if o_at is None:
                o_at = _at(_change_pos(o, clock), unit)
            if o_at is not None and start is not None and (o_at > start or (o_at == start and oi > ci)):
                end = min(end, o_at)
        out.append((c, _change_pos(c, clock), end))
    return out


def _score_group(name: str, alerts: list[dict[str, Any]], changes: list[ChangePoint], clock: EventClock | None,
                 span_rows: int | None, span_ms: int | None) -> MonitorScore:
    ms = MonitorScore(monitor=name, changes=len(changes))
    ivs = _intervals(changes, clock)
    pos = [_alert_pos(a, clock) for a in alerts]
    order = sorted(range(len(alerts)), key=lambda i: (pos[i].time if pos[i].time is not None else -1,
                                                      pos[i].row if pos[i].row is not None else -1, i))
    detected: dict[int, Match] = {}
    for i in order:
        a, p = alerts[i], pos[i]
        best: tuple[int, int] | None = None  # (start, change index)
        for j, (c, cp, end) in enumerate(ivs):
            unit = _unit(c)
            at, start = _at(p, unit), _at(cp, unit)
            if at is None or start is None or not c.matches(a) or not (start <= at < end):
                continue
            if best is None or start > best[0] or (start == best[0] and j > best[1]):
                best = (start, j)
        if best is None:
            ms.false_alarms += 1
            ms.false_alarm_at.append({"monitor": a.get("monitor"), "feature": a.get("feature"), "row": p.row,
                                      "time": p.time})
            continue
        j = best[1]
        if j in detected:
            ms.repeats += 1
            continue
        c, cp, _ = ivs[j]
        d_rows = p.row - cp.row if p.row is not None and cp.row is not None else None
        d_ms = p.time - cp.time if p.time is not None and cp.time is not None else None
        detected[j] = Match(change=c.label(), monitor=a.get("monitor", ""), feature=a.get("feature"), row=p.row,
                            time=p.time, delay_rows=d_rows, delay_ms=d_ms)
    for j, (c, _, _) in enumerate(ivs):
        m = detected.get(j)
        if m is None:
            ms.missed += 1
            ms.missed_changes.append(c.label())
            continue
        ms.detections += 1
        ms.matches.append(m)
        if m.delay_rows is not None:
            ms.delays_rows.append(m.delay_rows)
        if m.delay_ms is not None:
            ms.delays_ms.append(m.delay_ms)
    if ms.false_alarms:
        ms.mtbfa_rows = span_rows / ms.false_alarms if span_rows else None
        ms.mtbfa_ms = span_ms / ms.false_alarms if span_ms else None
    return ms


def score(alerts: Iterable[Mapping[str, Any]], changes: Sequence[ChangePoint], *, clock: EventClock | None = None,
          span_rows: int | None = None, span_ms: int | None = None,
          monitors: Sequence[str] | None = None) -> BacktestScore:
    """Score the firing ``alerts`` against ``changes`` per monitor and for all monitors (see module doc).

    ``span_rows`` / ``span_ms``: the length of the scored stream (for the mean time between false alarms);
    by default taken from ``clock``.
    """
    firing = [dict(a) for a in alerts if a.get("status") == "firing"]
    if clock is not None:
        span_rows = span_rows if span_rows is not None else (clock.total_rows() or None)
        span_ms = span_ms if span_ms is not None else clock.span_ms()
    names = list(monitors) if monitors is not None else sorted(
        {a["monitor"] for a in firing} | {c.monitor for c in changes if c.monitor})
    out = []
    for name in names:
        alerts_m = [a for a in firing if a.get("monitor") == name]
        changes_m = [c for c in changes if c.monitor in (None, name)]
        out.append(_score_group(name, alerts_m, changes_m, clock, span_rows, span_ms))
    out.append(_score_group(ALL, firing, list(changes), clock, span_rows, span_ms))
    return BacktestScore(monitors=out, span_rows=span_rows, span_ms=span_ms)

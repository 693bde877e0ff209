"""Sharded models: partial event-time windows folded per shard, merged and closed by one combiner.

A sharded model's events are keyed by ``prediction_id``, so they spread over every partition of the topic. Each
partition is a *shard*: :class:`ShardMonitor` folds its events into the open event-time window exactly as
:class:`~detectors.monitor.ModelMonitor` does, but when the shard's events pass the window's end it emits the
window's integer counts as a *partial* (:class:`WindowCounts`) instead of testing them. Joined outcomes ride along
with the partials (event time, label time, prediction, label, scores, per outcome). :class:`Combiner` merges the
partials of each window (counts add up: merging the partials of any split equals one pass over all events), closes
a window once every shard's watermark (the newest event time it has seen) passed its end, or once
``allowed_lateness_s`` of wall time went by since its first partial (a shard's events ended it; an idle shard
cannot hold windows open), and closes it with the very code of the unsharded monitor
(:meth:`ModelMonitor.close_window`): same tests, horizons, hysteresis and alerts. Outcomes are fed to the same
outcome monitor in label-time order, up to the outcome watermark of the shards that have labels.

Each shard numbers its partials (``seq``); the combiner applies a shard's partials once, in order, so a partial
sent again after a crash (see ``outbox``) is not counted twice. Partials are plain JSON-able dicts.

>>> import numpy as np, pandas as pd
>>> from detectors.batch import EventBatch
>>> from detectors.config import DetectionConfig
>>> from detectors.profile import build_profile
>>> rng = np.random.default_rng(0)
>>> profile = build_profile(pd.DataFrame({"x": rng.normal(size=4000), "prediction": rng.integers(0, 2, 4000)}))
>>> cfg = DetectionConfig(window_ms=1000, min_window_events=50)
>>> t = np.arange(6000) * 2  # 500 events per 1-s window, a shift from the 6th window on
>>> x = np.r_[rng.normal(size=2500), rng.normal(1.5, 1.0, size=3500)]
>>> batch = EventBatch.from_columns(ids=t.astype(str), timestamps=t, features={"x": x},
...                                 prediction=rng.integers(0, 2, 6000))
>>> shards = [ShardMonitor(profile, cfg, model="m", shard=s) for s in range(2)]
>>> for s, sh in enumerate(shards):
...     _ = sh.observe(batch.take(np.arange(6000) % 2 == s))
>>> comb = Combiner(ModelMonitor(profile, cfg, model="m"), shards=2)
>>> alerts = [a for sh in shards for p in sh.take_outbox() for a in comb.add(p, now=0.0)]
>>> unsharded = ModelMonitor(profile, cfg, model="m").observe(batch)
>>> [(a["feature"], a["window"]) for a in alerts] == [(a["feature"], a["window"]) for a in unsharded]
True
>>> comb.closed, comb.duplicates  # each shard's last window stays open: no later event has ended it
(11, 0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.batch import EventBatch, OutcomeBatch, as_column
from detectors.config import DetectionConfig
from detectors.monitor import ModelMonitor
from detectors.profile import ReferenceProfile
from detectors.window_counts import WindowCounts

PARTIAL_SCHEMA = "glassbox.partial/v1"
SHARD_STATE_VERSION = 1
COMBINER_STATE_VERSION = 1
RECENT_WINDOWS = 64  # closed windows whose (key, events) a combiner keeps (stats, tests)
OUTCOME_FLUSH = 20_000  # outcomes buffered by a shard before they go out without waiting for a window


def _require_event_time(config: DetectionConfig) -> None:
    if config.window_ms is None:
        raise ValueError("sharded models need event-time windows: set detection.window_ms")


class ShardMonitor(ModelMonitor):
    """The fold of one shard (partition) of a sharded model: partial windows out, no tests.

    ``observe`` and ``observe_outcomes`` return no alerts; partials wait in ``outbox`` (part of the state) until
    :meth:`ack` says the combiner's topic has them, so a crash in between sends them again (same ``seq``).
    """

    def __init__(self, profile: ReferenceProfile, config: DetectionConfig | None = None, model: str = "model",
                 model_version: str | None = None, shard: int = 0):
        config = config or DetectionConfig()
        _require_event_time(config)
        super().__init__(profile, config, model=model, model_version=model_version)
        self.estimation = None  # estimated performance is not merged across shards (the combiner has none)
        self.shard = shard
        self.seq = 0  # partials numbered so far
        self.lwm: int | None = None  # newest label event time seen
        self.outbox: list[dict[str, Any]] = []
        self._out: list[OutcomeBatch] = []
        self._out_n = 0

    def counts(self) -> WindowCounts:
        """The open window's counts (copies)."""
        w = self._win
        return WindowCounts(self._num_counts.copy(), self._num_type.copy(), self._num_domain.copy(),
                            self._cat_counts.copy(), int(w["n"]), w["start"], w["end"], w["first"], w["last"])

    @property
    def wm(self) -> int | None:
        """The shard's watermark: the start of its open window (every later partial is for that window or a
        later one, late events counting into the open window as in the unsharded monitor)."""
        return None if self._key is None else self._key * int(self.config.window_ms)  # type: ignore[arg-type]

    def observe(self, batch: EventBatch) -> list[dict[str, Any]]:
        done = len(self.outbox)
        super().observe(batch)
        fresh = self.outbox[done:]  # windows this batch ended: each one's watermark is the next one's start
        for p, nxt in zip(fresh, [*fresh[1:], None][: len(fresh)], strict=True):
            p["wm"] = self.wm if nxt is None else nxt["key"] * self.config.window_ms
        return []

    def _window_done(self) -> list[dict[str, Any]]:
        self._emit(self._key, self.counts())
        self.windows += 1
        self._reset_window()
        return []

    def observe_outcomes(self, batch: OutcomeBatch) -> list[dict[str, Any]]:
        """Buffer joined outcomes; they go out with the next partial, or alone once the label time passes a
        window's end (so the combiner can feed them while predictions idle) or ``OUTCOME_FLUSH`` wait."""
        if len(batch):
            before = self.lwm
            top = int(batch.label_timestamps.max())
            self.lwm = top if before is None else max(before, top)
            self._out.append(batch)
            self._out_n += len(batch)
            step = int(self.config.window_ms)  # type: ignore[arg-type]
            if self._out_n >= OUTCOME_FLUSH or before is None or self.lwm // step > before // step:
                self._emit(None, None)
                self.outbox[-1]["wm"] = self.wm
        return []

    def _emit(self, key: int | None, counts: WindowCounts | None) -> None:
        self.seq += 1
        self.outbox.append({
            "schema": PARTIAL_SCHEMA, "model": self.model, "shard": self.shard, "seq": self.seq, "key": key,
            "wm": self.wm, "lwm": self.lwm, "counts": counts.to_state() if counts is not None else None,
            "outcomes": _outcome_columns(self._out) if self._out else None,
        })
        self._out, self._out_n = [], 0

    def take_outbox(self) -> list[dict[str, Any]]:
        """The partials not acknowledged yet, oldest first (they stay in the outbox until :meth:`ack`)."""
        return list(self.outbox)

    def ack(self, seq: int) -> None:
        """The partials up to ``seq`` are on the summaries topic."""
        self.outbox = [p for p in self.outbox if p["seq"] > seq]

    def to_state(self) -> dict[str, Any]:
        if self._pending:
            self._fold()
        c = self.counts()
        return {"version": SHARD_STATE_VERSION, "model": self.model, "shard": self.shard, "profile": self.digest,
                "key": self._key, "events": self.events, "windows": self.windows, "late": self.late,
                "seq": self.seq, "lwm": self.lwm, "counts": c.to_state(), "outbox": self.outbox,
                "outcomes": _outcome_columns(self._out) if self._out else None}

    @classmethod
    def from_state(cls, profile: ReferenceProfile, config: DetectionConfig | None, model: str,
                   model_version: str | None, state: dict[str, Any]) -> ShardMonitor:
        if state.get("version") != SHARD_STATE_VERSION:
            raise ValueError(f"unsupported shard state version {state.get('version')!r}")
        mon = cls(profile, config, model=model, model_version=model_version, shard=int(state["shard"]))
        if state.get("profile") != mon.digest:
            raise ValueError("the shard state was saved against a different reference profile")
        mon._key = state["key"]
        mon.events, mon.windows, mon.late = int(state["events"]), int(state["windows"]), int(state["late"])
        mon.seq, mon.lwm = int(state["seq"]), state["lwm"]
        c = WindowCounts.from_state(state["counts"], (mon._num_counts.shape, mon._cat_counts.shape))
        mon._num_counts, mon._num_type, mon._num_domain, mon._cat_counts = c.num, c.num_type, c.num_domain, c.cat
        mon._win = {"n": c.n, "start": c.start, "end": c.end, "first": c.first, "last": c.last}
        mon.outbox = list(state["outbox"])
        if state.get("outcomes"):
            ob = _outcome_batch(state["outcomes"])
            mon._out, mon._out_n = [ob], len(ob)
        return mon


def _outcome_columns(batches: list[OutcomeBatch]) -> dict[str, Any]:
    """Joined outcomes as JSON-able columns (what a combiner needs to run the outcome monitor)."""
    cat = np.concatenate
    cols: dict[str, Any] = {
        "ts": cat([b.timestamps for b in batches]).tolist(),
        "lts": cat([b.label_timestamps for b in batches]).tolist(),
        "pred": cat([np.asarray(b.prediction, object) for b in batches]).tolist(),
        "label": cat([np.asarray(b.label, object) for b in batches]).tolist(),
        "part": cat([b.partitions if len(b.partitions) == len(b) else np.full(len(b), -1, np.int64)
                     for b in batches]).tolist(),
        "off": cat([b.offsets if len(b.offsets) == len(b) else np.full(len(b), -1, np.int64)
                    for b in batches]).tolist(),
    }
    if all(b.scores for b in batches):
        names = sorted(set.intersection(*(set(b.scores) for b in batches)))  # type: ignore[arg-type]
        cols["scores"] = {k: cat([b.scores[k] for b in batches]).tolist() for k in names}  # type: ignore[index]
    return cols


def _outcome_batch(cols: dict[str, Any], order: np.ndarray | None = None) -> OutcomeBatch:
    def pick(v: list[Any], dtype: Any = None) -> np.ndarray:
        a = np.asarray(v, dtype) if dtype is not None else as_column(v)
        return a if order is None else a[order]

    n = len(cols["ts"])
    scores = {k: pick(v, np.float64) for k, v in cols["scores"].items()} if cols.get("scores") else None
    return OutcomeBatch(ids=pick([""] * n, object), timestamps=pick(cols["ts"], np.int64),
                        label_timestamps=pick(cols["lts"], np.int64), prediction=pick(cols["pred"]),
                        label=pick(cols["label"]), scores=scores, partitions=pick(cols["part"], np.int64),
                        offsets=pick(cols["off"], np.int64))


def _concat_columns(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    if a is None:
        return b
    out = {k: a[k] + b[k] for k in ("ts", "lts", "pred", "label", "part", "off")}
    if a.get("scores") and b.get("scores"):
        out["scores"] = {k: a["scores"][k] + b["scores"][k] for k in a["scores"] if k in b["scores"]}
    return out


class Combiner:
    """Merges one sharded model's partials and closes its windows with ``monitor`` (an unsharded
    :class:`ModelMonitor`, so the same closing code runs as for an unsharded model or a replay).

    ``add`` takes a partial (and the wall-clock time, s) and returns the alerts of the windows it let close;
    ``tick`` closes windows held only by idle shards once ``allowed_lateness_s`` passed.
    """

    def __init__(self, monitor: ModelMonitor, shards: int, allowed_lateness_s: float = 30.0):
        _require_event_time(monitor.config)
        monitor.estimation = None
        self.monitor = monitor
        self.shards = shards
        self.lateness = allowed_lateness_s
        self.window_ms = int(monitor.config.window_ms)  # type: ignore[arg-type]
        self._shapes = (monitor._num_counts.shape, monitor._cat_counts.shape)
        self.open: dict[int, WindowCounts] = {}
        self.first_seen: dict[int, float] = {}  # wall time of each open window's first partial
        self.seq: dict[int, int] = {}  # per shard: last partial applied
        self.wm: dict[int, int] = {}
        self.lwm: dict[int, int] = {}
        self.outcomes: dict[str, Any] | None = None  # joined outcomes not fed yet (columns)
        self.released = -(2**62)  # label time up to which outcomes were fed
        self.held_since: float | None = None  # wall time since outcomes of closed windows wait for a shard
        self.last_closed: int | None = None
        self.recent: list[list[int]] = []  # [key, events] of the last closed windows
        self.closed = 0
        self.partials = 0
        self.duplicates = 0  # partials seen again (a shard's resend after a crash): skipped
        self.late_partials = 0  # partials of windows already closed: counted into the oldest open window
        self.late_outcomes = 0  # outcomes older than those already fed: fed with the next ones
        self.by_lateness = 0  # windows closed without every shard's watermark past them

    @property
    def open_windows(self) -> list[int]:
        return sorted(self.open)

    def add(self, partial: dict[str, Any], now: float) -> list[dict[str, Any]]:
        s, seq = int(partial["shard"]), int(partial["seq"])
        if seq <= self.seq.get(s, 0):
            self.duplicates += 1
            return []
        self.seq[s] = seq
        self.partials += 1
        if partial["wm"] is not None:
            self.wm[s] = max(self.wm.get(s, partial["wm"]), partial["wm"])
        if partial["lwm"] is not None:
            self.lwm[s] = max(self.lwm.get(s, partial["lwm"]), partial["lwm"])
        alerts: list[dict[str, Any]] = []
        if partial["outcomes"]:
            self.outcomes = _concat_columns(self.outcomes, partial["outcomes"])
            if self.last_closed is not None:  # outcomes of closed windows need not wait for the next close
                alerts = self._release(self._outcome_bound(self.last_closed))
        if partial["counts"] is not None:
            key = int(partial["key"])
            counts = WindowCounts.from_state(partial["counts"], self._shapes)
            if self.last_closed is not None and key <= self.last_closed:
                self.late_partials += 1
                key = min(self.open, default=self.last_closed + 1)
            if key in self.open:
                self.open[key] = self.open[key].merge(counts)
            else:
                self.open[key] = counts
                self.first_seen[key] = now
        return alerts + self.tick(now)

    def tick(self, now: float) -> list[dict[str, Any]]:
        """Close every window that may close now, oldest first; returns their alerts."""
        alerts: list[dict[str, Any]] = []
        while self.open:
            k = min(self.open)
            end = (k + 1) * self.window_ms  # first event time of the next window
            done = len(self.wm) >= self.shards and min(self.wm.values()) >= end
            if not done:  # a shard's event ended it (partials come only for ended windows): wait the lateness
                if now - self.first_seen.get(k, now) < self.lateness:
                    break
                self.by_lateness += 1
            alerts.extend(self._close(k, done))
        if self.outcomes is not None and self.last_closed is not None:  # outcomes held by a shard without labels
            end = (self.last_closed + 1) * self.window_ms - 1
            if self._outcome_bound(self.last_closed) >= end or self.released >= end:
                self.held_since = None
            elif self.held_since is None:
                self.held_since = now
            elif now - self.held_since >= self.lateness:
                self.held_since = None
                alerts.extend(self._release(end))
        return alerts

    def _close(self, k: int, complete: bool) -> list[dict[str, Any]]:
        counts = self.open.pop(k)
        self.first_seen.pop(k, None)
        self.last_closed = k
        self.closed += 1
        self.recent = [*self.recent[1 - RECENT_WINDOWS:], [k, counts.n]]
        alerts = self.monitor.close_window(k, counts) if counts.n else []
        bound = self._outcome_bound(k) if complete else (k + 1) * self.window_ms - 1
        return alerts + self._release(bound)

    def _outcome_bound(self, k: int) -> int:
        """The label time up to which outcomes may be fed once window ``k`` closed: its end, and no further than
        every shard with labels has read both its streams (a label waits for its prediction and conversely)."""
        bound = (k + 1) * self.window_ms - 1
        if self.lwm:
            if len(self.lwm) < self.shards:  # a shard has sent no label yet: wait for it (or the lateness)
                return self.released
            bound = min(bound, min(min(self.wm.get(s, lw), lw) for s, lw in self.lwm.items()))
        return bound

    def _release(self, bound: int) -> list[dict[str, Any]]:
        """Feed the outcomes with a label time up to ``bound``, in label-time order."""
        cols = self.outcomes
        if cols is None or bound <= self.released:
            return []
        lts = np.asarray(cols["lts"], np.int64)
        go = lts <= bound
        if not go.any():
            return []
        self.late_outcomes += int((lts[go] <= self.released).sum())
        idx = np.flatnonzero(go)
        order = idx[np.lexsort((np.asarray(cols["ts"], np.int64)[idx], lts[idx]))]
        keep = np.flatnonzero(~go).tolist()
        self.outcomes = None if not keep else {
            k: ([v[i] for i in keep] if k != "scores" else {c: [s[i] for i in keep] for c, s in v.items()})
            for k, v in cols.items()}
        self.released = bound
        alerts = self.monitor.observe_outcomes(_outcome_batch(cols, order))
        return alerts

    def drain_windows(self) -> list[dict[str, Any]]:
        return self.monitor.drain_windows()

    def to_state(self) -> dict[str, Any]:
        return {"version": COMBINER_STATE_VERSION, "monitor": self.monitor.to_state(),
                "open": {str(k): c.to_state() for k, c in self.open.items()},
                "first_seen": {str(k): t for k, t in self.first_seen.items()},
                "seq": {str(s): v for s, v in self.seq.items()}, "wm": {str(s): v for s, v in self.wm.items()},
                "lwm": {str(s): v for s, v in self.lwm.items()}, "outcomes": self.outcomes,
                "released": self.released, "last_closed": self.last_closed, "recent": self.recent,
                "held_since": self.held_since,
                "counters": [self.closed, self.partials, self.duplicates, self.late_partials, self.late_outcomes,
                             self.by_lateness]}

    @classmethod
    def from_state(cls, monitor: ModelMonitor, shards: int, allowed_lateness_s: float,
                   state: dict[str, Any]) -> Combiner:
        if state.get("version") != COMBINER_STATE_VERSION:
            raise ValueError(f"unsupported combiner state version {state.get('version')!r}")
        c = cls(monitor, shards, allowed_lateness_s)
        c.open = {int(k): WindowCounts.from_state(v, c._shapes) for k, v in state["open"].items()}
        c.first_seen = {int(k): float(t) for k, t in state["first_seen"].items()}
        c.seq = {int(s): int(v) for s, v in state["seq"].items()}
        c.wm = {int(s): int(v) for s, v in state["wm"].items()}
        c.lwm = {int(s): int(v) for s, v in state["lwm"].items()}
        c.outcomes, c.released, c.last_closed = state["outcomes"], int(state["released"]), state["last_closed"]
        c.recent = [list(r) for r in state["recent"]]
        c.held_since = state["held_since"]
        (c.closed, c.partials, c.duplicates, c.late_partials, c.late_outcomes, c.by_lateness) = state["counters"]
        return c

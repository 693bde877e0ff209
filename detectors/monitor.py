"""The model monitor: windows over one model's prediction and outcome streams, and the alerts they raise.

``observe`` takes prediction batches of any size; events are buffered and binned in vectorised slices,
each tumbling window (count-based, or event-time with ``window_ms``) is tested when it closes, and alert
transitions (``firing`` / ``resolved``, after hysteresis) come back as ``glassbox.alert/v1`` dicts.
``observe_outcomes`` does the same for joined labels (concept drift per event, performance per window).
Window state is integer counts (mergeable, chunking-independent); ``to_state`` / ``from_state`` carry
everything a restarted worker needs to continue exactly. Folding events into the open window and closing a
window are separate steps: ``close_window`` closes an event-time window from counts folded elsewhere (the
combiner of a sharded model, :mod:`detectors.partials`), with the same tests, horizons, hysteresis and alerts.

>>> import numpy as np, pandas as pd
>>> from detectors.batch import EventBatch
>>> from detectors.config import DetectionConfig
>>> from detectors.profile import build_profile
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"x": rng.normal(size=5000), "prediction": rng.integers(0, 2, 5000)})
>>> mon = ModelMonitor(build_profile(ref), DetectionConfig(window=500), model="m")
>>> x = np.r_[rng.normal(size=2000), rng.normal(1.0, 1.0, size=1000)]
>>> b = EventBatch.from_columns(ids=[str(i) for i in range(3000)], timestamps=np.arange(3000),
...                             features={"x": x}, prediction=rng.integers(0, 2, 3000))
>>> [(a["monitor"], a["feature"], a["status"], a["row"]) for a in mon.observe(b)][0]
('data_drift', 'x', 'firing', 2499)
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

import numpy as np

from detectors.alert import make_alert
from detectors.batch import EventBatch, OutcomeBatch
from detectors.config import DetectionConfig
from detectors.domains import count_outside_segments
from detectors.estimation import EstimationMonitor
from detectors.horizons import WindowHistory
from detectors.hysteresis import Hysteresis
from detectors.outcomes import ClassCodes, OutcomeMonitor
from detectors.profile import ReferenceProfile
from detectors.window_counts import WindowCounts
from detectors.window_tests import ClosedWindow, WindowEvaluation, WindowTests

STATE_VERSION = 2  # 2: window history of the longer horizons, counts outside the valid domain
READABLE_STATES = (1, 2)  # a version-1 state continues with an empty history
FLUSH_EVENTS = 4096  # buffered events are binned at least this often


class SliceCounts(NamedTuple):
    """Counts of each slice of a fold (the windows it fills), first axis the slice: numeric bins, numeric
    values of the wrong type, numeric values outside the valid domain, categorical bins."""

    num: np.ndarray
    num_type: np.ndarray
    num_domain: np.ndarray
    cat: np.ndarray


class ModelMonitor:
    """Drift, data quality, concept drift and performance monitoring of one model against its profile."""

    def __init__(self, profile: ReferenceProfile, config: DetectionConfig | None = None, model: str = "model",
                 model_version: str | None = None):
        self.profile = profile
        self.config = config = config or DetectionConfig()
        self.model = model
        self.model_version = model_version
        self.tests = WindowTests(profile, config)
        self.outcomes = OutcomeMonitor(profile, config, self.tests.alpha)
        self.estimation = EstimationMonitor.create(profile, config, self.tests.alpha)
        self._est_cols: tuple[np.ndarray, np.ndarray] | None = None
        self.digest = profile.digest
        self._num_specs = [(c.role, c.name) for c in self.tests.num_cols]
        self._cat_specs = [(c.role, c.name) for c in self.tests.cat_cols]
        self._hyst: dict[tuple[str, str | None], Hysteresis] = {}
        self._columns_h: tuple[list[tuple[str, Hysteresis]], list[Hysteresis]] | None = None
        self._quiet = False  # every column's alert idle (:meth:`_idle`), as of the last window closed in full
        self._pending: list[EventBatch] = []
        self._pending_n = 0
        self._records: deque[dict[str, Any]] = deque(maxlen=config.max_window_records)
        self._keep_records = True
        self._history = WindowHistory(self.tests.horizons)
        self.events = 0  # prediction events binned so far
        self.windows = 0  # prediction windows closed
        self.late = 0  # event-time mode: events older than the open window (counted into it)
        self.dropped_records = 0
        self._index = 0
        self._key: int | None = None
        self._reset_window()
        if config.window_ms is None:  # calibrate full windows now, not when the first one closes
            self.tests.limits(config.window)

    @property
    def keep_records(self) -> bool:
        """Whether closed windows (predictions, outcomes, estimates) leave records for :meth:`drain_windows`; a
        replay that keeps none turns them off and saves building them."""
        return self._keep_records

    @keep_records.setter
    def keep_records(self, keep: bool) -> None:
        self._keep_records = self.outcomes.keep_records = keep
        if self.estimation:
            self.estimation.keep_records = keep

    # helpers ----------------------------------------------------------------------------------------------
    def _reset_window(self) -> None:
        self._reset_counts()
        self._reset_place()

    def _reset_place(self) -> None:
        self._win: dict[str, Any] = {"n": 0, "start": None, "end": None, "first": None, "last": None}

    def _reset_counts(self) -> None:
        self._num_counts = self.tests.num.empty()
        self._num_type = np.zeros(len(self.tests.num), np.int64)
        self._num_domain = np.zeros(len(self.tests.num), np.int64)
        self._cat_counts = self.tests.cat.empty()

    def _h(self, monitor: str, feature: str | None) -> Hysteresis:
        h = self._hyst.get((monitor, feature))
        if h is None:
            if monitor == "concept_drift":
                h = self.outcomes.concept
            elif monitor == "performance":
                h = self.outcomes.perf
            else:
                h = Hysteresis(self.config.fire_after, self.config.resolve_after)
            self._hyst[(monitor, feature)] = h
        return h

    def _column_hysteresis(self) -> tuple[list[tuple[str, Hysteresis]], list[Hysteresis]]:
        """Each monitored column's drift ``(monitor, hysteresis)`` and data-quality hysteresis, in results order
        (looked up once: every window has the same columns)."""
        if self._columns_h is None:
            cols = self.profile.monitored
            drift = [("data_drift" if self.profile.columns[c].role == "feature" else "prediction_drift", c)
                     for c in cols]
            self._columns_h = ([(m, self._h(m, c)) for m, c in drift], [self._h("data_quality", c) for c in cols])
        return self._columns_h

    def _idle(self) -> bool:
        """No column's drift or quality alert is firing or counting windows towards firing."""
        drift_h, quality_h = self._column_hysteresis()
        return not any(h.firing or h.hold for _, h in drift_h) and not any(h.firing or h.hold for h in quality_h)

    def _alert(self, *, monitor: str, feature: str | None, status: str, direction: str | None, detector: str,
               statistic: str, value: float | None, threshold: float | None, threshold_kind: str,
               window: dict[str, Any], event_time: int, src: tuple[int, int, int], summary: str,
               evidence: dict[str, Any]) -> dict[str, Any]:
        part, off_start, off_end = src
        if part < 0:
            source: dict[str, Any] = {"row": off_end}
            row: int | None = off_end
        else:
            source, row = {"partition": part, "offset_start": off_start, "offset_end": off_end}, None
        evidence = {**evidence, "reference": {"name": self.profile.name, "digest": self.digest,
                                              "rows": self.profile.rows}}
        return make_alert(
            model=self.model, model_version=self.model_version, monitor=monitor, feature=feature, status=status,
            severity=self.config.severity(monitor, improvement=direction == "improvement"), detector=detector,
            statistic=statistic, value=value, threshold=threshold, threshold_kind=threshold_kind, window=window,
            event_time=event_time, summary=summary, source=source, row=row, direction=direction,
            evidence=evidence,
        )

    # predictions ------------------------------------------------------------------------------------------
    def observe(self, batch: EventBatch) -> list[dict[str, Any]]:
        """Feed prediction events (any chunking); returns the alert transitions they caused."""
        n = len(batch)
        if n == 0:
            return []
        self._pending.append(batch)
        self._pending_n += n
        if self.config.window_ms is None:
            if self._win["n"] + self._pending_n >= self.config.window or self._pending_n >= FLUSH_EVENTS:
                return self._fold()
            return []
        kmax = int(batch.timestamps.max()) // self.config.window_ms
        if self._key is None or kmax > self._key or self._pending_n >= FLUSH_EVENTS:
            return self._fold()
        return []

    def _column(self, b: EventBatch, role: str, name: str) -> np.ndarray | None:
        if role == "feature":
            return b.features.get(name)
        if role == "prediction":
            return b.prediction
        return b.scores.get(name) if b.scores else None

    def _gather(self, specs: list[tuple[str, str]], batches: list[EventBatch]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for role, name in specs:
            parts = [self._column(b, role, name) for b in batches]
            if all(p is None for p in parts):
                out.append(None)
            elif len(parts) == 1:
                out.append(parts[0])
            else:
                out.append(np.concatenate([p if p is not None else np.full(len(b), np.nan)
                                           for p, b in zip(parts, batches, strict=True)]))
        return out

    def _fold(self) -> list[dict[str, Any]]:
        batches, self._pending, self._pending_n = self._pending, [], 0
        num = self._gather(self._num_specs, batches)
        cat = self._gather(self._cat_specs, batches)
        ts = np.concatenate([b.timestamps for b in batches]) if len(batches) > 1 else batches[0].timestamps
        n = len(ts)
        parts_l, offs_l, base = [], [], self.events
        for b in batches:
            m = len(b)
            parts_l.append(b.partitions if len(b.partitions) == m else np.full(m, -1, np.int64))
            offs_l.append(b.offsets if len(b.offsets) == m else np.arange(base, base + m, dtype=np.int64))
            base += m
        parts = np.concatenate(parts_l) if len(parts_l) > 1 else parts_l[0]
        offs = np.concatenate(offs_l) if len(offs_l) > 1 else offs_l[0]
        self._est_cols = self.estimation.columns(batches) if self.estimation else None
        alerts: list[dict[str, Any]] = []
        if self.config.window_ms is None:
            bounds, pos, filled = [], 0, self._win["n"]
            while pos < n:
                take = min(n - pos, self.config.window - filled)
                bounds.append((pos, pos + take))
                pos += take
                filled = 0 if filled + take >= self.config.window else filled + take
            seg = self._segments(num, cat, bounds)
            evaluations = iter(self._fold_counts(seg, bounds))
            for s, (a, b) in enumerate(bounds):
                self._place(s, a, b, ts, parts, offs)
                if self._win["n"] >= self.config.window:
                    alerts.extend(self._close(next(evaluations)))
            return alerts
        raw = ts // self.config.window_ms
        keys = np.maximum.accumulate(raw if self._key is None else np.maximum(raw, self._key))
        self.late += int(np.sum(keys > raw))  # late events count into the open window
        cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        bounds = list(zip(np.r_[0, cuts].tolist(), np.r_[cuts, n].tolist(), strict=True))
        seg = self._segments(num, cat, bounds)
        for s, (a, b) in enumerate(bounds):
            k = int(keys[a])
            if self._key is None:
                self._key = k
            elif k > self._key:
                if self._win["n"]:
                    alerts.extend(self._window_done())
                self._key = k
            self._add_counts(seg, s)
            self._place(s, a, b, ts, parts, offs)
        return alerts

    def _segments(self, num: list[np.ndarray | None], cat: list[np.ndarray | None], bounds: list[tuple[int, int]]
                  ) -> SliceCounts:
        """The counts of each slice of the folded events, counted for all slices at once."""
        starts = np.array([a for a, _ in bounds], np.int64)
        ends = np.array([b for _, b in bounds], np.int64)
        num_counts, num_type = self.tests.num.segment_counts(num, starts, ends)
        suspects = np.any(num_counts.sum(axis=0) * self.tests.domain_bins, axis=1)  # the others: none outside
        outside = count_outside_segments(num, *self.tests.domain, starts, ends, suspects)
        return SliceCounts(num_counts, num_type, outside, self.tests.cat.segment_counts(cat, starts, ends))

    def _fold_counts(self, seg: SliceCounts, bounds: list[tuple[int, int]]) -> list[WindowEvaluation]:
        """Count windows: add every slice's counts, and evaluate the windows they fill all at once (the open
        window's counts stay); :meth:`_place` then follows the same slices for the rest of the windows' state."""
        sealed, filled = [], self._win["n"]
        for s, (a, b) in enumerate(bounds):
            self._add_counts(seg, s)
            filled += b - a
            if filled >= self.config.window:
                sealed.append(ClosedWindow(self._num_counts, self._num_type, self._num_domain, self._cat_counts,
                                           filled))
                self._reset_counts()
                filled = 0
        if not sealed:
            return []
        horizons = self._history.push_many([w.num_counts for w in sealed], [w.cat_counts for w in sealed],
                                           [w.n for w in sealed])
        return self.tests.evaluate_windows(sealed, horizons, lazy=not self.keep_records)

    def _seal(self, n: int) -> ClosedWindow:
        """The open window's counts as a closed window of ``n`` events, with the longer horizons it completes
        (pushed to the history); the counts start afresh."""
        self._history.push(self._num_counts, self._cat_counts, n)
        closed = ClosedWindow(self._num_counts, self._num_type, self._num_domain, self._cat_counts, n,
                              self._history.merged())
        self._reset_counts()
        return closed

    def _add_counts(self, seg: SliceCounts, s: int) -> None:
        self._num_counts += seg.num[s]
        self._num_type += seg.num_type[s]
        self._num_domain += seg.num_domain[s]
        self._cat_counts += seg.cat[s]

    def _place(self, s: int, a: int, b: int, ts: np.ndarray, parts: np.ndarray, offs: np.ndarray) -> None:
        """Slice ``s`` (rows ``a:b``) into the open window's state besides its counts: estimation inputs, events,
        times and source positions."""
        m = b - a
        if self.estimation:
            self.estimation.add(self._est_cols, a, b)
        w = self._win
        if w["n"] == 0:
            w["start"] = int(ts[a])
            w["first"] = (int(parts[a]), int(offs[a]))
        w["n"] += m
        w["end"] = int(ts[b - 1])
        w["last"] = (int(parts[b - 1]), int(offs[b - 1]))
        self.events += m

    def _window_ref(self) -> dict[str, Any]:
        w = self._win
        if self.config.window_ms is not None and self._key is not None:
            start, end = self._key * self.config.window_ms, (self._key + 1) * self.config.window_ms - 1
            return {"index": self._key, "start": start, "end": end, "events": w["n"]}
        return {"index": self._index, "start": w["start"], "end": w["end"], "events": w["n"]}

    def _window_done(self) -> list[dict[str, Any]]:
        """The open event-time window ended (a later event came): close it. The shard of a sharded model hands
        its counts to the combiner instead (:class:`detectors.partials.ShardMonitor`)."""
        return self._close()

    def close_window(self, key: int, counts: WindowCounts) -> list[dict[str, Any]]:
        """Close event-time window ``key`` from counts folded elsewhere (the combiner of a sharded model merges
        its shards' partial windows): the same tests, horizons, hysteresis and alerts as :meth:`observe`."""
        assert self.config.window_ms is not None and not self._pending and not self._win["n"], "no open window"
        self._key = key
        self._num_counts, self._num_type = counts.num.copy(), counts.num_type.copy()
        self._num_domain, self._cat_counts = counts.num_domain.copy(), counts.cat.copy()
        self._win = {"n": counts.n, "start": counts.start, "end": counts.end, "first": counts.first,
                     "last": counts.last}
        self.events += counts.n
        return self._close()

    def _close(self, evaluation: WindowEvaluation | None = None) -> list[dict[str, Any]]:
        """Close the open window: its tests (``evaluation``, else its counts are evaluated now), hysteresis,
        alerts and records."""
        w = self._win
        n = int(w["n"])
        window = self._window_ref()
        cfg = self.config
        if evaluation is not None and not self.keep_records and self._quiet and evaluation.quiet():
            # nothing drifts or fails and every column's alert is idle: no transition, no record, nothing to build
            return self._closed(window, (w["last"][0], w["first"][1], w["last"][1]),
                                cfg.window_ms is None or n >= cfg.min_window_events)
        firing = {c: self._h("data_drift" if self.profile.columns[c].role == "feature" else "prediction_drift",
                             c).firing for c in self.profile.monitored} if cfg.threshold == "dynamic" else None
        if evaluation is None:
            [evaluation] = self.tests.evaluate_windows([self._seal(n)])
        results = evaluation.results(firing)
        testable = cfg.window_ms is None or n >= cfg.min_window_events
        src = (w["last"][0], w["first"][1], w["last"][1])
        drifted = sorted((v for v in results if v.drift), key=lambda v: -v.effect)
        top = [{"feature": r["column"], "statistic": r["statistic"], "value": r["value"],
                "threshold": r["threshold"], "effect": r["effect"], "horizon": r["horizon"]}
               for r in (v.result for v in drifted[: cfg.evidence_top_k])]
        alerts: list[dict[str, Any]] = []
        if testable:
            drift_h, quality_h = self._column_hysteresis()
            for v, (monitor, h) in zip(results, drift_h, strict=True):
                status = h.update(v.drift)
                if status is not None:
                    alerts.append(self._drift_alert(monitor, status, v.result, window, src, top))
            for v, h in zip(results, quality_h, strict=True):
                status = h.update(v.quality)
                if status is not None:
                    alerts.append(self._quality_alert(status, v.result, window, src, top))
        if self.keep_records:
            rs = results.dicts()
            self._record({
                "kind": "predictions", **window, "tested": testable,
                "columns": {r["column"]: {**r["stats"], "statistic": r["statistic"], "value": r["value"],
                                          "threshold": r["threshold"], "threshold_kind": r["threshold_kind"],
                                          "drift": r["drift"], "effect": r["effect"],
                                          "horizon": r["horizon"], "horizons": r["horizons"],
                                          "quality_failed": len(r["quality"])} for r in rs},
                "drifted": [v.column for v in drifted],
                "quality": {r["column"]: r["quality"] for r in rs if r["quality"]},
            })
        self._quiet = self._idle()
        return alerts + self._closed(window, src, testable)

    def _closed(self, window: dict[str, Any], src: tuple[int, int, int], testable: bool) -> list[dict[str, Any]]:
        """The rest of closing a window once its columns are done: the estimate's alerts, the counters."""
        alerts = []
        if self.estimation:
            alerts = [self._alert(**r) for r in self.estimation.close(window, src, testable)]
            self._drain_estimation()
        self.windows += 1
        self._index += 1
        self._reset_place()  # the counts started afresh when the window was sealed
        return alerts

    def _drift_alert(self, monitor: str, status: str, r: dict[str, Any], window: dict[str, Any],
                     src: tuple[int, int, int], top: list[dict[str, Any]]) -> dict[str, Any]:
        col, stat = r["column"], r["statistic"]
        what = "prediction" if monitor == "prediction_drift" else "feature"
        hz = r["horizon"]
        if status == "firing":
            bound = "a level shift" if r["threshold"] is None else f"{r['threshold']:.4g}"
            over = (f"the last {hz['windows']} windows ({hz['events']} events)" if hz["windows"] > 1
                    else f"{window['events']} events")
            summary = (f"{what} {col!r} drifted: {stat} {r['value']:.4g} beyond {bound} "
                       f"({r['threshold_kind']}, effect {r['effect']:.2f}) over {over}")
        else:
            summary = (f"{what} {col!r} back to reference for {self.config.resolve_after} windows "
                       f"({stat} {r['value']:.4g})")
        detector = self.config.dynamic_detector if r["threshold_kind"] == "dynamic" else stat
        return self._alert(
            monitor=monitor, feature=col, status=status, direction=None, detector=detector,
            statistic=stat, value=r["value"], threshold=r["threshold"], threshold_kind=r["threshold_kind"],
            window=window, event_time=window["end"], src=src, summary=summary,
            evidence={"top_features": top, "column": r["stats"], "effect": r["effect"], "horizon": hz,
                      "horizons": r["horizons"]},
        )

    def _quality_alert(self, status: str, r: dict[str, Any], window: dict[str, Any], src: tuple[int, int, int],
                       top: list[dict[str, Any]]) -> dict[str, Any]:
        col = r["column"]
        checks = r["quality"]
        if checks:
            worst = max(checks, key=lambda c: c["value"] / max(c["threshold"], 1e-12))
            stat, value, thr = worst["check"], worst["value"], worst["threshold"]
        else:
            stat = "quality"
            value = max(r["stats"].get(k, 0.0) for k in ("missing_rate", "domain_rate", "unseen_rate",
                                                         "type_error_rate") if k in r["stats"])
            thr = None
        if status == "firing":
            summary = f"data quality of {col!r}: {stat.replace('_', ' ')} {value:.3g} above {thr:.3g}"
        else:
            summary = f"data quality of {col!r} back to reference for {self.config.resolve_after} windows"
        return self._alert(
            monitor="data_quality", feature=col, status=status, direction=None, detector="binomial",
            statistic=stat, value=value, threshold=thr, threshold_kind="calibrated", window=window,
            event_time=window["end"], src=src, summary=summary,
            evidence={"checks": checks, "top_features": top, "column": r["stats"]},
        )

    def _record(self, record: dict[str, Any]) -> None:
        if len(self._records) == self._records.maxlen:
            self.dropped_records += 1
        self._records.append(record)

    # outcomes ---------------------------------------------------------------------------------------------
    def observe_outcomes(self, batch: OutcomeBatch) -> list[dict[str, Any]]:
        """Feed predictions joined with their labels, in arrival order; returns alert transitions."""
        if len(batch) == 0:
            return []
        codes = self.outcomes.codes(batch)  # looked up once for outcomes and estimation
        recs = self.outcomes.observe(batch, codes)
        for r in self.outcomes.records:
            self._record(r)
        self.outcomes.records.clear()
        self.realize_estimates(batch, codes)
        return self.outcome_alerts(recs)

    def outcome_alerts(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The alerts of the outcome monitor's transition records (:meth:`OutcomeMonitor.observe`)."""
        return [self._alert(**r) for r in records]

    def realize_estimates(self, batch: OutcomeBatch, codes: ClassCodes | None = None) -> None:
        """The estimation side of :meth:`observe_outcomes`: the labels realize the estimated windows (``codes``:
        the batch's class codes if looked up already)."""
        if self.estimation:
            self.estimation.observe_outcomes(batch, codes)
            self._drain_estimation()

    def _drain_estimation(self) -> None:
        assert self.estimation is not None
        for r in self.estimation.records:
            self._record(r)
        self.estimation.records.clear()

    # windows and state ------------------------------------------------------------------------------------
    def drain_windows(self) -> list[dict[str, Any]]:
        """Closed-window records (predictions and outcomes) since the last call, oldest first."""
        out = list(self._records)
        self._records.clear()
        return out

    @property
    def pending_events(self) -> int:
        """Events in the open (not yet closed) prediction window."""
        return int(self._win["n"]) + self._pending_n

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly after a restart (JSON-serialisable)."""
        if self._pending:
            leftover = self._fold()
            assert not leftover, "folding buffered events never closes a window"
        w = self._win
        return {
            "version": STATE_VERSION,
            "model": self.model,
            "profile": self.digest,
            "events": self.events,
            "windows": self.windows,
            "late": self.late,
            "index": self._index,
            "key": self._key,
            "win": {"n": w["n"], "start": w["start"], "end": w["end"],
                    "first": list(w["first"]) if w["first"] else None,
                    "last": list(w["last"]) if w["last"] else None},
            "num_counts": self._num_counts.tolist(),
            "num_type": self._num_type.tolist(),
            "num_domain": self._num_domain.tolist(),
            "history": self._history.to_state(),
            "cat_counts": self._cat_counts.tolist(),
            "hysteresis": [[m, f, h.to_state()] for (m, f), h in self._hyst.items()
                           if m not in ("concept_drift", "performance")],
            "dynamic": self.tests.dynamic.to_state(),
            "outcomes": self.outcomes.to_state(),
            "estimation": self.estimation.to_state() if self.estimation else None,
        }

    @classmethod
    def from_state(cls, profile: ReferenceProfile, config: DetectionConfig | None, model: str,
                   model_version: str | None, state: dict[str, Any]) -> ModelMonitor:
        """A monitor that continues where the one that produced ``state`` stopped."""
        mon = cls(profile, config, model=model, model_version=model_version)
        if state.get("version") not in READABLE_STATES:
            raise ValueError(f"unsupported monitor state version {state.get('version')!r}")
        if state.get("profile") != mon.digest:
            raise ValueError("the state was saved against a different reference profile "
                             f"({state.get('profile')} != {mon.digest})")
        mon.events, mon.windows, mon.late = int(state["events"]), int(state["windows"]), int(state["late"])
        mon._index = int(state["index"])
        mon._key = None if state["key"] is None else int(state["key"])
        w = dict(state["win"])
        w["first"] = tuple(w["first"]) if w["first"] else None
        w["last"] = tuple(w["last"]) if w["last"] else None
        mon._win = w
        mon._num_counts = np.asarray(state["num_counts"], np.int64).reshape(mon._num_counts.shape)
        mon._cat_counts = np.asarray(state["cat_counts"], np.int64).reshape(mon._cat_counts.shape)
        mon._num_type = np.asarray(state["num_type"], np.int64)
        mon._num_domain = np.asarray(state.get("num_domain", np.zeros(len(mon._num_type))), np.int64)
        mon._history = WindowHistory.from_state(mon.tests.horizons, state.get("history", []),
                                                (mon._num_counts.shape, mon._cat_counts.shape))
        for m, f, st in state["hysteresis"]:
            mon._h(m, f).load_state(st)
        mon.tests.dynamic.load_state(state["dynamic"])
        mon.outcomes.load_state(state["outcomes"])
        if mon.estimation and state.get("estimation"):
            mon.estimation.load_state(state["estimation"])
        return mon

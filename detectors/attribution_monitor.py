"""Attribution drift: per window, SHAP on a seeded sample of the events, compared with the reference's.

Per count window of ``window`` events (event-time windows are not supported) a
:class:`~detectors.reservoir.Reservoir` keeps at most ``k`` events (seeded, chunking-independent). A closed
window's sample is explained, its mean |SHAP| vector is compared with the reference's (distance and nDCG,
:mod:`detectors.attribution_stats`), and the verdict goes through hysteresis; transitions come back as
``attribution_drift`` alerts carrying the window's top SHAP movers. Bounds are calibrated like the other
monitors' (null windows resampled from the reference's per-row |SHAP|, against a bootstrap of the reference,
:func:`detectors.calibration.tail_quantile`, floored by a minimum effect), or static.

SHAP runs off the hot path: :meth:`AttributionMonitor.collect` (cheap) returns the samples of closed windows,
:meth:`AttributionMonitor.explain_window` (heavy, touches no monitor state) can run elsewhere, and
:meth:`AttributionMonitor.decide` takes results in any order and decides in window order;
:meth:`AttributionMonitor.observe` does all three inline. shap holds the GIL, so "elsewhere" is another
process: pickle :attr:`AttributionMonitor.window_explainer` into a one-process pool once, send it the samples.

Results depend on the events and the seed only, except for two counted skips: ``budget`` (an explanation
over ``budget_s`` on a monotonic clock is abandoned) and ``backlog`` (``max_pending`` windows already await
SHAP). Inline, with ``budget_s=None``, nothing depends on time at all.

>>> from sklearn.tree import DecisionTreeRegressor
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
>>> model = DecisionTreeRegressor(max_depth=4, random_state=0).fit(ref, ref["a"] + 0.5 * ref["b"])
>>> cfg = AttributionConfig(k=100, budget_s=None, calibration_resamples=200, reference_rows=200)
>>> mon = AttributionMonitor(model, None, ref, ["a", "b"], cfg, window=200)
>>> def window(i, a_scale):  # 200 events; feature "a" scaled by a_scale
...     x = rng.normal(size=(200, 2)) * [a_scale, 1.0]
...     return EventBatch.from_columns(ids=[f"{i}.{j}" for j in range(200)], timestamps=range(200 * i, 200 * i + 200),
...                                    features={"a": x[:, 0], "b": x[:, 1]}, prediction=[0.0] * 200)
>>> mon.observe(window(0, 1.0))
[]
>>> [(a["status"], a["statistic"], a["evidence"]["top_movers"][0]["feature"]) for a in mon.observe(window(1, 0.05))]
[('firing', 'attribution_distance', 'a')]
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from detectors.alert import make_alert
from detectors.attribution import ModelExplainer, attributions_record, sample_rows
from detectors.attribution_config import AttributionConfig
from detectors.attribution_stats import attribution_distance, mean_abs_vector, ndcg, stored_abs_rows, top_movers
from detectors.attribution_window import AttributionResult, WindowExplainer, WindowSample
from detectors.batch import EventBatch
from detectors.calibration import tail_quantile
from detectors.hysteresis import Hysteresis
from detectors.reservoir import Reservoir
from detectors.window_span import WindowSpan, positions

STATE_VERSION = 1
MONITOR = "attribution_drift"
FLUSH_EVENTS = 256  # buffered events go to the reservoir at least this often


class AttributionMonitor:
    """Attribution drift of one model: reservoir per window, SHAP off the hot path, calibrated verdicts.

    ``reference_attributions`` is the record :func:`detectors.attribution.reference_attributions` stored with
    the profile (None: computed here from ``reference_sample``). When it carries per-row |SHAP|
    (``abs_shap_rows``, for every feature) the reference is not explained again: its vector and calibration
    rows come from the record (:attr:`reference_source` ``"stored"``); otherwise ``reference_sample``
    (the reference data, features at least) is explained for the calibration rows. ``reference_sample`` is
    also the model-agnostic explainer's background.
    """

    def __init__(self, model: Any, reference_attributions: dict[str, Any] | None, reference_sample: pd.DataFrame,
                 features: Sequence[str], config: AttributionConfig | None = None, model_name: str = "model",
                 seed: int = 42, *, window: int = 1000, model_version: str | None = None,
                 reference_info: dict[str, Any] | None = None, explainer: ModelExplainer | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = cfg = config or AttributionConfig()
        self.features = [str(f) for f in features]
        self.model_name = model_name
        self.model_version = model_version
        self.seed = int(seed)
        self.window = int(window)
        self.reference_info = reference_info
        self.explainer = explainer or ModelExplainer(
            model, self.features, reference_sample, seed=self.seed, background_rows=cfg.background_rows,
            permutations=cfg.permutations)
        stored = stored_abs_rows(reference_attributions, self.features)
        if stored is not None:  # stored with the reference (stream.evidence.reference.log_reference): no SHAP here
            self._ref_abs = stored
            self.reference = dict(reference_attributions or {})
            self.reference_source = "stored"
        else:
            ref_att = self.explainer.explain(sample_rows(reference_sample, cfg.reference_rows, self.seed),
                                             seed=self.seed)
            self._ref_abs = ref_att.abs_rows()
            self.reference = reference_attributions or attributions_record(ref_att, self.explainer, seed=self.seed)
            self.reference_source = "given" if reference_attributions else "computed"
        self.ref_vec = mean_abs_vector(self.reference, self.features)
        self.window_explainer = WindowExplainer(self.explainer, self.ref_vec, cfg, self.seed, clock)
        self._limits: dict[int, tuple[float, float]] = {}
        self.hysteresis = Hysteresis(cfg.fire_after, cfg.resolve_after)
        self.reservoir = Reservoir(cfg.k, self.seed, 0)
        self.index = 0  # open window
        self.events = 0
        self.windows = 0  # windows closed
        self.explained = 0  # windows explained and decided
        self.skipped: dict[str, int] = {}  # reason -> windows skipped
        self._next = 0  # next window index to decide
        self._inflight: dict[int, WindowSample] = {}
        self._ready: dict[int, AttributionResult] = {}
        self._results: deque[AttributionResult] = deque(maxlen=cfg.keep_results)
        self._records: deque[dict[str, Any]] = deque(maxlen=cfg.max_window_records)
        self.latest_movers: list[dict[str, Any]] = []
        self.latest_index: int | None = None
        self._pending: list[EventBatch] = []
        self._pending_n = 0
        self._reset_window()

    def _reset_window(self) -> None:
        self._win = WindowSpan()

    # hot path -----------------------------------------------------------------------------------------------
    def collect(self, batch: EventBatch) -> list[WindowSample]:
        """Feed prediction events (any chunking) to the reservoir; returns the samples of closed windows to
        explain (at most ``max_pending`` undecided at a time: beyond, windows are skipped as ``backlog``)."""
        out: list[WindowSample] = []
        self._collect(batch, out.append)
        return out

    def _collect(self, batch: EventBatch, on_close: Callable[[WindowSample], None]) -> None:
        n = len(batch)
        if n == 0 or not self.config.enabled:
            return
        self._pending.append(batch)  # small batches are buffered: the reservoir works best on chunks
        self._pending_n += n
        if self._win.n + self._pending_n >= self.window or self._pending_n >= FLUSH_EVENTS:
            self._fold(on_close)

    def _fold(self, on_close: Callable[[WindowSample], None]) -> None:
        batches, self._pending, self._pending_n = self._pending, [], 0
        cols: dict[str, np.ndarray] = {}
        for f in self.features:
            parts_f = [b.features[f] if f in b.features else np.full(len(b), np.nan) for b in batches]
            cols[f] = parts_f[0] if len(parts_f) == 1 else np.concatenate(parts_f)
        ts, parts, offs = positions(batches, self.events)
        n = len(ts)
        pos = 0
        while pos < n:
            take = min(n - pos, self.window - self._win.n)
            end = pos + take
            whole = pos == 0 and end == n
            self.reservoir.offer(cols if whole else {f: c[pos:end] for f, c in cols.items()})
            self._win.extend(ts, parts, offs, pos, end)
            self.events += take
            pos = end
            if self._win.n >= self.window and (ws := self._close()) is not None:
                on_close(ws)

    def _close(self) -> WindowSample | None:
        w = self._win
        sample = self.reservoir.sample()
        positions = sample.pop("_position")
        ws = WindowSample(index=self.index, window={"index": self.index, "start": w.start, "end": w.end,
                                                    "events": w.n},
                          src=w.source(), columns=sample, positions=positions)
        if len(self._inflight) >= self.config.max_pending:  # the executor is behind: skip, never queue up
            self._ready[ws.index] = AttributionResult(index=ws.index, window=ws.window, src=ws.src, rows=len(ws),
                                                      skipped=True, reason="backlog")
            out: WindowSample | None = None
        else:
            self._inflight[ws.index] = ws
            out = ws
        self.windows += 1
        self.index += 1
        self.reservoir.reset(self.index)
        self._reset_window()
        return out

    @property
    def next_to_decide(self) -> int:
        """Index of the oldest window not decided yet."""
        return self._next

    def pending_samples(self) -> list[WindowSample]:
        """Closed windows not decided yet (after a restart: explain these again), oldest first."""
        return [self._inflight[i] for i in sorted(self._inflight)]

    # executor ---------------------------------------------------------------------------------------------
    def explain_window(self, sample: WindowSample) -> AttributionResult:
        """SHAP on one window's sample and its statistics (see :class:`WindowExplainer`). Thread-safe; to run
        it in another process, send :attr:`window_explainer` there once and call it with the samples."""
        return self.window_explainer(sample)

    # decisions --------------------------------------------------------------------------------------------
    def limits(self, n: int) -> tuple[float, float]:
        """Bounds ``(distance, 1 - nDCG)`` for a sample of ``n`` rows (calibrated once per ``n``)."""
        cfg = self.config
        if cfg.threshold == "static":
            return cfg.static_distance, 1.0 - cfg.static_ndcg
        hit = self._limits.get(n)
        if hit is not None:
            return hit
        ref = self._ref_abs
        r = len(ref)
        rng = np.random.default_rng([self.seed, n, 0xCA1])
        p = np.full(r, 1.0 / r)
        win = rng.multinomial(n, p, size=cfg.calibration_resamples) @ ref / n
        boot = rng.multinomial(r, p, size=cfg.calibration_resamples) @ ref / r
        d = attribution_distance(boot, win)
        g = 1.0 - ndcg(boot, win, cfg.ndcg_k)
        a = cfg.level()
        lim = (max(tail_quantile(d, a), cfg.min_distance), max(tail_quantile(g, a), cfg.min_ndcg_drop))
        self._limits[n] = lim
        return lim

    def decide(self, result: AttributionResult) -> list[dict[str, Any]]:
        """Take one window's result (any order); decides every window now complete, in window order."""
        if result.index < self._next:
            return []  # a duplicate (e.g. re-explained after a restart)
        self._ready[result.index] = result
        alerts: list[dict[str, Any]] = []
        while self._next in self._ready:
            r = self._ready.pop(self._next)
            self._inflight.pop(r.index, None)
            alerts.extend(self._decide_one(r))
            self._next += 1
        return alerts

    def _decide_one(self, r: AttributionResult) -> list[dict[str, Any]]:
        cfg = self.config
        rec: dict[str, Any] = {"kind": "attributions", **r.window, "rows": r.rows, "skipped": r.skipped,
                               "reason": r.reason}
        if r.skipped or r.mean_abs is None:
            key = (r.reason or "skipped").split(":", 1)[0]
            self.skipped[key] = self.skipped.get(key, 0) + 1
            self._records.append(rec)
            return []
        thr_d, thr_g = self.limits(r.rows)
        drop = 1.0 - float(r.ndcg)
        cond_d, cond_g = r.distance > thr_d, drop > thr_g
        movers = top_movers(self.features, self.ref_vec, r.mean_abs, cfg.top_movers)
        self.latest_movers, self.latest_index = movers, r.index
        self._results.append(r)
        self.explained += 1
        rec.update({"attribution_distance": r.distance, "distance_threshold": thr_d, "ndcg": r.ndcg,
                    "ndcg_threshold": 1.0 - thr_g, "drift": bool(cond_d or cond_g),
                    "mean_abs_shap": {f: float(v) for f, v in zip(self.features, r.mean_abs, strict=True)},
                    "top_movers": movers})
        self._records.append(rec)
        status = self.hysteresis.update(bool(cond_d or cond_g))
        if status is None:
            return []
        return [self._alert(status, r, thr_d, thr_g, cond_d, cond_g, movers)]

    def _alert(self, status: str, r: AttributionResult, thr_d: float, thr_g: float, cond_d: bool, cond_g: bool,
               movers: list[dict[str, Any]]) -> dict[str, Any]:
        if status == "firing" and cond_g and not cond_d:
            statistic, value, threshold = "ndcg", float(r.ndcg), 1.0 - thr_g
        else:
            statistic, value, threshold = "attribution_distance", float(r.distance), thr_d
        top = movers[0] if movers else None
        events = r.window["events"]
        if status == "firing":
            mover = (f"; top mover {top['feature']!r} mean |SHAP| {top['reference_mean_abs_shap']:.3g} -> "
                     f"{top['window_mean_abs_shap']:.3g}") if top else ""
            summary = (f"model attributions drifted: SHAP distance {r.distance:.3g} (bound {thr_d:.3g}), nDCG "
                       f"{r.ndcg:.3g} (bound {1.0 - thr_g:.3g}) on {r.rows} sampled of {events} events{mover}")
        else:
            summary = (f"model attributions back to reference for {self.config.resolve_after} windows "
                       f"(SHAP distance {r.distance:.3g}, nDCG {r.ndcg:.3g})")
        part, off_start, off_end = r.src
        if part < 0:
            source: dict[str, Any] = {"row": off_end}
            row: int | None = off_end
        else:
            source, row = {"partition": part, "offset_start": off_start, "offset_end": off_end}, None
        evidence: dict[str, Any] = {
            "top_movers": movers, "attribution_distance": r.distance, "distance_threshold": thr_d,
            "ndcg": r.ndcg, "ndcg_threshold": 1.0 - thr_g, "sample_rows": r.rows,
            "explainer": self.explainer.kind, "output_space": self.explainer.output_space,
        }
        if self.reference_info is not None:
            evidence["reference"] = dict(self.reference_info)
        return make_alert(
            model=self.model_name, model_version=self.model_version, monitor=MONITOR, feature=None, status=status,
            severity=self.config.severity, detector="shap_reservoir", statistic=statistic, value=value,
            threshold=threshold, threshold_kind=self.config.threshold, window=dict(r.window),
            event_time=int(r.window["end"]), summary=summary, source=source, row=row, evidence=evidence)

    # inline -----------------------------------------------------------------------------------------------
    def observe(self, batch: EventBatch) -> list[dict[str, Any]]:
        """Collect, explain and decide inline (replay and tests); returns alert transitions."""
        alerts: list[dict[str, Any]] = []
        self._collect(batch, lambda sample: alerts.extend(self.decide(self.explain_window(sample))))
        return alerts

    # evidence and records ---------------------------------------------------------------------------------
    def top_movers(self, window_index: int | None = None) -> list[dict[str, Any]]:
        """Top SHAP movers of window ``window_index`` if still kept, else of the latest decided window
        (empty before the first one): evidence for the other monitors' alerts."""
        r = None if window_index is None else self.result(window_index)
        if r is not None:
            return top_movers(self.features, self.ref_vec, r.mean_abs, self.config.top_movers)
        return list(self.latest_movers)

    def attach_movers(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add ``evidence["shap_movers"] = {"window": index, "movers": [...]}`` to the other monitors' alerts
        (in place; returns them). Prediction-window alerts get their own window's movers when that window is
        decided already (inline, or its SHAP finished), else the latest; outcome alerts the latest."""
        same_window = {"data_drift", "prediction_drift", "data_quality"}
        for a in alerts:
            if a.get("monitor") == MONITOR:
                continue
            index = a.get("window", {}).get("index") if a.get("monitor") in same_window else None
            own = self.top_movers(index) if index is not None and self.result(index) is not None else None
            if own is not None:
                a["evidence"]["shap_movers"] = {"window": index, "movers": own}
            elif self.latest_index is not None:
                a["evidence"]["shap_movers"] = {"window": self.latest_index, "movers": list(self.latest_movers)}
        return alerts

    def result(self, index: int) -> AttributionResult | None:
        """The decided (explained) result of window ``index`` while it is among the last ``keep_results``."""
        for r in reversed(self._results):
            if r.index == index:
                return r
        return None

    def latest_result(self) -> AttributionResult | None:
        """The latest decided (explained) window, with its per-row SHAP values for artifacts."""
        return self._results[-1] if self._results else None

    def drain_windows(self) -> list[dict[str, Any]]:
        """Window records since the last call (statistics, thresholds, movers; skips), oldest first."""
        out = list(self._records)
        self._records.clear()
        return out

    # state ------------------------------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-safe state: continue exactly after a restart (re-explain :meth:`pending_samples`)."""
        if self._pending:
            closed: list[WindowSample] = []
            self._fold(closed.append)
            assert not closed, "folding buffered events never closes a window"
        return {
            "version": STATE_VERSION, "model": self.model_name, "features": list(self.features),
            "seed": self.seed, "window": self.window, "index": self.index, "events": self.events,
            "windows": self.windows, "explained": self.explained, "skipped": dict(self.skipped),
            "next": self._next,
            "win": self._win.to_state(),
            "reservoir": self.reservoir.to_state(),
            "hysteresis": self.hysteresis.to_state(),
            "inflight": [s.to_dict() for s in self.pending_samples()],
            "skipped_ready": [{"index": r.index, "window": r.window, "src": list(r.src), "rows": r.rows,
                               "reason": r.reason} for r in self._ready.values() if r.skipped],
            "latest": {"index": self.latest_index, "movers": self.latest_movers},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], model: Any, reference_attributions: dict[str, Any] | None,
                   reference_sample: pd.DataFrame, features: Sequence[str], config: AttributionConfig | None = None,
                   model_name: str = "model", seed: int = 42, **kwargs: Any) -> AttributionMonitor:
        """A monitor continuing where the one that saved ``state`` stopped (same arguments as the constructor)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported attribution monitor state version {state.get('version')!r}")
        if list(state["features"]) != [str(f) for f in features] or int(state["seed"]) != int(seed):
            raise ValueError("the attribution state was saved with other features or another seed")
        kwargs.setdefault("window", int(state["window"]))
        mon = cls(model, reference_attributions, reference_sample, features, config, model_name, seed, **kwargs)
        mon.index, mon.events, mon.windows = int(state["index"]), int(state["events"]), int(state["windows"])
        mon.explained, mon.skipped, mon._next = int(state["explained"]), dict(state["skipped"]), int(state["next"])
        mon._win = WindowSpan.from_state(state["win"])
        mon.reservoir = Reservoir.from_state(state["reservoir"])
        mon.hysteresis.load_state(state["hysteresis"])
        mon._inflight = {int(s["index"]): WindowSample.from_dict(s) for s in state["inflight"]}
        for r in state.get("skipped_ready", []):
            mon._ready[int(r["index"])] = AttributionResult(index=int(r["index"]), window=dict(r["window"]),
                                                            src=tuple(r["src"]), rows=int(r["rows"]), skipped=True,
                                                            reason=r["reason"])
        mon.latest_index = state["latest"]["index"]
        mon.latest_movers = list(state["latest"]["movers"])
        return mon

"""File replay: the synchronous driver of the detection core over a table of predictions.

The events table is read in chunks (bounded memory), each chunk becomes one :class:`EventBatch` for the
model's :class:`ModelMonitor`, and a label column is joined at once or ``label_delay`` rows later (labels
of the last ``label_delay`` rows arrive at the last row). Columns without a role are features; without a
timestamp column the row number is the event time (ms), without an id column the row number is the id.
Alerts carry ``row``, the 0-based events row at which they changed state, and come back sorted by row
(predictions before outcomes within a row), so a replay does not depend on the chunk size and replaying
the same file twice gives byte-identical alert files (:func:`write_alerts`).
"""

from __future__ import annotations

import os
import time
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from pydantic import ValidationError

from detectors.batch import EventBatch, OutcomeBatch
from detectors.config import DetectionConfig
from detectors.monitor import ModelMonitor
from detectors.profile import ReferenceProfile, build_profile
from detectors.window_tests import calibration_key
from stream.backtest import outcome_process
from stream.backtest.arrow_chunks import ArrowChunk, iter_arrow_chunks
from stream.backtest.event_columns import (
    DEFAULT_ROLES,
    ReplayError,
    ReplayOptions,
    Roles,
    column_values,
    resolve_roles,
)
from stream.backtest.heap import keep_freed_memory
from stream.backtest.outcome_feed import OutcomeFeed, label_side
from stream.backtest.outcome_process import OutcomeProcess, OutcomeTotals
from stream.backtest.replay_cache import CalibrationCache, ProfileCache, sha256_file
from stream.backtest.table_files import iter_table, read_table, table_format

__all__ = ["ReplayError", "ReplayOptions", "ReplayResult", "replay_file", "replay_frames", "write_alerts"]


@dataclass
class ReplayResult:
    """A replay's alerts (sorted by row), window records (with ``keep_windows``) and summary."""

    alerts: list[dict[str, Any]]
    windows: list[dict[str, Any]]
    summary: dict[str, Any]


def _profile_for(reference: pd.DataFrame | ReferenceProfile, roles: Roles, opts: ReplayOptions,
                 name: str | None) -> ReferenceProfile:
    if isinstance(reference, ReferenceProfile):
        missing = [f for f in roles.features if f not in reference.columns]
        if missing:
            raise ReplayError(f"features not in the reference profile: {', '.join(missing)}")
        return reference
    cols = set(reference.columns)
    missing = [c for c in roles.features + roles.scores if c not in cols]
    if missing:
        raise ReplayError(f"columns in EVENTS but not in REFERENCE: {', '.join(missing)}")
    pred = roles.prediction if roles.prediction in cols else None
    if roles.prediction and pred is None:
        raise ReplayError(f"prediction column {roles.prediction!r} is not in the reference")
    # the reference's labels calibrate estimated performance even when the events carry none
    label = next((c for c in (roles.label, DEFAULT_ROLES["label"]) if c and c in cols), None)
    try:
        return build_profile(reference, prediction=pred, label=label, scores=roles.scores or None,
                             task=opts.task, categorical=opts.categorical, features=roles.features, name=name)
    except ValueError as err:
        raise ReplayError(f"cannot profile the reference: {err}") from None


@dataclass(frozen=True)
class ReferenceFile:
    """A reference table not read yet: its profile may be cached (:class:`ProfileCache`)."""

    path: Path

    def profile(self, roles: Roles, opts: ReplayOptions, name: str | None) -> ReferenceProfile:
        cache = ProfileCache.default()
        try:
            digest = sha256_file(self.path)
        except OSError:  # read_table says what is wrong, as without a cache
            return _profile_for(read_table(self.path), roles, opts, name)
        key = cache.key(digest, {
            "features": roles.features, "scores": roles.scores, "prediction": roles.prediction,
            "label": roles.label, "task": opts.task, "categorical": opts.categorical, "name": name})
        profile = cache.load(key)
        if profile is None:
            profile = _profile_for(read_table(self.path), roles, opts, name)
            cache.save(key, profile)
        return profile


class Replayer:
    """Feeds chunks of an events table to one model monitor; :meth:`finish` returns the result.

    With ``outcomes`` (an :class:`OutcomeProcess` reading the same table), the outcome monitor runs there and
    this process keeps the rest (estimation included); the alerts are the same."""

    def __init__(self, monitor: ModelMonitor, roles: Roles, opts: ReplayOptions,
                 outcomes: OutcomeProcess | None = None):
        self.monitor = monitor
        self.roles = roles
        self.opts = opts
        self.rows = 0
        self.labels = 0
        self._seq = 0
        self._alerts: list[tuple[int, int, int, dict[str, Any]]] = []
        self.windows: list[dict[str, Any]] = []
        monitor.keep_records = opts.keep_windows
        self._feed = OutcomeFeed(opts.label_delay)
        self._cat = set(opts.categorical or [])
        self._cat_profiled = {c for c in roles.features if monitor.profile.columns[c].kind == "categorical"}
        self._outcomes = outcomes
        self._totals: OutcomeTotals | None = None

    def _keep(self, alerts: list[dict[str, Any]], side: int) -> None:
        links = self.opts.links
        for a in alerts:
            self._alerts.append((int(a["row"]), side, self._seq, a if links is None else links(a)))
            self._seq += 1

    def _drain(self) -> None:
        recs = self.monitor.drain_windows()
        if self.opts.keep_windows:
            self.windows.extend(recs)

    def feed(self, chunk: pd.DataFrame | ArrowChunk) -> None:
        r = self.roles
        n = len(chunk)
        if n == 0:
            return
        a = self.rows
        missing = [c for c in r.features + r.scores + [x for x in (r.prediction, r.label) if x] if c not in chunk]
        if missing:
            raise ReplayError(f"rows {a}..{a + n - 1} lack columns: {', '.join(missing)}")
        arrow = isinstance(chunk, ArrowChunk)
        values = chunk.values if arrow else (lambda c: column_values(chunk[c]))
        side = label_side(chunk, r, a)
        feats = {}
        for f in r.features:
            codes = chunk.categorical(f) if arrow and f in self._cat_profiled else None
            if codes is not None:  # strings stay codes into their dictionary
                feats[f] = codes
                continue
            v = values(f)
            if f in self._cat and v.dtype.kind == "f":
                v = (chunk.series(f) if arrow else chunk[f]).to_numpy(dtype=object, na_value=None)
            feats[f] = v
        batch = EventBatch(ids=side.ids, timestamps=side.ts, features=feats, prediction=side.pred,
                           scores=side.scores, partitions=np.full(n, -1, np.int64), offsets=side.rows)
        self._keep(self.monitor.observe(batch), 0)
        if r.label:
            for ob in self._feed.add(side):
                self._observe_outcomes(ob)
        self.rows += n
        self._drain()
        if self.opts.progress is not None:
            self.opts.progress(self.rows)

    def _observe_outcomes(self, batch: OutcomeBatch) -> None:
        if self._outcomes is None:
            self._keep(self.monitor.observe_outcomes(batch), 1)
        else:  # the outcome process has the same batch: only estimation here
            self.monitor.realize_estimates(batch)
        self.labels += len(batch)

    def close(self) -> None:
        """Stop the outcome process, if any (after :meth:`finish`, or when the replay failed)."""
        if self._outcomes is not None:
            self._outcomes.close()

    def finish(self, started: float | None = None) -> ReplayResult:
        """The result; ``started``: when the replay started (``time.perf_counter``), for its speed."""
        for ob in self._feed.finish():
            self._observe_outcomes(ob)
        self._drain()
        if self._outcomes is not None:
            records, self._totals = self._outcomes.finish()
            self._keep(self.monitor.outcome_alerts(records), 1)
        elapsed = None if started is None else time.perf_counter() - started
        alerts = [a for *_, a in sorted(self._alerts, key=lambda t: t[:3])]
        return ReplayResult(alerts=alerts, windows=self.windows, summary=self._summary(alerts, elapsed))

    def _summary(self, alerts: list[dict[str, Any]], elapsed: float | None) -> dict[str, Any]:
        mon = self.monitor
        by: Counter[tuple[str, str]] = Counter((a["monitor"], a["status"]) for a in alerts)
        first: dict[str, int] = {}
        for a in alerts:
            if a["status"] == "firing":
                key = a["monitor"] + (f":{a['feature']}" if a["feature"] else "")
                first.setdefault(key, a["row"])
        out = self._totals or OutcomeTotals.of(mon.outcomes)
        return {
            "model": mon.model,
            "rows": self.rows,
            "task": mon.profile.task,
            "features": len(mon.profile.features),
            "window": mon.config.window if mon.config.window_ms is None else f"{mon.config.window_ms} ms",
            "windows": mon.windows,
            "open_window_events": mon.pending_events,
            "labels_joined": self.labels - out.dropped,
            "labels_dropped": out.dropped,
            "label_coverage": (self.labels - out.dropped) / self.rows if self.rows else 0.0,
            "outcome_windows": out.index,
            "alerts": len(alerts),
            "alerts_by_monitor": {f"{m}:{s}": c for (m, s), c in sorted(by.items())},
            "first_firing_row": first,
            "threshold": mon.config.threshold,
            "tests_per_window": mon.tests.n_tests,
            "alpha_per_test": mon.tests.alpha,
            "reference_digest": mon.digest,
            "seconds": elapsed,
            "events_per_second": (self.rows / elapsed) if elapsed else None,
            "outcome_process_cpu_seconds": out.cpu_seconds,  # CPU of the second process (None: one process)
        }


def _chunks(events: pd.DataFrame | Iterable[pd.DataFrame | ArrowChunk], size: int
            ) -> Iterator[pd.DataFrame | ArrowChunk]:
    if isinstance(events, pd.DataFrame):
        for a in range(0, len(events), size):
            yield events.iloc[a : a + size]
    else:
        yield from events


def _single_model(chunk: pd.DataFrame | ArrowChunk) -> str | None:
    if "model" not in chunk.columns:
        return None
    if isinstance(chunk, ArrowChunk):
        v = chunk.single_value("model")
        return None if v is None else str(v)
    return str(chunk["model"].dropna().iloc[0]) if chunk["model"].nunique(dropna=True) == 1 else None


def replay_frames(events: pd.DataFrame | Iterable[pd.DataFrame | ArrowChunk],
                  reference: pd.DataFrame | ReferenceProfile | ReferenceFile, options: ReplayOptions | None = None, *,
                  model_default: str = "model", reference_name: str | None = None,
                  outcomes_from: Path | None = None) -> ReplayResult:
    """Replay an events table (a DataFrame or an iterable of chunks) against a reference table or profile.

    The model name is ``options.model``, else the table's single ``model`` value, else ``model_default``.
    ``outcomes_from``: the parquet file the chunks come from, whose outcomes a second process replays
    (:mod:`stream.backtest.outcome_process`): :func:`replay_file` passes it where
    :func:`~stream.backtest.outcome_process.ready` says so.
    """
    opts = options or ReplayOptions()
    cfg = opts.config or DetectionConfig()
    if opts.window is not None:
        cfg = cfg.model_copy(update={"window": opts.window})
    keep_freed_memory()  # chunk after chunk, the same arrays: reuse their pages
    it = _chunks(events, opts.chunk_rows)
    first = next(it, None)
    if first is None:
        raise ReplayError("the events table is empty")
    roles = resolve_roles([str(c) for c in first.columns], opts)
    model = opts.model if opts.model is not None else _single_model(first) or model_default
    profile = (reference.profile(roles, opts, reference_name) if isinstance(reference, ReferenceFile)
               else _profile_for(reference, roles, opts, reference_name))
    cache = CalibrationCache.default()
    cache.load(calibration_key(profile, cfg), profile)
    monitor = ModelMonitor(profile, cfg, model=model, model_version=opts.model_version)
    t0 = time.perf_counter()
    outcomes = None if outcomes_from is None else OutcomeProcess(outcomes_from, roles, opts, profile, cfg,
                                                                 monitor.tests.alpha)
    rep = Replayer(monitor, roles, opts, outcomes)
    try:
        rep.feed(first)
        for chunk in it:
            rep.feed(chunk)
        result = rep.finish(t0)
    finally:
        rep.close()
    cache.save(monitor.tests.key)
    return result


def replay_file(events_path: str | os.PathLike[str], reference_path: str | os.PathLike[str] | ReferenceProfile,
                options: ReplayOptions | None = None) -> ReplayResult:
    """Replay the events file against the reference file (.parquet, .csv, .jsonl) or a built profile."""
    opts = options or ReplayOptions()
    if isinstance(reference_path, ReferenceProfile):
        reference: ReferenceProfile | ReferenceFile = reference_path
        ref_name = reference_path.name
    else:
        reference = ReferenceFile(Path(reference_path))
        ref_name = Path(reference_path).name
    parquet = table_format(events_path) == "parquet"
    chunks = iter_arrow_chunks(events_path, opts.chunk_rows) if parquet else iter_table(events_path, opts.chunk_rows)
    second = parquet and outcome_process.ready(Path(events_path), opts)
    return replay_frames(chunks, reference, opts, model_default=Path(events_path).stem, reference_name=ref_name,
                         outcomes_from=Path(events_path) if second else None)


def dumps_alerts(alerts: Iterable[dict[str, Any]]) -> bytes:
    """Alerts as JSON lines with sorted keys (byte-identical for identical alerts)."""
    return b"".join(orjson.dumps(a, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
                    for a in alerts)


def write_alerts(alerts: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(dumps_alerts(alerts))
    return p


def load_detection_config(path: Path | None) -> DetectionConfig:
    """The ``[detection]`` table of a glassbox TOML file as a :class:`DetectionConfig` (defaults if absent)."""
    if path is None:
        return DetectionConfig()
    if not path.exists():
        raise ReplayError(f"no such config file: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ReplayError(f"{path} is not valid TOML: {err}") from None
    table = data.get("detection", {})
    if not isinstance(table, dict):
        raise ReplayError(f"{path}: [detection] must be a table")
    try:
        return DetectionConfig(**table)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise ReplayError(f"{path}: [detection] {where}: {first.get('msg')}") from None

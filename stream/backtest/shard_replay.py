"""Sharded models in a ``kafka://`` replay: the shards' partial windows go to combiners in the replay's process.

With the live config (``worker.sharded_models`` listing the model), the replay's pipeline folds a sharded model per
partition as the live workers do (:class:`~stream.pipeline.shards.ShardedMonitors`); :class:`ShardReplay` then hands
each step's partials to one :class:`~detectors.partials.Combiner` per model, as the combiner agent does. Windows
close under the same watermarks and joined outcomes reach the outcome monitor in label-time order, so the replay
raises the live alerts. Without the combiners the partials would wait forever (no alert at all); and an unsharded
monitor would see the outcomes in the order the partitions' label messages merge, each message spanning many
events' label times, which is not the live order (performance windows then group other outcomes, and concept drift
can be stamped with a label time before the change).

The combiners' clock is the replay's event time (the latest prediction or label time read): the allowed lateness
passes as it would have live had the events arrived in real time. At the end of the replay, the lateness is let
pass once more (windows held by an idle partition close, as they would live); the newest window stays open.
"""

from __future__ import annotations

from typing import Any

from stream.pipeline.parse_step import ParsedStep, RawMessage
from stream.pipeline.pipeline import Pipeline, StepOutput
from stream.pipeline.shards import Combiners, ShardedMonitors


def sharded(pipe: Pipeline) -> bool:
    """Whether ``pipe`` folds some model per partition (and so needs combiners)."""
    return isinstance(pipe.monitors, ShardedMonitors) and bool(pipe.monitors.sharded)


class ShardReplay:
    """``pipe`` with combiners for its sharded models' partials; used as the pipeline itself (other attributes
    are the pipeline's). ``shards``: the partitions a combiner waits for (``kafka.partitions``, as live)."""

    def __init__(self, pipe: Pipeline, shards: int, allowed_lateness_s: float):
        assert isinstance(pipe.monitors, ShardedMonitors)
        self.pipe = pipe
        self.sharded_monitors = pipe.monitors
        self.lateness = allowed_lateness_s
        self.combining = Combiners(pipe.monitors, shards, allowed_lateness_s)  # no state: a replay keeps none
        self.combiners = self.combining.combiners
        self.clock_ms: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)

    def on_parsed(self, step: ParsedStep) -> StepOutput:
        self._tick([int(p.timestamps.max()) for p in step.parts.values() if len(p.timestamps)])
        return self._combine(self.pipe.on_parsed(step))

    def on_labels(self, messages: list[RawMessage]) -> StepOutput:
        self._tick([m.timestamp for m in messages if m.timestamp is not None])
        return self._combine(self.pipe.on_labels(messages))

    def finish(self) -> StepOutput:
        """The end of the replay: the allowed lateness passes (twice: outcomes held for a shard wait once more)."""
        out = StepOutput()
        if self.clock_ms is not None:
            for k in (1, 2):
                self._collect(out, [a for c in self.combiners.values()
                                    for a in c.tick(self.clock_ms / 1000 + k * self.lateness)])
        return out

    def _tick(self, times: list[int]) -> None:
        if times:
            latest = max(times)
            self.clock_ms = latest if self.clock_ms is None else max(self.clock_ms, latest)

    def _combine(self, out: StepOutput) -> StepOutput:
        """Merge the step's partials (acknowledged at once: a replay keeps no state) and close what they let."""
        now = (self.clock_ms or 0) / 1000
        alerts: list[dict[str, Any]] = []
        for key, partials in self.sharded_monitors.outboxes():
            for p in partials:
                comb = self.combining.combiner(str(p["model"]))
                if comb is not None:
                    alerts.extend(comb.add(p, now))
            self.sharded_monitors.ack(key, partials[-1]["seq"])
        for comb in self.combiners.values():
            alerts.extend(comb.tick(now))
        self._collect(out, alerts)
        return out

    def _collect(self, out: StepOutput, alerts: list[dict[str, Any]]) -> None:
        links = self.pipe.links
        out.alerts.extend(alerts if links is None else map(links, alerts))
        out.windows.extend((m, w) for m, c in self.combiners.items() for w in c.drain_windows())

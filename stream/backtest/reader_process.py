"""A :class:`~stream.backtest.topic_reader.TopicReader` in a child process, sharing the parsing of each step with
the replaying process (:class:`ReaderProcess`)."""

from __future__ import annotations

import copy
import logging
import queue
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stream.backtest.processes import child_setup, forkserver_context, main_script_hidden
from stream.backtest.topic_range import PREDICTIONS, KafkaReplayError, ReadStats, ReplayRange
from stream.backtest.topic_reader import TopicReader
from stream.pipeline.parse_step import parse_step

if TYPE_CHECKING:
    from stream.settings import KafkaConfig

_STEP, _END, _ERROR = "step", "end", "error"  # what the reader process sends
SHARE_STEP = 0.05  # how fast the reader process's share of the parsing follows the busier side


class ReaderProcess:
    """A :class:`TopicReader` in a child process that hands its steps on, pickled, through a bounded queue.

    Parsing a prediction step (:func:`stream.pipeline.parse_step.parse_step`) costs about as much as reading it or
    detecting on it, so the two processes share it: the child parses a share of the steps and sends the
    others as records, which the replaying process parses (whole steps either way: the monitors work best
    on big batches). The share balances the CPU time of the two: when the replaying process used less CPU
    than the child since the last step, the child parses less, otherwise more (waits are no measure here:
    handing a step over and the threads of the child sharing its interpreter make both sides wait,
    whichever is the busier). ``parse_step`` is pure, so where a step is parsed changes nothing in the
    results.

    The child comes from a fork server (forking beside MLflow's or aiokafka's threads is not safe), is
    killed when the replay stops early, and a child that dies is an error, never a silent end.
    """

    def __init__(self, bootstrap: str, kafka: KafkaConfig, predictions: str, labels: str | None,
                 rng: ReplayRange, *, step_messages: int, label_horizon_ms: int | None, max_bytes: int):
        self.args = (bootstrap, kafka, predictions, labels, rng, step_messages, label_horizon_ms, max_bytes)
        self.max_bytes = max_bytes
        self.stats = ReadStats()
        self._proc: Any = None
        self._q: Any = None
        self._busy: Any = None  # shared: the replaying process's CPU seconds (``time.process_time``)

    def __enter__(self) -> ReaderProcess:
        ctx = forkserver_context(["stream.backtest.reader_process", "stream.settings", "aiokafka"])
        self._q = ctx.Queue(maxsize=8)
        self._busy = ctx.RawValue("d", time.process_time())
        self._proc = ctx.Process(target=_reader_main, args=(self._q, self._busy, *self.args),
                                 name="glassbox-replay-reader", daemon=True)
        with main_script_hidden():
            self._proc.start()
        return self

    def steps(self) -> Iterator[tuple[int, Any, ReadStats]]:
        """``(rank, (parsed, records), stats)``: ``parsed`` a prediction step parsed by the child (or None),
        ``records`` the step's records as tuples when it was not (always for a labels step)."""
        while True:
            self._busy.value = time.process_time()
            try:
                kind, a, b, stats = self._q.get(timeout=1.0)
            except queue.Empty:
                if not self._proc.is_alive():
                    raise KafkaReplayError(f"the replay reader process died (exit code {self._proc.exitcode})"
                                           ) from None
                continue
            if kind == _ERROR:
                raise a
            self.stats = stats
            if kind == _END:
                return
            yield a, b, stats

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
        if self._proc is not None:
            self._proc.join(5)
        if self._q is not None:
            self._q.cancel_join_thread()
            self._q.close()


def _reader_main(q: Any, busy: Any, bootstrap: str, kafka: KafkaConfig, predictions: str, labels: str | None,
                 rng: ReplayRange, step_messages: int, label_horizon_ms: int | None, max_bytes: int) -> None:
    """The reader process: read, merge, parse its share of the steps; every step, then the final stats (or
    the error), into ``q``."""
    child_setup()
    reader = TopicReader(bootstrap, kafka, predictions, labels, rng, step_messages=step_messages,
                         label_horizon_ms=label_horizon_ms)
    share, credit, seen_busy, seen_own = 0.5, 0.0, busy.value, time.process_time()
    try:
        for rank, msgs in reader.steps():
            parsed, records = None, []
            if rank == PREDICTIONS and (credit := credit + share) >= 0.5:  # this one is parsed here
                credit -= 1.0
                parsed = parse_step(msgs, max_bytes).without_raw()  # a replay only counts dead letters
            else:
                records = [(m.topic, m.partition, m.offset, m.value, m.timestamp, m.key) for m in msgs]
            q.put((_STEP, rank, (parsed, records), copy.copy(reader.stats)))
            if rank == PREDICTIONS:  # the busier side parses less
                main_cpu, own_cpu = busy.value, time.process_time()
                if main_cpu != seen_busy:  # (no news from the replaying process yet: no change)
                    more = main_cpu - seen_busy > own_cpu - seen_own
                    share = min(1.0, max(0.0, share + (SHARE_STEP if more else -SHARE_STEP)))
                    seen_busy, seen_own = main_cpu, own_cpu
        q.put((_END, None, None, reader.stats))
    except KafkaReplayError as err:  # the user's to fix: handed on as it is
        q.put((_ERROR, err, None, None))
    except BaseException as err:  # noqa: BLE001 - a defect: its traceback here, one line there
        logging.getLogger("glassbox.replay").exception("the replay reader failed")
        q.put((_ERROR, KafkaReplayError(f"the replay reader failed: {type(err).__name__}: {err}"), None, None))
    q.close()
    q.join_thread()

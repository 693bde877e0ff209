"""A :class:`~stream.backtest.topic_reader.TopicReader` in a child process, sharing the parsing of each step with
the replaying process (:class:`ReaderProcess`)."""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stream.backtest.topic_range import PREDICTIONS, KafkaReplayError, ReadStats, ReplayRange
from stream.backtest.topic_reader import TopicReader
from stream.pipeline.parse_step import parse_step

if TYPE_CHECKING:
    from stream.settings import KafkaConfig

_STEP, _END, _ERROR = "step", "end", "error"  # what the reader process sends
SHARE_STEP = 0.05  # how fast the reader process's share of the parsing follows the side that waits


class ReaderProcess:
    """A :class:`TopicReader` in a child process that hands its steps on, pickled, through a bounded queue.

    Parsing a prediction step (:func:`stream.pipeline.parse_step.parse_step`) costs about as much as reading it or
    detecting on it, so the two processes share it: the child parses the first part of each step and sends
    the rest as records, which the replaying process parses. The child's share follows whichever side
    waits: when the replaying process sat waiting for input longer than the child sat blocked on a full
    queue since the last step, the child parses less, otherwise more. ``parse_step`` is pure and a step can
    be cut anywhere, so the split changes nothing in the results.

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
        self._waited: Any = None  # shared: seconds the replaying process has spent waiting for steps

    def __enter__(self) -> ReaderProcess:
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["stream.backtest.reader_process", "stream.settings", "aiokafka"])  # imported once
        self._q = ctx.Queue(maxsize=8)
        self._waited = ctx.RawValue("d", 0.0)
        self._proc = ctx.Process(target=_reader_main, args=(self._q, self._waited, *self.args),
                                 name="glassbox-replay-reader", daemon=True)
        with _main_script_hidden():
            self._proc.start()
        return self

    def steps(self) -> Iterator[tuple[int, Any, ReadStats]]:
        """``(rank, (head, tail), stats)``: ``head`` the parsed first part of a prediction step (or None),
        ``tail`` the records of the rest as tuples (all of a labels step)."""
        while True:
            try:  # a step already there: no waiting (its transfer is not waiting on the child)
                kind, a, b, stats = self._q.get_nowait()
            except queue.Empty:
                t0 = time.perf_counter()
                try:
                    kind, a, b, stats = self._q.get(timeout=1.0)
                except queue.Empty:
                    if not self._proc.is_alive():
                        raise KafkaReplayError(f"the replay reader process died (exit code {self._proc.exitcode})"
                                               ) from None
                    continue
                finally:
                    self._waited.value += time.perf_counter() - t0
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


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """While the reader process starts, hide the main script's path from multiprocessing: a forkserver child
    re-runs the main script (Python 3.11's fork server never preloads it), which costs 0.2-0.8 s when it
    imports pandas or scikit-learn (0.4 s for ``glassbox``'s own entry point), and the reader needs nothing
    from it."""
    main = sys.modules.get("__main__")
    path = main.__dict__.pop("__file__", None) if main is not None else None
    try:
        yield
    finally:
        if path is not None:
            main.__dict__["__file__"] = path


def _reader_main(q: Any, waited: Any, bootstrap: str, kafka: KafkaConfig, predictions: str, labels: str | None,
                 rng: ReplayRange, step_messages: int, label_horizon_ms: int | None, max_bytes: int) -> None:
    """The reader process: read, merge, parse its share; every step, then the final stats (or the error),
    into ``q``."""
    reader = TopicReader(bootstrap, kafka, predictions, labels, rng, step_messages=step_messages,
                         label_horizon_ms=label_horizon_ms)
    share, seen_waited = 0.5, 0.0
    try:
        for rank, msgs in reader.steps():
            head = None
            cut = round(share * len(msgs)) if rank == PREDICTIONS else 0
            if cut:
                head = parse_step(msgs[:cut], max_bytes).without_raw()  # a replay only counts dead letters
            tail = [(m.topic, m.partition, m.offset, m.value, m.timestamp, m.key) for m in msgs[cut:]]
            t0 = time.perf_counter()
            q.put((_STEP, rank, (head, tail), copy.copy(reader.stats)))
            t1 = time.perf_counter()
            if rank == PREDICTIONS:  # follow the side that waits
                blocked_now, waited_now = t1 - t0, waited.value - seen_waited
                seen_waited += waited_now
                if blocked_now != waited_now:  # (both zero: no news)
                    share = min(1.0, max(0.0, share + (SHARE_STEP if blocked_now > waited_now else -SHARE_STEP)))
        q.put((_END, None, None, reader.stats))
    except KafkaReplayError as err:  # the user's to fix: handed on as it is
        q.put((_ERROR, err, None, None))
    except BaseException as err:  # noqa: BLE001 - a defect: its traceback here, one line there
        logging.getLogger("glassbox.replay").exception("the replay reader failed")
        q.put((_ERROR, KafkaReplayError(f"the replay reader failed: {type(err).__name__}: {err}"), None, None))
    q.close()
    q.join_thread()

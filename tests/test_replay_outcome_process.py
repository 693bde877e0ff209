"""A large parquet replay runs its outcome side in a second process (:mod:`stream.backtest.outcome_process`): the
same alerts and summary as one process, and a child that fails or dies is an error, never a silent end."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import synth

from detectors.config import DetectionConfig
from stream.backtest import outcome_process
from stream.backtest.event_columns import ReplayError, ReplayOptions, resolve_roles
from stream.backtest.file_replay import dumps_alerts, replay_file
from stream.backtest.outcome_process import NICENESS, OutcomeProcess
from stream.backtest.processes import boot_forkserver
from stream.backtest.table_files import TableError

NO_TIMING = ("seconds", "events_per_second", "outcome_process_cpu_seconds")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("outcome_process")
    out = {}
    synth.frame(20_000, seed=500).to_parquet(out.setdefault("ref", d / "ref.parquet"))
    ev = synth.frame(30_000, seed=601, scenario="concept_flip", at=12_000)
    ev.insert(0, "timestamp", 1_767_225_600_000 + 250 * ev.index.to_numpy())
    ev.to_parquet(out.setdefault("flip", d / "flip.parquet"))
    synth.regression_frame(20_000, seed=700).to_parquet(out.setdefault("rref", d / "rref.parquet"))
    synth.regression_frame(30_000, seed=701, at=12_000, factor=2.0).to_parquet(out.setdefault("reg", d / "reg.parquet"))
    return out


def _replay(events: Path, ref: Path, monkeypatch: pytest.MonkeyPatch, *, child: bool, **kw: object
            ) -> tuple[bytes, dict, int, float | None]:
    """(alerts file, summary without timings, outcome processes that finished, the outcome process's CPU
    seconds) of a replay keeping no windows."""
    monkeypatch.setattr(outcome_process, "MIN_ROWS", 0 if child else 10**12)
    boot_forkserver(outcome_process.PRELOAD)  # as an earlier replay in this process would have
    finished = []
    finish = OutcomeProcess.finish

    def counted(self: OutcomeProcess) -> tuple:
        finished.append(self)
        return finish(self)

    monkeypatch.setattr(OutcomeProcess, "finish", counted)
    res = replay_file(events, ref, ReplayOptions(keep_windows=False, **kw))  # type: ignore[arg-type]
    summary = {k: v for k, v in res.summary.items() if k not in NO_TIMING}
    return dumps_alerts(res.alerts), summary, len(finished), res.summary["outcome_process_cpu_seconds"]


@pytest.mark.parametrize("case", [
    {"score_cols": ["score"]},
    {"score_cols": ["score"], "label_delay": 700, "chunk_rows": 7_000, "window": 500},
    {"score_cols": ["score"], "config": DetectionConfig(window_ms=200_000, threshold="dynamic")},
], ids=["joined", "delayed-labels", "event-time"])
def test_same_alerts_and_summary_with_the_outcome_process(files: dict[str, Path], case: dict,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    one, one_summary, none, no_cpu = _replay(files["flip"], files["ref"], monkeypatch, child=False, **case)
    two, two_summary, used, cpu = _replay(files["flip"], files["ref"], monkeypatch, child=True, **case)
    assert (none, used) == (0, 1)
    assert no_cpu is None and cpu is not None and 0 < cpu < 30  # the second process's CPU time is reported
    assert b'"concept_drift"' in one  # the case has outcome alerts to get right
    assert two == one
    assert two_summary == one_summary
    assert one_summary["outcome_windows"] > 0


def test_same_alerts_for_a_regression_model(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    one, one_summary, _, _ = _replay(files["reg"], files["rref"], monkeypatch, child=False)
    two, two_summary, used, _ = _replay(files["reg"], files["rref"], monkeypatch, child=True)
    assert used == 1
    assert b'"performance"' in one or b'"concept_drift"' in one
    assert (two, two_summary) == (one, one_summary)


def test_the_first_replay_boots_the_fork_server_and_the_next_use_it(files: dict[str, Path],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from stream.backtest import processes

    monkeypatch.setattr(processes, "_booted", False)  # a fresh process
    monkeypatch.setattr(outcome_process, "MIN_ROWS", 0)
    opts = ReplayOptions(score_cols=["score"], keep_windows=False)
    assert outcome_process.ready(files["flip"], opts) is False  # would wait for the server's imports
    assert processes.forkserver_booted()
    assert outcome_process.ready(files["flip"], opts) is True
    assert outcome_process.ready(files["flip"], ReplayOptions(score_cols=["score"])) is False  # records kept
    assert outcome_process.ready(files["ref"].parent / "missing.parquet", opts) is False  # the replay says why


def test_no_outcome_process_where_one_process_does_as_well(files: dict[str, Path]) -> None:
    columns = ["timestamp", *synth.FEATURES, "prediction", "score", "label"]
    roles = resolve_roles(columns, ReplayOptions(score_cols=["score"]))
    no_labels = resolve_roles([c for c in columns if c != "label"], ReplayOptions(score_cols=["score"]))
    fast = ReplayOptions(score_cols=["score"], keep_windows=False)
    wanted = outcome_process.wanted
    assert outcome_process.MIN_ROWS > 30_000  # the file is small
    assert wanted(files["flip"], roles, fast) is False
    assert wanted(None, roles, fast) is False
    assert wanted(files["flip"], no_labels, fast) is False
    kept = ReplayOptions(score_cols=["score"])  # window records kept: their order is one process's
    assert wanted(files["flip"], roles, kept) is False


def _process(files: dict[str, Path], events: Path) -> OutcomeProcess:
    from detectors.monitor import ModelMonitor
    from detectors.profile import build_profile

    prof = build_profile(synth.frame(5_000, seed=3), label="label", scores=["score"])
    mon = ModelMonitor(prof, DetectionConfig())
    roles = resolve_roles(["timestamp", *synth.FEATURES, "prediction", "score", "label"],
                          ReplayOptions(score_cols=["score"]))
    return OutcomeProcess(events, roles, ReplayOptions(keep_windows=False), mon.profile, mon.config,
                          mon.tests.alpha)


def test_a_child_that_cannot_read_the_file_raises_its_error(files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "not.parquet"
    bad.write_text("not parquet")
    proc = _process(files, bad)
    try:
        with pytest.raises(TableError, match="cannot read .*not.parquet as parquet"):
            proc.finish()
    finally:
        proc.close()


def test_a_child_that_dies_is_an_error(files: dict[str, Path], tmp_path: Path) -> None:
    fifo = tmp_path / "events.parquet"
    os.mkfifo(fifo)  # the child blocks opening it (no writer) until it is killed
    proc = _process(files, fifo)
    try:
        proc._started.wait()
        proc._proc.kill()
        with pytest.raises(ReplayError, match=f"outcome process died \\(exit code -{int(signal.SIGKILL)}\\)"):
            proc.finish()
    finally:
        proc.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the child's signal mask in /proc")
def test_the_child_ignores_ctrl_c_and_yields_the_core(files: dict[str, Path], tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group; the replaying process stops its children itself, so a child
    ignores it rather than print a traceback. The child runs nicer than the replaying process, whose work it
    never holds up."""
    fifo = tmp_path / "events.parquet"
    os.mkfifo(fifo)  # the child blocks opening it, after its setup
    proc = _process(files, fifo)
    try:
        proc._started.wait()
        pid = proc._proc.pid
        deadline = time.monotonic() + 30
        nicer = os.getpriority(os.PRIO_PROCESS, 0) + NICENESS
        # the fork server's children start out ignoring SIGINT until their handlers are restored: the niceness
        # comes after that, and the child's own setup after it
        while os.getpriority(os.PRIO_PROCESS, pid) != nicer or not _ignores_sigint(pid):
            assert time.monotonic() < deadline, "the child never took its niceness or never ignored SIGINT"
            time.sleep(0.02)
        os.kill(pid, signal.SIGINT)
        time.sleep(0.3)
        assert proc._proc.is_alive()
    finally:
        proc.close()
    assert proc._proc.exitcode == -signal.SIGKILL  # stopped by the replaying process


def _ignores_sigint(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
    return bool(ignored >> (signal.SIGINT - 1) & 1)

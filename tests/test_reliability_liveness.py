"""A stuck worker does not stay stuck: ``/live`` fails when input waits and nothing is consumed, and passes again
once a restarted worker consumes."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stream.kafka.broker import EmbeddedBroker
from stream.producer import Producer
from tests.kafka_util import WorkerProcess

ENV = {"GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_EVIDENTLY__ENABLED": "false",
       "GLASSBOX_ATTRIBUTION__ENABLED": "false", "GLASSBOX_HEALTH__INTERVAL_S": "0.5",
       "GLASSBOX_HEALTH__STUCK_AFTER_S": "3", "GLASSBOX_KAFKA__MAX_MESSAGE_BYTES": "8192"}  # small fetches


def live(worker: WorkerProcess) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/live", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return None


def wait_live(worker: WorkerProcess, status: int, timeout_s: float) -> dict:
    deadline, got = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        got = live(worker)
        if got and got[0] == status:
            return got[1]
        time.sleep(0.3)
    raise AssertionError(f"/live never answered {status} in {timeout_s} s; last {got}\n{worker.log()[-2000:]}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_live_fails_while_consumption_is_frozen_and_passes_after_a_restart(tmp_path: Path) -> None:
    prefix = "live."
    with EmbeddedBroker() as broker:
        with Producer(broker.bootstrap, topic_prefix=prefix, batch_events=1) as prod:  # a backlog of small messages
            for i in range(20_000):
                prod.send_prediction(prediction_id=f"e{i}", model="m", timestamp=1_700_000_000_000 + i,
                                     features={"x": float(i % 97), "pad": "y" * 200}, prediction=i % 2)
        first = WorkerProcess(broker.bootstrap, prefix, app_id="live", home=tmp_path / "a", audit=False,
                              extra_env=ENV).start()
        try:
            first.wait_for(lambda s: s["messages"] > 0, timeout_s=90)
            os.kill(broker.pid, signal.SIGSTOP)  # fetches stop answering: the backlog waits, nothing is consumed
            try:
                body = wait_live(first, 503, timeout_s=60)  # once the records fetched before the stop are done
                frozen = first.stats()["messages"]
                time.sleep(1)
                assert "nothing consumed" in body["reason"] and first.stats()["messages"] == frozen, body
            finally:
                os.kill(broker.pid, signal.SIGCONT)
        finally:
            first.kill()
        second = WorkerProcess(broker.bootstrap, prefix, app_id="live", home=tmp_path / "b", audit=False,
                               extra_env=ENV).start()
        try:
            second.wait_for(lambda s: s["messages"] > 0, timeout_s=90)
            assert wait_live(second, 200, timeout_s=30)["live"] is True
        finally:
            second.kill()

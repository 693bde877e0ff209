"""Broker outage: Kafka unreachable for 15 s mid-stream.

The worker and the producers reach the broker only through a TCP proxy on its own port (the broker
advertises the proxy's address), so pausing the proxy (dropping every connection and refusing new ones)
makes Kafka unreachable for everyone while the broker keeps its in-memory topics. During the outage the
producer SDK buffers up to its bound and then fails with a clear error; afterwards the same worker process
reconnects, every event is counted, and a ``pipeline`` alert reported the stall and resolved.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from stream.kafka.broker import broker_binary, free_port, wait_for_port
from stream.producer import Producer, ProducerError
from tests.kafka_util import WorkerProcess, read_json
from tests.synth import FEATURES, frame

OUTAGE_S = 15.0


class PausableProxy:
    """A TCP proxy 127.0.0.1:port -> 127.0.0.1:target that can cut Kafka off: :meth:`pause` closes every
    proxied connection and refuses new ones until :meth:`resume`."""

    def __init__(self, target: int, port: int | None = None):
        self.target = target
        self.port = port or free_port()
        self.paused = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self.refused = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            if self.paused.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns -= {src, dst}

    def pause(self) -> None:
        self.paused.set()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def resume(self) -> None:
        self.paused.clear()

    def close(self) -> None:
        self._stop.set()
        self.pause()
        self._server.close()
        self._thread.join(2)


@contextlib.contextmanager
def broker_behind_proxy(log_path: Path):
    """A fresh embedded broker that advertises a proxy's port; yields (proxy, bootstrap via the proxy)."""
    broker_port = free_port()
    proxy = PausableProxy(broker_port)
    listen, advertised = f"tcp://127.0.0.1:{broker_port}", f"tcp://127.0.0.1:{proxy.port}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([broker_binary(), "broker", "--listener-url", listen,
                                 "--advertised-listener-url", advertised],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for_port("127.0.0.1", broker_port, 10), "broker did not start"
        yield proxy, f"127.0.0.1:{proxy.port}"
    finally:
        proxy.close()
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def firing(port: int, check: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("glassbox_pipeline_check_firing{") and f'check="{check}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.system
@pytest.mark.timeout(240)
def test_broker_outage_producer_buffers_worker_reconnects_and_stall_alert(tmp_path: Path) -> None:
    ref_path = tmp_path / "reference.parquet"
    frame(4000, seed=1).drop(columns=["score"]).to_parquet(ref_path)
    rows = list(frame(2000, seed=3)[FEATURES + ["prediction"]].itertuples(index=False))
    prefix, app_id = "o.", "outage"
    env = {"GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_EVIDENTLY__ENABLED": "false",
           "GLASSBOX_ATTRIBUTION__ENABLED": "false", "GLASSBOX_HEALTH__INTERVAL_S": "0.5",
           "GLASSBOX_HEALTH__STALE_AFTER_S": "4", "GLASSBOX_HEALTH__RESOLVE_AFTER": "2"}
    with broker_behind_proxy(tmp_path / "tansu.log") as (proxy, bootstrap):
        worker = WorkerProcess(bootstrap, prefix, app_id=app_id, home=tmp_path / "w", models={"m": str(ref_path)},
                               extra_env=env).start()
        try:
            worker.wait_ready(90)
            pid = worker.proc.pid
            sent: list[str] = []
            send_errors: list[str] = []
            stop = threading.Event()

            def steady() -> None:  # a model server sending 250 events/s before, during and after the outage
                with Producer(bootstrap, topic_prefix=prefix, buffer_bytes=16 << 20, max_block_ms=30_000,
                              batch_events=1) as p:  # one message per event, as the checks below read them
                    i = 0
                    while not stop.is_set():
                        r = rows[i % len(rows)]
                        pid_ = f"s{i}"
                        try:
                            p.send_prediction(prediction_id=pid_, model="m", timestamp=1_700_000_000_000 + i,
                                              features={c: (None if v != v else v) for c, v in
                                                        zip(FEATURES, r[:-1], strict=True)},
                                              prediction=int(r[-1]))
                            sent.append(pid_)
                        except ProducerError as err:
                            send_errors.append(str(err))
                        i += 1
                        time.sleep(0.004)

            t = threading.Thread(target=steady, daemon=True)
            t.start()
            worker.wait_for(lambda s: s["events"] > 500, timeout_s=30)

            proxy.pause()
            t_pause, wall_pause = time.monotonic(), time.time()
            stalled_seen = False
            while time.monotonic() - t_pause < OUTAGE_S:
                if firing(worker.web_port, "stale_stream") == 1:
                    stalled_seen = True
                assert worker.proc.poll() is None, "the worker must survive the outage"
                time.sleep(0.5)
            during = len(sent)
            proxy.resume()
            t_resume, wall_resume = time.monotonic(), time.time()
            assert stalled_seen, "the stale-stream check must fire while Kafka is unreachable"
            before = worker.stats()["events"]
            worker.wait_for(lambda s: s["events"] > before, timeout_s=90)
            first_event_s = time.monotonic() - t_resume
            worker.wait_for(lambda s: s["events"] >= during, timeout_s=90)  # the backlog of the outage
            caught_up_s = time.monotonic() - t_resume
            time.sleep(3)
            stop.set()
            t.join(60)
            total = len(sent)
            worker.wait_for(lambda s: s["events"] >= total, timeout_s=90)
            deadline = time.monotonic() + 30
            while firing(worker.web_port, "stale_stream") != 0 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert worker.proc.pid == pid and worker.proc.poll() is None, "reconnected without a restart"
            stats = worker.stats()
        finally:
            worker.stop()
        in_topic = Counter(r["prediction_id"] for r in read_json(bootstrap, f"{prefix}predictions"))
        audit = read_json(bootstrap, f"{prefix}audit")
        counted = Counter(i for rec in audit for i in rec["ids"])
        alerts = [a for a in read_json(bootstrap, f"{prefix}alerts") if a["monitor"] == "pipeline"]
    dups = sum(c - 1 for c in counted.values())
    # the worker's own producer retries too: an audit record whose ack was lost is on the topic twice, whole
    resent = sum(len(ids) * (c - 1) for ids, c in Counter(tuple(rec["ids"]) for rec in audit).items())
    producer_dups = sum(c - 1 for c in in_topic.values())  # a send retried after its ack was lost (no idempotence)
    stale = [(a["status"], a["event_time"] / 1000, a["value"]) for a in alerts if a["feature"] == "stale_stream"]
    print(f"\noutage {OUTAGE_S:.0f} s: produced {total} ({during} before resume), processed {stats['events']}, "
          f"dead-lettered {stats['deadlettered']}, producer duplicates {producer_dups}, dropped as duplicates "
          f"{stats['duplicates']}, audit duplicates {dups} ({resent} in records sent twice), redelivered skipped "
          f"{stats['redelivered']}; first event after resume {first_event_s:.1f} s, backlog done {caught_up_s:.1f} s; "
          f"stale alerts {stale}; refused connections {proxy.refused}")
    assert not send_errors, send_errors[:3]
    assert set(in_topic) == set(sent), "every event sent reached Kafka"
    assert set(counted) == set(sent), f"lost {len(set(sent) - set(counted))} events"
    # each event counted once: a record the producer wrote twice (at-least-once into Kafka) is the worker's to drop
    assert (stats["events"], stats["duplicates"], stats["deadlettered"]) == (len(in_topic), producer_dups, 0)
    assert dups == resent, f"{dups - resent} events processed twice"
    stall = [t for s, t, _ in stale if s == "firing" and wall_pause < t < wall_resume]
    assert stall, f"a stale-stream alert must fire during the outage: {stale}"
    assert [t for s, t, _ in stale if s == "resolved" and t > wall_resume], f"and resolve after it: {stale}"


def test_producer_buffer_is_bounded_with_a_clear_error(tmp_path: Path) -> None:
    """With Kafka unreachable, sends fill the bounded buffer and then fail after ``max_block_ms``."""
    with broker_behind_proxy(tmp_path / "tansu.log") as (proxy, bootstrap):
        prod = Producer(bootstrap, topic_prefix="b.", buffer_bytes=256 * 1024, max_block_ms=500, batch_events=1)
        try:
            prod.send_raw(prod.predictions_topic, b"{}", key="m")
            prod.flush()  # metadata known, connection up
            proxy.pause()
            payload = {"x": "y" * 900}
            accepted, err, t_err = 0, None, None
            t0 = time.monotonic()
            for i in range(5000):
                try:
                    prod.send_prediction(prediction_id=f"b{i}", model="m", timestamp=1_700_000_000_000 + i,
                                         features=payload, prediction=1)
                    accepted += 1
                except ProducerError as e:
                    err, t_err = str(e), time.monotonic() - t0
                    break
            assert err is not None, f"the buffer must be bounded: {accepted} sends of 1 KB into 256 KiB"
            assert accepted * 900 <= 256 * 1024, accepted
            assert "producer buffer full" in err and "max_block_ms" in err and bootstrap in err, err
            assert 0.4 <= t_err < 10
        finally:
            proxy.resume()
            prod.flush(30)  # what was buffered is delivered once Kafka is back
            prod.close()
        got = read_json(bootstrap, "b.predictions")
        assert len(got) == accepted + 1
    print(f"\nbounded buffer: {accepted} events buffered in 256 KiB, then in {t_err:.2f} s: {err}")

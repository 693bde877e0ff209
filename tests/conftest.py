"""Shared fixtures: one embedded broker per test session; every test gets its own topic prefix and group."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# The replay cache (calibrated limits, reference profiles) of the test session, never the user's: one directory
# shared by the session's processes (the worker and CLI subprocesses inherit it), gone with the machine's /tmp.
os.environ["GLASSBOX_CACHE_DIR"] = tempfile.mkdtemp(prefix="glassbox-test-cache-")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of an embedded broker (or of ``GLASSBOX_TEST_KAFKA`` when set, e.g. an Apache Kafka)."""
    external = os.environ.get("GLASSBOX_TEST_KAFKA")
    if external:
        yield external
        return
    from stream.kafka.broker import EmbeddedBroker

    with EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "tansu.log") as broker:
        yield broker.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic namespace, so tests sharing the broker never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}."

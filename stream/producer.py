"""The producer SDK: publish predictions (one or a columnar batch per message) and labels to Kafka.

Built on kafka-python 2.3.x with the ``crc32c`` package: measured here at 79k messages/s produce, against
32k for kafka-python 3.0.x (whose group consumers also join the embedded broker only after the 45-s session
timeout unless ``session_timeout_ms`` is lowered). Messages are keyed by model, so a model's events share a
partition and keep their order; the Kafka timestamp is the event time.

>>> with Producer("127.0.0.1:9092") as p:        # doctest: +SKIP
...     p.send_prediction(prediction_id="p1", model="churn", timestamp=1700000000000,
...                       features={"age": 42, "plan": "pro"}, prediction=0.83)
...     p.send_label(prediction_id="p1", model="churn", timestamp=1700000360000, label=1)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from stream.errors import UserError
from stream.events import (
    PREDICTION_BATCH_SCHEMA,
    label_event,
    parse_timestamp,
    prediction_event,
)
from stream.kafka.config import KafkaConfig


class ProducerError(UserError, RuntimeError):
    """The broker cannot be reached, or the local buffer stayed full past ``max_block_ms``."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class Producer:
    """Publish glassbox events. Buffered and retried by kafka-python; ``flush`` waits for delivery.

    ``buffer_bytes`` bounds the bytes accepted but not yet acknowledged by Kafka (kafka-python 2.3 ignores its
    own ``buffer_memory``, so the bound is kept here); a send that finds the buffer full for ``max_block_ms``
    raises :class:`ProducerError` instead of growing without limit. A message Kafka finally rejects (after
    kafka-python's retries, ``delivery_timeout_ms``) makes the next send or ``flush`` raise.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "glassbox.",
        kafka: KafkaConfig | None = None,
        linger_ms: int = 10,
        buffer_bytes: int = 64 * 1024 * 1024,
        max_block_ms: int = 10_000,
        max_request_bytes: int = 8 * 1024 * 1024,
        connect_timeout_s: float = 10.0,
    ):
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        from stream.kafka.clients import kafka_python_kwargs, producer_kwargs

        self.predictions_topic = f"{topic_prefix}predictions"
        self.labels_topic = f"{topic_prefix}labels"
        self.bootstrap = bootstrap
        self.buffer_bytes = buffer_bytes
        self.max_block_s = max_block_ms / 1000
        self.pending_bytes = 0
        self.failed: list[str] = []
        self._cond = threading.Condition()
        try:
            self._producer = KafkaProducer(
                **kafka_python_kwargs(kafka or KafkaConfig(), bootstrap),
                key_serializer=lambda k: None if k is None else k.encode(),
                linger_ms=linger_ms,
                **producer_kwargs(kafka or KafkaConfig()),
                buffer_memory=buffer_bytes,
                max_block_ms=max_block_ms,
                max_request_size=max_request_bytes,
                api_version_auto_timeout_ms=int(connect_timeout_s * 1000),
                request_timeout_ms=30_000,
                reconnect_backoff_max_ms=1000,
            )
        except KafkaError as err:
            raise ProducerError(f"cannot reach Kafka at {bootstrap} ({type(err).__name__})") from None

    def _send(self, topic: str, key: str, value: dict[str, Any], timestamp_ms: int | None) -> None:
        self._publish(topic, key, orjson.dumps(value), timestamp_ms)

    def _reserve(self, n: int, topic: str) -> None:
        """Wait up to ``max_block_ms`` for ``n`` bytes of buffer, or raise a :class:`ProducerError`."""
        deadline = time.monotonic() + self.max_block_s
        with self._cond:
            if self.failed:
                raise ProducerError(f"delivery to Kafka at {self.bootstrap} failed: {self.failed[0]}")
            while self.pending_bytes and self.pending_bytes + n > self.buffer_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProducerError(
                        f"producer buffer full: {self.pending_bytes} bytes wait for Kafka at {self.bootstrap} "
                        f"(buffer_bytes={self.buffer_bytes}); gave up on a send to {topic} after "
                        f"{self.max_block_s:g} s (max_block_ms). Is Kafka reachable?"
                    )
                self._cond.wait(left)
            self.pending_bytes += n

    def _done(self, n: int, result: Any = None) -> None:
        with self._cond:
            self.pending_bytes -= n
            if isinstance(result, Exception) and len(self.failed) < 100:
                self.failed.append(f"{type(result).__name__}: {result}")
            self._cond.notify_all()

    def _publish(self, topic: str, key: str | None, data: bytes | None, timestamp_ms: int | None) -> None:
        from kafka.errors import KafkaError

        n = len(data or b"") + len(key or "") + 70  # record overhead
        self._reserve(n, topic)
        try:
            fut = self._producer.send(topic, key=key, value=data, timestamp_ms=timestamp_ms)
        except KafkaError as err:
            self._done(n)
            raise ProducerError(f"send to {topic} failed: {type(err).__name__}: {err}") from None
        fut.add_both(lambda result: self._done(n, result))

    def send_prediction(
        self,
        *,
        prediction_id: str,
        model: str,
        features: Mapping[str, Any],
        prediction: Any,
        timestamp: int | str | None = None,
        scores: Mapping[str, float] | None = None,
        model_version: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """One prediction in one message. ``timestamp`` defaults to now (epoch ms)."""
        ts = _now_ms() if timestamp is None else parse_timestamp(timestamp)
        ev = prediction_event(
            prediction_id=prediction_id, model=model, timestamp=ts, features=dict(features),
            prediction=prediction, scores=None if scores is None else dict(scores), model_version=model_version,
            tags=None if tags is None else dict(tags),
        )
        self._send(self.predictions_topic, model, ev, ts)

    def send_prediction_batch(
        self,
        *,
        model: str,
        prediction_ids: Sequence[str],
        timestamps: Sequence[int],
        features: Mapping[str, Sequence[Any]],
        predictions: Sequence[Any],
        scores: Mapping[str, Sequence[float]] | None = None,
        model_version: str | None = None,
    ) -> None:
        """Many predictions of one model in one columnar message (hundreds per message is ideal)."""
        ev: dict[str, Any] = {
            "schema": PREDICTION_BATCH_SCHEMA, "model": model, "prediction_id": list(prediction_ids),
            "timestamp": [int(t) for t in timestamps], "features": {k: list(v) for k, v in features.items()},
            "prediction": list(predictions),
        }
        if scores is not None:
            ev["scores"] = {k: list(v) for k, v in scores.items()}
        if model_version is not None:
            ev["model_version"] = model_version
        self._send(self.predictions_topic, model, ev, max(ev["timestamp"]) if ev["timestamp"] else None)

    def send_label(self, *, prediction_id: str, model: str, label: Any, timestamp: int | str | None = None) -> None:
        """The ground truth for an earlier prediction."""
        ts = _now_ms() if timestamp is None else parse_timestamp(timestamp)
        ev = label_event(prediction_id=prediction_id, model=model, timestamp=ts, label=label)
        self._send(self.labels_topic, model, ev, ts)

    def send_raw(self, topic: str, value: bytes | None, key: str | None = None) -> None:
        """A message as given (tests and tools that publish malformed input on purpose)."""
        self._publish(topic, key, value, None)

    def flush(self, timeout_s: float | None = 60.0) -> None:
        from kafka.errors import KafkaError

        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as err:
            raise ProducerError(f"flush failed: {type(err).__name__}: {err}") from None
        if self.failed:
            raise ProducerError(f"delivery to Kafka at {self.bootstrap} failed: {self.failed[0]}")

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.close(timeout=timeout_s)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
        self.close()

"""The ``[kafka]`` settings: where the topics live and how to authenticate.

A light module (pydantic only) so that the producer SDK can take a :class:`KafkaConfig` without importing the
worker's settings; :mod:`stream.settings` re-uses it as its ``kafka`` section.

>>> KafkaConfig().embedded, KafkaConfig(bootstrap="k1:9092").embedded
(True, False)
>>> KafkaConfig().acks, KafkaConfig(acks=1).producer_acks
('all', 1)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class KafkaConfig(BaseModel):
    """Where the topics live. No ``bootstrap`` means: start the embedded broker."""

    model_config = ConfigDict(extra="forbid")

    bootstrap: str | None = Field(None, description="host:port[,host:port]; unset = embedded broker")
    topic_prefix: str = "glassbox."
    partitions: int = Field(4, ge=1, description="partitions of topics glassbox creates")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    connect_timeout_s: float = Field(10.0, gt=0, description="give up on an unreachable broker after this")
    max_message_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="larger messages are dead-lettered")
    acks: Literal["all", "1", "0"] = Field("all", description="acknowledgements every producer waits for")
    idempotent: bool = Field(False, description="idempotent producers (Apache Kafka; broken on the embedded broker)")
    replication_factor: int = Field(1, ge=1, description="replicas of topics glassbox creates (3 on a cluster)")
    min_insync_replicas: int | None = Field(None, ge=1, description="min.insync.replicas of created topics")

    @field_validator("acks", mode="before")
    @classmethod
    def _acks_text(cls, v: object) -> object:
        return str(v).lower() if isinstance(v, int | str) else v  # acks = 1 in TOML

    @property
    def embedded(self) -> bool:
        return self.bootstrap is None

    @property
    def producer_acks(self) -> str | int:
        """``acks`` as kafka-python and aiokafka take it ("all", 1 or 0)."""
        return "all" if self.acks == "all" else int(self.acks)

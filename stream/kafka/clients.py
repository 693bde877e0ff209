"""Kafka client settings in one place, so TLS and SASL reach every client glassbox creates.

Each function turns the ``[kafka]`` settings into the keyword arguments of one client library:
kafka-python (producer SDK), aiokafka (topic replay, tail) and Faust (the worker).
"""

from __future__ import annotations

import ssl
from typing import Any

from stream.kafka.config import KafkaConfig


def _ssl_context(cfg: KafkaConfig) -> ssl.SSLContext | None:
    if cfg.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return ssl.create_default_context(cafile=str(cfg.ssl_cafile) if cfg.ssl_cafile else None)


def _password(cfg: KafkaConfig) -> str | None:
    return cfg.sasl_password.get_secret_value() if cfg.sasl_password else None


def _connection(cfg: KafkaConfig, servers: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {"bootstrap_servers": servers, "security_protocol": cfg.security_protocol}
    if cfg.sasl_mechanism:
        kw |= {"sasl_mechanism": cfg.sasl_mechanism, "sasl_plain_username": cfg.sasl_username,
               "sasl_plain_password": _password(cfg)}
    if ctx := _ssl_context(cfg):
        kw["ssl_context"] = ctx
    return kw


def kafka_python_kwargs(cfg: KafkaConfig, bootstrap: str) -> dict[str, Any]:
    """Connection keyword arguments for ``kafka.KafkaProducer`` / ``KafkaConsumer`` (a list of servers)."""
    return _connection(cfg, bootstrap.split(","))


def aiokafka_kwargs(cfg: KafkaConfig, bootstrap: str) -> dict[str, Any]:
    """Connection keyword arguments for ``aiokafka.AIOKafkaConsumer`` / ``AIOKafkaProducer`` (one string)."""
    return _connection(cfg, bootstrap)


def producer_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Durability keyword arguments of a kafka-python or aiokafka producer: ``acks`` and idempotence."""
    kw: dict[str, Any] = {"acks": cfg.producer_acks}
    if cfg.idempotent:
        kw["enable_idempotence"] = True
    return kw


def faust_kwargs(cfg: KafkaConfig, bootstrap: str) -> dict[str, Any]:
    """``broker``, ``broker_credentials``, ``producer_acks`` and ``topic_replication_factor`` for ``faust.App``."""
    import faust

    kw: dict[str, Any] = {"broker": ",".join(f"kafka://{b}" for b in bootstrap.split(",")),
                          "producer_acks": -1 if cfg.acks == "all" else int(cfg.acks),
                          "topic_replication_factor": cfg.replication_factor}
    ctx = _ssl_context(cfg)
    if cfg.sasl_mechanism:
        mech = cfg.sasl_mechanism
        if mech == "PLAIN":
            kw["broker_credentials"] = faust.SASLCredentials(
                username=cfg.sasl_username, password=_password(cfg), ssl_context=ctx
            )
        else:
            kw["broker_credentials"] = faust.SASLCredentials(
                username=cfg.sasl_username, password=_password(cfg), ssl_context=ctx, mechanism=mech
            )
    elif ctx is not None:
        kw["broker_credentials"] = faust.SSLCredentials(ctx)
    return kw

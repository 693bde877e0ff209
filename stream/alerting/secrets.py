"""Keep secrets out of logs, errors and payloads.

>>> redact("POST https://hooks.example/T1/B2/sekrit failed", ["sekrit"])
'POST https://hooks.example/T1/B2/*** failed'
"""

from __future__ import annotations

import logging
from collections.abc import Iterable


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value (and the path of secret URLs) replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites records so that no secret value survives formatting."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = redact(record.getMessage(), self.secrets)
            record.args = ()
        return True


def quiet_logger(name: str, secrets: Iterable[str]) -> logging.Logger:
    """A logger for third-party clients: slack-sdk logs webhook URLs at DEBUG and every failed attempt at
    ERROR (our retry log already says it, redacted), so only CRITICAL passes, redacted."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.CRITICAL)
    for f in list(logger.filters):
        if isinstance(f, RedactingFilter):
            logger.removeFilter(f)
    logger.addFilter(RedactingFilter(secrets))
    return logger

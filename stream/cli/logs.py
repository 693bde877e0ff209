"""Logging of the long-running commands (``worker``, ``alerts notify``): one handler on stderr, text or JSON.

``--log-level`` sets the level of glassbox's own loggers (``glassbox.*``); libraries (Faust, aiokafka, MLflow)
log at WARNING and above unless the level is DEBUG. Text lines escape control characters, so neither a feature
name nor a library can put a terminal control sequence into the output.

>>> import io, logging
>>> out = io.StringIO()
>>> configure_logging("INFO", "json", stream=out)
>>> logging.getLogger("glassbox.worker").info("alert %s", "firing", extra={"fields": {"model": "churn"}})
>>> import json; {k: v for k, v in json.loads(out.getvalue()).items() if k != "time"}
{'level': 'INFO', 'logger': 'glassbox.worker', 'message': 'alert firing', 'model': 'churn'}
>>> out = io.StringIO(); configure_logging("INFO", "text", stream=out)
>>> logging.getLogger("glassbox.worker").warning("feature \\x1b[31mred")
>>> out.getvalue().split(": ", 1)[1]
'feature \\\\x1b[31mred\\n'
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
from typing import IO, Any

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class TextFormatter(logging.Formatter):
    """``2026-12-02T12:00:00+0000 INFO glassbox.worker: message``, control characters escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z")

    def format(self, record: logging.LogRecord) -> str:
        return _escape(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's ``fields`` (``extra={"fields":
    {...}}``) and the exception, if any."""

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        body: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            body.update({k: v for k, v in fields.items() if k not in body})
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


def resolve(level: str | None, fmt: str | None) -> tuple[str, str]:
    """The options, else ``GLASSBOX_LOG_LEVEL`` / ``GLASSBOX_LOG_FORMAT``, else INFO and text; checked."""
    from stream.errors import UserError

    level = (level or os.environ.get("GLASSBOX_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("GLASSBOX_LOG_FORMAT") or "text").lower()
    if level not in LEVELS:
        raise UserError(f"log level {level!r}: use one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise UserError(f"log format {fmt!r}: use text or json")
    return level, fmt


def configure_logging(level: str, fmt: str, *, stream: IO[str] | None = None) -> None:
    """Route every log record to one handler on ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    number = logging.getLevelName(level)
    root.setLevel(number if number == logging.DEBUG else max(number, logging.WARNING))
    logging.getLogger("glassbox").setLevel(number)
    logging.captureWarnings(True)

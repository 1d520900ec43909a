"""Structured logging: one line per connect, disconnect and invocation (the CloudWatch lines).

Records carry their fields in ``extra={"fields": {...}}``; the text formatter appends them as
``key=value``, the JSON formatter writes one object per line. Secrets never reach a record: callers
pass ids, routes, statuses and latencies only (see docs/security.md).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

ACCESS = logging.getLogger("hubbub.access")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        base = (
            f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        if fields:
            base += " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        del datefmt
        ms = int(record.msecs)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{ms:03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def _text(value: Any) -> str:
    text = str(value)
    if text and text.isprintable() and " " not in text and '"' not in text:
        return text
    # Quote and escape anything else, so client-supplied text (a close reason) can never break
    # out of its field or forge a log line.
    return orjson.dumps(text).decode()


def configure(fmt: str = "text", level: str = "info") -> None:
    """Install hubbub's formatter on the root logger (called by the CLI, not by the library)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp logs every abrupt client disconnect; at scale that costs CPU and hides real errors.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    logging.getLogger("aiohttp.websocket").setLevel(logging.ERROR)


def event(logger: logging.Logger, message: str, **fields: Any) -> None:
    """Log one structured line at INFO, skipping all work when INFO is off."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(message, extra={"fields": fields})

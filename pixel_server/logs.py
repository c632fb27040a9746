"""Structured logs: one JSON object per line, for our loggers and uvicorn's.

Messages never include secrets: settings' ``repr`` hides them, and tokens, keys and query
strings are not logged (the uvicorn access log, which would show query strings, is off unless
``PIXEL_ACCESS_LOG`` is set).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True)


def log_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict, also handed to uvicorn as ``log_config``."""
    level = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "loggers": {
            "pixel_server": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["default"], "level": level, "propagate": False},
            "_granian": {"handlers": ["default"], "level": level, "propagate": False},
            "granian.access": {"handlers": ["default"], "level": level, "propagate": False},
        },
        # everything else (asyncpg's pool, the standard library) as JSON lines too
        "root": {"handlers": ["default"], "level": "WARNING"},
    }

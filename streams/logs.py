"""Log output: plain text, or one JSON object per line (``log_format = "json"``) for log
collectors such as those of Kubernetes.

The same formatter serves the CLI (:func:`configure`) and the Faust worker, whose
``mode.Worker`` replaces the root handlers with its own unless it is given a logging config
(:func:`worker_logging_config`).
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import orjson

from streams.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message"}`` per record, plus ``exc`` (the formatted
    traceback) when there is one. ``ts`` is the record's creation time, UTC, ISO 8601 with
    milliseconds."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC)
                    .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


def configure(settings: Settings) -> None:
    """Logging of a CLI process: the level and format of ``settings``, to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Python warnings are log records too, so a JSON stream has no plain-text lines in it.
    logging.captureWarnings(settings.log_format == "json")


def worker_logging_config(settings: Settings) -> dict[str, Any] | None:
    """``logging.config.dictConfig`` input for ``faust.Worker``: None keeps Faust's own text
    format; JSON lines otherwise (on stdout, where Faust logs)."""
    if settings.log_format != "json":
        return None
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json",
                                 "level": level, "stream": "ext://sys.stdout"}},
        "root": {"level": level, "handlers": ["default"]},
    }

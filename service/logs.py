"""Logging setup and a limiter for repeated errors (log once per burst, with a count).

``hedgewatch --log-level LEVEL --log-format text|json`` choose for every command: ``force`` records them,
and every later ``setup_logging`` (whatever level a command or its config asks for) uses them instead.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

LOG_FORMATS = ("text", "json")
_forced: dict[str, str] = {}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message``,
    and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def force(level: str | None = None, fmt: str | None = None) -> None:
    """The level and format every ``setup_logging`` uses from now on (None: leave as asked)."""
    if level is not None:
        _forced["level"] = level.upper()
    if fmt is not None:
        _forced["format"] = fmt


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    level = _forced.get("level", level)
    fmt = _forced.get("format", fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json"
                         else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "aiohttp.access", "asyncio", "ccxt", "httpx", "httpcore", "hedgewatch.simulator"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


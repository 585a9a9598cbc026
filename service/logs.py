"""Logging setup and a limiter for repeated errors (log once per burst, with a count)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "aiohttp.access", "asyncio", "ccxt", "httpx", "httpcore", "hedgewatch.simulator"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class BurstLimiter:
    """Allows one log line per ``key`` per ``window_s``; the next allowed line reports how many were
    suppressed in between, so a flood of identical errors costs one line per window, not one per event."""

    def __init__(self, window_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """(should log now, number suppressed since the last line for this key)."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        return True, self._suppressed.pop(key, 0)

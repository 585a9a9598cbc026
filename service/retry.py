"""Retrying and its logging, shared by the connectors and the daemon's own I/O loops: capped exponential
backoff with jitter from an injected random source, a log that reports a burst of trouble in a handful of
lines, and the re-raise of a cancellation that a library swallowed. Imports nothing of the project."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Backoff", "BurstLog", "raise_if_cancelled"]


class Backoff:
    """Capped exponential backoff with equal jitter: the n-th delay is uniform in [d/2, d] with
    d = min(cap, base * 2**n). ``reset`` after a connection stayed up for ``stable_after_s``."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        d = min(self.cap_s, self.base_s * (2.0 ** min(self.attempt, 30)))
        self.attempt += 1
        return d * 0.5 + self._rng.random() * d * 0.5

    def reset(self) -> None:
        self.attempt = 0


class BurstLog:
    """Logs the first occurrence of a kind of trouble, then at most one line per ``interval_s`` while it
    lasts, so an outage or a flood of bad frames yields a handful of lines, not one per event.

    What the limiter held back is always told: the next line of the key carries "(N more since the last
    report)", ``flush`` (run about once a second by the connections) writes that summary for a burst that
    went quiet, and ``clear`` writes it with the end-of-trouble line. ``event(..., force=True)`` logs even
    inside an open window (the first loss of a connection that was healthy must never be swallowed by an
    earlier burst) and starts a new window."""

    def __init__(self, logger: logging.Logger, interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        # key -> [logged at, suppressed since, last message held back, its level]
        self._open: dict[str, list[Any]] = {}

    def event(self, key: str, msg: str, level: int = logging.WARNING, force: bool = False) -> None:
        now = self._clock()
        entry = self._open.get(key)
        if entry is None:
            self._log.log(level, msg)
            self._open[key] = [now, 0, "", level]
        elif force or now - entry[0] >= self._interval:
            self._log.log(level, msg + _more(entry[1]))
            self._open[key] = [now, 0, "", level]
        else:
            entry[1] += 1
            entry[2] = msg
            entry[3] = level

    def suppressed(self, key: str) -> int:
        entry = self._open.get(key)
        return 0 if entry is None else entry[1]

    def flush(self) -> None:
        """Summarize the bursts whose window passed with lines held back."""
        now = self._clock()
        for entry in self._open.values():
            if entry[1] and now - entry[0] >= self._interval:
                self._log.log(entry[3], f"{entry[2]} ({entry[1]} like it since the last report)")
                entry[0], entry[1], entry[2] = now, 0, ""

    def clear(self, key: str, msg: str | None = None, level: int = logging.INFO) -> None:
        """The burst ended; log ``msg`` if one was open, with what was held back since its last line."""
        entry = self._open.pop(key, None)
        if entry is None:
            return
        if msg:
            self._log.log(level, msg + _more(entry[1]))
        elif entry[1]:
            self._log.log(entry[3], f"{entry[2]} ({entry[1]} like it since the last report)")


def _more(n: int) -> str:
    return f" ({n} more since the last report)" if n else ""


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed. On Python 3.11 ``asyncio.wait_for`` and task groups
    can surface a child's error instead of the ``CancelledError`` that arrived at the same moment; a
    reconnect-forever loop that caught that error would then never stop. Every broad ``except`` in such a
    loop calls this first."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError

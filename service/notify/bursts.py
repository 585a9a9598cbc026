"""Failure logging that tells the truth without flooding: the first failure of a run is logged, the rest are
counted (the metrics have each one), and the recovery is logged with how many attempts failed and for how
long."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Burst:
    """One thing that can fail repeatedly (a destination, Redis). Not thread-safe; one event loop."""

    def __init__(self, log: logging.Logger, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self.what = what
        self._clock = clock
        self.failures = 0
        self._since = 0.0

    def failed(self, reason: str, level: int = logging.WARNING) -> None:
        """Record a failed attempt; logs only the first of a run."""
        self.failures += 1
        if self.failures == 1:
            self._since = self._clock()
            self._log.log(level, "notify: %s: %s (further failures are counted, not logged, until it "
                                 "recovers)", self.what, reason)

    def recovered(self) -> None:
        """Record a success; logs the end of a run of failures."""
        if self.failures:
            self._log.info("notify: %s recovered after %d failed attempt%s in %.1f s", self.what, self.failures,
                           "" if self.failures == 1 else "s", self._clock() - self._since)
        self.failures = 0

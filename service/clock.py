"""The daemon's clock: wall time that cannot step.

Ages, silences, ``for`` durations, cooldowns and the publish cadence are differences of this clock, and the
wall clock steps: an NTP correction, a suspended VM, an operator's ``date -s``. Read through ``time.time``, a
step back of an hour would keep a stalled venue "fresh" for that hour (its age stays 0) and a step forward
would satisfy every ``for:`` at once. ``SteadyClock`` is the wall time at start advanced by the monotonic
clock, so its differences are real elapsed time; timestamps shown to people stay on the time line of the
start. ``check`` compares it with the wall clock and reports a step, which the daemon logs and exports.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

STEP_S = 1.0  # a disagreement this large between the wall clock and the steady one is a step, not drift


class SteadyClock:
    """``clock()`` is ``wall at start + monotonic elapsed``."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._origin = wall() - monotonic()
        self._reported = 0.0  # the offset at the last reported step

    def __call__(self) -> float:
        return self._origin + self._monotonic()

    @property
    def offset(self) -> float:
        """Wall clock minus this clock, in seconds (positive: the wall clock is ahead)."""
        return self._wall() - self()

    def check(self) -> float | None:
        """The size of a wall-clock step since the last one reported (``STEP_S`` or more), else None."""
        off = self.offset
        step = off - self._reported
        if abs(step) < STEP_S:
            return None
        self._reported = off
        return step


async def _loop_sleep(seconds: float) -> None:
    import asyncio  # the event loop's sleep; imported here so the pure core that reads clocks loads no loop

    await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Timebase:
    """Everything time-dependent code reads or waits on, injected in one piece: the wall clock (event
    timestamps, ages), the monotonic clock (pacing, keep-alive, connection age), the sleep that waits on it
    and the random source of jitter. Production uses the defaults; a test hands in a fake of all four, so
    what it checks does not depend on the machine's speed."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = _loop_sleep
    rng: random.Random = field(default_factory=random.Random)

"""The engine's role in the scaled layout (``hedgewatch run --bus redis``): standby or owner of its index.

A standby holds no market state and writes nothing but its heartbeat; it tries for the index's lease every
``lease_s/3``. Once it holds the lease, with a new fencing token, it takes over: the daemon restores the index
from the state in Redis (the basket, rule states, the hedge and its ledger: what the previous owner last
wrote, fenced, together with every alert it delivered), then reads the asset streams from ``max_age_s`` back
and runs as the one-process daemon does, every write fenced. It stays owner until a renewal or a fenced write
is refused, or Redis does not confirm a renewal for ``lease_s``: then it stops reading, drops its market
state and becomes a standby again (a fresh engine, so a later takeover restores from Redis, never from what
it held). The tasks only an owner runs (the stream readers, the command stream) live in the ownership's own
task group: they end when the ownership does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hedgewatch.service.keys import Keys
from hedgewatch.service.lease import Lease, LeaseLost
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.redisconn import error_text
from hedgewatch.service.scale import StreamReader

log = logging.getLogger("hedgewatch.lease")


class Ownership:
    """Acquire, hold and lose the lease of one index; ``take_over``/``step_down`` are the daemon's."""

    def __init__(self, factory: Callable[[], aioredis.Redis], keys: Keys, index: str, holder: str, *,
                 lease_s: float, reader: StreamReader, metrics: Metrics, replay_s: float,
                 take_over: Callable[[int], Coroutine[Any, Any, None]], step_down: Callable[[], None],
                 owned: Callable[[], list[tuple[str, Coroutine[Any, Any, None]]]],
                 wall: Callable[[], float] = time.time) -> None:
        self.index = index
        self.holder = holder
        self.lease = Lease(factory, keys, index, holder, lease_s)
        self.reader = reader
        self.metrics = metrics
        self._replay_s = replay_s
        self._take_over = take_over
        self._step_down = step_down
        self._owned = owned
        self._wall = wall
        self.owning = False
        self.takeovers = 0
        self.losses = 0
        self.refusals = 0
        self.last_change: float | None = None
        self.last_loss_reason = ""
        self._errors_logged = False
        self._read_exported = 0

    def fenced(self) -> None:
        """A fenced write was refused (called by the publisher or the alert sink)."""
        self.refusals += 1
        self.metrics.fencing_refusals.labels(self.index).inc()
        self.lease.give_up("a fenced write was refused: another process holds the lease")

    def _redis_error(self, exc: BaseException) -> None:
        self.metrics.redis_errors.inc()
        if not self._errors_logged:
            self._errors_logged = True
            log.warning("lease of %s: Redis unavailable (%s); retrying", self.index, error_text(exc))

    async def run(self) -> None:
        """Standby → owner → standby, forever."""
        while True:
            token = await self.lease.acquire(self._redis_error)
            self._errors_logged = False
            start_ms = max(0, int((self._wall() - self._replay_s) * 1000))
            self.owning = True
            self.takeovers += 1
            self.last_change = self._wall()
            self.metrics.takeovers.labels(self.index).inc()
            self.metrics.index_owner.labels(self.index).set(1)
            log.warning("index %s: this process (%s) owns it now, fencing token %d; restoring its state and "
                        "reading the streams from %.0f s back", self.index, self.holder, token, self._replay_s)
            try:
                try:
                    await self._take_over(token)
                except (RedisError, OSError, TimeoutError) as exc:
                    # never run from a fresh state over one that could not be read: hand the lease back
                    self._redis_error(exc)
                    await self.release()
                    raise LeaseLost(f"the persisted state could not be read ({type(exc).__name__})") from None
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self.reader.run(f"{start_ms}-0"), name="streams")
                    for name, coro in self._owned():
                        tg.create_task(coro, name=name)
                    tg.create_task(self.lease.keep(self._redis_error), name="lease")
            except* LeaseLost as group:
                self.last_loss_reason = str(group.exceptions[0])
            finally:
                self.owning = False
                self.lease.stepped_down()
                self.metrics.index_owner.labels(self.index).set(0)
                self._step_down()
            self.losses += 1
            self.last_change = self._wall()
            self.metrics.lease_losses.labels(self.index).inc()
            log.warning("index %s: stepped down (%s); standing by", self.index, self.last_loss_reason)

    async def release(self) -> None:
        """At a planned stop: hand the lease back so a standby takes over at its next attempt."""
        if self.owning:
            with contextlib.suppress(Exception):
                await self.lease.release()

    def export(self) -> None:
        age = self.lease.age_s
        self.metrics.lease_age.labels(self.index).set(age if age is not None else 0)
        self.metrics.stream_events.inc(self.reader.read - self._read_exported)
        self._read_exported = self.reader.read

    def state(self) -> dict[str, Any]:
        age = self.lease.age_s
        return {
            "role": "owner" if self.owning else "standby",
            "process": self.holder,
            "index": self.index,
            "fencing_token": self.lease.token,
            "lease_s": self.lease.lease_s,
            "lease_age_s": None if age is None else round(age, 3),
            "takeovers": self.takeovers,
            "losses": self.losses,
            "last_loss_reason": self.last_loss_reason or None,
            "fencing_refusals": self.refusals,
            "last_change": self.last_change,
            "streams": dict(self.reader.positions) if self.owning else {},
            "events_read": self.reader.read,
        }

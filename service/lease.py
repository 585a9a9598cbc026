"""Index ownership: a lease in Redis per index, and the fencing token that makes a lost lease harmless.

``<prefix>:{INDEX}:lease`` holds the owner's name with a TTL of ``lease_s``; the owner renews it every
``lease_s/3`` with a script that checks it is still the holder. Every acquisition increments
``<prefix>:{INDEX}:fence``; the owner's writes (alerts, hedge advice, snapshots, state) run in scripts that
compare that token with the one the writer holds, so a process that was paused past its lease (a long GC,
SIGSTOP, a frozen VM) and wakes up still believing it owns the index writes nothing: its first write is
refused, and it steps down. Both keys carry the index's hash tag: on a Redis Cluster they share a slot with
the index's alert stream and state, which the fenced scripts touch together.

A standby tries to acquire every ``lease_s/3``; a dead owner's lease runs out after at most ``lease_s``, so
the index is taken over within ``lease_s + lease_s/3``, inside two lease periods. A stopping owner releases
its lease, so a planned stop hands over at the standby's next attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hedgewatch.service.keys import Keys
from hedgewatch.service.outbox import close_client
from hedgewatch.service.retry import raise_if_cancelled

log = logging.getLogger("hedgewatch.lease")

# KEYS: lease, fence. ARGV: holder, lease ms. Returns {token, 0} when acquired, {0, ms left} when held by another.
ACQUIRE_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return {0, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {redis.call('INCR', KEYS[2]), 0}
"""

# KEYS: lease, fence. ARGV: holder, token, lease ms. 1 when renewed; 0 when the lease or the token is another's.
RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""

# KEYS: lease, fence. ARGV: holder, token. Deletes the lease only when this holder still has it.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(Exception):
    """The lease of an index is no longer ours: renewal refused, a fenced write refused, or Redis unreachable
    for longer than the lease."""


class Lease:
    """The lease of one index for one process. ``acquire`` waits until it is ours and returns the fencing
    token; ``keep`` renews it and raises ``LeaseLost`` when it is gone."""

    def __init__(self, factory: Callable[[], aioredis.Redis], keys: Keys, index: str, holder: str,
                 lease_s: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._factory = factory
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self.keys = [keys.lease(index), keys.fence(index)]
        self.index = index
        self.holder = holder
        self.lease_s = lease_s
        self.renew_s = lease_s / 3
        self._monotonic = monotonic
        self.token: int | None = None
        self.acquired_at: float | None = None  # monotonic
        self.renewed_at: float | None = None  # monotonic, of the last renewal Redis confirmed
        self.lost = asyncio.Event()
        self.reason = ""

    def _script(self, name: str, text: str) -> Any:
        if self._client is None:
            self._client = self._factory()
            self._scripts = {}
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._client.register_script(text)
        return script

    async def _call(self, name: str, text: str, args: list[Any]) -> Any:
        try:
            result = await self._script(name, text)(keys=self.keys, args=args)
        except (RedisError, OSError):
            raise_if_cancelled()
            client, self._client = self._client, None
            await close_client(client)
            raise
        raise_if_cancelled()
        return result

    @property
    def age_s(self) -> float | None:
        """Seconds since the last confirmed renewal (None when not held)."""
        return None if self.renewed_at is None or self.token is None else self._monotonic() - self.renewed_at

    async def acquire(self, on_error: Callable[[BaseException], None]) -> int:
        """Try every ``renew_s`` until the lease is ours; the new fencing token."""
        ms = int(self.lease_s * 1000)
        while True:
            sent = self._monotonic()
            try:
                token, _ = await self._call("acquire", ACQUIRE_LUA, [self.holder, ms])
            except (RedisError, OSError) as exc:
                on_error(exc)
                token = 0
            if token:
                self.token = int(token)
                self.acquired_at = self.renewed_at = sent
                self.lost = asyncio.Event()
                self.reason = ""
                return self.token
            await asyncio.sleep(self.renew_s)

    def give_up(self, reason: str) -> None:
        """A fenced write was refused: the lease is another's (``keep`` raises ``LeaseLost``)."""
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()

    async def keep(self, on_error: Callable[[BaseException], None]) -> None:
        """Renew every ``renew_s`` until the lease is lost; then raise ``LeaseLost``. When Redis does not
        confirm a renewal for ``lease_s`` (measured from the sending of the last confirmed one), the lease
        may have run out on the server: stepping down then is safe, staying is not."""
        assert self.token is not None
        ms = int(self.lease_s * 1000)
        while True:
            try:
                async with asyncio.timeout(self.renew_s):
                    await self.lost.wait()
            except TimeoutError:
                pass
            if self.lost.is_set():
                raise LeaseLost(self.reason)
            sent = self._monotonic()
            try:
                async with asyncio.timeout(self.renew_s):
                    ok = await self._call("renew", RENEW_LUA, [self.holder, self.token, ms])
            except (RedisError, OSError, TimeoutError) as exc:
                on_error(exc)
                if self.renewed_at is not None and self._monotonic() - self.renewed_at >= self.lease_s:
                    raise LeaseLost(f"Redis did not confirm a renewal for {self.lease_s:g} s") from None
                continue
            if not ok:
                raise LeaseLost("the lease is held by another process now")
            self.renewed_at = sent

    async def release(self) -> None:
        """Hand the lease back (a planned stop), within a short bound; then drop the client."""
        token, self.token = self.token, None
        self.renewed_at = None
        try:
            if token is not None:
                async with asyncio.timeout(0.5):
                    await self._call("release", RELEASE_LUA, [self.holder, token])
        except (RedisError, OSError, TimeoutError):
            pass
        finally:
            client, self._client = self._client, None
            await close_client(client)

    def stepped_down(self) -> None:
        self.token = None
        self.renewed_at = None

"""The Redis publisher: index snapshots, hedge recommendations, last-value state keys and the heartbeat.

It runs in its own task, behind bounded buffers, so a slow or absent Redis never stalls the pipeline:

- index snapshots and state keys are **latest-wins** per index: a newer snapshot replaces an unpublished
  older one (counted as dropped), so the buffer never grows and a subscriber always gets the newest value;
- hedge recommendations go through a bounded deque, **drop oldest** when full (counted); the state key and
  the durable alert stream carry the same decisions, so a dropped pub/sub message loses nothing durable;
- everything pending is written in one pipelined round trip per wake-up (redis-py awaits each command's
  reply otherwise, which caps a single connection at ~14k PUBLISH/s here against ~98k/s pipelined).

While Redis is unreachable the publisher logs once per outage, keeps the latest values, and reconnects with
capped backoff; ``hedgewatch_redis_up`` says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hedgewatch.service.keys import Keys
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.outbox import close_client
from hedgewatch.service.redisconn import error_text
from hedgewatch.service.retry import raise_if_cancelled

log = logging.getLogger("hedgewatch.redis")

# The scaled layout's write of one index (``run --bus redis``): only while the writer's fencing token is the
# index's; the state only when no newer one is stored (the alert outbox writes states too).
# KEYS: fence, state, state saved_at. ARGV: token, index channel, hedge channel, snapshot JSON or '',
# state JSON or '', its saved_at, then hedge recommendation JSONs. 1 when written, 0 when refused.
FENCED_WRITE_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[4]) end
if ARGV[5] ~= '' and tonumber(ARGV[6]) >= tonumber(redis.call('GET', KEYS[3]) or '-1') then
  redis.call('SET', KEYS[2], ARGV[5])
  redis.call('SET', KEYS[3], ARGV[6])
end
for i = 7, #ARGV do redis.call('PUBLISH', ARGV[3], ARGV[i]) end
return 1
"""


class RedisPublisher:
    def __init__(
        self,
        client_factory: Callable[[], aioredis.Redis],
        keys: Keys,
        metrics: Metrics,
        *,
        where: str = "redis",
        hedge_capacity: int = 1000,
        heartbeat_interval_s: float = 5.0,
        heartbeat_ttl_s: float = 15.0,
        healthy: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._factory = client_factory
        self._client: aioredis.Redis | None = None
        self.keys = keys
        self.metrics = metrics
        self.where = where
        self._snapshots: dict[str, tuple[dict[str, Any], float | None]] = {}
        self._states: dict[str, dict[str, Any]] = {}
        self._hedges: deque[tuple[str, dict[str, Any]]] = deque(maxlen=hedge_capacity)
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopping = False
        self._hb_interval = heartbeat_interval_s
        self._hb_ttl = heartbeat_ttl_s
        self._healthy = healthy
        self._clock = clock
        self._next_heartbeat = 0.0
        self.heartbeat_key = keys.heartbeat
        # the scaled layout: index writes carry the lease's fencing token (None: not the owner, nothing is
        # written); a refusal drops them and calls on_fenced
        self.fenced = False
        self.fence_token: int | None = None
        self.on_fenced: Callable[[], None] | None = None
        self.refused = 0
        self._fenced_script: Any = None
        self.connected = False
        self.published = 0
        self.dropped = 0
        self.errors = 0
        self.last_publish_latency_s: float | None = None
        # called after each snapshot is written: (index, snapshot, seconds from its newest tick's receipt)
        self.on_published: Callable[[str, dict[str, Any], float | None], None] | None = None
        metrics.queue_capacity.labels("redis_hedge").set(hedge_capacity)

    # --- producer side: synchronous, never blocks -----------------------------------------------------

    def publish_snapshot(self, index: str, snapshot: dict[str, Any], tick_ts: float | None = None) -> None:
        """Queue an index snapshot for the pub/sub channel (latest wins). ``tick_ts`` is the receive time of
        the newest tick it reflects, for the tick-to-publish latency."""
        if index in self._snapshots:
            self.dropped += 1
            self.metrics.queue_dropped.labels("redis_snapshot").inc()
        self._snapshots[index] = (snapshot, tick_ts)
        self._wakeup.set()

    def save_state(self, index: str, state: dict[str, Any]) -> None:
        """Queue the value of ``hedgewatch:state:<index>`` (latest wins)."""
        self._states[index] = state
        self._wakeup.set()

    def publish_hedge(self, index: str, recommendation: dict[str, Any]) -> None:
        if len(self._hedges) == self._hedges.maxlen:
            self.dropped += 1
            self.metrics.queue_dropped.labels("redis_hedge").inc()
        self._hedges.append((index, recommendation))
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._snapshots) + len(self._states) + len(self._hedges)

    # --- consumer side ---------------------------------------------------------------------------------

    async def load_state(self, index: str, timeout_s: float = 3.0, *, strict: bool = False) -> dict[str, Any] | None:
        """The persisted state of ``index``, or None when absent or Redis cannot be reached in time. ``strict``
        (a takeover, which must not start fresh over a state it could not read): the error is raised."""
        try:
            async with asyncio.timeout(timeout_s):
                raw = await self._get_client().get(self.keys.state(index))
        except (RedisError, OSError, TimeoutError) as exc:
            if strict:
                raise
            log.warning("could not read persisted state from %s: %s; starting fresh", self.where,
                        error_text(exc))
            return None
        if raw is None:
            return None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("persisted state %s is not JSON; ignoring it", self.keys.state(index))
            return None
        return value if isinstance(value, dict) else None

    def _get_client(self) -> aioredis.Redis:
        if self._client is None:
            self._client = self._factory()
        return self._client

    async def run(self) -> None:
        """Publish whatever is pending until ``stop`` is requested; reconnect with capped, jittered backoff
        on errors. After ``stop`` it writes what is pending once more and returns (an explicit stop, not a
        cancellation, so the final write is never torn in the middle of a pipeline)."""
        backoff = 0.0
        while True:
            if backoff and not self._stopping:
                # Redis is failing: wait out the backoff whatever arrives meanwhile (it is kept latest-wins)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._stop_requested.wait()
            elif not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, self._next_heartbeat - self._clock())):
                        await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._write()
            except (RedisError, OSError) as exc:
                raise_if_cancelled()  # a cancellation redis-py turned into a connection error must still stop us
                self._on_error(exc)
                if self._stopping:
                    return
                backoff = min(max(backoff * 2, 0.1), 5.0) * random.uniform(0.8, 1.2)
            else:
                backoff = 0.0
                if self._stopping:
                    return

    def stop(self) -> None:
        """Ask ``run`` to write what is pending (the final snapshot) and return."""
        self._stopping = True
        self._stop_requested.set()
        self._wakeup.set()

    async def flush(self, deadline_s: float) -> bool:
        """Write everything pending now, for callers that do not run the ``run`` loop; False when Redis did
        not take it in time."""
        try:
            async with asyncio.timeout(deadline_s):
                await self._write()
            return True
        except (RedisError, OSError, TimeoutError) as exc:
            self._on_error(exc)
            return False

    async def close(self) -> None:
        """Close the client within a bound: a write in flight on a frozen Redis ends with it."""
        client, self._client = self._client, None
        self._fenced_script = None
        await close_client(client)

    async def _write(self) -> None:
        snapshots, self._snapshots = self._snapshots, {}
        states, self._states = self._states, {}
        hedges = list(self._hedges)
        self._hedges.clear()
        now = self._clock()
        due = now >= self._next_heartbeat
        heartbeat = due and self._healthy()
        try:
            await self._send(snapshots, states, hedges, heartbeat)
        except BaseException:
            # put back what was not written; newer values queued meanwhile win
            for k, v in snapshots.items():
                self._snapshots.setdefault(k, v)
            for k, s in states.items():
                self._states.setdefault(k, s)
            self._hedges.extendleft(reversed(hedges))
            raise
        if due:
            # reschedule even when unhealthy (no heartbeat written, so its TTL lapses): a due time left in
            # the past would turn the wait in run() into a busy loop
            self._next_heartbeat = now + self._hb_interval
        self._mark_up()
        done = self._clock()
        for index, (snap, tick_ts) in snapshots.items():
            latency = None if tick_ts is None else done - tick_ts
            if latency is not None:
                self.last_publish_latency_s = latency
            if self.on_published is not None:
                self.on_published(index, snap, latency)

    async def _send(
        self,
        snapshots: dict[str, tuple[dict[str, Any], float | None]],
        states: dict[str, dict[str, Any]],
        hedges: list[tuple[str, dict[str, Any]]],
        heartbeat: bool,
    ) -> None:
        if not (snapshots or states or hedges or heartbeat):
            return
        if self.fenced:
            await self._send_fenced(snapshots, states, hedges)
            snapshots, states, hedges = {}, {}, []
            if not heartbeat:
                return
        pipe = self._get_client().pipeline(transaction=False)
        for index, (snap, _) in snapshots.items():
            pipe.publish(self.keys.index_channel(index), orjson.dumps(snap))
        for index, state in states.items():
            pipe.set(self.keys.state(index), orjson.dumps(state))
        for index, rec in hedges:
            pipe.publish(self.keys.hedge_channel(index), orjson.dumps(rec))
        if heartbeat:
            beat = self._clock()
            pipe.set(self.heartbeat_key, str(beat), px=int(self._hb_ttl * 1000))
        await pipe.execute()
        if heartbeat:
            self.metrics.heartbeat_timestamp.set(beat)
        if snapshots:
            self.metrics.redis_published.labels("index").inc(len(snapshots))
        if hedges:
            self.metrics.redis_published.labels("hedge").inc(len(hedges))
        self.published += len(snapshots) + len(hedges)

    async def _send_fenced(
        self,
        snapshots: dict[str, tuple[dict[str, Any], float | None]],
        states: dict[str, dict[str, Any]],
        hedges: list[tuple[str, dict[str, Any]]],
    ) -> None:
        """Each index's writes in one fenced script; nothing at all while not the owner."""
        token = self.fence_token
        indices = set(snapshots) | set(states) | {i for i, _ in hedges}
        if token is None or not indices:
            return
        client = self._get_client()
        if self._fenced_script is None:
            self._fenced_script = client.register_script(FENCED_WRITE_LUA)
        for index in sorted(indices):
            snap = snapshots.get(index)
            state = states.get(index)
            k = self.keys
            args: list[Any] = [str(token), k.index_channel(index), k.hedge_channel(index),
                               orjson.dumps(snap[0]) if snap else b"", orjson.dumps(state) if state else b"",
                               repr(float((state or {}).get("saved_at") or 0.0)),
                               *(orjson.dumps(rec) for i, rec in hedges if i == index)]
            ok = await self._fenced_script(keys=[k.fence(index), k.state(index), k.state_at(index)], args=args)
            if not ok:
                self.refused += 1
                log.warning("writes of %s refused: the lease is another process's now (fencing token %s is not "
                            "the index's)", index, token)
                self.fence_token = None
                if self.on_fenced is not None:
                    self.on_fenced()
                return
            if snap:
                self.metrics.redis_published.labels("index").inc()
            n = sum(1 for i, _ in hedges if i == index)
            if n:
                self.metrics.redis_published.labels("hedge").inc(n)
            self.published += (1 if snap else 0) + n

    def _mark_up(self) -> None:
        if not self.connected:
            self.connected = True
            self.metrics.redis_answers("publisher", True)
            log.info("connected to %s", self.where)

    def _on_error(self, exc: BaseException) -> None:
        self.errors += 1
        self.metrics.redis_errors.inc()
        if self.connected or self.errors == 1:
            log.warning("%s unavailable (%s); keeping the latest values and retrying", self.where,
                        error_text(exc))
        self.connected = False
        self.metrics.redis_answers("publisher", False)

"""The ``hedgewatch notify`` worker: alert stream -> Alertmanager (``notify.alertmanager``), and -> silences ->
routes -> groups -> Slack / Telegram for deployments without one.

Delivery guarantees. Entries are read through a consumer group and acknowledged only once every
destination they route to has confirmed the message (or refused it for good). After each confirmed message
the worker records ``<destination>:<alert id>`` in the dedup hash *before* acknowledging, so after a crash
the entries still pending (its own, re-read from id 0, or another worker's, taken over with XAUTOCLAIM)
skip every destination that already has them. What can be sent twice is only the message that was in
flight at the crash: sent, but not yet recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import redis.asyncio as aredis
from redis.exceptions import RedisError, ResponseError

from hedgewatch.service.alerts import Alert
from hedgewatch.service.config import Config
from hedgewatch.service.keys import keys_for
from hedgewatch.service.metrics import NotifyMetrics
from hedgewatch.service.notify.alertmanager import AlertmanagerPusher
from hedgewatch.service.notify.bursts import Burst
from hedgewatch.service.notify.destinations import RETRY_REASONS, Destination, GiveUp, RetryLater, build_destinations
from hedgewatch.service.notify.grouping import Grouper, Item, Notification
from hedgewatch.service.notify.routing import build_routes, route
from hedgewatch.service.notify.silences import Silence, list_silences, purge_expired
from hedgewatch.service.retry import raise_if_cancelled

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_COUNT = 100
READ_BLOCK_MS = 1000
QUEUE_SIZE = 1000  # notifications waiting per destination; when full the reader waits (entries stay in Redis)


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def describe(alerts: tuple[Alert, ...] | list[Alert], most: int = 3) -> str:
    """``BelowMA50d firing on HW, ...`` for a log line: what was delivered, never how."""
    parts = [f"{a.rule} {a.status} on {a.index}" for a in alerts[:most]]
    more = len(alerts) - most
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


class Notifier:
    """One worker. ``run`` until ``stop`` is set; everything it holds is also pending in Redis."""

    def __init__(self, config: Config, redis: aredis.Redis, client: httpx.AsyncClient, metrics: NotifyMetrics,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = config.notify
        self.keys = keys_for(config.redis.prefix, config.index.name, config.bus == "redis")
        self.redis = redis
        self.metrics = metrics
        self.clock = clock
        self.dests: dict[str, Destination] = build_destinations(self.cfg, client)
        self.am = None if self.cfg.alertmanager is None else AlertmanagerPusher(
            self.cfg.alertmanager, client, redis, self.keys, metrics, self._redis_retry,
            retry_after_max_s=self.cfg.retry_after_max_s, retry_min_s=self.cfg.retry_min_s,
            retry_max_s=self.cfg.retry_max_s, clock=clock)
        self.routes = build_routes(self.cfg)
        self.consumer = self.cfg.consumer_name or socket.gethostname()
        self.grouper = Grouper()
        self.queues: dict[str, asyncio.Queue[Notification]] = {
            name: asyncio.Queue(QUEUE_SIZE) for name in self.dests
        }
        self.remaining: dict[str, set[str]] = {}  # entry id -> destinations still to confirm it
        self.silences: list[Silence] = []
        self._changed = asyncio.Event()
        self._read_own_pending = True
        self._intaking: set[str] = set()
        # set while a sender has nothing in flight
        self._idle = {name: asyncio.Event() for name in self.dests}
        for ev in self._idle.values():
            ev.set()
        self._bursts = {name: Burst(log, name) for name in self.dests}
        self._redis_burst = Burst(log, "Redis")
        for name in self.dests:  # every series a dashboard reads exists from the start
            metrics.notify_sent.labels(name)
            for reason in RETRY_REASONS:
                metrics.notify_retries.labels(name, reason)
            metrics.notify_failed.labels(name, "unconfirmed")

    @property
    def destinations(self) -> list[str]:
        """Every destination configured, Alertmanager included."""
        return [*self.dests, *([] if self.am is None else [f"alertmanager ({len(self.am.urls)} URLs)"])]

    # -- lifecycle -----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop``; then stop reading, let messages in flight finish within
        ``shutdown_drain_s`` (so a restart does not resend them), and leave the rest pending in Redis."""
        for name in self.queues:
            self.metrics.queue_capacity.labels(f"notify_{name}").set(QUEUE_SIZE)
        log.info("notify: started as %s in group %s on %s; delivering to %s", self.consumer,
                 self.cfg.consumer_group, self.keys.alerts_stream, ", ".join(self.destinations) or "nothing")
        async with asyncio.TaskGroup() as tg:
            senders = [tg.create_task(self._sender(n), name=f"notify-send-{n}") for n in self.dests]
            others = [tg.create_task(self._scheduler(), name="notify-grouper"),
                      tg.create_task(self._reader(), name="notify-reader"),
                      tg.create_task(self._housekeeping(), name="notify-housekeeping")]
            if self.am is not None:
                others.append(tg.create_task(self.am.run(), name="notify-alertmanager"))
            await stop.wait()
            for t in others:
                t.cancel()
            try:
                async with asyncio.timeout(self.cfg.shutdown_drain_s):
                    for idle in self._idle.values():
                        await idle.wait()
            except TimeoutError:
                log.warning("notify: a message was still in flight after %.1f s; it may be sent again",
                            self.cfg.shutdown_drain_s)
            for t in senders:
                t.cancel()
        log.info("notify: stopped; %d entries not yet confirmed stay pending in Redis", len(self.remaining))

    async def _redis_retry(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis operation until it succeeds: Redis going away only delays the worker."""
        delay = self.cfg.retry_min_s
        while True:
            try:
                result = await op()
                raise_if_cancelled()
            except ResponseError as exc:
                raise_if_cancelled()
                if "NOGROUP" not in str(exc):
                    raise
                await self._ensure_group()  # Redis came back without our group (no persistence)
                continue
            except (RedisError, OSError) as exc:
                raise_if_cancelled()  # a cancellation redis-py turned into a connection error
                self._redis_burst.failed(f"{what}: {type(exc).__name__}")
                self.metrics.redis_errors.inc()
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.cfg.retry_max_s)
                continue
            self._redis_burst.recovered()
            return result

    async def _ensure_group(self) -> None:
        try:
            # from the start of the stream: alerts written before the first worker started are not lost
            await self.redis.xgroup_create(self.keys.alerts_stream, self.cfg.consumer_group, id="0",
                                           mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._read_own_pending = True

    # -- intake --------------------------------------------------------------------------------------

    async def _reader(self) -> None:
        await self._redis_retry("group create", self._ensure_group)
        last = "0"
        while True:
            if self._read_own_pending:
                # our own pending entries first (a restart with the same consumer name), then new ones
                resp = await self._redis_retry("read", functools.partial(self._read, last, None))
                entries = resp[0][1] if resp else []
                if not entries:
                    self._read_own_pending, last = False, "0"
                    continue
                last = entries[-1][0]
            else:
                resp = await self._redis_retry("read", lambda: self._read(">", READ_BLOCK_MS))
                entries = resp[0][1] if resp else []
            if entries:
                await self._intake_batch(entries)

    async def _read(self, from_id: str, block: int | None) -> Any:
        return await self.redis.xreadgroup(self.cfg.consumer_group, self.consumer,
                                           {self.keys.alerts_stream: from_id}, count=READ_COUNT, block=block)

    async def _intake_batch(self, entries: list[tuple[Any, Any]]) -> None:
        self.silences = await self._redis_retry("silences", lambda: list_silences(self.redis, self.keys))
        for eid, fields in entries:
            entry_id = _text(eid)
            # the reader and the reclaimer may both meet an entry; the first one takes it
            if entry_id in self.remaining or entry_id in self._intaking:
                continue
            self._intaking.add(entry_id)
            try:
                await self._intake(entry_id, fields)
            finally:
                self._intaking.discard(entry_id)
        self._changed.set()

    async def _intake(self, entry_id: str, fields: dict[bytes, bytes] | None) -> None:
        now = self.clock()
        entered = int(entry_id.split("-")[0]) / 1000.0
        try:
            alert = Alert.from_json((fields or {})[b"alert"])
        except (KeyError, ValueError, TypeError):
            log.warning("notify: entry %s has no readable alert; skipped", entry_id)
            return await self._ack(entry_id)
        too_old = now - entered > self.cfg.max_alert_age_s
        if self.am is not None and (alert.status == "resolved" or not too_old):
            # Alertmanager gets every alert, whatever our silences and routes say: it has its own. An old
            # resolve still ends what it resolves.
            am = self.am
            await self._redis_retry("alertmanager state", lambda: am.take(alert))
        if too_old:
            log.info("notify: alert %s is %.0f s old; not sent", alert.id, now - entered)
            return await self._ack(entry_id)
        if any(s.mutes(alert, now) for s in self.silences):
            self.metrics.notify_silenced.inc()
            log.info("notify: alert %s silenced", alert.id)
            return await self._ack(entry_id)
        routes = route(alert, self.routes)
        fields_ = [self._dedup_field(r.destination, alert.id) for r in routes]
        done = await self._redis_retry("dedup", lambda: self.redis.hmget(self.keys.delivered, fields_)) \
            if fields_ else []
        todo = []
        for r, seen in zip(routes, done, strict=True):
            if seen is not None:
                continue
            if alert.status == "resolved" and not r.send_resolved:
                self.grouper.forget(r, alert)
                continue
            todo.append(r)
        if not todo:
            return await self._ack(entry_id)
        self.remaining[entry_id] = {r.destination for r in todo}
        for r in todo:
            self.grouper.add(r, Item(alert, entry_id, entered), now)

    @staticmethod
    def _dedup_field(destination: str, alert_id: str) -> str:
        return f"{destination}:{alert_id}"

    async def _ack(self, entry_id: str) -> None:
        stream, group = self.keys.alerts_stream, self.cfg.consumer_group
        await self._redis_retry("ack", lambda: self.redis.xack(stream, group, entry_id))

    # -- grouping and delivery -----------------------------------------------------------------------

    async def _scheduler(self) -> None:
        while True:
            self._changed.clear()
            for n in self.grouper.due(self.clock()):
                if n.repeat:
                    now = self.clock()
                    alerts = tuple(a for a in n.alerts if not any(s.mutes(a, now) for s in self.silences))
                    if not alerts:
                        continue
                    n = Notification(n.destination, n.key, alerts, (), repeat=True)
                await self.queues[n.destination].put(n)
                self.metrics.queue_depth.labels(f"notify_{n.destination}").set(self.queues[n.destination].qsize())
            deadline = self.grouper.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()

    async def _sender(self, name: str) -> None:
        dest, queue = self.dests[name], self.queues[name]
        while True:
            n = await queue.get()
            self._idle[name].clear()
            try:
                await self._send_one(name, dest, n)
            finally:
                self._idle[name].set()

    async def _send_one(self, name: str, dest: Destination, n: Notification) -> None:
        """Deliver one notification, then record it and acknowledge the entries it settles."""
        self.metrics.queue_depth.labels(f"notify_{name}").set(self.queues[name].qsize())
        delivered = await self._deliver(dest, dest.render(n))
        if delivered:
            log.info("notify: %s: delivered %s%s", name, describe(n.alerts), " (repeat)" if n.repeat else "")
        if delivered and n.items:
            stamp = f"{self.clock():.3f}"
            mapping: dict[Any, Any] = {self._dedup_field(name, it.alert.id): stamp for it in n.items}
            now = self.clock()
            for it in n.items:
                self.metrics.notify_delivery.observe(max(0.0, now - it.entered_at))
        else:
            mapping = {}
        done = []
        for it in n.items:
            left = self.remaining.get(it.entry_id)
            if left is None:
                continue
            left.discard(name)
            if not left:
                del self.remaining[it.entry_id]
                done.append(it.entry_id)
        await self._settle(mapping, done)

    async def _settle(self, delivered: dict[Any, Any], acks: list[str]) -> None:
        """Record deliveries, then acknowledge entries, in one round trip. The pipeline keeps the order: an
        entry is never acknowledged without its delivery recorded first."""
        if not delivered and not acks:
            return

        async def go() -> None:
            pipe = self.redis.pipeline(transaction=False)
            if delivered:
                pipe.hset(self.keys.delivered, mapping=delivered)
            if acks:
                pipe.xack(self.keys.alerts_stream, self.cfg.consumer_group, *acks)
            await pipe.execute()

        await self._redis_retry("settle", go)

    async def _deliver(self, dest: Destination, text: str) -> bool:
        """Send until confirmed (True) or refused for good (False), pacing and backing off as told. A send
        that timed out after the request left may have arrived: it is sent again at most
        ``max_unconfirmed_retries`` times, each waiting twice as long for the answer, then given up."""
        delay = self.cfg.retry_min_s
        timeout, unconfirmed = dest.timeout_s, 0
        burst = self._bursts[dest.name]
        while True:
            for pacer in dest.pacers:
                await pacer.wait()
            try:
                await dest.send(text, timeout)
            except RetryLater as exc:
                if exc.unconfirmed:
                    unconfirmed += 1
                    if unconfirmed > self.cfg.max_unconfirmed_retries:
                        self.metrics.notify_failed.labels(dest.name, "unconfirmed").inc()
                        burst.failed(f"{unconfirmed} sends of a message got no answer; it may have arrived; "
                                     "not sent again", logging.ERROR)
                        return False
                    timeout *= 2
                self.metrics.notify_retries.labels(dest.name, exc.reason).inc()
                burst.failed(f"{exc.reason}, retrying")
                if exc.delay_s is not None:
                    for pacer in dest.pacers:
                        pacer.hold(exc.delay_s)
                else:
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, self.cfg.retry_max_s)
                continue
            except GiveUp as exc:
                self.metrics.notify_failed.labels(dest.name, exc.reason).inc()
                burst.failed(f"refused a message ({exc.reason}); not retried", logging.ERROR)
                return False
            burst.recovered()
            self.metrics.notify_sent.labels(dest.name).inc()
            return True

    # -- housekeeping --------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Renew our lease on entries we hold, take over a dead worker's, expire silences and old dedup
        records."""
        interval = self.cfg.reclaim_idle_s / 3
        last_prune = 0.0
        while True:
            await self._redis_retry("lease", self._renew)
            await self._redis_retry("reclaim", self._reclaim)
            now = self.clock()
            if now - last_prune > 3600:
                await self._redis_retry("prune", functools.partial(self._prune, now))
                last_prune = now
            await asyncio.sleep(interval)

    async def _renew(self) -> None:
        # entries held through a long group_wait or a 429 must not look idle to other workers' XAUTOCLAIM
        ids: list[Any] = list(self.remaining)
        for i in range(0, len(ids), 500):
            await self.redis.xclaim(self.keys.alerts_stream, self.cfg.consumer_group, self.consumer, 0,
                                    ids[i:i + 500], justid=True)

    async def _reclaim(self) -> None:
        start = "0-0"
        while True:
            nxt, entries, *_ = await self.redis.xautoclaim(
                self.keys.alerts_stream, self.cfg.consumer_group, self.consumer,
                int(self.cfg.reclaim_idle_s * 1000), start_id=start, count=READ_COUNT)
            fresh = [(e, f) for e, f in entries if _text(e) not in self.remaining]
            if fresh:
                log.info("notify: took over up to %d entries of a stopped worker", len(fresh))
                await self._intake_batch(fresh)
            start = _text(nxt)
            if start == "0-0":
                return

    async def _prune(self, now: float) -> None:
        await purge_expired(self.redis, self.keys, now)
        cutoff = now - self.cfg.dedup_retention_s
        stale = []
        async for f, v in self.redis.hscan_iter(self.keys.delivered, count=1000):
            with contextlib.suppress(ValueError):
                if float(v) < cutoff:
                    stale.append(f)
        for i in range(0, len(stale), 1000):
            await self.redis.hdel(self.keys.delivered, *stale[i:i + 1000])

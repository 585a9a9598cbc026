"""Durable alerts: a bounded on-disk outbox in front of the Redis alert stream.

Alerts must never be lost and never reach the stream twice, yet the pipeline must never wait on Redis or
the disk. ``AlertSink.submit`` only appends to memory; ``AlertSink.run`` persists what was submitted to
the outbox (appended, fsynced, in batches: a group commit), then delivers it to Redis in order.

On disk (``outbox_dir``):

* ``id``: a random outbox id, created once. Redis remembers the last sequence it took *per outbox id*, so a
  wiped outbox directory starts a fresh sequence instead of being mistaken for old, already-delivered alerts.
* ``seg-<first seq>.log``: append-only segments, one record a line: ``<crc32 hex> <json>``, the JSON being
  ``{"seq": n, "t": submit time, "alert": {...}}``. A torn or corrupt tail (a crash mid-write) is cut off at
  start; a whole segment is deleted once every record in it is acknowledged.
* ``cursor``: the highest sequence delivered (or given up on, see the bound), replaced atomically
  (write, fsync, rename, fsync the directory).

Exactly once into the stream: delivery runs a Lua script that, atomically inside Redis, skips every record
whose sequence is not above the stored marker ``HGET <prefix>:alerts:outbox <outbox id>``, XADDs
(``MAXLEN ~``) and PUBLISHes the others and moves the marker. A crash or an outage between Redis taking a
batch and the local cursor moving only means the batch is offered again and skipped by the script; an
error before the script ran means it is offered again and taken. Redis stream ids are left to Redis
(``*``) so they stay time-ordered even if the host clock steps back.

The bound: at most ``max_pending`` alerts wait (in memory and on disk). Beyond it the *oldest* waiting alerts
are given up (the newest say most about the present): each one is logged with its id at ERROR and counted in
``hedgewatch_queue_dropped_total{queue="alert_outbox"}``. At the default 100,000 and ~1 KB an alert, that is
about 100 MB of disk, i.e. days of a Redis outage at any plausible alert rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aredis
from redis.exceptions import RedisError

from service.alerts import Alert
from service.keys import Keys
from service.metrics import Metrics

log = logging.getLogger(__name__)

QUEUE = "alert_outbox"
SEGMENT_RECORDS = 1000

# KEYS: marker hash, stream, channel. ARGV: outbox id, maxlen, then (seq, alert id, json) triples in order.
# Returns how many records it added (the others were already in the stream).
DELIVER_LUA = """
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local added = 0
for i = 3, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'id', ARGV[i + 1], 'alert', ARGV[i + 2])
    redis.call('PUBLISH', KEYS[3], ARGV[i + 2])
    last = seq
    added = added + 1
  end
end
redis.call('HSET', KEYS[1], ARGV[1], tostring(last))
return added
"""


@dataclass(frozen=True, slots=True)
class Record:
    """One alert in the outbox."""

    seq: int
    submitted_at: float
    alert_id: str
    payload: bytes  # the alert JSON, exactly as it goes to Redis


def _encode(rec: Record) -> bytes:
    body = b'{"seq":%d,"t":%s,"alert":%s}' % (rec.seq, repr(rec.submitted_at).encode(), rec.payload)
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _decode(line: bytes) -> Record | None:
    """A record from one line, or None when the line is torn or corrupt."""
    if not line.endswith(b"\n") or len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        d = orjson.loads(body)
        return Record(int(d["seq"]), float(d["t"]), str(d["alert"]["id"]), orjson.dumps(d["alert"]))
    except (ValueError, KeyError, TypeError):
        return None


class Outbox:
    """The files: append (with fsync), acknowledge (atomic cursor), reload after a crash. Blocking I/O:
    the sink calls it from a worker thread, one call at a time."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        id_file = self.dir / "id"
        if not id_file.exists():
            self._atomic_write(id_file, uuid.uuid4().hex.encode())
        self.id = id_file.read_text().strip()
        self.acked = self._read_cursor()
        self._segments: list[tuple[int, Path]] = []  # (first seq, path), ascending
        self._current: Any = None
        self._current_count = 0

    def _read_cursor(self) -> int:
        try:
            return int((self.dir / "cursor").read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load(self) -> list[Record]:
        """Every unacknowledged record, in order; repairs a torn tail and deletes fully acked segments."""
        pending: list[Record] = []
        paths = sorted(self.dir.glob("seg-*.log"), key=lambda p: int(p.stem[4:]))
        for path in paths:
            good = 0
            records = []
            with open(path, "rb") as f:
                for line in f:
                    rec = _decode(line)
                    if rec is None:
                        break  # a crash mid-append: everything after the first bad line is the torn tail
                    records.append(rec)
                    good += len(line)
            if good < path.stat().st_size:
                log.warning("outbox: cut a torn tail of %d bytes from %s", path.stat().st_size - good,
                            path.name)
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            if records and records[-1].seq <= self.acked:
                path.unlink()
                continue
            if not records:
                path.unlink()
                continue
            self._segments.append((records[0].seq, path))
            pending.extend(r for r in records if r.seq > self.acked)
        self._fsync_dir()
        return pending

    def last_seq(self, pending: list[Record]) -> int:
        return max(self.acked, pending[-1].seq if pending else 0)

    def append(self, records: list[Record]) -> None:
        """Append and fsync: when this returns, the records survive a crash."""
        for rec in records:
            if self._current is None or self._current_count >= SEGMENT_RECORDS:
                self._rotate(rec.seq)
            self._current.write(_encode(rec))
            self._current_count += 1
        if self._current is not None:
            self._current.flush()
            os.fsync(self._current.fileno())

    def _rotate(self, first_seq: int) -> None:
        if self._current is not None:
            # durable before the next segment starts: a later fsync covers only the new file
            self._current.flush()
            os.fsync(self._current.fileno())
            self._current.close()
        path = self.dir / f"seg-{first_seq}.log"
        self._current = open(path, "ab")  # noqa: SIM115 (kept open across appends, closed on rotate/close)
        self._current_count = 0
        self._segments.append((first_seq, path))
        self._fsync_dir()

    def ack(self, seq: int) -> None:
        """Everything up to ``seq`` is delivered (or given up): move the cursor, drop spent segments."""
        if seq <= self.acked:
            return
        self._atomic_write(self.dir / "cursor", str(seq).encode())
        self.acked = seq
        # a segment is spent when the next one starts at or below acked + 1 (all its records are acked)
        while len(self._segments) > 1 and self._segments[1][0] <= seq + 1:
            _, path = self._segments.pop(0)
            path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


def check_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed. redis-py's asyncio client can catch the
    CancelledError thrown into a command and return its result; the task then still counts as cancelling
    but runs on, and a TaskGroup or ``asyncio.timeout`` waiting for it waits forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class AlertSink:
    """Accepts alerts without ever blocking or dropping (within the bound) and delivers them, in order and
    exactly once, to the alert stream and channel. Use from one event loop: ``submit`` from the pipeline,
    ``run`` as a task, ``flush`` at shutdown."""

    def __init__(
        self,
        redis_factory: Callable[[], aredis.Redis],
        keys: Keys,
        outbox_dir: Path,
        maxlen: int,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        *,
        max_pending: int = 100_000,
        batch_size: int = 100,
        retry_min_s: float = 0.05,
        retry_max_s: float = 2.0,
    ) -> None:
        self._factory = redis_factory
        self._keys = keys
        self._maxlen = maxlen
        self._metrics = metrics
        self._clock = clock
        self._max_pending = max_pending
        self._batch = batch_size
        self._retry = (retry_min_s, retry_max_s)
        self._outbox = Outbox(Path(outbox_dir))
        self._persisted: deque[Record] = deque(self._outbox.load())  # on disk, not yet delivered
        self._submitted: deque[Record] = deque()  # in memory only, waiting for the next group commit
        self._seq = self._outbox.last_seq(list(self._persisted))
        self._wake = asyncio.Event()
        # the files (append, ack) and the delivery each go one at a time; a persist never waits on Redis
        self._disk = asyncio.Lock()
        self._send = asyncio.Lock()
        self._redis: aredis.Redis | None = None
        self._script: Any = None
        self._give_up_to = 0  # records up to this seq were dropped by the bound; ack them with the next batch
        self.delivered = 0
        if self._persisted:
            log.info("outbox: %d alerts from a previous run wait for delivery", len(self._persisted))
        self._update_depth()

    # -- intake --------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Alerts submitted and not yet delivered."""
        return len(self._persisted) + len(self._submitted)

    def submit(self, alert: Alert) -> None:
        """Queue one alert for durable delivery. Never blocks; on a full outbox see the bound."""
        self._seq += 1
        self._submitted.append(Record(self._seq, self._clock(), alert.id, alert.to_json()))
        if self.pending > self._max_pending:
            self._drop_oldest(self.pending - self._max_pending)
        self._update_depth()
        self._wake.set()

    def _drop_oldest(self, n: int) -> None:
        for _ in range(n):
            rec = self._persisted.popleft() if self._persisted else self._submitted.popleft()
            self._give_up_to = max(self._give_up_to, rec.seq)
            self._metrics.queue_dropped.labels(QUEUE).inc()
            log.error("outbox full (%d alerts): gave up alert %s (seq %d)", self._max_pending, rec.alert_id,
                      rec.seq)

    def _update_depth(self) -> None:
        self._metrics.outbox_depth.set(self.pending)
        self._metrics.queue_depth.labels(QUEUE).set(self.pending)
        self._metrics.queue_capacity.labels(QUEUE).set(self._max_pending)

    # -- delivery ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Persist and deliver forever; Redis outages are waited out with jittered backoff."""
        delay = self._retry[0]
        try:
            while True:
                await self._persist()
                if not self._persisted:
                    self._wake.clear()
                    if not self._submitted:
                        await self._wake.wait()
                    continue
                try:
                    await self._deliver_batch()
                    delay = self._retry[0]
                except (RedisError, OSError) as exc:
                    await self._on_redis_error(exc)
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, self._retry[1])
        finally:
            # whatever was submitted reaches the disk even when the task is cancelled
            await asyncio.shield(self._persist())
            await asyncio.shield(self._drop_client())

    async def flush(self, deadline_s: float) -> int:
        """Persist everything submitted, then deliver what can be delivered within ``deadline_s``.
        Returns how many alerts were delivered; the rest stays in the outbox for the next start."""
        delivered = 0
        await self._persist()
        try:
            async with asyncio.timeout(deadline_s):
                while self._persisted:
                    try:
                        delivered += await self._deliver_batch()
                    except (RedisError, OSError) as exc:
                        await self._on_redis_error(exc)
                        await asyncio.sleep(self._retry[0])
        except TimeoutError:
            log.warning("outbox: %d alerts left for the next start (flush deadline %.1f s)",
                        len(self._persisted), deadline_s)
        await self.close()
        return delivered

    async def close(self) -> None:
        await self._persist()
        await self._drop_client()
        self._outbox.close()

    async def _persist(self) -> None:
        async with self._disk:
            if not self._submitted:
                return
            # the batch stays in _submitted until it is on disk, so `pending` never misses it meanwhile
            batch = list(self._submitted)
            await asyncio.to_thread(self._outbox.append, batch)
            while self._submitted and self._submitted[0].seq <= batch[-1].seq:
                self._submitted.popleft()
            self._persisted.extend(r for r in batch if r.seq > self._give_up_to)

    async def _deliver_batch(self) -> int:
        # one delivery at a time (flush may overlap run)
        async with self._send:
            if not self._persisted:
                return 0
            return await self._deliver_locked()

    async def _deliver_locked(self) -> int:
        batch = [self._persisted[i] for i in range(min(self._batch, len(self._persisted)))]
        if self._redis is None:
            self._redis = self._factory()
            self._script = self._redis.register_script(DELIVER_LUA)
        args: list[Any] = [self._outbox.id, self._maxlen]
        for rec in batch:
            args += [rec.seq, rec.alert_id, rec.payload]
        k = self._keys
        added = await self._script(keys=[k.outbox_marker, k.alerts_stream, k.alerts_channel], args=args)
        check_cancelled()
        self._metrics.redis_up.set(1)
        async with self._disk:
            await asyncio.to_thread(self._outbox.ack, max(batch[-1].seq, self._give_up_to))
        # submit() may have given up some of these meanwhile (the bound): pop by sequence, not by count
        while self._persisted and self._persisted[0].seq <= batch[-1].seq:
            self._persisted.popleft()
        self._metrics.redis_published.labels("alert").inc(int(added))
        self.delivered += int(added)
        self._update_depth()
        return int(added)

    async def _on_redis_error(self, exc: BaseException) -> None:
        check_cancelled()  # a cancellation redis-py turned into a connection error must still stop us
        # the exception text may carry the URL (with its password) for some errors: log the type only
        log.warning("outbox: Redis unavailable (%s); %d alerts wait on disk", type(exc).__name__,
                    self.pending)
        self._metrics.redis_up.set(0)
        self._metrics.redis_errors.inc()
        await self._drop_client()

    async def _drop_client(self) -> None:
        client, self._redis, self._script = self._redis, None, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

"""Durable alerts: a bounded on-disk outbox in front of the Redis alert stream.

Alerts must never be lost and never reach the stream twice, yet the pipeline must never wait on Redis or
the disk. ``AlertSink.submit`` only appends to memory; ``AlertSink.run`` persists what was submitted to
the outbox (appended, fsynced, in batches: a group commit), then delivers it to Redis in order.

On disk (``outbox_dir``):

* ``id``: a random outbox id, created once. Redis remembers the last sequence it took *per outbox id*, so a
  wiped outbox directory starts a fresh sequence instead of being mistaken for old, already-delivered alerts.
* ``seg-<first seq>.log``: append-only segments, one record a line: ``<crc32 hex> <json>``, the JSON being
  ``{"seq": n, "t": submit time, "alert": {...}}``, with ``"state": {...}`` on the last alert of an
  evaluation step: the daemon's rule and hedge state after the transitions that step made, so the state
  that produced an alert is durable exactly when the alert is, and a crash at any instant neither loses nor
  repeats a firing. A torn or corrupt tail (a crash mid-write) is cut off at start; a whole segment is
  deleted once every record in it is acknowledged, except the one holding the newest state.
* ``cursor``: the highest sequence delivered (or given up on, see the bound), replaced atomically
  (write, fsync, rename, fsync the directory).

Exactly once into the stream: delivery runs a Lua script that, atomically inside Redis, skips every record
whose sequence is not above the stored marker ``HGET <prefix>:alerts:outbox <outbox id>``, XADDs
(``MAXLEN ~``) and PUBLISHes the others and moves the marker. A crash or an outage between Redis taking a
batch and the local cursor moving only means the batch is offered again and skipped by the script; an
error before the script ran means it is offered again and taken. Redis stream ids are left to Redis
(``*``) so they stay time-ordered even if the host clock steps back.

Disk faults degrade, never crash: an append that fails (a full disk, a read-only or vanished directory) is
cut back to the last whole record, so a record is never torn, and the alerts stay in memory and are delivered
to Redis from there while the disk is probed again every 1 s, doubling to 30 s. The outbox is then not
durable: a crash while the disk fails loses what only memory held. ``hedgewatch_alert_outbox_writable`` is
0 meanwhile and ``hedgewatch_alert_outbox_write_errors_total`` counts the failed writes.

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

from hedgewatch.service.alerts import Alert
from hedgewatch.service.errors import StorageError
from hedgewatch.service.keys import Keys
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.redisconn import error_text
from hedgewatch.service.retry import raise_if_cancelled

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

# The scaled layout's delivery (``run --bus redis``): the same, only while the writer's fencing token is the
# index's (else nothing is written and -1 returned: the lease is another's), skipping an alert whose id is
# already in the stream (a new owner re-emitting what the old one delivered), and writing the state an
# alert carries in the same step, unless a newer one is stored: the alert and the state that produced it
# reach Redis together or not at all, so a takeover never restores a state behind an alert it can see.
# KEYS: marker hash, stream, channel, fence, alert id set, state, state saved_at.
# ARGV: outbox id, maxlen, token, id set TTL ms, then (seq, alert id, json, state json or '', saved_at).
FENCED_DELIVER_LUA = """
if redis.call('GET', KEYS[4]) ~= ARGV[3] then return -1 end
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local added = 0
for i = 5, #ARGV, 5 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    if redis.call('SADD', KEYS[5], ARGV[i + 1]) == 1 then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'id', ARGV[i + 1], 'alert', ARGV[i + 2])
      redis.call('PUBLISH', KEYS[3], ARGV[i + 2])
      added = added + 1
    end
    if ARGV[i + 3] ~= '' and tonumber(ARGV[i + 4]) >= tonumber(redis.call('GET', KEYS[7]) or '-1') then
      redis.call('SET', KEYS[6], ARGV[i + 3])
      redis.call('SET', KEYS[7], ARGV[i + 4])
    end
    last = seq
  end
end
redis.call('PEXPIRE', KEYS[5], ARGV[4])
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
    state: bytes | None = None  # the daemon's persisted state (JSON) as of this alert, on some records


def _encode(rec: Record) -> bytes:
    body = b'{"seq":%d,"t":%s,"alert":%s%s}' % (rec.seq, repr(rec.submitted_at).encode(), rec.payload,
                                               b"" if rec.state is None else b',"state":' + rec.state)
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
        state = d.get("state")
        return Record(int(d["seq"]), float(d["t"]), str(d["alert"]["id"]), orjson.dumps(d["alert"]),
                      None if state is None else orjson.dumps(state))
    except (ValueError, KeyError, TypeError):
        return None


class Outbox:
    """The files: append (with fsync), acknowledge (atomic cursor), reload after a crash. Blocking I/O:
    the sink calls it from a worker thread, one call at a time."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            id_file = self.dir / "id"
            if not id_file.exists():
                self._atomic_write(id_file, uuid.uuid4().hex.encode())
            self.id = id_file.read_text().strip()
            self.acked = self._read_cursor()
        except (OSError, ValueError) as exc:
            raise StorageError(f"redis.outbox_dir {self.dir}: {_why(exc)}") from None
        self._segments: list[tuple[int, Path]] = []  # (first seq, path), ascending
        self._fd: int | None = None  # the current segment, appended with os.write
        self._size = 0  # its length in whole records
        self._count = 0  # records in it
        self._rotate_next = False  # a failed append could not be cut back: start a new segment
        self.written = 0  # records appended and fsynced since start
        self.last_state: bytes | None = None  # the newest state in the files (see the module docstring)
        self._state_seg: Path | None = None  # the segment holding it, kept through acknowledgements

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
        try:
            return self._load()
        except OSError as exc:
            raise StorageError(f"redis.outbox_dir {self.dir}: {_why(exc)}") from None

    def _load(self) -> list[Record]:
        pending: list[Record] = []
        paths = sorted(self.dir.glob("seg-*.log"), key=lambda p: int(p.stem[4:]))
        kept: list[tuple[int, Path, bool]] = []  # (first seq, path, every record acknowledged)
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
            if not records:
                path.unlink()
                continue
            for rec in records:
                if rec.state is not None:
                    self.last_state, self._state_seg = rec.state, path
            kept.append((records[0].seq, path, records[-1].seq <= self.acked))
            pending.extend(r for r in records if r.seq > self.acked)
        for first, path, spent in kept:
            if spent and path != self._state_seg:
                path.unlink()
            else:
                self._segments.append((first, path))
        self._fsync_dir()
        return pending

    def last_seq(self, pending: list[Record]) -> int:
        return max(self.acked, pending[-1].seq if pending else 0)

    def append(self, records: list[Record]) -> tuple[int, OSError | None]:
        """Append and fsync, a segment at a time: the first ``n`` records returned survive a crash. On an
        OSError, the error is returned too and nothing after those ``n`` stays in the files (the segment is
        cut back to its last whole record); the rest may be appended again later."""
        done = 0
        while done < len(records):
            try:
                done += self._append_some(records[done:])
            except OSError as exc:
                return done, exc
        return done, None

    def _append_some(self, records: list[Record]) -> int:
        if self._fd is None or self._count >= SEGMENT_RECORDS or self._rotate_next:
            self._rotate(records[0].seq)
        assert self._fd is not None
        chunk = records[: SEGMENT_RECORDS - self._count]
        data = b"".join(_encode(rec) for rec in chunk)
        view, done = memoryview(data), 0
        try:
            while done < len(data):
                done += os.write(self._fd, view[done:])
            os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                self._rotate_next = True  # the torn tail stays: the next start cuts it with what follows
            raise
        self._size += len(data)
        self._count += len(chunk)
        self.written += len(chunk)
        for rec in chunk:
            if rec.state is not None:
                self.last_state, self._state_seg = rec.state, self._segments[-1][1]
        return len(chunk)

    def _rotate(self, first_seq: int) -> None:
        path = self.dir / f"seg-{first_seq}.log"
        if self._fd is not None and not self._rotate_next:
            os.fsync(self._fd)  # durable before the next segment starts: a later fsync covers only the new file
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            self._fsync_dir()
        except OSError:
            os.close(fd)
            raise
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd, self._size, self._count, self._rotate_next = fd, size, 0, False
        if not self._segments or self._segments[-1][1] != path:
            self._segments.append((first_seq, path))

    def probe(self) -> None:
        """Raise the OSError that a write to the directory would meet now, if any."""
        self._atomic_write(self.dir / "probe", b"ok")
        (self.dir / "probe").unlink()

    def ack(self, seq: int) -> None:
        """Everything up to ``seq`` is delivered (or given up): move the cursor, drop spent segments."""
        if seq <= self.acked:
            return
        self._atomic_write(self.dir / "cursor", str(seq).encode())
        self.acked = seq
        # a segment is spent when the next one starts at or below acked + 1 (all its records are acked); the
        # one holding the newest state stays, so a restart after Redis lost it still finds it
        while (len(self._segments) > 1 and self._segments[1][0] <= seq + 1
               and self._segments[0][1] != self._state_seg):
            _, path = self._segments.pop(0)
            path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _why(exc: BaseException) -> str:
    """An OSError as a reader wants it: the reason, without the path the caller already names."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


CLOSE_TIMEOUT_S = 0.5


async def close_client(client: aredis.Redis | None, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close a Redis client within ``timeout_s``. Closing its connections ends a call in flight on them (it
    fails at once); a frozen server that never answers the close cannot hold a stop beyond the bound."""
    if client is None:
        return
    with contextlib.suppress(RedisError, OSError, TimeoutError):
        async with asyncio.timeout(timeout_s):
            await client.aclose()


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
        disk_retry_s: tuple[float, float] = (1.0, 30.0),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = redis_factory
        self._keys = keys
        self._maxlen = maxlen
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._max_pending = max_pending
        self._batch = batch_size
        self._retry = (retry_min_s, retry_max_s)
        self._outbox = Outbox(Path(outbox_dir))
        self._persisted: deque[Record] = deque(self._outbox.load())  # on disk, not yet delivered
        self._submitted: deque[Record] = deque()  # in memory only: the next group commit, or a failing disk
        self._seq = self._outbox.last_seq(list(self._persisted))
        self._wake = asyncio.Event()
        # the files (append, ack) and the delivery each go one at a time; a persist never waits on Redis
        self._disk = asyncio.Lock()
        self._send = asyncio.Lock()
        self._redis: aredis.Redis | None = None
        self._script: Any = None
        self._done_to = self._outbox.acked  # every record up to this seq is delivered or given up
        self._disk_retry = disk_retry_s
        self._disk_ok = True
        self._disk_pause = disk_retry_s[0]
        self._disk_next = 0.0  # monotonic time of the next write attempt while the disk fails
        self._redis_ok = True
        self._closing = False  # flush has begun: no new Redis call may start after its deadline
        self._closed = False
        self.delivered = 0
        # the scaled layout: deliveries carry the index's fencing token (None: not the owner, deliver
        # nothing); a refusal drops the batch and calls on_fenced (the new owner emits its own alerts)
        self.fenced = False
        self.fence_index = ""
        self.fence_token: int | None = None
        self.ids_ttl_ms = 7 * 86_400_000
        self.on_fenced: Callable[[], None] | None = None
        self.refused = 0
        metrics.outbox_writable.set(1)
        if self._persisted:
            log.info("outbox: %d alerts from a previous run wait for delivery", len(self._persisted))
        self._update_depth()

    # -- intake --------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Alerts submitted and not yet delivered."""
        return len(self._persisted) + len(self._submitted)

    @property
    def durable(self) -> bool:
        """False while the outbox directory fails writes (alerts are then held in memory)."""
        return self._disk_ok

    @property
    def last_state(self) -> bytes | None:
        """The newest state submitted with an alert (in memory, or on disk from an earlier run)."""
        for rec in reversed(self._submitted):
            if rec.state is not None:
                return rec.state
        return self._outbox.last_state

    def submit(self, alert: Alert, state: bytes | None = None) -> None:
        """Queue one alert for durable delivery, with the daemon's state as of it when given (JSON). Never
        blocks; on a full outbox see the bound."""
        self._seq += 1
        self._submitted.append(Record(self._seq, self._clock(), alert.id, alert.to_json(), state))
        if self.pending > self._max_pending:
            self._drop_oldest(self.pending - self._max_pending)
        self._update_depth()
        self._wake.set()

    def _drop_oldest(self, n: int) -> None:
        for _ in range(n):
            rec = self._persisted.popleft() if self._persisted else self._submitted.popleft()
            self._done_to = max(self._done_to, rec.seq)
            self._metrics.queue_dropped.labels(QUEUE).inc()
            log.error("outbox full (%d alerts): gave up alert %s (seq %d)", self._max_pending, rec.alert_id,
                      rec.seq)

    def _update_depth(self) -> None:
        self._metrics.outbox_depth.set(self.pending)
        self._metrics.queue_depth.labels(QUEUE).set(self.pending)
        self._metrics.queue_capacity.labels(QUEUE).set(self._max_pending)

    # -- delivery ------------------------------------------------------------------------------------

    def set_fence(self, token: int | None) -> None:
        """The fencing token of the index's lease now held (None: not the owner)."""
        self.fence_token = token
        self._wake.set()

    def _deliverable(self) -> list[Record]:
        """The next batch in sequence order: from the disk, and from memory while the disk fails."""
        if self.fenced and self.fence_token is None:
            return []
        batch = [self._persisted[i] for i in range(min(self._batch, len(self._persisted)))]
        if not self._disk_ok:
            batch += [self._submitted[i] for i in range(min(self._batch - len(batch), len(self._submitted)))]
        return batch

    async def run(self) -> None:
        """Persist and deliver forever; Redis outages are waited out with jittered backoff, a failing disk
        by delivering from memory and probing it again."""
        delay = self._retry[0]
        try:
            while not self._closed:
                await self._persist()
                if not self._deliverable():
                    self._wake.clear()
                    if not self._submitted and self._disk_ok:
                        await self._wake.wait()
                    elif not self._disk_ok:
                        # nothing to deliver, but the disk owes a write (a cursor, or what memory holds)
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(max(0.0, self._disk_next - self._monotonic())):
                                await self._wake.wait()
                    continue
                try:
                    await self._deliver_batch()
                    delay = self._retry[0]
                except (RedisError, OSError) as exc:
                    if self._closed:
                        return  # close() ended the call in flight: that is no outage
                    await self._on_redis_error(exc)
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, self._retry[1])
        finally:
            # whatever was submitted reaches the disk even when the task is cancelled
            await asyncio.shield(self._persist(force=True))
            await asyncio.shield(self._drop_client())

    async def flush(self, deadline_s: float) -> int:
        """Persist everything submitted, then deliver what can be delivered within ``deadline_s``, then
        close. Returns how many alerts were delivered; the rest stays in the outbox for the next start. A
        delivery in flight in ``run`` (on a Redis that does not answer, say) is ended by the close, so this
        returns within ``deadline_s`` plus the bounded close."""
        delivered = 0
        self._closing = True
        await self._persist(force=True)
        try:
            async with asyncio.timeout(deadline_s):
                while self._deliverable():
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
        """Stop delivering: the client is closed (ending a call in flight), what memory holds goes to disk."""
        self._closing = self._closed = True
        self._wake.set()
        await self._drop_client()
        await self._persist(force=True)
        if self._submitted:
            log.error("outbox: %d alerts lost at stop: the outbox directory %s takes no writes and Redis did "
                      "not take them (first %s)", len(self._submitted), self._outbox.dir,
                      self._submitted[0].alert_id)
        self._outbox.close()

    async def _persist(self, force: bool = False) -> None:
        """Write what was submitted, and an acknowledgement the disk still owes. While the disk fails this
        is an attempt at most every probe interval (``force`` at stop); it never raises an OSError."""
        async with self._disk:
            if not self._disk_ok and not force and self._monotonic() < self._disk_next:
                return
            try:
                # the batch stays in _submitted until it is on disk, so `pending` never misses it meanwhile
                batch = [r for r in self._submitted if r.seq > self._done_to]
                written, error = await asyncio.to_thread(self._outbox.append, batch) if batch else (0, None)
                self._stored(batch[:written])
                if error is not None:
                    raise error
                if self._done_to > self._outbox.acked:
                    await asyncio.to_thread(self._outbox.ack, self._done_to)
                elif not batch and not self._disk_ok:
                    await asyncio.to_thread(self._outbox.probe)
            except OSError as exc:
                self._disk_failed(exc)
                return
            self._disk_recovered()

    def _stored(self, batch: list[Record]) -> None:
        """``batch`` is on disk now: from memory to the persisted queue."""
        if not batch:
            return
        while self._submitted and self._submitted[0].seq <= batch[-1].seq:
            self._submitted.popleft()
        # delivered from memory meanwhile (the disk failed before): on disk now, but not owed
        self._persisted.extend(r for r in batch if r.seq > self._done_to)

    def _disk_failed(self, exc: OSError) -> None:
        self._metrics.outbox_write_errors.inc()
        if self._disk_ok:
            log.error("outbox: cannot write to %s (%s); %d alerts are held in memory and delivered from there "
                      "until it takes writes again", self._outbox.dir, _why(exc), len(self._submitted))
            self._metrics.outbox_writable.set(0)
            self._disk_ok = False
        else:
            self._disk_pause = min(self._disk_pause * 2, self._disk_retry[1])
        self._disk_next = self._monotonic() + self._disk_pause

    def _disk_recovered(self) -> None:
        if self._disk_ok:
            return
        self._disk_ok = True
        self._disk_pause = self._disk_retry[0]
        self._metrics.outbox_writable.set(1)
        log.info("outbox: %s takes writes again; %d alerts waiting are on disk", self._outbox.dir, self.pending)

    async def _deliver_batch(self) -> int:
        # one delivery at a time (flush may overlap run)
        async with self._send:
            if self._closed:
                return 0
            batch = self._deliverable()
            if not batch:
                return 0
            return await self._deliver_locked(batch)

    async def _deliver_locked(self, batch: list[Record]) -> int:
        if self._redis is None:
            self._redis = self._factory()
            self._script = self._redis.register_script(FENCED_DELIVER_LUA if self.fenced else DELIVER_LUA)
        k = self._keys
        if self.fenced:
            added = await self._script(keys=self._fenced_keys(), args=self._fenced_args(batch))
        else:
            args: list[Any] = [self._outbox.id, self._maxlen]
            for rec in batch:
                args += [rec.seq, rec.alert_id, rec.payload]
            added = await self._script(keys=[k.outbox_marker, k.alerts_stream, k.alerts_channel], args=args)
        raise_if_cancelled()
        if int(added) < 0:
            added = 0
            self.refused += len(batch)
            log.warning("outbox: %d alerts refused: the lease of %s is another process's now (fencing token "
                        "%s is not the index's); its new owner emits them from the state it restores",
                        len(batch), self.fence_index, self.fence_token)
            self.fence_token = None
            if self.on_fenced is not None:
                self.on_fenced()
        self._metrics.redis_answers("outbox", True)
        if not self._redis_ok:
            self._redis_ok = True
            log.info("outbox: Redis reachable again; delivering %d waiting alerts", self.pending)
        last = batch[-1].seq
        self._done_to = max(self._done_to, last)
        # submit() may have given up some of these meanwhile (the bound): pop by sequence, not by count
        for queue in (self._persisted, self._submitted):
            while queue and queue[0].seq <= last:
                queue.popleft()
        self._metrics.redis_published.labels("alert").inc(int(added))
        self.delivered += int(added)
        self._update_depth()
        if self._disk_ok:
            await self._persist()  # the cursor; a failure here only means the batch is offered again
        return int(added)

    def _fenced_keys(self) -> list[str]:
        k, index = self._keys, self.fence_index
        return [k.outbox_marker, k.alerts_stream, k.alerts_channel, k.fence(index), k.alert_ids, k.state(index),
                k.state_at(index)]

    def _fenced_args(self, batch: list[Record]) -> list[Any]:
        args: list[Any] = [self._outbox.id, self._maxlen, str(self.fence_token), self.ids_ttl_ms]
        for rec in batch:
            saved_at = 0.0
            if rec.state is not None:
                with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                    saved_at = float(orjson.loads(rec.state).get("saved_at") or 0.0)
            args += [rec.seq, rec.alert_id, rec.payload, rec.state or b"", repr(saved_at)]
        return args

    async def _on_redis_error(self, exc: BaseException) -> None:
        raise_if_cancelled()  # a cancellation redis-py turned into a connection error must still stop us
        if self._redis_ok:
            log.warning("outbox: Redis unavailable (%s); %d alerts wait %s, retrying", error_text(exc),
                        self.pending, "on disk" if self._disk_ok else "in memory")
            self._redis_ok = False
        self._metrics.redis_answers("outbox", False)
        self._metrics.redis_errors.inc()
        await self._drop_client()

    async def _drop_client(self) -> None:
        client, self._redis, self._script = self._redis, None, None
        await close_client(client)

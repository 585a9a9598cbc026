"""Events over Redis Streams: the bus between ``hedgewatch ingest`` shards and ``hedgewatch run --bus redis``.

Streams, one per asset (``<prefix>:events:<ASSET>``; a composite index's events under its symbol, the
connections' status changes in ``<prefix>:events:_feeds``). Per asset, not per source: the engine of an index
reads just the assets its index needs, and the streams spread over the hash slots of a Redis Cluster (the
keys carry no hash tag). Each entry holds one flush's events of that asset (field ``b``): a msgpack array of
``[type code, field, field, ...]`` per event, the msgspec Structs' own fields in order, so an entry costs a
few bytes more than the numbers it carries and decoding builds the same Structs the connectors built.

The writer (ingest) takes events from its bounded in-process bus (drop oldest, as in the one-process daemon)
and flushes them in one pipelined round trip per batch, ``XADD ... MAXLEN ~``: old entries go when the
stream is long, so an engine that is down long comes back to recent prices, never to a backlog.

The reader (engine) reads from given positions with ``XREAD BLOCK``: one call for every stream on a single
Redis, one call per stream on a Cluster (a call may not span slots). The index's single owner reads
without a consumer group: each engine keeps its own positions, and a new owner starts ``max_age_s`` back
(older events would be stale anyway), so it has every source's latest price at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hedgewatch.service.bus import MemoryBus
from hedgewatch.service.errors import ClosedError
from hedgewatch.service.events import (
    Candle,
    CompositeIndex,
    Event,
    FeedStatus,
    Funding,
    MarkPrice,
    OpenInterest,
    Quote,
    Trade,
)
from hedgewatch.service.keys import Keys
from hedgewatch.service.outbox import close_client
from hedgewatch.service.retry import raise_if_cancelled

log = logging.getLogger("hedgewatch.scale")

TYPES: tuple[type[Any], ...] = (Quote, Trade, MarkPrice, Funding, OpenInterest, Candle, CompositeIndex, FeedStatus)
CODE = {t: i for i, t in enumerate(TYPES)}
FIELD = b"b"
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()
_astuple = msgspec.structs.astuple


def encode(events: Iterable[Event]) -> bytes:
    """One stream entry's payload."""
    return _enc.encode([(CODE[type(ev)], *_astuple(ev)) for ev in events])


def decode(payload: bytes) -> list[Event]:
    """The events of one entry; ``ValueError`` when it is not an entry this version wrote."""
    try:
        rows = _dec.decode(payload)
        out: list[Event] = []
        for row in rows:
            cls = TYPES[row[0]]
            if cls is CompositeIndex:
                row[4] = tuple(tuple(c) for c in row[4])
            out.append(cls(*row[1:]))
        return out
    except (msgspec.DecodeError, IndexError, TypeError, KeyError) as exc:
        raise ValueError(f"not an event batch: {type(exc).__name__}") from None


def stream_of(keys: Keys, event: Event) -> str:
    """The stream an event goes to."""
    if type(event) is FeedStatus:
        return keys.feeds
    if type(event) is CompositeIndex:
        return keys.events(event.symbol)
    return keys.events(event.asset)  # type: ignore[union-attr]


def streams_for(keys: Keys, assets: Iterable[str]) -> list[str]:
    """The streams an engine reads for ``assets``: theirs and the feeds' status stream."""
    return [keys.events(a) for a in sorted(set(assets))] + [keys.feeds]


class StreamWriter:
    """Ingest's side: the bounded bus to the streams, in pipelined batches."""

    def __init__(self, factory: Callable[[], aioredis.Redis], keys: Keys, bus: MemoryBus[Event], *,
                 maxlen: int, batch_max: int, on_error: Callable[[BaseException], None],
                 on_written: Callable[[int, int], None]) -> None:
        self._factory = factory
        self._keys = keys
        self._bus = bus
        self._maxlen = maxlen
        self._batch = batch_max
        self._on_error = on_error
        self._on_written = on_written  # (events, entries) after each flush
        self.written = 0
        self.entries = 0
        self.connected = False

    async def run(self) -> None:
        """Flush until the bus is closed and drained; on a Redis error the batch is retried (newer events
        pile up in the bus meanwhile, which drops its oldest when full)."""
        client = self._factory()
        backoff = 0.0
        batch: list[Event] = []
        try:
            while True:
                if not batch:
                    try:
                        batch = await self._bus.get_batch(self._batch)
                    except ClosedError:
                        return
                try:
                    await self._flush(client, batch)
                except (RedisError, OSError) as exc:
                    raise_if_cancelled()
                    self.connected = False
                    self._on_error(exc)
                    backoff = min(max(backoff * 2, 0.05), 2.0)
                    await asyncio.sleep(backoff)
                    continue
                backoff = 0.0
                self.connected = True
                batch = []
        finally:
            await close_client(client)

    async def _flush(self, client: aioredis.Redis, batch: list[Event]) -> None:
        groups: dict[str, list[Event]] = {}
        keys = self._keys
        for ev in batch:
            name = stream_of(keys, ev)
            group = groups.get(name)
            if group is None:
                groups[name] = [ev]
            else:
                group.append(ev)
        pipe = client.pipeline(transaction=False)
        for name, events in groups.items():
            pipe.xadd(name, {FIELD: encode(events)}, maxlen=self._maxlen, approximate=True)
        await pipe.execute()
        self.written += len(batch)
        self.entries += len(groups)
        self._on_written(len(batch), len(groups))


class StreamReader:
    """The engine's side: the streams from given positions into the daemon's in-process bus."""

    def __init__(self, factory: Callable[[], aioredis.Redis], streams: list[str], sink: Callable[[Event], None],
                 *, cluster: bool, count: int, on_error: Callable[[BaseException], None],
                 block_ms: int = 1000) -> None:
        self._factory = factory
        self.streams = streams
        self._sink = sink
        self._cluster = cluster
        self._count = count
        self._block = block_ms
        self._on_error = on_error
        self.positions: dict[str, str] = {}
        self.read = 0
        self.rejected = 0

    async def run(self, start_id: str) -> None:
        """Read from ``start_id`` (a stream id, e.g. ``<ms>-0``) on every stream, until cancelled."""
        self.positions = dict.fromkeys(self.streams, start_id)
        groups = [[s] for s in self.streams] if self._cluster else [self.streams]
        async with asyncio.TaskGroup() as tg:
            for i, group in enumerate(groups):
                tg.create_task(self._read(group), name=f"streams:{i}")

    async def _read(self, streams: list[str]) -> None:
        client = self._factory()
        backoff = 0.0
        try:
            while True:
                try:
                    got: Any = await client.xread({s: self.positions[s] for s in streams}, count=self._count,
                                                  block=self._block)
                except (RedisError, OSError) as exc:
                    raise_if_cancelled()
                    self._on_error(exc)
                    backoff = min(max(backoff * 2, 0.05), 2.0)
                    await asyncio.sleep(backoff)
                    continue
                raise_if_cancelled()  # a cancellation redis-py swallowed would leave this loop running
                backoff = 0.0
                for name, entries in got or ():
                    self._take(name.decode() if isinstance(name, bytes) else name, entries)
        finally:
            await close_client(client)

    def _take(self, stream: str, entries: list[tuple[Any, dict[Any, Any]]]) -> None:
        sink = self._sink
        for entry_id, fields in entries:
            self.positions[stream] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            try:
                events = decode(fields[FIELD])
            except (KeyError, ValueError) as exc:
                self.rejected += 1
                if self.rejected == 1 or self.rejected % 1000 == 0:
                    log.warning("stream %s entry %s rejected (%s); %d so far", stream, entry_id, exc,
                                self.rejected)
                continue
            self.read += len(events)
            for ev in events:
                sink(ev)

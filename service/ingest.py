"""``hedgewatch ingest``: the connectors alone, for one shard of the configured sources, writing the
normalized events to Redis Streams (``service/scale.py``) for the engines (``hedgewatch run --bus redis``).

The assignment: every enabled source's symbols, as ``(source, asset)`` pairs sorted by source name then
asset, are dealt round-robin: pair ``i`` (0-based) goes to shard ``i mod N + 1``. A shard runs, per source,
one connector for exactly its assets, so no two shards ever hold a venue connection for the same symbols,
and the assignment depends only on the config: every shard computes the same one, and the user can read it
in the log line at start, in ``/state`` and in ``hedgewatch_ingest_assigned``. Adding a source or a symbol
may move pairs between shards; restart every shard after changing the config.

Reject counting, reconnects and per-connection metrics are the connectors' own, as in the one-process daemon;
this process exports only its own metrics (``IngestMetrics``) on ``http.port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any, cast

from redis.exceptions import RedisError

from hedgewatch.connectors import Connector, build_connector
from hedgewatch.service.bus import MemoryBus
from hedgewatch.service.config import Config, SourceConfig
from hedgewatch.service.errors import ConfigError, Problem
from hedgewatch.service.events import Event
from hedgewatch.service.http import HttpServer
from hedgewatch.service.keys import ScaledKeys
from hedgewatch.service.metrics import IngestMetrics, Metrics
from hedgewatch.service.outbox import close_client
from hedgewatch.service.redisconn import error_text, redacted, redis_factory
from hedgewatch.service.scale import StreamWriter

log = logging.getLogger("hedgewatch.ingest")


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` (1 <= K <= N) as ``(K, N)``; ``ValueError`` saying what is wrong."""
    k, sep, n = text.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit():
        raise ValueError(f"--shard {text!r}: expected K/N, e.g. 1/2")
    ki, ni = int(k), int(n)
    if not 1 <= ki <= ni:
        raise ValueError(f"--shard {text!r}: K must be between 1 and N")
    return ki, ni


def assignment(config: Config, shard: int, shards: int) -> list[SourceConfig]:
    """The sources of shard ``shard`` of ``shards``, each with only the assets dealt to it (see the module
    docstring); sources left without assets are left out."""
    pairs = sorted((src.source_id, sym) for src in config.sources if src.enabled for sym in src.symbols)
    mine: dict[str, list[str]] = {}
    for i, (source, sym) in enumerate(pairs):
        if i % shards == shard - 1:
            mine.setdefault(source, []).append(sym)
    out = []
    for src in config.sources:
        if src.enabled and src.source_id in mine:
            wanted = set(mine[src.source_id])
            out.append(src.model_copy(update={"symbols": tuple(s for s in src.symbols if s in wanted)}))
    return out


def process_name(config: Config) -> str:
    """This process's name in leases and heartbeats: ``scale.process_name``, else host and pid."""
    return config.scale.process_name or f"{socket.gethostname()}:{os.getpid()}"


class Ingest:
    """One ingest shard: connectors → bounded bus → pipelined XADDs."""

    def __init__(self, config: Config, shard: int = 1, shards: int = 1, *,
                 metrics: IngestMetrics | None = None) -> None:
        url = config.redis.resolved_url()
        if not url:
            raise ConfigError([Problem("<config>", None, None, "redis.url",
                                       "hedgewatch ingest writes to Redis Streams: redis.url is required")])
        self.config = config
        self.shard, self.shards = shard, shards
        self.metrics = metrics or IngestMetrics()
        self.keys = ScaledKeys(config.redis.prefix, config.index.name)
        self.name = process_name(config)
        self.where = redacted(url)
        self.sources = assignment(config, shard, shards)
        self.bus: MemoryBus[Event] = MemoryBus(config.ingest_queue_size, name="ingest")
        self._factory = redis_factory(url)
        as_metrics = cast(Metrics, self.metrics)  # the connectors use only the feed metrics
        self.connectors: list[Connector] = [build_connector(src, self.bus.put, as_metrics) for src in self.sources]
        self.writer = StreamWriter(self._factory, self.keys, self.bus, maxlen=config.scale.events_maxlen,
                                   batch_max=config.scale.batch_max, on_error=self._redis_error,
                                   on_written=self._written)
        self.http = HttpServer(config.http.host, config.http.port, as_metrics, ready=self._ready,
                               state=self.state, settings=config.http)
        self.started_at = time.time()
        self.started = asyncio.Event()
        self._errors_logged = False
        self._dropped_exported = 0
        m = self.metrics
        m.shard.labels(str(shard), str(shards)).set(1)
        for src in self.sources:
            for sym in src.symbols:
                m.assigned.labels(src.source_id, sym).set(1)
        m.queue_capacity.labels("ingest").set(self.bus.capacity)

    def describe(self) -> str:
        parts = [f"{s.source_id} [{', '.join(s.symbols)}]" for s in self.sources]
        return f"shard {self.shard}/{self.shards}: {'; '.join(parts) or 'nothing (more shards than pairs)'}"

    def _ready(self) -> tuple[bool, dict[str, Any]]:
        return self.writer.connected, {"shard": f"{self.shard}/{self.shards}"}

    def state(self) -> dict[str, Any]:
        return {
            "role": "ingest",
            "process": self.name,
            "shard": {"k": self.shard, "n": self.shards,
                      "rule": "(source, asset) pairs sorted, pair i to shard i mod N + 1",
                      "sources": {s.source_id: list(s.symbols) for s in self.sources}},
            "feeds": {c.name: c.status() for c in self.connectors},
            "redis": {"server": self.where, "connected": self.writer.connected,
                      "events_written": self.writer.written, "entries_written": self.writer.entries},
            "queue": {"depth": len(self.bus), "capacity": self.bus.capacity, "dropped": self.bus.dropped},
        }

    def _written(self, events: int, entries: int) -> None:
        self.metrics.events_written.inc(events)
        self.metrics.entries_written.inc(entries)
        self.metrics.redis_up.set(1)
        if self._errors_logged:
            self._errors_logged = False
            log.info("writing events to %s again", self.where)

    def _redis_error(self, exc: BaseException) -> None:
        self.metrics.redis_errors.inc()
        self.metrics.redis_up.set(0)
        if not self._errors_logged:
            self._errors_logged = True
            log.warning("%s unavailable (%s); events wait in the bounded queue (oldest dropped when full)",
                        self.where, error_text(exc))

    async def _heartbeat(self) -> None:
        """The shard's own heartbeat key, and its queue metrics, every ``redis.heartbeat_interval_s``."""
        cfg = self.config.redis
        key = self.keys.process_heartbeat("ingest", f"{self.shard}of{self.shards}")
        client = self._factory()
        try:
            while True:
                m = self.metrics
                m.queue_depth.labels("ingest").set(len(self.bus))
                m.queue_dropped.labels("ingest").inc(self.bus.dropped - self._dropped_exported)
                self._dropped_exported = self.bus.dropped
                now = time.time()
                with contextlib.suppress(RedisError, OSError):
                    await client.set(key, f"{now} {self.name}", px=int(cfg.heartbeat_ttl_s * 1000))
                    m.heartbeat_timestamp.set(now)
                await asyncio.sleep(cfg.heartbeat_interval_s)
        finally:
            await close_client(client)

    async def run(self, stop: asyncio.Event) -> int:
        from hedgewatch.service.app import _supervised

        self.metrics.up.set(1)
        self.metrics.start_time.set(self.started_at)
        await self.http.start()
        log.info("ingest %s into %s (process %s); http %s:%d", self.describe(), self.where, self.name,
                 self.http.host, self.http.port)
        try:
            async with asyncio.TaskGroup() as tg:
                feeds = [tg.create_task(_supervised(c), name=f"feed:{c.name}") for c in self.connectors]
                writer = tg.create_task(self.writer.run(), name="stream-writer")
                beat = tg.create_task(self._heartbeat(), name="heartbeat")
                self.started.set()
                await stop.wait()
                for t in feeds:
                    t.cancel()
                await asyncio.wait(feeds, timeout=1.0)
                self.bus.close()  # the writer drains what is queued, then returns
                _, late = await asyncio.wait([writer], timeout=2.0)
                for t in (*late, beat):
                    t.cancel()
        finally:
            await self.http.close()
            self.metrics.up.set(0)
        log.info("ingest stopped: %d events written in %d entries, %d dropped", self.writer.written,
                 self.writer.entries, self.bus.dropped)
        return 0


async def serve_ingest(config: Config, shard: int, shards: int) -> int:
    from hedgewatch.service.app import install_signal_handlers

    stop = asyncio.Event()
    install_signal_handlers(stop)
    return await Ingest(config, shard, shards).run(stop)

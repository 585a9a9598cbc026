"""Small venue servers on loopback for the connector tests: one real ``websockets`` server per venue that
also answers the venue's REST paths (plain HTTP GETs on the same port), speaking just enough of the venue
protocol (subscribe/ack, pings, data frames) for a test to drive and to break on purpose."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from hedgewatch.connectors import build_connector
from hedgewatch.connectors.base import Tuning
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.metrics import Metrics

# Production timing scaled down so the fault tests take fractions of a second.
FAST = Tuning(backoff_base_s=0.05, backoff_cap_s=0.2, stable_after_s=0.5, silence_factor=1.0,
              silence_floor_s=0.3, watchdog_interval_s=0.05, flush_interval_s=0.05, ack_timeout_s=1.0,
              open_timeout_s=1.0, rest_timeout_s=1.0, connect_gap_s=0.01)


@contextlib.asynccontextmanager
async def running(source: SourceConfig, tuning: Tuning = FAST,
                  **kw: Any) -> AsyncIterator[tuple[Any, list[Any], Metrics]]:
    """Run the source's connector in a task; cancel it (and check it stops) on exit."""
    events: list[Any] = []
    metrics = Metrics()
    conn = build_connector(source, events.append, metrics, tuning=tuning, **kw)
    task = asyncio.create_task(conn.run(), name="connector")
    try:
        yield conn, events, metrics
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def of(events: list[Any], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


class FakeVenue:
    """A loopback venue. ``rest`` maps a path to ``fn(query) -> JSON-able``; ``on_text`` answers client
    frames; ``feeds`` are called every ``tick_s`` per connection to produce data frames."""

    def __init__(self) -> None:
        self.rest: dict[str, Callable[[dict[str, str]], Any]] = {}
        self.conns: set[ServerConnection] = set()
        self.received: list[tuple[str, Any]] = []   # (path, decoded client frame)
        self.connects = 0
        self.rest_hits: dict[str, int] = {}
        self.subs: dict[ServerConnection, set[str]] = {}
        self.silenced: set[str] = set()
        self.stalled = False
        self.tick_s = 0.01
        self.server: Server | None = None
        self.port = 0

    # -- to override ---------------------------------------------------------------------------------------
    def on_text(self, ws: ServerConnection, text: str) -> list[str]:
        return []

    def frames(self, ws: ServerConnection, topic: str, n: int) -> list[str]:
        return []

    # -- plumbing ---------------------------------------------------------------------------------------
    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        url = urlsplit(request.path)
        self.rest_hits[url.path] = self.rest_hits.get(url.path, 0) + 1
        fn = self.rest.get(url.path)
        if fn is None:
            return connection.respond(404, "{}")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = orjson.dumps(fn(query)).decode()
        resp = connection.respond(200, body)
        resp.headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return resp

    async def _handler(self, ws: ServerConnection) -> None:
        self.connects += 1
        self.conns.add(ws)
        self.subs[ws] = set()
        feeder = asyncio.create_task(self._feed(ws))
        try:
            async for msg in ws:
                text = msg if isinstance(msg, str) else msg.decode()
                try:
                    self.received.append((ws.request.path, orjson.loads(text)))
                except orjson.JSONDecodeError:
                    self.received.append((ws.request.path, text))
                for reply in self.on_text(ws, text):
                    await ws.send(reply)
        except Exception:
            pass
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            self.conns.discard(ws)
            self.subs.pop(ws, None)

    async def _feed(self, ws: ServerConnection) -> None:
        n = 0
        while True:
            await asyncio.sleep(self.tick_s)
            if self.stalled:
                continue
            n += 1
            for topic in sorted(self.subs.get(ws, ())):
                if topic in self.silenced:
                    continue
                for f in self.frames(ws, topic, n):
                    await ws.send(f)

    async def start(self) -> FakeVenue:
        self.server = await serve(self._handler, "127.0.0.1", 0, process_request=self._http, compression=None)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def broadcast(self, text: str, topic: str | None = None) -> None:
        """Send ``text`` to every connection, or to those subscribed to ``topic``."""
        for ws in list(self.conns):
            if topic is not None and topic not in self.subs.get(ws, ()):
                continue
            with contextlib.suppress(Exception):
                await ws.send(text)

    async def drop_all(self) -> None:
        """Abort every client connection without a close handshake (a network drop)."""
        for ws in list(self.conns):
            ws.transport.abort()


class RefusingServer:
    """Accepts TCP connections and closes them at once, counting them: a venue with no service."""

    def __init__(self) -> None:
        self.attempts = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.attempts += 1
        writer.close()

    async def start(self) -> RefusingServer:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

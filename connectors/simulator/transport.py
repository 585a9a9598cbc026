"""What every simulated venue's server shares: one loopback port for both websocket and REST, topic fan-out,
connection lifetime and idle limits, and the transport faults (drop, disconnect, stall, garbage).

The websocket and the REST API share a port: ``process_request`` answers plain HTTP GETs (no ``Upgrade``)
itself and lets websocket upgrades through, so a venue is one ``ws://`` and one ``http://`` URL on the
same port. Frames go out with ``websockets``' ``broadcast`` (no await per subscriber), encoded once per topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from hedgewatch.connectors.simulator.scenario import VenueSpec
from hedgewatch.connectors.simulator.venue import VenueModel, decimals

log = logging.getLogger("hedgewatch.simulator")

SLOW_CONSUMER_BYTES = 8 << 20  # unsent bytes after which a client is cut off, as venues do with slow readers
GARBAGE = '{"e":"bookTicker","s":\x00garbage'  # invalid JSON, as a broken proxy or a truncated frame sends


class RestError(Exception):
    """An error answer of the venue's REST API, in the venue's own shape."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(str(body))


class VenueServer:
    """Base of the three protocol servers. Subclasses implement ``accepts_path``, ``serve_ws``, ``rest``
    and ``publish``; they call ``fanout`` to send a frame to a topic's subscribers."""

    exchange = ""
    default_ping_interval_s: float | None = None
    default_idle_timeout_s: float | None = None
    idle_counts_pushes = False  # OKX counts its own pushes as activity; Bybit wants client pings
    # where the venue's spot market is served, relative to the port's ws:// URL (None: no spot market)
    spot_ws_path: str | None = ""

    def __init__(self, model: VenueModel, now_ms: Callable[[], int]) -> None:
        self.model = model
        self.spec: VenueSpec = model.spec
        # what the venue's contracts are quoted in: USD for coin-margined venues
        self.quote = "USD" if model.spec.inverse else model.path.scenario.quote
        self.now_ms = now_ms
        self.connections: set[ServerConnection] = set()
        self.topics: dict[str, set[ServerConnection]] = {}
        self.stalled = False
        self.refusing = False  # a drop/disconnect fault with a duration: upgrades refused meanwhile
        self.stalled_channels: set[str] = set()
        self.sent: Counter[str] = Counter()  # frames sent per channel, for tests and benchmarks
        self.last_activity: dict[ServerConnection, float] = {}
        # REST paths served beside the venue's own API (the market-cap endpoint): path -> handler(params)
        self.routes: dict[str, Callable[[dict[str, str]], Any]] = {}
        self._server: Server | None = None
        self.port = 0
        assets = model.path.specs
        self._px = {a: decimals(assets[a].tick_size) for a in model.assets}
        self._qx = {a: decimals(assets[a].qty_step) for a in model.assets}

    def _p(self, asset: str, x: float) -> str:
        """A price as the venue prints it: fixed decimals of the tick size."""
        return f"{x:.{self._px[asset]}f}"

    def _q(self, asset: str, x: float) -> str:
        """A size as the venue prints it: fixed decimals of the quantity step."""
        return f"{x:.{self._qx[asset]}f}"

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1") -> int:
        ping = self.spec.ping_interval_s
        if ping is None:
            ping = self.default_ping_interval_s
        self._server = await serve(
            self._handle,
            host,
            self.spec.port,
            process_request=self._process_request,
            ping_interval=ping,
            ping_timeout=self.spec.pong_timeout_s if ping else None,
            compression=None,
            max_queue=64,
            server_header=None,
            logger=log,
        )
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # --- HTTP ------------------------------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            try:
                route = self.routes.get(url.path)
                body = route(params) if route is not None else self.rest(url.path, params)
                status = 200
            except RestError as exc:
                status, body = exc.status, exc.body
            return _json_response(status, body)
        if self.refusing:
            return _json_response(503, {"error": "service unavailable"})
        if not self.accepts_path(url.path, url.query):
            return _json_response(404, {"error": f"no websocket endpoint at {url.path}"})
        return None

    def rest(self, path: str, params: dict[str, str]) -> Any:
        raise RestError(404, {"error": "not found"})

    def accepts_path(self, path: str, query: str) -> bool:
        raise NotImplementedError

    # --- websocket -------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections.add(ws)
        self.last_activity[ws] = time.monotonic()
        try:
            async with asyncio.timeout(self.spec.max_connection_age_s):
                await self.serve_ws(ws)
        except TimeoutError:
            await ws.close(1001, "connection lifetime reached")
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(ws)
            self.last_activity.pop(ws, None)
            for subs in self.topics.values():
                subs.discard(ws)
            self.forget(ws)

    def forget(self, ws: ServerConnection) -> None:
        """Drop per-connection state (subclasses override)."""

    async def recv(self, ws: ServerConnection) -> str | bytes | None:
        """The next client message, or None when the client stayed idle past the venue's limit (then the
        connection is closed, as the venue does)."""
        idle = self.spec.idle_timeout_s
        if idle is None:
            idle = self.default_idle_timeout_s
        if idle is None:
            return await ws.recv()
        while True:
            left = self.last_activity.get(ws, 0.0) + idle - time.monotonic()
            if left <= 0:
                await ws.close(1000, "idle timeout")
                return None
            try:
                async with asyncio.timeout(left):
                    msg = await ws.recv()
            except TimeoutError:
                continue  # re-check: pushes may have refreshed the activity time meanwhile
            self.last_activity[ws] = time.monotonic()
            return msg

    async def serve_ws(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def subscribe(self, ws: ServerConnection, topic: str) -> None:
        self.topics.setdefault(topic, set()).add(ws)

    def unsubscribe(self, ws: ServerConnection, topic: str) -> None:
        subs = self.topics.get(topic)
        if subs is not None:
            subs.discard(ws)

    def has_subscribers(self, topic: str) -> bool:
        return bool(self.topics.get(topic))

    def fanout(self, channel: str, topic: str, frame: Any) -> None:
        """Send ``frame`` (a dict, or already-encoded text) to every subscriber of ``topic``, unless the venue
        or ``channel`` is stalled."""
        subs = self.topics.get(topic)
        if not subs or self.stalled or channel in self.stalled_channels:
            return
        text = frame if isinstance(frame, str) else orjson.dumps(frame).decode()
        broadcast(subs, text)
        self.sent[channel] += len(subs)
        if self.idle_counts_pushes:
            now = time.monotonic()
            for ws in subs:
                self.last_activity[ws] = now

    # --- transport faults ------------------------------------------------------------------------------

    def drop_all(self) -> None:
        """Abort every connection without a close frame, as a network failure does."""
        for ws in list(self.connections):
            ws.transport.abort()

    async def disconnect_all(self, code: int = 1001, reason: str = "server going away") -> None:
        """Close every connection with a close frame, as a venue's maintenance does."""
        for ws in list(self.connections):
            with contextlib.suppress(Exception):
                await ws.close(code, reason)

    def drop_slow_consumers(self) -> None:
        """Abort connections whose unsent backlog exceeds ``SLOW_CONSUMER_BYTES`` (a client that stopped
        reading), so a stuck client cannot grow the simulator's memory without bound."""
        for ws in list(self.connections):
            if ws.transport.get_write_buffer_size() > SLOW_CONSUMER_BYTES:
                log.info("%s: dropping a slow consumer", self.spec.name)
                ws.transport.abort()

    def send_garbage(self, count: int) -> None:
        for _ in range(count):
            broadcast(self.connections, GARBAGE)
        self.sent["garbage"] += count * len(self.connections)

    def publish(self, step: int) -> None:
        """Emit the frames due at ``step`` from the model's current quotes."""
        raise NotImplementedError

    def every(self, channel: str, step: int, tick_s: float) -> bool:
        """True when ``channel`` (at its configured rate per symbol) is due at ``step``."""
        rate = self.spec.rate(channel)
        if rate <= 0:
            return False
        n = max(1, round(1.0 / (rate * tick_s)))
        return step % n == 0


def _json_response(status: int, body: Any) -> Response:
    data = orjson.dumps(body)
    headers = Headers(
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Connection", "close")]
    )
    return Response(status, HTTPStatus(status).phrase, headers, data)

"""One venue websocket connection kept alive forever, and the protocol seam each venue fills in.

``WsConnection`` owns the life cycle: connect (bounded frame size and receive queue), subscribe through the
venue's ``WsProtocol`` and check the acks, receive and decode in place (no queue between socket and decoder:
the sink is non-blocking), and in a housekeeping task flush counters, send keep-alives, run the per-channel
watchdog and recycle the connection before the venue's age limit. Any failure ends in a reconnect after a
jittered, capped, exponential backoff that resets once a connection has stayed up for a stable period.
Failures are logged once per burst, with a summary line at most every ``log_interval_s`` while they last.

Server pings are answered by ``websockets`` itself as frames are read; the receive loop never awaits
anything but the socket, so nothing delays a pong.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connectors.base import Backoff, FeedContext, Route, raise_if_cancelled
from service.errors import FeedError, ProtocolError, RejectedMessage
from service.events import FeedState


class WsProtocol:
    """What differs between venues on one connection: the URL, how to (un)subscribe and check the acks,
    how to decode a frame, and the client keep-alive. Subclasses implement ``handle`` (hot path, raises
    ``RejectedMessage``) and the subscribe messages; acks are matched with ``expect``/``resolve``."""

    keepalive_s: float | None = None   # send ``ping_frame`` when no frame was sent for this long
    ping_frame: str | None = None
    send_gap_s = 0.0                   # minimum gap between two client frames (venue rate limits)
    subscribe_batch = 50               # topics per subscribe request

    def __init__(self, ctx: FeedContext, url: str, routes: list[Route]) -> None:
        self.ctx = ctx
        self.url = url
        self.routes = routes
        self.ws: ClientConnection | None = None
        self.ping_sent_at = 0.0
        self._acks: dict[Any, asyncio.Future[None]] = {}
        self._next_id = 0
        self._last_send = 0.0

    # -- to implement ---------------------------------------------------------------------------------
    def handle(self, raw: bytes) -> None:
        raise NotImplementedError

    def subscribe_frame(self, req_id: int, routes: list[Route], unsubscribe: bool = False) -> tuple[str, Any]:
        """The text to send and the ack key to wait for (None when the venue does not ack per request)."""
        raise NotImplementedError

    def on_connect(self) -> None:
        """A new connection starts: forget per-connection state (snapshots, pending acks)."""

    # -- shared -----------------------------------------------------------------------------------------
    async def send(self, text: str) -> None:
        ws = self.ws
        if ws is None:
            raise FeedError("not connected")
        wait = self._last_send + self.send_gap_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_send = time.monotonic()
        await ws.send(text)

    def expect(self, key: Any) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[key] = fut
        return fut

    def resolve(self, key: Any, error: str | None = None) -> None:
        fut = self._acks.pop(key, None)
        if fut is not None and not fut.done():
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(ProtocolError(error))

    def pong(self) -> None:
        self.ping_sent_at = 0.0

    async def keepalive(self) -> None:
        if self.ping_frame is not None:
            await self.send(self.ping_frame)
            if not self.ping_sent_at:
                self.ping_sent_at = time.monotonic()

    async def subscribe(self, routes: list[Route], unsubscribe: bool = False) -> None:
        """(Un)subscribe ``routes`` in batches, waiting for each batch's ack."""
        for i in range(0, len(routes), self.subscribe_batch):
            batch = routes[i:i + self.subscribe_batch]
            self._next_id += 1
            text, key = self.subscribe_frame(self._next_id, batch, unsubscribe)
            fut = self.expect(key) if key is not None else None
            await self.send(text)
            if fut is not None:
                try:
                    async with asyncio.timeout(self.ctx.tuning.ack_timeout_s):
                        await fut
                except TimeoutError:
                    self._acks.pop(key, None)
                    raise ProtocolError(f"no reply to {'un' if unsubscribe else ''}subscribe") from None


class _Recycle(Exception):
    """Close this connection on purpose and open a fresh one."""


class WsConnection:
    """Keeps one ``WsProtocol`` connected and subscribed forever; see the module docstring."""

    def __init__(self, ctx: FeedContext, proto: WsProtocol, name: str) -> None:
        self.ctx = ctx
        self.proto = proto
        self.name = name
        self.state = FeedState.DISCONNECTED
        self.reconnects = 0
        self.failures = 0
        self.connected_at: float | None = None
        self.last_error = ""
        self._recycle: str | None = None
        tn = ctx.tuning
        self._backoff = Backoff(tn.backoff_base_s, tn.backoff_cap_s)

    async def run(self) -> None:
        tn = self.ctx.tuning
        ex = self.ctx.exchange
        first = True
        while True:
            if not first:
                self.reconnects += 1
                self.ctx.reconnects += 1
                self.ctx.metrics.reconnects.labels(ex).inc()
            first = False
            self._set_state(FeedState.CONNECTING, "")
            up_since: float | None = None
            immediate = False
            try:
                await self.ctx.pace_connect()
                async with connect(
                    self.proto.url, open_timeout=tn.open_timeout_s, ping_interval=tn.ping_interval_s,
                    ping_timeout=tn.ping_interval_s, close_timeout=2.0, max_size=tn.max_frame_bytes,
                    max_queue=tn.max_queue, compression=None, proxy=None,
                ) as ws:
                    up_since = time.monotonic()
                    await self._session(ws)
                reason = "closed"
            except asyncio.CancelledError:
                self._down("stopped")
                raise
            except _Recycle as exc:
                reason = str(exc)
                immediate = reason.startswith("age")
            except BaseExceptionGroup as eg:
                raise_if_cancelled()
                reason = _describe(_first(eg))
            except Exception as exc:  # every failure of one connection ends in a reconnect, never a crash
                raise_if_cancelled()
                reason = _describe(exc)
            raise_if_cancelled()
            self.last_error = reason
            self._down(reason)
            if up_since is not None and time.monotonic() - up_since >= tn.stable_after_s:
                self._backoff.reset()
            delay = 0.0 if immediate else self._backoff.next()
            if up_since is None:
                self.failures += 1
                self.ctx.burst.event(
                    f"connect:{self.name}",
                    f"{ex}: cannot connect {self.name} to {self.proto.url} ({reason}); retrying with backoff "
                    f"(attempt {self.failures}, next in {delay:.1f} s)",
                )
            elif immediate:
                self.ctx.log.info("%s: connection %s recycled (%s)", ex, self.name, reason)
            else:
                self.ctx.burst.event(f"lost:{self.name}", f"{ex}: connection {self.name} lost ({reason}); "
                                                          f"reconnecting in {delay:.1f} s")
            if delay:
                await asyncio.sleep(delay)

    # -- one connection ---------------------------------------------------------------------------------
    async def _session(self, ws: ClientConnection) -> None:
        self._recycle = None
        self.proto.ws = ws
        self.proto.on_connect()
        self.connected_at = self.ctx.clock()
        self.ctx.burst.clear(
            f"connect:{self.name}",
            f"{self.ctx.exchange}: {self.name} connected after {self.failures} failed attempts")
        self.failures = 0
        self.ctx.connection_up(True)
        self._set_state(FeedState.CONNECTED, self.proto.url)
        try:
            # The receive loop runs in the group's body, not in a child task: a failing housekeeping task
            # then cancels the body and the group's own cancel bookkeeping on this task balances out
            # (on Python 3.11 a group whose body has already finished leaves its task marked cancelling).
            async with asyncio.TaskGroup() as tg:
                house = tg.create_task(self._housekeeping(ws), name=f"{self.ctx.exchange}:{self.name}:house")
                try:
                    await self._receive(ws)
                finally:
                    house.cancel()
        finally:
            self.proto.ws = None
            self.ctx.flush(self.proto.routes)
        if self._recycle is not None:
            raise _Recycle(self._recycle)

    async def _receive(self, ws: ClientConnection) -> None:
        handle = self.proto.handle
        reject = self.ctx.reject
        recv = ws.recv
        try:
            while True:
                raw = await recv(decode=False)
                try:
                    handle(raw)
                except RejectedMessage as exc:
                    reject(exc)
                except Exception as exc:  # a decoder bug must cost one message, not the feed
                    self.ctx.burst.event("decode_error", f"{self.ctx.exchange}: decoder failed: {exc!r}",
                                         logging.ERROR)
                    reject(RejectedMessage("decode_error", type(exc).__name__))
        except ConnectionClosed as exc:
            if self._recycle is None:
                raise FeedError(f"closed by peer: {exc}") from exc

    async def _housekeeping(self, ws: ClientConnection) -> None:
        try:
            await self._subscribe_all()
            await self._loop(ws)
        except _Recycle as exc:
            self._recycle = str(exc)
            await ws.close()  # ends the receive loop

    async def _subscribe_all(self) -> None:
        routes = self.proto.routes
        await self.proto.subscribe(routes)
        now = self.ctx.clock()
        for r in routes:
            r.subscribed_at = now
            r.resubscribed_at = 0.0
            r.seq = 0  # a new connection is a new stream: its sequence starts afresh
            r.state = FeedState.SUBSCRIBED
        self._set_state(FeedState.SUBSCRIBED, f"{len(routes)} channels")

    async def _loop(self, ws: ClientConnection) -> None:
        tn = self.ctx.tuning
        proto = self.proto
        opened = time.monotonic()
        last_flush = opened
        stable = False
        # connections opened together must not all recycle at the same moment: up to 5% earlier, at random
        max_age = tn.max_conn_age_s * (1.0 - 0.05 * random.random())
        while True:
            await asyncio.sleep(tn.watchdog_interval_s)
            mono = time.monotonic()
            if not stable and mono - opened >= tn.stable_after_s:
                stable = True  # a later loss starts a new burst of log lines
                self.ctx.burst.clear(f"lost:{self.name}")
            if mono - last_flush >= tn.flush_interval_s:
                self.ctx.flush(proto.routes)
                last_flush = mono
            if mono - opened >= max_age:
                raise _Recycle("age limit: proactive reconnect")
            if proto.ping_sent_at and mono - proto.ping_sent_at > tn.ack_timeout_s:
                raise _Recycle("no pong to keep-alive ping")
            if proto.keepalive_s is not None and mono - proto._last_send >= proto.keepalive_s:
                await proto.keepalive()
            await self._watchdog()

    async def _watchdog(self) -> None:
        """Per-channel silence detection: re-subscribe a silent channel, recycle if that did not help."""
        now = self.ctx.clock()
        tn = self.ctx.tuning
        newly: list[Route] = []
        for r in self.proto.routes:
            if r.count != r.seen:  # the hot path only counts; time is taken here, at watchdog resolution
                r.seen = r.count
                r.last = now
            bound = tn.silence_bound(r.cadence_s)
            if r.state == FeedState.SILENT:
                if r.last > r.since:
                    r.state = FeedState.SUBSCRIBED
                    r.resubscribed_at = 0.0
                    self.ctx.status(r.key, FeedState.SUBSCRIBED, "data resumed")
                elif r.critical and now - max(r.resubscribed_at, r.since) > bound:
                    raise _Recycle(f"channel {r.key} still silent after re-subscribing")
            elif r.state == FeedState.SUBSCRIBED and now - max(r.last, r.subscribed_at) > bound:
                r.state = FeedState.SILENT
                r.since = now
                newly.append(r)
                self.ctx.metrics.channel_silent.labels(self.ctx.exchange, r.channel).inc()
                self.ctx.status(r.key, FeedState.SILENT, f"no data for {bound:.1f} s")
                self.ctx.burst.event(f"silent:{self.name}",
                                     f"{self.ctx.exchange}: channel {r.key} silent for {bound:.1f} s; "
                                     "re-subscribing")
        if newly:
            await self.proto.subscribe(newly, unsubscribe=True)
            await self.proto.subscribe(newly)
            now = self.ctx.clock()
            for r in newly:
                r.resubscribed_at = now

    # -- state --------------------------------------------------------------------------------------------
    def _set_state(self, state: FeedState, detail: str) -> None:
        if state != self.state:
            self.state = state
            self.ctx.status(self.name, state, detail)

    def _down(self, reason: str) -> None:
        if self.connected_at is not None:
            self.ctx.connection_up(False)
        self.connected_at = None
        for r in self.proto.routes:
            r.state = FeedState.DISCONNECTED
        self._set_state(FeedState.DISCONNECTED, reason)

    def status(self) -> dict[str, Any]:
        now = self.ctx.clock()
        return {
            "url": self.proto.url.split("?")[0],
            "state": str(self.state),
            "connected_for_s": None if self.connected_at is None else round(now - self.connected_at, 3),
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "channels": {
                r.key: {
                    "state": str(r.state),
                    "messages": r.count,
                    "last_message_age_s": round(now - r.last, 3) if r.last else None,
                    "silence_bound_s": self.ctx.tuning.silence_bound(r.cadence_s),
                }
                for r in self.proto.routes
            },
        }


def _first(eg: BaseExceptionGroup) -> BaseException:
    for exc in eg.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return eg


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _Recycle):
        return str(exc)
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, FeedError) else text

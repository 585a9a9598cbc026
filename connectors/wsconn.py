"""One venue websocket connection kept alive forever, and the protocol seam each venue fills in.

``WsConnection`` owns the life cycle: connect (bounded frame size and receive queue), subscribe through the
venue's ``WsProtocol`` and check the acks, receive and decode in place (no queue between socket and decoder:
the sink is non-blocking), and in a housekeeping task flush counters, send keep-alives, run the watchdog
and recycle the connection before the venue's age limit. Any failure ends in a reconnect after a jittered,
capped, exponential backoff that resets once a connection has stayed up for a stable period.

The watchdog tells a quiet symbol from a broken connection. Every channel learns its cadence from what it
delivered (``connectors.base.Cadence``); past its bound on a connection that still delivers it is *quiet*:
flagged, counted, and probed with a subscribe that opens no gap (no unsubscribe first: Binance and OKX take a
repeated subscribe as a no-op, Bybit answers "already subscribed", each of which confirms the subscription;
a subscription the venue had dropped is restored by it). A quiet channel is never a reason to recycle. The
connection is recycled only when it is silent as a whole (no channel delivered for the connection's own
learned bound) or fails the venue's keep-alive, so a stalled channel takes down only what shares its
connection: the connectors put each channel on connections of its own (``group_routes``).

Server pings are answered by ``websockets`` itself as frames are read; the receive loop never awaits
anything but the socket, so nothing delays a pong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hedgewatch.connectors.base import Cadence, FeedContext, Route, Tuning
from hedgewatch.service.errors import FeedError, ProtocolError, RejectedMessage
from hedgewatch.service.events import FeedState
from hedgewatch.service.retry import raise_if_cancelled


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

    def receiver(self) -> Callable[[bytes], None]:
        """What the receive loop calls for each frame: ``handle``, or a protocol's decoder directly."""
        return self.handle

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
        wait = self._last_send + self.send_gap_s - self.ctx.time.monotonic()
        if wait > 0:
            await self.ctx.time.sleep(wait)
        self._last_send = self.ctx.time.monotonic()
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
                self.ping_sent_at = self.ctx.time.monotonic()

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
    """Close this connection on purpose and open a fresh one; ``immediate`` reconnects without a backoff
    (a planned renewal, not a fault)."""

    def __init__(self, reason: str, immediate: bool = False) -> None:
        super().__init__(reason)
        self.immediate = immediate


def group_routes(routes: list[Route], per_connection: int) -> list[tuple[str, list[Route]]]:
    """Routes grouped by channel, each group cut into chunks of ``per_connection``: ``(channel, routes)``
    per connection. A channel's streams share a fault (the venue's service behind that channel) and
    nothing else, so a channel that stalls as a whole recycles only its own connections."""
    by_channel: dict[str, list[Route]] = {}
    for r in routes:
        by_channel.setdefault(r.channel, []).append(r)
    out = []
    for channel, rs in by_channel.items():
        for i in range(0, len(rs), per_connection):
            out.append((channel, rs[i:i + per_connection]))
    return out


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
        self.subscribed_at = 0.0
        self.last_data = 0.0
        self.last_error = ""
        self.checks = 0            # watchdog passes (a test on a stepped clock waits for the next one)
        self.healthy = False       # subscribed and delivering since the last connect
        tn = ctx.tuning
        # The connection as a whole: its merged stream's cadence, the tightest configured bound of its
        # critical channels as the floor. A connection of trades or candles alone is never recycled for
        # silence (a quiet market pauses them all); keep-alives still catch a dead socket.
        critical = [tn.silence_bound(r.cadence_s) for r in proto.routes if r.critical]
        self.silence_floor_s: float | None = min(critical) if critical else None
        self.cadence = Cadence(tn.cadence_memory_s)
        for r in proto.routes:
            r.cadence.memory_s = tn.cadence_memory_s
        self._seen = 0
        self._checked_at = 0.0
        self._recycle: _Recycle | None = None
        self._backoff = ctx.backoff(tn.backoff_base_s, tn.backoff_cap_s)
        ctx.add_connection(name)
        for r in proto.routes:
            ctx.channel_state(r, False, False)

    def bound(self) -> float | None:
        """The connection's silence bound in force; None when silence alone never recycles it."""
        if self.silence_floor_s is None:
            return None
        return self.ctx.tuning.learned_bound(self.silence_floor_s, self.cadence.value)

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
                    up_since = self.ctx.time.monotonic()
                    await self._session(ws)
                reason = "closed"
            except asyncio.CancelledError:
                self._down("stopped")
                raise
            except _Recycle as exc:
                reason = str(exc)
                immediate = exc.immediate
            except BaseExceptionGroup as eg:
                raise_if_cancelled()
                reason = _describe(_first(eg))
            except Exception as exc:  # every failure of one connection ends in a reconnect, never a crash
                raise_if_cancelled()
                reason = _describe(exc)
            raise_if_cancelled()
            was_healthy = self.healthy
            self.last_error = reason
            self._down(reason)
            if up_since is not None and self.ctx.time.monotonic() - up_since >= tn.stable_after_s:
                self._backoff.reset()
            delay = 0.0 if immediate else self._backoff.next()
            self._log_end(reason, up_since is not None, immediate, was_healthy, delay)
            if delay:
                await self.ctx.time.sleep(delay)

    def _log_end(self, reason: str, opened: bool, immediate: bool, was_healthy: bool, delay: float) -> None:
        ex = self.ctx.exchange
        if not opened:
            self.failures += 1
            self.ctx.burst.event(
                f"connect:{self.name}",
                f"{ex}: cannot connect {self.name} to {self.proto.url} ({reason}); retrying with backoff "
                f"(attempt {self.failures}, next in {delay:.1f} s)",
            )
        elif immediate:
            self.ctx.log.info("%s: connection %s recycled (%s)", ex, self.name, reason)
        else:
            # The first loss after the connection was healthy is always logged, whatever an earlier burst
            # left open; the losses of a connection that never got healthy again are burst-limited.
            self.ctx.burst.event(f"lost:{self.name}", f"{ex}: connection {self.name} lost ({reason}); "
                                                      f"reconnecting in {delay:.1f} s", force=was_healthy)

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
            raise self._recycle

    async def _receive(self, ws: ClientConnection) -> None:
        handle = self.proto.receiver()
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
            self._recycle = exc
            self._mark_down()  # down in the metrics now, not after the close handshake
            await ws.close()  # ends the receive loop

    async def _subscribe_all(self) -> None:
        routes = self.proto.routes
        await self.proto.subscribe(routes)
        now = self.ctx.clock()
        self.subscribed_at = now
        self._checked_at = now
        self._seen = sum(r.count for r in routes)
        self.cadence.restart()
        for r in routes:
            r.subscribed_at = now
            r.resubscribed_at = 0.0
            r.seq = 0  # a new connection is a new stream: its sequence starts afresh
            r.seen = r.count
            r.state = FeedState.SUBSCRIBED
            r.cadence.restart()
            self.ctx.channel_state(r, True, False)
        self.ctx.connection_up(True, self.name)
        self._set_state(FeedState.SUBSCRIBED, f"{len(routes)} channels")

    async def _loop(self, ws: ClientConnection) -> None:
        tn = self.ctx.tuning
        proto = self.proto
        opened = self.ctx.time.monotonic()
        last_flush = opened
        stable = False
        # connections opened together must not all recycle at the same moment: up to 5% earlier, at random
        max_age = tn.max_conn_age_s * (1.0 - 0.05 * self.ctx.time.rng.random())
        while True:
            await self.ctx.time.sleep(tn.watchdog_interval_s)
            mono = self.ctx.time.monotonic()
            if not stable and mono - opened >= tn.stable_after_s:
                stable = True  # a later loss starts a new burst of log lines
                self.ctx.burst.clear(f"lost:{self.name}")
            if mono - last_flush >= tn.flush_interval_s:
                self.ctx.flush(proto.routes)
                self.ctx.burst.flush()
                last_flush = mono
            if mono - opened >= max_age:
                raise _Recycle("age limit: proactive reconnect", immediate=True)
            if proto.ping_sent_at and mono - proto.ping_sent_at > tn.ack_timeout_s:
                raise _Recycle("no pong to keep-alive ping")
            if proto.keepalive_s is not None and mono - proto._last_send >= proto.keepalive_s:
                await proto.keepalive()
            await self._watchdog()

    async def _watchdog(self) -> None:
        """Learn each channel's cadence, flag the quiet ones and probe them, recycle a silent connection."""
        now = self.ctx.clock()
        tn = self.ctx.tuning
        period = max(now - self._checked_at, 0.0)
        self._checked_at = now
        probe: list[Route] = []
        total = 0
        for r in self.proto.routes:
            total += r.count
            n = r.count - r.seen
            if n:  # the hot path only counts; time is taken here, at watchdog resolution
                r.seen = r.count
                r.cadence.arrive(now, n, period)
                r.last = now
                if r.state == FeedState.QUIET:
                    self._resumed(r, now)
            elif r.state == FeedState.SUBSCRIBED:
                bound = r.bound(tn)
                if now - max(r.last, r.subscribed_at) > bound:
                    self._quiet(r, now, bound)
                    if now >= r.probe_at:
                        probe.append(r)
            elif r.state == FeedState.QUIET and r.probe_at and now >= r.probe_at:
                probe.append(r)
        n = total - self._seen
        self._seen = total
        if n:
            self.cadence.arrive(now, n, period)
            self.last_data = now
            if not self.healthy:
                self.healthy = True
                self.ctx.burst.clear(f"lost:{self.name}", f"{self.ctx.exchange}: {self.name} delivering again")
        else:
            whole = self.bound()
            if whole is not None and now - max(self.last_data, self.subscribed_at) > whole:
                self._mark_down()
                self._set_state(FeedState.SILENT, f"no data on any channel for {whole:.1f} s")
                raise _Recycle(f"no data on any of its {len(self.proto.routes)} channels for {whole:.1f} s")
        self.checks += 1
        if probe:
            await self._probe(probe, now)

    def _quiet(self, r: Route, now: float, bound: float) -> None:
        r.state = FeedState.QUIET
        r.since = now
        ex = self.ctx.exchange
        self.ctx.metrics.channel_silent.labels(ex, r.channel).inc()
        self.ctx.channel_state(r, True, True)
        self.ctx.status(r.key, FeedState.QUIET, f"no data for {bound:.1f} s; the connection delivers")
        self.ctx.burst.event(f"quiet:{self.name}", f"{ex}: {r.key} quiet for {bound:.1f} s while "
                                                   f"{self.name} delivers", logging.INFO)

    def _resumed(self, r: Route, now: float) -> None:
        r.state = FeedState.SUBSCRIBED
        self.ctx.channel_state(r, True, False)
        self.ctx.status(r.key, FeedState.SUBSCRIBED, f"data resumed after {now - r.since:.1f} s quiet")

    async def _probe(self, routes: list[Route], now: float) -> None:
        """Subscribe the quiet channels again, without unsubscribing first, so no gap can open. A channel is
        probed when it goes quiet, then at most once per ``silence_cap_s`` (also across quiet spells): a thin
        symbol costs a few frames an hour, not one every few seconds."""
        tn = self.ctx.tuning
        for r in routes:
            r.probe_at = now + max(tn.silence_cap_s, r.bound(tn))
            r.probes += 1
            r.resubscribed_at = now
        try:
            await self.proto.subscribe(routes)
        except ProtocolError as exc:
            if str(exc).startswith("no reply"):
                raise  # an unresponsive connection: the session fails and reconnects
            self.ctx.burst.event(f"probe:{self.name}", f"{self.ctx.exchange}: re-subscribing quiet "
                                                       f"channels on {self.name} refused ({exc})")

    # -- state --------------------------------------------------------------------------------------------
    def _set_state(self, state: FeedState, detail: str) -> None:
        if state != self.state:
            self.state = state
            self.ctx.status(self.name, state, detail)

    def _mark_down(self) -> None:
        if self.ctx.up.get(self.name):
            self.ctx.connection_up(False, self.name)
        for r in self.proto.routes:
            if r.state != FeedState.DISCONNECTED:
                r.state = FeedState.DISCONNECTED
                self.ctx.channel_state(r, False, False)

    def _down(self, reason: str) -> None:
        self._mark_down()
        self.connected_at = None
        self.healthy = False
        self._set_state(FeedState.DISCONNECTED, reason)

    def status(self) -> dict[str, Any]:
        now = self.ctx.clock()
        tn = self.ctx.tuning
        learned = self.cadence.value
        bound = self.bound()
        return {
            "url": self.proto.url.split("?")[0],
            "state": str(self.state),
            "up": bool(self.ctx.up.get(self.name)),
            "connected_for_s": None if self.connected_at is None else round(now - self.connected_at, 3),
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "learned_cadence_s": None if learned is None else round(learned, 4),
            "silence_bound_s": None if bound is None else round(bound, 3),
            "channels": {r.key: _channel_status(r, now, tn) for r in self.proto.routes},
        }


def _channel_status(r: Route, now: float, tn: Tuning) -> dict[str, Any]:
    learned = r.cadence.value
    return {
        "channel": r.channel,
        "asset": r.asset,
        "state": str(r.state),
        "subscribed": r.state in (FeedState.SUBSCRIBED, FeedState.QUIET),
        "quiet": r.state == FeedState.QUIET,
        "messages": r.count,
        "probes": r.probes,
        "last_message_age_s": round(now - r.last, 3) if r.last else None,
        "learned_cadence_s": None if learned is None else round(learned, 4),
        "configured_bound_s": tn.silence_bound(r.cadence_s),
        "silence_bound_s": round(r.bound(tn), 3),
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

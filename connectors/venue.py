"""The shell every native connector shares: resolve instruments over REST (retrying forever), then run the
venue's websocket connections and REST pollers in one task group, and report their state.

A source of ``market: spot`` also runs the venue's spot market beside its perpetuals: the spot pairs are
resolved from the venue's spot instrument list and quoted on connections of their own (``spot-*``), in a
task of their own, so a spot market that cannot be reached holds up nothing (the oracle prices the source
from its perpetual meanwhile). Where the spot market lives is ``VenueConnector.spot_endpoints``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

import httpx

from hedgewatch.connectors.base import FeedContext, Tuning
from hedgewatch.connectors.history import KlineHistory
from hedgewatch.connectors.instruments import Instrument
from hedgewatch.connectors.wsconn import WsConnection
from hedgewatch.service.clock import Timebase
from hedgewatch.service.config import FeedChannel, SourceConfig
from hedgewatch.service.errors import FeedError, RejectedMessage
from hedgewatch.service.events import Candle, Event, FeedState
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.retry import raise_if_cancelled

# Channel names a source may list in ``channels`` (validated by the config); None means the default set.
CHANNELS: tuple[str, ...] = get_args(FeedChannel)
DEFAULT_CHANNELS = ("quotes", "trades", "mark", "funding", "open_interest", "composite_index")


class Poller:
    """Calls ``fetch`` for each item every ``interval_s``, spreading the calls over the interval (venue
    REST rate limits), backing off on failures and logging them once per burst. ``fetch`` raises
    ``FeedError`` for transport trouble and ``RejectedMessage`` for a bad body."""

    def __init__(self, ctx: FeedContext, name: str, items: list[Any], interval_s: float,
                 fetch: Callable[[Any], Awaitable[None]], min_gap_s: float = 0.05) -> None:
        self.ctx = ctx
        self.name = name
        self.items = items
        self.interval_s = interval_s
        self.fetch = fetch
        # at most 1/min_gap_s requests a second whatever the interval asked (Binance: 1,200 of its 2,400
        # request weight a minute)
        self.min_gap_s = min_gap_s
        self.ok = 0
        self.failures = 0
        self.last_ok: float | None = None
        self.last_error = ""
        self.state = FeedState.CONNECTING

    async def run(self) -> None:
        tn = self.ctx.tuning
        backoff = self.ctx.backoff(tn.backoff_base_s, max(tn.backoff_cap_s, self.interval_s))
        gap = max(self.min_gap_s, self.interval_s / max(1, len(self.items)))
        while True:
            failed = False
            for item in self.items:
                try:
                    await self.fetch(item)
                except RejectedMessage as exc:
                    self.ctx.reject(exc, self.name)
                except FeedError as exc:
                    raise_if_cancelled()
                    failed = True
                    self._fail(str(exc))
                except Exception as exc:  # an odd body or a client bug costs one poll, never the feed
                    raise_if_cancelled()
                    failed = True
                    self._fail(f"{type(exc).__name__}: {exc}")
                else:
                    self._ok()
                await self.ctx.time.sleep(gap)
            if failed:
                await self.ctx.time.sleep(backoff.next())
            else:
                backoff.reset()

    def _ok(self) -> None:
        self.ok += 1
        self.ctx.metrics.messages.labels(self.ctx.exchange, self.name).inc()
        self.last_ok = self.ctx.clock()
        if self.state != FeedState.SUBSCRIBED:
            self.state = FeedState.SUBSCRIBED
            self.ctx.status(self.name, FeedState.SUBSCRIBED, "polling")
            self.ctx.burst.clear(f"poll:{self.name}", f"{self.ctx.exchange}: {self.name} polling recovered")

    def _fail(self, reason: str) -> None:
        self.failures += 1
        self.last_error = reason
        if self.state != FeedState.DISCONNECTED:
            self.state = FeedState.DISCONNECTED
            self.ctx.status(self.name, FeedState.DISCONNECTED, reason)
        self.ctx.burst.event(f"poll:{self.name}", f"{self.ctx.exchange}: {self.name} poll failed: {reason}")

    def status(self) -> dict[str, Any]:
        now = self.ctx.clock()
        return {"state": str(self.state), "ok": self.ok, "failures": self.failures,
                "last_ok_age_s": None if self.last_ok is None else round(now - self.last_ok, 3),
                "interval_s": self.interval_s, "last_error": self.last_error}


class VenueConnector:
    """Base of the native connectors. Subclasses set ``default_ws``/``default_rest`` and implement
    ``load_instruments`` and ``build``; those with a spot market set ``spot_supported`` and implement
    ``load_spot`` and ``build_spot`` (``default_spot_ws``/``default_spot_rest`` when the venue's spot market
    is on other hosts than its perpetuals)."""

    default_ws = ""
    default_rest = ""
    spot_supported = False
    default_spot_ws = ""    # "": the spot market is on the perpetuals' websocket host
    default_spot_rest = ""  # "": likewise for REST

    def __init__(self, source: SourceConfig, sink: Callable[[Event], None], metrics: Metrics, *,
                 clock: Callable[[], float] = time.time, tuning: Tuning | None = None,
                 timebase: Timebase | None = None) -> None:
        self.source = source
        self.name = source.source_id
        self.ctx = FeedContext(self.name, sink, metrics, clock, tuning or Tuning(), timebase)
        self.ws_base = (source.ws_url or self.default_ws).rstrip("/")
        self.rest_base = (source.rest_url or self.default_rest).rstrip("/")
        channels = source.channels if source.channels is not None else DEFAULT_CHANNELS
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise FeedError(f"{self.name}: unknown channels {unknown}; known: {', '.join(CHANNELS)}")
        self.channels = frozenset(channels)
        self.instruments: list[Instrument] = []
        self.connections: list[WsConnection] = []
        self.pollers: list[Poller] = []
        self.state = "resolving instruments"
        # the spot market: where it is (None: not run, ``spot_state`` says why) and its pairs once resolved
        self.spot_quote = "USDT" if source.quote == "USD" else source.quote
        self.spot_ws_base, self.spot_rest_base, self.spot_state = self.spot_endpoints()
        self.spot: list[Instrument] = []
        self.spot_connections: list[WsConnection] = []

    def spot_endpoints(self) -> tuple[str | None, str | None, str]:
        """(websocket base, REST base, state) of the source's spot market. ``spot_ws_url``/``spot_rest_url``
        when given; else the venue's public spot endpoints when the source uses the venue's public endpoints;
        else none (a ``ws_url`` pointing elsewhere serves what it serves), and the source is priced from its
        perpetual."""
        src = self.source
        if src.market != "spot":
            return None, None, "off (market: perp)"
        if not self.spot_supported:
            return None, None, "off (no spot market through this connector)"
        if "quotes" not in self.channels:
            return None, None, "off (the quotes channel is not subscribed)"
        ws = src.spot_ws_url or (self.default_spot_ws or self.default_ws if src.ws_url is None else None)
        if src.spot_rest_url:
            rest: str | None = src.spot_rest_url
        elif not self.default_spot_rest:
            rest = self.rest_base  # the venue lists its spot pairs on the perpetuals' REST host
        else:
            rest = self.default_spot_rest if src.rest_url is None else None
        if ws is None or rest is None:
            return None, None, "off (ws_url/rest_url point elsewhere and no spot_ws_url/spot_rest_url is given)"
        return ws.rstrip("/"), rest.rstrip("/"), "resolving instruments"

    async def load_spot(self, http: httpx.AsyncClient) -> list[Instrument]:
        raise NotImplementedError

    def build_spot(self) -> list[WsConnection]:
        """The spot connections for ``self.spot``."""
        raise NotImplementedError

    async def load_instruments(self, http: httpx.AsyncClient) -> list[Instrument]:
        raise NotImplementedError

    def build(self, http: httpx.AsyncClient) -> None:
        """Create ``self.connections`` and ``self.pollers`` from ``self.instruments``."""
        raise NotImplementedError

    async def run(self) -> None:
        if self.spot_ws_base is None:
            self.ctx.log.info("%s: spot market %s; the oracle prices it from the perpetual", self.name,
                              self.spot_state)
            await self._run_perpetuals()
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._run_spot(), name=f"{self.name}:spot")
            tg.create_task(self._run_perpetuals(), name=f"{self.name}:perpetuals")

    async def _run_spot(self) -> None:
        assert self.spot_rest_base is not None
        tn = self.ctx.tuning
        async with httpx.AsyncClient(base_url=self.spot_rest_base, timeout=tn.rest_timeout_s,
                                     trust_env=False) as http:
            self.spot = await self._resolve(http, self.load_spot, "spot instrument",
                                            f"{self.spot_quote} spot pair")
            self.spot_connections = self.build_spot()
            self.spot_state = "running"
            async with asyncio.TaskGroup() as tg:
                for conn in self.spot_connections:
                    tg.create_task(conn.run(), name=f"{self.name}:{conn.name}")

    async def _run_perpetuals(self) -> None:
        tn = self.ctx.tuning
        async with httpx.AsyncClient(base_url=self.rest_base, timeout=tn.rest_timeout_s,
                                     trust_env=False) as http:
            self.instruments = await self._resolve(http, self.load_instruments, "instrument",
                                                   f"{self.source.quote} instrument")
            self.build(http)
            self.state = "running"
            async with asyncio.TaskGroup() as tg:
                for conn in self.connections:
                    tg.create_task(conn.run(), name=f"{self.name}:{conn.name}")
                for poller in self.pollers:
                    tg.create_task(poller.run(), name=f"{self.name}:{poller.name}")

    async def _resolve(self, http: httpx.AsyncClient,
                       load: Callable[[httpx.AsyncClient], Awaitable[list[Instrument]]], key: str,
                       what: str) -> list[Instrument]:
        tn = self.ctx.tuning
        backoff = self.ctx.backoff(tn.backoff_base_s, tn.backoff_cap_s)
        while True:
            try:
                found = await load(http)
            except Exception as exc:  # transport trouble or a list we cannot read: retry, never crash
                raise_if_cancelled()
                self.ctx.burst.event(key, f"{self.name}: cannot load the {key} list from "
                                          f"{http.base_url} ({exc}); retrying with backoff")
                await self.ctx.time.sleep(backoff.next())
                continue
            self.ctx.burst.clear(key, f"{self.name}: {key} list loaded")
            missing = sorted(set(self.source.symbols) - {i.asset for i in found})
            if missing:
                skipped = "priced from the perpetual" if key == "spot instrument" else "skipped"
                self.ctx.log.warning("%s: no %s for %s; those assets are %s", self.name, what,
                                     ", ".join(missing), skipped)
            if found:
                return found
            self.ctx.burst.event(key, f"{self.name}: none of {', '.join(self.source.symbols)} is listed; "
                                      "retrying")
            await self.ctx.time.sleep(backoff.next())

    def status(self) -> dict[str, Any]:
        return {
            "exchange": self.source.exchange,
            "state": self.state,
            "instruments": {i.asset: i.instrument for i in self.instruments},
            "spot": {"state": self.spot_state, "pairs": {i.asset: i.instrument for i in self.spot}},
            "reconnects": self.ctx.reconnects,
            "rejected": dict(self.ctx.rejected),
            "connections": {c.name: c.status() for c in (*self.connections, *self.spot_connections)},
            "pollers": {p.name: p.status() for p in self.pollers},
        }


@dataclass(frozen=True)
class Venue:
    """One venue protocol as the registry (``connectors.registry``) knows it: per exchange id it serves,
    the connector and the REST kline history. ``connectors`` keyed ``"*"`` serves any id (ccxt), whose
    history is ``fetch_history`` instead of a ``KlineHistory``."""

    name: str
    connectors: Mapping[str, Callable[..., Any]]
    history: Mapping[str, KlineHistory] = field(default_factory=dict)
    fetch_history: Callable[..., Awaitable[list[Candle]]] | None = None

    def connector(self, exchange: str) -> Callable[..., Any]:
        return self.connectors.get(exchange) or self.connectors["*"]

"""Generic connector for any exchange ccxt knows, on ccxt's async websocket API (``ccxt.pro``) where the
exchange has it and REST polling where it does not, with our own reconnect loop (ccxt does not reconnect by
itself: a failed ``watch_*`` raises and the next call opens a new connection).

Per configured asset the market is chosen from ccxt's market list: the active linear swap settled in the
configured quote, else the spot market in that quote. Per market, ccxt's unified calls, websocket first:
- quotes: ``watch_bids_asks`` (the venue's best bid/offer stream: Binance's ``bookTicker``; its
  ``watch_ticker`` is the ``miniTicker`` stream, which carries no bid or ask), else ``watch_ticker``, else
  ``fetch_ticker`` every ``TICKER_POLL_S``;
- mark and index: ``watch_mark_price``, else ``fetch_mark_price`` every ``TICKER_POLL_S``, else from the
  ticker where it carries them (Bybit, OKX);
- funding: ``watch_funding_rate`` where present, else ``fetch_funding_rate`` every ``FUNDING_POLL_S``; its
  interval from the venue's own data (``connectors.ccxt.funding``): unknown stays unknown (``0``), never
  an assumed 8 h;
- open interest: ``fetch_open_interest`` every ``source.open_interest_poll_s``;
- kline history: ``fetch_ohlcv``, paged (``connectors.klines``);
- spot (``market: spot``): the exchange's spot market of each asset in the quote (USDT for a ``USD``
  source), on the exchange's spot id (``binance`` for ``binanceusdm``/``binancecoinm``, the same id
  elsewhere, the same exchange object when the id is the same), quoted like the perpetual
  (``watch_bids_asks``, else ``watch_ticker``, else ``fetch_ticker``) as quotes of market ``spot``. It runs
  in a task of its own, so a spot market that cannot be loaded holds up nothing. As for the native
  connectors it is reached at the exchange's own endpoints, or at ``spot_ws_url``/``spot_rest_url`` when
  ``ws_url``/``rest_url`` point elsewhere (else not at all). A market chosen above that is itself a spot
  market quotes as ``spot`` too.
ccxt errors are translated at this boundary: ``NotSupported`` and ``BadSymbol`` switch that channel off with
one log line; every other failure (``NetworkError``, exchange errors, even a ccxt bug raising ``TypeError``
on an odd frame) backs off and retries forever. A websocket channel with no update within its silence
bound is flagged silent and, if it stays silent, the exchange's connections are closed so the next call
reconnects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt
import ccxt.pro as ccxtpro

from hedgewatch.connectors.base import FeedContext, Route, Tuning, positive
from hedgewatch.connectors.ccxt.funding import FundingIntervals
from hedgewatch.connectors.sanity import accept_price, check_quote
from hedgewatch.connectors.venue import CHANNELS, DEFAULT_CHANNELS
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.errors import FeedError, RejectedMessage
from hedgewatch.service.events import Event, FeedState, Funding, Market, MarkPrice, OpenInterest, Quote
from hedgewatch.service.retry import raise_if_cancelled

TICKER_POLL_S = 1.0
# ccxt ids whose spot market is another id's
SPOT_IDS = {"binanceusdm": "binance", "binancecoinm": "binance", "krakenfutures": "kraken"}
FUNDING_POLL_S = 30.0
WATCH_CADENCE_S = 1.0


def default_factory(source: SourceConfig) -> Any:
    """A ``ccxt.pro`` exchange object (``ccxt.async_support`` when ccxt.pro lacks the id), with
    ``rest_url``/``ws_url`` overriding every REST/websocket endpoint when the source names one."""
    cls = getattr(ccxtpro, source.exchange, None)
    if cls is None:
        import ccxt.async_support as ccxt_async

        cls = getattr(ccxt_async, source.exchange, None)
    if cls is None:
        raise FeedError(f"ccxt has no exchange {source.exchange!r}")
    ex = cls({"enableRateLimit": True})
    if source.rest_url or source.ws_url:
        ex.urls["api"] = _override(ex.urls.get("api"), source.rest_url, source.ws_url)
    return ex


def _known(exchange_id: str) -> bool:
    import ccxt.async_support as ccxt_async

    return hasattr(ccxtpro, exchange_id) or hasattr(ccxt_async, exchange_id)


def _override(node: Any, rest: str | None, ws: str | None) -> Any:
    """Every endpoint of ccxt's URL tree moved to ``rest``/``ws``, each keeping its own path (ccxt's
    ``fapiPublic`` is ``.../fapi/v1``: pointed at ``http://127.0.0.1:8000`` it becomes
    ``http://127.0.0.1:8000/fapi/v1``); a path in the override is a prefix."""
    if isinstance(node, dict):
        return {k: _override(v, rest, ws) for k, v in node.items()}
    if isinstance(node, str):
        if node.startswith(("ws://", "wss://")) and ws:
            return rebase_url(node, ws)
        if node.startswith(("http://", "https://")) and rest:
            return rebase_url(node, rest)
    return node


def rebase_url(url: str, base: str) -> str:
    """``url`` on ``base``'s scheme and host, ``base``'s path before its own, its query kept."""
    u, b = urlsplit(url), urlsplit(base)
    path = b.path.rstrip("/") + (u.path if u.path.startswith("/") or not u.path else "/" + u.path)
    return urlunsplit((b.scheme, b.netloc, path, u.query, u.fragment))


def pick_spot(markets: dict[str, Any], asset: str, quote: str) -> dict[str, Any] | None:
    """The active spot market of ``asset`` in ``quote``."""
    for m in markets.values():
        if m.get("spot") and m.get("base") == asset and m.get("quote") == quote and m.get("active") is not False:
            return m
    return None


def spot_source(source: SourceConfig) -> SourceConfig | None:
    """The source as the exchange's spot market sees it (its spot id and spot endpoints), None when the
    source is not priced from spot or its spot market is not reachable (``ws_url``/``rest_url`` point
    elsewhere and no ``spot_ws_url``/``spot_rest_url`` is given)."""
    if source.market != "spot":
        return None
    moved = source.ws_url is not None or source.rest_url is not None
    if moved and source.spot_ws_url is None and source.spot_rest_url is None:
        return None
    return source.model_copy(update={"exchange": SPOT_IDS.get(source.exchange, source.exchange),
                                     "ws_url": source.spot_ws_url, "rest_url": source.spot_rest_url})


def pick_market(markets: dict[str, Any], asset: str, quote: str) -> dict[str, Any] | None:
    """The active linear swap of ``asset`` settled in ``quote``, else its spot market in ``quote``."""
    spot = None
    for m in markets.values():
        if m.get("base") != asset or m.get("quote") != quote or m.get("active") is False:
            continue
        if m.get("swap") and m.get("linear") and m.get("settle", quote) == quote:
            return m
        if m.get("spot") and spot is None:
            spot = m
    return spot


class CcxtConnector:
    """See the module docstring."""

    def __init__(self, source: SourceConfig, sink: Callable[[Event], None], metrics: Any, *,
                 clock: Callable[[], float] = time.time, tuning: Tuning | None = None,
                 exchange_factory: Callable[[SourceConfig], Any] = default_factory) -> None:
        self.source = source
        self.name = source.source_id
        self.ctx = FeedContext(self.name, sink, metrics, clock, tuning or Tuning())
        channels = source.channels if source.channels is not None else DEFAULT_CHANNELS
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise FeedError(f"{self.name}: unknown channels {unknown}; known: {', '.join(CHANNELS)}")
        self.channels = frozenset(channels)
        self.factory = exchange_factory
        if exchange_factory is default_factory and not _known(source.exchange):
            raise FeedError(f"{self.name}: ccxt has no exchange {source.exchange!r}")
        self.ex: Any = None
        self.spot_ex: Any = None  # the exchange object of the spot market (``self.ex`` when the same)
        self.spot_source = spot_source(source) if "quotes" in self.channels else None
        self._spot_keys: set[str] = set()  # price routes on a spot market: their quotes are ``spot``
        self.routes: list[Route] = []
        self.intervals = FundingIntervals(lambda: self.ex, self.name)
        self._marks_apart = False  # a mark stream of its own: the ticker's mark is not used
        self.state = "loading markets"
        self.errors: dict[str, str] = {}

    # -- life cycle -----------------------------------------------------------------------------------
    async def run(self) -> None:
        self.ex = self.factory(self.source)
        try:
            markets = await self._load_markets()
            self.routes = self._routes(markets)
            self.intervals.markets = markets
            self.state = "running"
            self.ctx.connection_up(True)
            async with asyncio.TaskGroup() as tg:
                for r in self.routes:
                    tg.create_task(self._channel(r), name=f"{self.name}:{r.key}")
                tg.create_task(self._flush(), name=f"{self.name}:flush")
                if self.spot_source is not None:
                    tg.create_task(self._run_spot(markets), name=f"{self.name}:spot")
        finally:
            if self.state == "running":
                self.ctx.connection_up(False)
            await asyncio.shield(self._close())

    async def _run_spot(self, markets: dict[str, Any]) -> None:
        """The spot market's quote routes, on their own exchange object when the spot id differs."""
        spot = self.spot_source
        assert spot is not None
        same = spot.exchange == self.source.exchange and spot.ws_url is None and spot.rest_url is None
        if same:
            self.spot_ex = self.ex
        else:
            self.spot_ex = self.factory(spot)
            markets = await self._load_markets(self.spot_ex)
        quote = "USDT" if self.source.quote == "USD" else self.source.quote
        chosen = {r.instrument for r in self.routes if r.key in self._spot_keys}
        routes = []
        for asset in self.source.symbols:
            m = pick_spot(markets, asset, quote)
            if m is None or str(m.get("id")) in chosen:
                if m is None:
                    self.ctx.log.warning("%s: no %s spot market for %s; priced from the perpetual", self.name,
                                         quote, asset)
                continue
            has, sym = self.spot_ex.has, m.get("symbol")
            kind = "watch" if has.get("watchBidsAsks") or has.get("watchTicker") else "poll"
            r = Route(f"spot:{sym}", "spot", kind, asset, str(m.get("id")), str(m.get("quote")),
                      cadence_s=WATCH_CADENCE_S if kind == "watch" else TICKER_POLL_S, topic=sym)
            self._spot_keys.add(r.key)
            routes.append(r)
        self.routes += routes
        async with asyncio.TaskGroup() as tg:
            for r in routes:
                tg.create_task(self._channel(r), name=f"{self.name}:{r.key}")

    async def _close(self) -> None:
        for ex in (self.ex, self.spot_ex if self.spot_ex is not self.ex else None):
            if ex is None:
                continue
            try:
                await ex.close()
            except Exception as exc:  # closing a broken exchange object must not mask why we stop
                self.ctx.log.debug("%s: close failed: %r", self.name, exc)

    async def _load_markets(self, ex: Any = None) -> dict[str, Any]:
        ex = self.ex if ex is None else ex
        tn = self.ctx.tuning
        backoff = self.ctx.backoff(tn.backoff_base_s, tn.backoff_cap_s)
        while True:
            try:
                markets = await ex.load_markets()
            except ccxt.BaseError as exc:
                raise_if_cancelled()
                self.ctx.burst.event("markets", f"{self.name}: cannot load markets ({_describe(exc)}); "
                                                "retrying with backoff")
                await self.ctx.time.sleep(backoff.next())
                continue
            self.ctx.burst.clear("markets", f"{self.name}: markets loaded")
            return dict(markets or {})

    def _routes(self, markets: dict[str, Any]) -> list[Route]:
        has = self.ex.has
        out = []
        for asset in self.source.symbols:
            m = pick_market(markets, asset, self.source.quote)
            if m is None:
                self.ctx.log.warning("%s: no %s market for %s; skipped", self.name, self.source.quote, asset)
                continue
            contract = bool(m.get("contract") or m.get("swap"))
            args = (asset, str(m.get("id")), str(m.get("quote")))
            sym = m.get("symbol")
            price_routes = self._price_routes(m, args)
            if m.get("spot"):  # no perpetual in the quote: the spot market prices the source
                self._spot_keys.update(r.key for r in price_routes)
            out += price_routes
            if "funding" in self.channels and contract and (has.get("watchFundingRate")
                                                              or has.get("fetchFundingRate")):
                kind = "watch" if has.get("watchFundingRate") else "poll"
                out.append(Route(f"funding:{sym}", "funding", kind, *args, cadence_s=FUNDING_POLL_S,
                                 topic=sym, critical=False))
            if "open_interest" in self.channels and contract and has.get("fetchOpenInterest"):
                out.append(Route(f"open_interest:{sym}", "open_interest", "poll", *args,
                                 cadence_s=self.source.open_interest_poll_s, topic=sym,
                                 scale=float(m.get("contractSize") or 1.0), critical=False))
        return out

    def _price_routes(self, m: dict[str, Any], args: tuple[str, str, str]) -> list[Route]:
        """Quotes and marks of one market: each on its own stream where ccxt.pro has one."""
        has, sym, out = self.ex.has, m.get("symbol"), []
        contract = bool(m.get("contract") or m.get("swap"))
        want_quotes, want_mark = "quotes" in self.channels, "mark" in self.channels and contract
        mark_route = None
        if want_mark and has.get("watchMarkPrice"):
            mark_route = Route(f"mark:{sym}", "mark", "watch", *args, cadence_s=WATCH_CADENCE_S, topic=sym)
        elif want_mark and has.get("fetchMarkPrice"):
            mark_route = Route(f"mark:{sym}", "mark", "poll", *args, cadence_s=TICKER_POLL_S, topic=sym)
        if want_quotes and has.get("watchBidsAsks"):
            out.append(Route(f"bidask:{sym}", "bidask", "watch", *args, cadence_s=WATCH_CADENCE_S, topic=sym))
            if want_mark and mark_route is None:
                mark_route = self._ticker_route(sym, args, marks_only=True)
        elif want_quotes or (want_mark and mark_route is None):
            out.append(self._ticker_route(sym, args))
        if mark_route is not None:
            out.append(mark_route)
            self._marks_apart = True
        return out

    def _ticker_route(self, sym: Any, args: tuple[str, str, str], marks_only: bool = False) -> Route:
        ws = bool(self.ex.has.get("watchTicker"))
        return Route(f"{'mark' if marks_only else 'ticker'}:{sym}", "ticker_mark" if marks_only else "ticker",
                     "watch" if ws else "poll", *args, cadence_s=WATCH_CADENCE_S if ws else TICKER_POLL_S,
                     topic=sym)

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(self.ctx.tuning.flush_interval_s)
            self.ctx.flush(self.routes)

    # -- one channel of one market ----------------------------------------------------------------------
    async def _channel(self, r: Route) -> None:
        tn = self.ctx.tuning
        backoff = self.ctx.backoff(tn.backoff_base_s, tn.backoff_cap_s)
        call, decode = self._calls(r)
        timeouts = 0
        while True:
            try:
                if r.kind == "watch":
                    async with asyncio.timeout(tn.silence_bound(r.cadence_s)):
                        data = await call(r.topic)
                else:
                    data = await call(r.topic)
            except TimeoutError:
                timeouts += 1
                await self._silent(r, timeouts)
                continue
            except (ccxt.NotSupported, ccxt.BadSymbol) as exc:
                self._down(r, _describe(exc))
                self.ctx.log.warning("%s: %s switched off: %s", self.name, r.key, _describe(exc))
                return
            except Exception as exc:  # ccxt errors, and library bugs on odd input: back off, never crash
                raise_if_cancelled()
                self._down(r, _describe(exc))
                await self.ctx.time.sleep(backoff.next())
                continue
            timeouts = 0
            now = self.ctx.clock()
            r.last = now
            self._up(r)
            backoff.reset()
            try:
                for event in decode(r, data, now):
                    self.ctx.sink(event)
                r.count += 1
            except RejectedMessage as exc:
                self.ctx.reject(exc, r.key)
            if r.kind == "poll":
                await asyncio.sleep(r.cadence_s)

    def _calls(self, r: Route) -> tuple[Callable[[str], Awaitable[Any]], Callable[..., list[Event]]]:
        ex = self.ex
        if r.channel in ("ticker", "ticker_mark"):
            return (ex.watch_ticker if r.kind == "watch" else ex.fetch_ticker), self._ticker
        if r.channel == "spot":
            ex = self.spot_ex
            if ex.has.get("watchBidsAsks"):
                r.channel = "bidask"
            else:
                return (ex.watch_ticker if r.kind == "watch" else ex.fetch_ticker), self._ticker
        if r.channel == "bidask":
            async def bids_asks(sym: str) -> Any:
                return (await ex.watch_bids_asks([sym]))[sym]
            return bids_asks, self._ticker
        if r.channel == "mark":
            return (ex.watch_mark_price if r.kind == "watch" else ex.fetch_mark_price), self._ticker
        if r.channel == "funding":
            call = ex.watch_funding_rate if r.kind == "watch" else ex.fetch_funding_rate

            async def funding(sym: str) -> Any:
                f = await call(sym)
                return f, await self.intervals.hours(sym, f, self.ctx.clock())
            return funding, self._funding
        return ex.fetch_open_interest, self._open_interest

    async def _silent(self, r: Route, timeouts: int) -> None:
        if r.state != FeedState.SILENT:
            r.state = FeedState.SILENT
            r.since = self.ctx.clock()
            self.ctx.metrics.channel_silent.labels(self.name, r.channel).inc()
            self.ctx.status(r.key, FeedState.SILENT, "no update within the silence bound")
            self.ctx.burst.event(f"silent:{r.key}", f"{self.name}: {r.key} silent")
        if timeouts >= 2 and r.critical:
            # close the exchange's connections: the next watch call reconnects and re-subscribes
            self.ctx.reconnects += 1
            self.ctx.metrics.reconnects.labels(self.name).inc()
            await self._close()

    def _up(self, r: Route) -> None:
        if r.state != FeedState.SUBSCRIBED:
            r.state = FeedState.SUBSCRIBED
            self.errors.pop(r.key, None)
            self.ctx.status(r.key, FeedState.SUBSCRIBED, r.kind)
            self.ctx.burst.clear(f"err:{r.key}", f"{self.name}: {r.key} recovered")

    def _down(self, r: Route, reason: str) -> None:
        self.errors[r.key] = reason
        if r.state != FeedState.DISCONNECTED:
            r.state = FeedState.DISCONNECTED
            self.ctx.status(r.key, FeedState.DISCONNECTED, reason)
        if r.kind == "watch":
            self.ctx.reconnects += 1
            self.ctx.metrics.reconnects.labels(self.name).inc()
        self.ctx.burst.event(f"err:{r.key}", f"{self.name}: {r.key} failed ({reason}); retrying with backoff")

    # -- ccxt structures to events ------------------------------------------------------------------------
    def _ticker(self, r: Route, t: dict[str, Any], now: float) -> list[Event]:
        ts = _ts(t, now)
        out: list[Event] = []
        bid, ask = t.get("bid"), t.get("ask")
        if ("quotes" in self.channels and r.channel in ("ticker", "bidask", "spot") and bid is not None
                and ask is not None):
            bid, ask = positive(_float(bid), "bid"), positive(_float(ask), "ask")
            check_quote(r, bid, ask, now)  # both sides, spread and mid against the last accepted book
            accept_price(r, (bid + ask) * 0.5, now)
            market = Market.SPOT if r.key in self._spot_keys else Market.PERP
            out.append(Quote(self.name, r.asset, r.instrument, bid, ask, ts, now, r.quote, market))
        mark = t.get("markPrice")
        if "mark" in self.channels and mark is not None and (
                r.channel in ("mark", "ticker_mark") or (r.channel == "ticker" and not self._marks_apart)):
            index = t.get("indexPrice")
            out.append(MarkPrice(self.name, r.asset, r.instrument, positive(_float(mark), "mark"),
                                 positive(_float(index), "index") if index is not None else None, ts, now,
                                 r.quote))
        return out

    def _funding(self, r: Route, data: tuple[dict[str, Any], float | None], now: float) -> list[Event]:
        f, hours = data
        rate = _float(f.get("fundingRate"))
        if not -1.0 < rate < 1.0:
            raise RejectedMessage("absurd", "funding")
        nxt = f.get("fundingTimestamp") or f.get("nextFundingTimestamp")
        return [Funding(self.name, r.asset, r.instrument, rate, hours or 0.0, nxt / 1000.0 if nxt else None,
                        _ts(f, now), now)]

    def _open_interest(self, r: Route, o: dict[str, Any], now: float) -> list[Event]:
        amount = o.get("openInterestAmount")
        base = o.get("baseVolume")
        contracts = _float(amount) if amount is not None else None
        if base is not None:
            base_f: float | None = _float(base)
        else:
            base_f = contracts * r.scale if contracts is not None else None
        if base_f is None:
            raise RejectedMessage("missing_field", "openInterestAmount")
        value = o.get("openInterestValue")
        usd = _float(value) if value is not None else None
        for v in (base_f, usd or 0.0):
            if not 0.0 <= v < 1e15:
                raise RejectedMessage("absurd", "open interest")
        return [OpenInterest(self.name, r.asset, r.instrument, contracts if contracts is not None else base_f,
                             base_f, usd, _ts(o, now), now)]

    def status(self) -> dict[str, Any]:
        now = self.ctx.clock()
        return {
            "exchange": self.source.exchange,
            "state": self.state,
            "reconnects": self.ctx.reconnects,
            "rejected": dict(self.ctx.rejected),
            "channels": {r.key: {"state": str(r.state), "mode": r.kind, "messages": r.count,
                                 "last_message_age_s": round(now - r.last, 3) if r.last else None,
                                 "last_error": self.errors.get(r.key, "")} for r in self.routes},
        }


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise RejectedMessage("non_numeric", str(type(v).__name__)) from None


def _ts(d: dict[str, Any], now: float) -> float:
    ts = d.get("timestamp")
    return ts / 1000.0 if isinstance(ts, int | float) and ts > 0 else now


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"

"""Native Binance futures connectors: USDⓈ-M (``fstream``/``fapi``) and COIN-M (``dstream``/``dapi``).

- Instruments: ``/fapi/v1/exchangeInfo`` (TRADING PERPETUAL symbols with the configured quote); funding
  intervals that differ from 8 h from ``/fapi/v1/fundingInfo`` (best effort).
- Websocket: combined streams on the routed paths, ``/public/stream`` for ``<s>@bookTicker`` and
  ``/market/stream`` for ``<s>@markPrice@1s`` (mark, index ``i``, funding ``r``, next funding ``T``),
  ``<s>@aggTrade``, ``<s>@kline_1m`` and ``<s>@compositeIndex``, each stream family on connections of its
  own, at most ``max_streams_per_connection`` streams a connection; ``SUBSCRIBE`` with an id whose reply is
  checked; client frames paced well under the venue's 10 incoming messages/s; proactive reconnect before the
  24 h connection limit (``Tuning``).
- Open interest: REST ``/fapi/v1/openInterest`` polled every ``open_interest_poll_s`` per symbol, spread
  over the interval (weight 1 each, far below the 2,400/min limit).
- COIN-M (``binancecoinm``): the same streams and REST shapes under ``/dapi/v1`` and ``dstream``'s
  ``/stream`` (no routed paths), for the TRADING PERPETUAL ``<ASSET>USD_PERP`` of ``contractSize`` USD.
  Quotes and marks are USD prices; ``aggTrade`` ``q`` and ``openInterest`` are contracts, converted to
  coins at the trade's price (trades) or the latest price (open interest, whose USD figure is exact);
  kline volume is the base volume ``q``.
- Spot (``market: spot``): the spot pair of each asset (``BTCUSDT``, TRADING in ``/api/v3/exchangeInfo`` on
  ``api.binance.com``) on ``stream.binance.com:9443``'s combined ``/stream``, ``<s>@bookTicker``, whose
  payload is ``{"u","s","b","B","a","A"}``: no event type and no event time, so its quotes carry the receive
  time as the venue's time. The spot market allows 5 incoming messages a second a connection (paced at 4).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import msgspec
import orjson

from hedgewatch.connectors.base import FeedContext, Route, ms, num
from hedgewatch.connectors.instruments import (
    Instrument,
    binance_coinm,
    binance_dated,
    binance_funding_intervals,
    binance_spot,
    binance_usdm,
    get_json,
)
from hedgewatch.connectors.sanity import (
    MAX_JUMP_FACTOR,
    MAX_PRICE,
    MAX_SEQ_JUMP,
    MAX_SPREAD_RATIO,
    MAX_STEP_RATIO,
    accept_price,
    accept_seq,
    book_reject,
    check_price,
    check_quote,
    check_seq,
    positive,
    venue_text,
)
from hedgewatch.connectors.venue import Poller, VenueConnector
from hedgewatch.connectors.wsconn import WsConnection, WsProtocol, group_routes
from hedgewatch.service.errors import FeedError, RejectedMessage
from hedgewatch.service.events import Candle, CompositeIndex, Funding, Market, MarkPrice, OpenInterest, Quote, Trade

BOOK, MARK, TRADE, KLINE, COMPOSITE = range(5)
TIMEFRAMES = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200, "4h": 14400,
              "1d": 86400}
MAX_FUNDING_RATE = 1.0  # per interval; real caps are a few percent


# Typed wire schemas of the hot streams: msgspec decodes numeric strings straight into floats/ints
# (``strict=False``) and skips every field not declared here.
class _Book(msgspec.Struct, tag_field="e", tag="bookTicker"):
    u: int
    b: float
    a: float
    E: int


class _Agg(msgspec.Struct, tag_field="e", tag="aggTrade"):
    p: float
    q: float
    T: int


class _Mark(msgspec.Struct, tag_field="e", tag="markPriceUpdate"):
    p: float
    E: int
    i: float | None = None
    r: float | None = None
    T: int | None = None


class _Combined(msgspec.Struct):
    stream: str
    data: _Book | _Agg | _Mark


_FAST = msgspec.json.Decoder(_Combined, strict=False)


class _SpotBook(msgspec.Struct):
    """The spot ``bookTicker`` payload: no ``e`` and no ``E``."""

    u: int
    b: float
    a: float


class _SpotCombined(msgspec.Struct):
    stream: str
    data: _SpotBook


_SPOT_FAST = msgspec.json.Decoder(_SpotCombined, strict=False)


class BinanceProtocol(WsProtocol):
    """Combined-stream protocol of one Binance connection. ``handle`` is the hot path: one typed decode, one
    dict lookup by stream name (precomputed at subscribe time), the bookTicker and aggTrade decode inlined."""

    send_gap_s = 0.25   # 4 client frames/s at most: the venue allows 10 incoming messages/s a connection
    subscribe_batch = 50

    def __init__(self, ctx: FeedContext, url: str, routes: list[Route], funding_h: dict[str, float],
                 inverse: bool = False, market: str = Market.PERP) -> None:
        super().__init__(ctx, url, routes)
        self.market = market  # what its quotes are: the perpetuals, or (``future``) dated futures
        self.by_stream = {r.key: r for r in routes}
        self.funding_h = funding_h
        # COIN-M: sizes are contracts of ``r.scale`` USD, converted to base units at the trade's price
        self.inverse = inverse
        self.want_funding = True
        self.want_mark = True
        ex = ctx.exchange
        self._ex = ex
        self._sink = ctx.sink
        self._clock = ctx.clock
        self._slow = {MARK: self._mark, TRADE: self._trade, KLINE: self._kline, COMPOSITE: self._composite}
        self.handle_generic = self._make_handler()
        self.handle = self._make_fast_handler(self.handle_generic)  # type: ignore[method-assign,assignment]

    def subscribe_frame(self, req_id: int, routes: list[Route], unsubscribe: bool = False) -> tuple[str, Any]:
        method = "UNSUBSCRIBE" if unsubscribe else "SUBSCRIBE"
        text = orjson.dumps({"method": method, "params": [r.key for r in routes], "id": req_id}).decode()
        return text, req_id

    def handle(self, raw: bytes) -> None:  # replaced per instance by the closure from _make_fast_handler
        self.handle(raw)

    def _make_fast_handler(self, generic: Callable[[bytes], None]) -> Callable[[bytes], None]:
        """The hot path: one typed ``msgspec`` decode of the frame straight into floats (only the fields we
        use are materialized), one dict lookup by stream name, the event. Anything the typed schema does
        not fit (control replies, klines, composite index, every malformed or odd frame) goes to
        ``generic``, which decodes with orjson and classifies rejects, so both paths agree."""
        fast = _FAST.decode
        decode_error = msgspec.DecodeError
        by_stream = self.by_stream
        clock = self._clock
        sink = self._sink
        ex = self._ex
        max_price = MAX_PRICE
        max_seq = MAX_SEQ_JUMP
        half_spread = MAX_SPREAD_RATIO * 0.5
        up = 1.0 + MAX_STEP_RATIO
        book_cls = _Book
        agg_cls = _Agg
        mark = self._mark_fast
        inverse = self.inverse
        market = self.market
        malformed = (decode_error, RecursionError)  # msgspec recurses to skip deeply nested fields

        def handle(raw: bytes) -> None:
            now = clock()
            try:
                m = fast(raw)
            except malformed:
                generic(raw)
                return
            r = by_stream.get(m.stream)
            if r is None:
                generic(raw)
                return
            d: Any = m.data  # one of the tagged structs; dispatched by exact class below
            cls = d.__class__
            if cls is book_cls:
                # every check first (connectors.sanity, inlined), then the commit: a rejected frame moves
                # neither the update id nor the price reference
                u = d.u
                last = r.seq
                if not (last < u <= last + max_seq) or r.seq_streak:
                    check_seq(r, u)
                bid = d.b
                ask = d.a
                if not (0.0 < bid <= ask < max_price):
                    book_reject(bid, ask, r.key)
                if ask - bid > (ask + bid) * half_spread:
                    raise RejectedMessage("wide_spread", r.key)
                mid = (bid + ask) * 0.5
                if not (r.lo < bid and ask < r.hi) or r.streak:
                    check_price(r, mid, now, bid, ask)
                r.seq = u
                r.seq_at = now
                r.ref = mid
                r.ref_at = now
                r.lo = mid / up
                r.hi = mid * up
                sink(Quote(ex, r.asset, r.instrument, bid, ask, d.E / 1000.0, now, r.quote, market))
            elif cls is agg_cls:
                price = d.p
                qty = d.q
                if not (0.0 < price < max_price and 0.0 < qty < 1e15):
                    positive(price, "price")
                    positive(qty, "qty")
                if inverse:
                    qty = qty * r.scale / price
                r.check_jump(price, now)
                sink(Trade(ex, r.asset, r.instrument, price, qty, d.T / 1000.0, now, r.quote))
            else:
                mark(r, d, now)
            r.count += 1

        return handle

    def _mark_fast(self, r: Route, d: _Mark, now: float) -> None:
        ts = d.E / 1000.0
        mark = d.p
        if not 0.0 < mark < MAX_PRICE:
            positive(mark, "mark")
        check_price(r, mark, now)
        index = d.i or None
        if index is not None:
            if not 0.0 < index < MAX_PRICE:
                positive(index, "index")
            if not (mark < index * MAX_JUMP_FACTOR and index < mark * MAX_JUMP_FACTOR):
                raise RejectedMessage("absurd", "index")
        funding = None
        if self.want_funding and d.r is not None:
            rate = d.r
            if not -MAX_FUNDING_RATE < rate < MAX_FUNDING_RATE:
                raise RejectedMessage("absurd", "funding")
            funding = Funding(self._ex, r.asset, r.instrument, rate, self.funding_h.get(r.instrument, 8.0),
                              d.T / 1000.0 if d.T else None, ts, now)
        accept_price(r, mark, now)
        if self.want_mark:
            self._sink(MarkPrice(self._ex, r.asset, r.instrument, mark, index, ts, now, r.quote))
        if funding is not None:
            self._sink(funding)

    def _make_handler(self) -> Callable[[bytes], None]:
        """The generic path as a closure: orjson, then the decoders by stream; classifies every reject."""
        loads = orjson.loads
        json_error = orjson.JSONDecodeError
        by_stream = self.by_stream
        clock = self._clock
        sink = self._sink
        ex = self._ex
        slow = self._slow
        control = self._control
        book_fields = self._book_fields
        max_price = MAX_PRICE

        def handle(raw: bytes) -> None:
            now = clock()
            try:
                msg = loads(raw)
            except json_error:
                raise RejectedMessage("malformed") from None
            try:
                r = by_stream[msg["stream"]]
                d = msg["data"]
            except (KeyError, TypeError):
                control(msg)
                return
            if r.kind:  # everything but bookTicker
                slow[r.kind](r, d, now)
                r.count += 1
                return
            try:
                bid = float(d["b"])
                ask = float(d["a"])
                ts = d["E"] / 1000.0
            except (KeyError, TypeError, ValueError):
                bid, ask, ts = book_fields(d)
            u = d.get("u")
            if type(u) is int:
                check_seq(r, u)
            if not (0.0 < bid <= ask < max_price):
                book_reject(bid, ask, r.key)
            if ask - bid > (ask + bid) * (MAX_SPREAD_RATIO * 0.5):
                raise RejectedMessage("wide_spread", r.key)
            check_price(r, (bid + ask) * 0.5, now, bid, ask)
            if type(u) is int:
                r.seq = u
                r.seq_at = now
            accept_price(r, (bid + ask) * 0.5, now)
            sink(Quote(ex, r.asset, r.instrument, bid, ask, ts, now, r.quote, self.market))
            r.count += 1

        return handle

    # -- slow paths ---------------------------------------------------------------------------------------
    def _control(self, msg: Any) -> None:
        if isinstance(msg, dict) and "id" in msg:
            key = msg["id"]
            err = msg.get("error")
            if err is None and "code" in msg:
                err = msg
            if not isinstance(key, int | str) or (err is not None and not isinstance(err, dict)):
                raise RejectedMessage("malformed", "control frame")
            if err is not None:
                detail = f"{venue_text(err.get('code'), 20)} {venue_text(err.get('msg'))}"
                self.resolve(key, f"subscribe refused: {detail}")
            else:
                self.resolve(key)
            return
        raise RejectedMessage("unexpected")

    @staticmethod
    def _book_fields(d: Any) -> tuple[float, float, float]:
        if not isinstance(d, dict):
            raise RejectedMessage("malformed", "data")
        ts = d.get("E", d.get("T"))
        if ts is None:
            raise RejectedMessage("missing_field", "E")
        return num(d, "b"), num(d, "a"), ms(ts)

    def _mark(self, r: Route, d: Any, now: float) -> None:
        ts = ms(_field(d, "E"))
        mark = positive(num(d, "p"), "mark")
        check_price(r, mark, now)
        idx = d.get("i")
        index = None
        if idx not in (None, "", "0"):
            index = positive(num(d, "i"), "index")
            if not (mark < index * MAX_JUMP_FACTOR and index < mark * MAX_JUMP_FACTOR):
                raise RejectedMessage("absurd", "index")
        funding = None
        if self.want_funding and d.get("r") not in (None, ""):
            rate = num(d, "r")
            if not -MAX_FUNDING_RATE < rate < MAX_FUNDING_RATE:
                raise RejectedMessage("absurd", "funding")
            nxt = d.get("T")
            funding = Funding(self._ex, r.asset, r.instrument, rate, self.funding_h.get(r.instrument, 8.0),
                              ms(nxt) if nxt else None, ts, now)
        accept_price(r, mark, now)
        if self.want_mark:
            self._sink(MarkPrice(self._ex, r.asset, r.instrument, mark, index, ts, now, r.quote))
        if funding is not None:
            self._sink(funding)

    def _trade(self, r: Route, d: Any, now: float) -> None:
        price = positive(num(d, "p"), "price")
        qty = positive(num(d, "q"), "qty")
        if self.inverse:
            qty = qty * r.scale / price  # contracts of ``scale`` USD at this trade's price
        ts = ms(_field(d, "T"))
        r.check_jump(price, now)
        self._sink(Trade(self._ex, r.asset, r.instrument, price, qty, ts, now, r.quote))

    def _kline(self, r: Route, d: Any, now: float) -> None:
        k = _field(d, "k")
        tf = TIMEFRAMES.get(_field(k, "i"))
        if tf is None:
            raise RejectedMessage("unexpected", "interval")
        o, h, lo, c = (positive(num(k, f), f) for f in ("o", "h", "l", "c"))
        if not lo <= min(o, c) <= max(o, c) <= h:
            raise RejectedMessage("absurd", "ohlc")
        vol = num(k, "q" if self.inverse else "v")  # COIN-M: ``v`` is contracts, ``q`` the base volume
        if not 0.0 <= vol < 1e15:
            raise RejectedMessage("absurd", "volume")
        start, ts = ms(_field(k, "t")), ms(_field(d, "E"))
        r.check_jump(c, now)
        self._sink(Candle(self._ex, r.asset, r.instrument, tf, start, o, h, lo, c, vol, bool(k.get("x")), ts,
                          now))

    def _composite(self, r: Route, d: Any, now: float) -> None:
        price = positive(num(d, "p"), "price")
        comps = []
        for c in _field(d, "c"):
            comps.append((str(_field(c, "b")), num(c, "w"), num(c, "W")))
        ts = ms(_field(d, "E"))
        r.check_jump(price, now)
        self._sink(CompositeIndex(self._ex, str(_field(d, "s")), price, tuple(comps), ts, now))


class BinanceSpotProtocol(BinanceProtocol):
    """Binance spot ``<s>@bookTicker`` on a combined-stream connection of ``stream.binance.com``: quotes of
    market ``spot`` stamped with the receive time (the spot payload has no event time). Control replies and
    anything the typed schema does not fit go to the generic path, as on the futures streams."""

    def __init__(self, ctx: FeedContext, url: str, routes: list[Route]) -> None:
        super().__init__(ctx, url, routes, {}, market=Market.SPOT)
        self.want_mark = self.want_funding = False

    def _book_fields(self, d: Any) -> tuple[float, float, float]:  # type: ignore[override]
        if not isinstance(d, dict):
            raise RejectedMessage("malformed", "data")
        return num(d, "b"), num(d, "a"), self._clock()

    def _make_fast_handler(self, generic: Callable[[bytes], None]) -> Callable[[bytes], None]:
        fast = _SPOT_FAST.decode
        malformed = (msgspec.DecodeError, RecursionError)
        by_stream = self.by_stream
        clock = self._clock
        sink = self._sink
        ex = self._ex
        spot = Market.SPOT

        def handle(raw: bytes) -> None:
            now = clock()
            try:
                m = fast(raw)
            except malformed:
                generic(raw)
                return
            r = by_stream.get(m.stream)
            if r is None:
                generic(raw)
                return
            d = m.data
            check_seq(r, d.u)
            check_quote(r, d.b, d.a, now)
            accept_seq(r, d.u, now)
            accept_price(r, (d.b + d.a) * 0.5, now)
            sink(Quote(ex, r.asset, r.instrument, d.b, d.a, now, now, r.quote, spot))
            r.count += 1

        return handle


def _field(d: Any, key: str) -> Any:
    try:
        return d[key]
    except (KeyError, TypeError, IndexError):
        raise RejectedMessage("missing_field", key) from None


class BinanceUsdmConnector(VenueConnector):
    """Binance USDⓈ-M: see the module docstring."""

    default_ws = "wss://fstream.binance.com"
    default_rest = "https://fapi.binance.com"
    spot_supported = True
    default_spot_ws = "wss://stream.binance.com:9443"
    default_spot_rest = "https://api.binance.com"
    api = "/fapi/v1"
    # websocket path of the bookTicker connections and of the others (fstream routes them apart)
    ws_paths: ClassVar[dict[str, str]] = {"public": "/public/stream", "market": "/market/stream"}
    inverse = False

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.funding_h: dict[str, float] = {}
        self.dated: list[Instrument] = []  # quarterly futures quoted for the term structure (``futures``)

    def parse_instruments(self, info: dict[str, Any]) -> list[Instrument]:
        return binance_usdm(info, self.source.symbols, self.source.quote)

    async def load_instruments(self, http: httpx.AsyncClient) -> list[Instrument]:
        info = await get_json(http, f"{self.api}/exchangeInfo")
        if not isinstance(info, dict):
            raise FeedError("exchangeInfo: unexpected body")
        found = self.parse_instruments(info)
        if "futures" in self.channels:
            self.dated = binance_dated(info, self.source.symbols, found[0].quote if found else self.source.quote)
        if "funding" in self.channels:
            try:
                self.funding_h = binance_funding_intervals(await get_json(http, f"{self.api}/fundingInfo"))
            except FeedError as exc:
                self.ctx.log.info("%s: funding intervals unavailable (%s); assuming 8 h", self.name, exc)
        return found

    async def load_spot(self, http: httpx.AsyncClient) -> list[Instrument]:
        info = await get_json(http, "/api/v3/exchangeInfo", {"symbolStatus": "TRADING"})
        if not isinstance(info, dict):
            raise FeedError("spot exchangeInfo: unexpected body")
        return binance_spot(info, self.source.symbols, self.spot_quote)

    def build_spot(self) -> list[WsConnection]:
        routes = [Route(f"{i.instrument.lower()}@bookTicker", "spot", BOOK, i.asset, i.instrument, i.quote,
                        cadence_s=0.1) for i in self.spot]
        return [WsConnection(self.ctx, BinanceSpotProtocol(self.ctx, f"{self.spot_ws_base}/stream", group),
                             f"spot-{k}")
                for k, (_, group) in enumerate(group_routes(routes, self.source.max_streams_per_connection))]

    def routes(self) -> tuple[list[Route], list[Route]]:
        """(public routes, market routes) for the configured channels."""
        public: list[Route] = []
        market: list[Route] = []
        ch = self.channels
        for inst in self.instruments:
            s = inst.instrument.lower()
            args = (inst.asset, inst.instrument, inst.quote)
            if "quotes" in ch:
                public.append(Route(f"{s}@bookTicker", "bookTicker", BOOK, *args, cadence_s=0.1))
            if "mark" in ch or "funding" in ch:
                market.append(Route(f"{s}@markPrice@1s", "markPrice", MARK, *args, cadence_s=1.0))
            if "trades" in ch:
                market.append(Route(f"{s}@aggTrade", "aggTrade", TRADE, *args, cadence_s=6.0, critical=False,
                                    scale=inst.ct_val))
            if "candles" in ch:
                market.append(Route(f"{s}@kline_1m", "kline", KLINE, *args, cadence_s=2.0, critical=False))
            if "composite_index" in ch and inst.composite:
                market.append(Route(f"{s}@compositeIndex", "compositeIndex", COMPOSITE, *args, cadence_s=1.0))
        return public, market

    def build(self, http: httpx.AsyncClient) -> None:
        """Connections per channel (``group_routes``): bookTicker on ``/public``; markPrice, aggTrade, kline
        and compositeIndex each on ``/market`` connections of their own, so that one stalled stream family
        (markPrice@1s, say) recycles nothing it does not share a fault with (aggTrade keeps flowing)."""
        public, market = self.routes()
        # dated futures' bookTicker (``futures``): connections of their own, quotes of market ``future``;
        # a quarterly contract may trade thinly, so its silence recycles nothing
        futures = [Route(f"{i.instrument.lower()}@bookTicker", "futures", BOOK, i.asset, i.instrument, i.quote,
                         cadence_s=1.0, critical=False) for i in self.dated]
        n = self.source.max_streams_per_connection
        for path, routes in (("public", public), ("market", market), ("public", futures)):
            url = f"{self.ws_base}{self.ws_paths[path]}"
            seen: dict[str, int] = {}
            kind = Market.FUTURE if routes is futures else Market.PERP
            for channel, group in group_routes(routes, n):
                k = seen[channel] = seen.get(channel, -1) + 1
                proto = BinanceProtocol(self.ctx, url, group, self.funding_h, inverse=self.inverse, market=kind)
                proto.want_mark = "mark" in self.channels
                proto.want_funding = "funding" in self.channels
                self.connections.append(WsConnection(self.ctx, proto, f"{path}-{channel}-{k}"))
        if "open_interest" in self.channels:
            self.pollers.append(Poller(self.ctx, "openInterest", list(self.instruments),
                                       self.source.open_interest_poll_s,
                                       lambda inst: self._poll_oi(http, inst)))

    async def _poll_oi(self, http: httpx.AsyncClient, inst: Instrument) -> None:
        body = await get_json(http, f"{self.api}/openInterest", {"symbol": inst.instrument})
        now = self.ctx.clock()
        oi = num(body, "openInterest") if isinstance(body, dict) else None
        if oi is None:
            raise RejectedMessage("malformed", "openInterest")
        if not 0.0 <= oi < 1e15:
            raise RejectedMessage("absurd", "openInterest")
        ts = ms(body["time"]) if "time" in body else now
        if not self.inverse:
            self.ctx.sink(OpenInterest(self.name, inst.asset, inst.instrument, oi, oi, None, ts, now))
            return
        # COIN-M counts contracts of ``ct_val`` USD: the USD figure is exact, the coins are at the price
        usd = oi * inst.ct_val
        price = self._last_price(inst.instrument) or await self._mark(http, inst)
        self.ctx.sink(OpenInterest(self.name, inst.asset, inst.instrument, oi, usd / price, usd, ts, now))

    def _last_price(self, instrument: str) -> float | None:
        """The latest price a connection accepted for ``instrument`` (mark or mid), None before the first."""
        best = (0.0, 0.0)
        for conn in self.connections:
            for r in conn.proto.routes:
                if r.instrument == instrument and r.ref > 0.0 and r.ref_at > best[0]:
                    best = (r.ref_at, r.ref)
        return best[1] or None

    async def _mark(self, http: httpx.AsyncClient, inst: Instrument) -> float:
        body = await get_json(http, f"{self.api}/premiumIndex", {"symbol": inst.instrument})
        row = body[0] if isinstance(body, list) and body else body
        if not isinstance(row, dict):
            raise RejectedMessage("malformed", "premiumIndex")
        return positive(num(row, "markPrice"), "markPrice")


class BinanceCoinmConnector(BinanceUsdmConnector):
    """Binance COIN-M perpetuals (``BTCUSD_PERP``): coin-margined contracts of ``contractSize`` USD (100 for
    BTC, 10 for the others), quoted in USD. The source's ``quote`` is USD whatever the config says: COIN-M
    lists nothing else. ``dstream`` serves every stream on ``/stream``; REST is ``/dapi/v1``."""

    default_ws = "wss://dstream.binance.com"
    default_rest = "https://dapi.binance.com"
    api = "/dapi/v1"
    ws_paths: ClassVar[dict[str, str]] = {"public": "/stream", "market": "/stream"}
    inverse = True

    def parse_instruments(self, info: dict[str, Any]) -> list[Instrument]:
        return binance_coinm(info, self.source.symbols)

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
import orjson

from hedgewatch.connectors.base import FeedContext, Route, ms, num
from hedgewatch.connectors.binance.decode import BOOK, COMPOSITE, KLINE, MARK, TRADE, StreamDecoder
from hedgewatch.connectors.binance.instruments import (
    binance_coinm,
    binance_dated,
    binance_funding_intervals,
    binance_spot,
    binance_usdm,
)
from hedgewatch.connectors.instruments import Instrument, get_json
from hedgewatch.connectors.sanity import positive, venue_text
from hedgewatch.connectors.venue import Poller, VenueConnector
from hedgewatch.connectors.wsconn import WsConnection, WsProtocol, group_routes
from hedgewatch.service.errors import FeedError, RejectedMessage
from hedgewatch.service.events import Market, OpenInterest


class BinanceProtocol(WsProtocol):
    """Combined-stream protocol of one Binance connection: subscribe requests and their replies; every
    stream frame is decoded by its ``StreamDecoder`` (``binance.decode``), whose stream lookup is by the
    stream name precomputed at subscribe time."""

    send_gap_s = 0.25   # 4 client frames/s at most: the venue allows 10 incoming messages/s a connection
    subscribe_batch = 50

    def __init__(self, ctx: FeedContext, url: str, routes: list[Route], funding_h: dict[str, float],
                 inverse: bool = False, market: str = Market.PERP, spot: bool = False) -> None:
        super().__init__(ctx, url, routes)
        self.decoder = StreamDecoder(ctx.exchange, ctx.sink, ctx.clock, routes, self._control,
                                     funding_h=funding_h, inverse=inverse, market=market, spot=spot)

    @property
    def want_mark(self) -> bool:
        return self.decoder.want_mark

    @want_mark.setter
    def want_mark(self, on: bool) -> None:
        self.decoder.want_mark = on

    @property
    def want_funding(self) -> bool:
        return self.decoder.want_funding

    @want_funding.setter
    def want_funding(self, on: bool) -> None:
        self.decoder.want_funding = on

    def subscribe_frame(self, req_id: int, routes: list[Route], unsubscribe: bool = False) -> tuple[str, Any]:
        method = "UNSUBSCRIBE" if unsubscribe else "SUBSCRIBE"
        text = orjson.dumps({"method": method, "params": [r.key for r in routes], "id": req_id}).decode()
        return text, req_id

    def handle(self, raw: bytes) -> None:
        self.decoder.frame(raw)

    def receiver(self) -> Callable[[bytes], None]:
        return self.decoder.frame  # the receive loop calls the decoder with nothing in between

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


class BinanceSpotProtocol(BinanceProtocol):
    """Binance spot ``<s>@bookTicker`` on a combined-stream connection of ``stream.binance.com``: quotes of
    market ``spot`` stamped with the receive time (the spot payload has no event time)."""

    def __init__(self, ctx: FeedContext, url: str, routes: list[Route]) -> None:
        super().__init__(ctx, url, routes, {}, market=Market.SPOT, spot=True)
        self.want_mark = self.want_funding = False


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

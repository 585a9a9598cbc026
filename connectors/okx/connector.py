"""Native OKX v5 connector: linear USDT/USDC swaps, and with quote ``USD`` the coin-margined (inverse)
``<ASSET>-USD-SWAP`` (``ctVal`` USD a contract, settled in the coin; sizes converted at the trade price).

- Instruments: ``/api/v5/public/instruments?instType=SWAP``: the live linear ``<ASSET>-<QUOTE>-SWAP`` with its
  ``ctVal`` (base units per contract), applied so trade and open-interest sizes are in base units.
- Websocket ``/ws/v5/public``: ``tickers`` (best bid/ask only: that channel has no mark, index, funding or
  open interest), ``mark-price``, ``index-tickers`` (index ids ``<ASSET>-<QUOTE>``), ``funding-rate``
  (interval from ``nextFundingTime - fundingTime``), ``open-interest`` (``oi`` contracts, ``oiCcy`` base,
  ``oiUsd``), ``trades``; ``/ws/v5/business``: ``candle1m``. Every subscribed argument is acked one by one
  (``event: subscribe``); an ``event: error`` fails the pending request. Text ``ping`` every 20 s (the venue
  drops a connection idle for 30 s) and its ``pong`` expected.
- The venue's mark and index come on two channels; each update emits a ``MarkPrice`` carrying the latest of
  both once the mark is known.
- Spot (``market: spot``): the live spot pair of each asset (``instruments?instType=SPOT``, ``BTC-USDT``) on
  ``tickers`` of ``/ws/v5/public`` (``instType`` SPOT rows: best bid and ask, sizes in base units), on
  connections of their own, as quotes of market ``spot``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import orjson

from hedgewatch.connectors.base import Route, ms, ms_of, num
from hedgewatch.connectors.instruments import Instrument, get_json
from hedgewatch.connectors.okx.decode import (
    CANDLE,
    FUNDING,
    INDEX,
    MARK,
    OI,
    TICKERS,
    TICKERS_DECODER,
    TRADES,
    decode_open_interest,
)
from hedgewatch.connectors.okx.instruments import okx_futures, okx_spot, okx_swaps
from hedgewatch.connectors.sanity import MAX_PRICE, accept_price, check_quote, positive, venue_text
from hedgewatch.connectors.venue import VenueConnector
from hedgewatch.connectors.wsconn import WsConnection, WsProtocol, group_routes
from hedgewatch.service.errors import FeedError, ProtocolError, RejectedMessage
from hedgewatch.service.events import Candle, Funding, Market, MarkPrice, Quote, Trade

_EMPTY: dict[str, Route] = {}


class OkxProtocol(WsProtocol):
    """One OKX public or business connection."""

    keepalive_s = 20.0
    ping_frame = "ping"
    send_gap_s = 0.1
    subscribe_batch = 20

    def __init__(self, ctx: Any, url: str, routes: list[Route]) -> None:
        super().__init__(ctx, url, routes)
        self.by_arg: dict[str, dict[str, Route]] = {}
        for r in routes:
            self.by_arg.setdefault(r.topic["channel"], {})[r.topic["instId"]] = r
        self.marks: dict[str, float] = {}     # asset -> latest mark, shared by the venue's connections
        self.indexes: dict[str, float] = {}   # asset -> latest index, likewise
        self.inverse: frozenset[str] = frozenset()  # coin-margined instruments (sizes in USD contracts)
        self.market: str = Market.PERP  # what its quotes are: swaps, or (``future``) dated futures
        self._ex = ctx.exchange
        self._sink = ctx.sink
        self._clock = ctx.clock
        self._decode = {TICKERS: self._tickers, MARK: self._mark, INDEX: self._index, FUNDING: self._funding,
                        OI: self._oi, TRADES: self._trades, CANDLE: self._candle}

    def subscribe_frame(self, req_id: int, routes: list[Route], unsubscribe: bool = False) -> tuple[str, Any]:
        op = "unsubscribe" if unsubscribe else "subscribe"
        return orjson.dumps({"op": op, "args": [r.topic for r in routes]}).decode(), None

    async def subscribe(self, routes: list[Route], unsubscribe: bool = False) -> None:
        """OKX acks each argument separately: wait for all of a batch's acks."""
        op = "unsubscribe" if unsubscribe else "subscribe"
        for i in range(0, len(routes), self.subscribe_batch):
            batch = routes[i:i + self.subscribe_batch]
            futs = [self.expect((op, r.topic["channel"], r.topic["instId"])) for r in batch]
            text, _ = self.subscribe_frame(0, batch, unsubscribe)
            await self.send(text)
            try:
                async with asyncio.timeout(self.ctx.tuning.ack_timeout_s):
                    await asyncio.gather(*futs)
            except TimeoutError:
                raise ProtocolError(f"no reply to {op}") from None

    def handle(self, raw: bytes) -> None:
        """Hot path for ``tickers``: a typed msgspec decode straight into floats; any other channel, control
        message or odd frame goes to ``handle_generic`` (orjson, per-channel decoders, reject reasons)."""
        now = self._clock()
        try:
            m = TICKERS_DECODER.decode(raw)
        except (msgspec.DecodeError, RecursionError):  # msgspec recurses to skip deeply nested fields
            self.handle_generic(raw, now)
            return
        arg = m.arg
        r = self.by_arg.get(arg.channel, _EMPTY).get(arg.instId)
        if r is None or r.kind != TICKERS:
            self.handle_generic(raw, now)
            return
        rows = m.data
        for row in rows:  # every row is checked before any is emitted or moves the reference
            check_quote(r, row.bidPx, row.askPx, now)
        if not rows:
            return
        sink = self._sink
        for row in rows:
            sink(Quote(self._ex, r.asset, r.instrument, row.bidPx, row.askPx, row.ts / 1000.0, now, r.quote,
                       self.market))
        last = rows[-1]
        accept_price(r, (last.bidPx + last.askPx) * 0.5, now)
        r.count += 1

    def handle_generic(self, raw: bytes, now: float) -> None:
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if raw == b"pong":
                self.pong()
                return
            raise RejectedMessage("malformed") from None
        try:
            arg = msg["arg"]
            r = self.by_arg[arg["channel"]][arg["instId"]]
            rows = msg["data"]
        except (KeyError, TypeError):
            self._control(msg)
            return
        if not isinstance(rows, list) or not all(isinstance(d, dict | list) for d in rows):
            raise RejectedMessage("malformed", "data")
        decode = self._decode[r.kind]
        for d in rows:
            decode(r, d, now)
        r.count += 1

    def _control(self, msg: Any) -> None:
        if not isinstance(msg, dict) or "event" not in msg:
            raise RejectedMessage("unexpected")
        event = msg["event"]
        arg = msg.get("arg") or {}
        if not isinstance(event, str) or not isinstance(arg, dict):
            raise RejectedMessage("malformed", "control frame")
        if event in ("subscribe", "unsubscribe"):
            channel, inst = arg.get("channel"), arg.get("instId")
            if isinstance(channel, str) and isinstance(inst, str):
                self.resolve((event, channel, inst))
            else:
                raise RejectedMessage("malformed", "control frame")
        elif event == "error":
            # the venue's text is escaped and cut, and the log key is fixed: error frames can neither forge
            # log lines nor grow the burst log's key set
            detail = f"refused: {venue_text(msg.get('code'), 20)} {venue_text(msg.get('msg'))}"
            pending = list(self._acks)
            for key in pending:
                self.resolve(key, detail)  # the request failed: the connection is retried with backoff
            if not pending:  # an error nobody waits for: say so, once per burst
                self.ctx.burst.event("venue-error", f"{self._ex}: venue error {detail}")
        elif event not in ("notice", "channel-conn-count"):
            raise RejectedMessage("unexpected", "control frame")

    # -- decoders: one data row each ------------------------------------------------------------------------
    def _tickers(self, r: Route, d: dict[str, Any], now: float) -> None:
        bid = positive(num(d, "bidPx"), "bid")
        ask = positive(num(d, "askPx"), "ask")
        check_quote(r, bid, ask, now)
        ts = ms_of(d, "ts")
        accept_price(r, (bid + ask) * 0.5, now)
        self._sink(Quote(self._ex, r.asset, r.instrument, bid, ask, ts, now, r.quote, self.market))

    def _mark(self, r: Route, d: dict[str, Any], now: float) -> None:
        mark = positive(num(d, "markPx"), "mark")
        ts = ms_of(d, "ts")
        r.check_jump(mark, now)
        self.marks[r.asset] = mark
        index = self.indexes.get(r.asset)
        self._sink(MarkPrice(self._ex, r.asset, r.instrument, mark, index, ts, now, r.quote))

    def _index(self, r: Route, d: dict[str, Any], now: float) -> None:
        index = positive(num(d, "idxPx"), "index")
        ts = ms_of(d, "ts")
        r.check_jump(index, now)
        self.indexes[r.asset] = index
        mark = self.marks.get(r.asset)
        if mark is not None:
            self._sink(MarkPrice(self._ex, r.asset, r.instrument, mark, index, ts, now, r.quote))

    def _funding(self, r: Route, d: dict[str, Any], now: float) -> None:
        rate = num(d, "fundingRate")
        if not -1.0 < rate < 1.0:
            raise RejectedMessage("absurd", "funding")
        this, nxt = ms(d.get("fundingTime")), d.get("nextFundingTime")
        interval = (ms(nxt) - this) / 3600.0 if nxt else 8.0
        if not 0.0 < interval <= 24.0:
            interval = 8.0
        ts = ms(d["ts"]) if d.get("ts") else now
        self._sink(Funding(self._ex, r.asset, r.instrument, rate, interval, this, ts, now))

    def _oi(self, r: Route, d: dict[str, Any], now: float) -> None:
        self._sink(decode_open_interest(self._ex, r, d, now))

    def _trades(self, r: Route, d: dict[str, Any], now: float) -> None:
        price = positive(num(d, "px"), "price")
        qty = positive(num(d, "sz"), "qty") * r.scale
        if r.instrument in self.inverse:
            qty /= price  # a coin-margined contract is ``ctVal`` USD: base units at this trade's price
        ts = ms_of(d, "ts")
        r.check_jump(price, now)
        self._sink(Trade(self._ex, r.asset, r.instrument, price, qty, ts, now, r.quote))

    def _candle(self, r: Route, row: Any, now: float) -> None:
        if not isinstance(row, list) or len(row) < 9:
            raise RejectedMessage("malformed", "candle")
        try:
            o, h, lo, c = (float(x) for x in row[1:5])
            vol = float(row[6]) if row[6] not in ("", None) else float(row[5]) * r.scale
            start = ms(row[0])
        except (TypeError, ValueError):
            raise RejectedMessage("non_numeric", "candle") from None
        if not (0.0 < lo <= min(o, c) <= max(o, c) <= h < MAX_PRICE and 0.0 <= vol < 1e15):
            raise RejectedMessage("absurd", "ohlcv")
        r.check_jump(c, now)
        self._sink(Candle(self._ex, r.asset, r.instrument, 60, start, o, h, lo, c, vol, row[8] == "1", start,
                          now))

class OkxConnector(VenueConnector):
    """OKX v5 linear swaps: see the module docstring."""

    default_ws = "wss://ws.okx.com:8443"
    default_rest = "https://www.okx.com"
    spot_supported = True

    async def load_spot(self, http: httpx.AsyncClient) -> list[Instrument]:
        body = await get_json(http, "/api/v5/public/instruments", {"instType": "SPOT"})
        if not isinstance(body, dict):
            raise FeedError("instruments: unexpected body")
        return okx_spot(body, self.source.symbols, self.spot_quote)

    def build_spot(self) -> list[WsConnection]:
        routes = [Route(f"spot:{i.instrument}", "spot", TICKERS, i.asset, i.instrument, i.quote, 0.1,
                        topic={"channel": "tickers", "instId": i.instrument}) for i in self.spot]
        out = []
        for k, (_, group) in enumerate(group_routes(routes, self.source.max_streams_per_connection)):
            proto = OkxProtocol(self.ctx, f"{self.spot_ws_base}/ws/v5/public", group)
            proto.market = Market.SPOT
            out.append(WsConnection(self.ctx, proto, f"spot-{k}"))
        return out

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.dated: list[Instrument] = []  # quarterly futures quoted for the term structure (``futures``)

    async def load_instruments(self, http: httpx.AsyncClient) -> list[Instrument]:
        body = await get_json(http, "/api/v5/public/instruments", {"instType": "SWAP"})
        if not isinstance(body, dict):
            raise FeedError("instruments: unexpected body")
        if "futures" in self.channels:
            dated = await get_json(http, "/api/v5/public/instruments", {"instType": "FUTURES"})
            if not isinstance(dated, dict):
                raise FeedError("instruments: unexpected body")
            self.dated = okx_futures(dated, self.source.symbols, self.source.quote)
        return okx_swaps(body, self.source.symbols, self.source.quote)

    def routes(self) -> tuple[list[Route], list[Route]]:
        public: list[Route] = []
        business: list[Route] = []
        ch = self.channels

        def add(out: list[Route], channel: str, inst_id: str, kind: int, inst: Instrument, cadence: float,
                critical: bool = True) -> None:
            out.append(Route(f"{channel}:{inst_id}", channel, kind, inst.asset, inst.instrument, inst.quote,
                             cadence, topic={"channel": channel, "instId": inst_id}, scale=inst.ct_val,
                             critical=critical))

        for inst in self.instruments:
            swap, index_id = inst.instrument, f"{inst.asset}-{inst.quote}"
            if "quotes" in ch:
                add(public, "tickers", swap, TICKERS, inst, 0.1)
            if "mark" in ch:
                add(public, "mark-price", swap, MARK, inst, 2.0)
                add(public, "index-tickers", index_id, INDEX, inst, 2.0)
            if "funding" in ch:
                add(public, "funding-rate", swap, FUNDING, inst, 60.0, critical=False)
            if "open_interest" in ch:
                add(public, "open-interest", swap, OI, inst, 3.0)
            if "trades" in ch:
                add(public, "trades", swap, TRADES, inst, 6.0, critical=False)
            if "candles" in ch:
                add(business, "candle1m", swap, CANDLE, inst, 12.0, critical=False)
        for inst in self.dated:  # quarterly futures' tickers (``futures``): quiet contracts recycle nothing
            public.append(Route(f"futures:{inst.instrument}", "futures", TICKERS, inst.asset, inst.instrument,
                                inst.quote, 1.0, topic={"channel": "tickers", "instId": inst.instrument},
                                scale=inst.ct_val, critical=False))
        return public, business

    def build(self, http: httpx.AsyncClient) -> None:
        """Connections per channel (``group_routes``): tickers, mark-price, index-tickers, funding-rate,
        open-interest and trades each on ``/ws/v5/public`` connections of their own, candles on
        ``/ws/v5/business``, so a stalled channel recycles nothing else."""
        n = self.source.max_streams_per_connection
        marks: dict[str, float] = {}
        indexes: dict[str, float] = {}
        for path, routes in zip(("public", "business"), self.routes(), strict=True):
            seen: dict[str, int] = {}
            for channel, group in group_routes(routes, n):
                k = seen[channel] = seen.get(channel, -1) + 1
                proto = OkxProtocol(self.ctx, f"{self.ws_base}/ws/v5/{path}", group)
                proto.inverse = frozenset(i.instrument for i in self.instruments if i.inverse)
                proto.market = Market.FUTURE if channel == "futures" else Market.PERP
                proto.marks, proto.indexes = marks, indexes  # mark and index sit on two connections
                self.connections.append(WsConnection(self.ctx, proto, f"{path}-{channel}-{k}"))

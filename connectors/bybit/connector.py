"""Native Bybit v5 connector: linear perpetuals, and with quote ``USD`` the coin-margined (inverse) ones
(``BTCUSD``: contracts of 1 USD settled in the coin; ``category=inverse``, websocket ``/v5/public/inverse``).

- Instruments: ``/v5/market/instruments-info?category=linear`` (paged), the Trading LinearPerpetual of each
  asset with the configured quote (with its funding interval).
- Websocket ``/v5/public/linear``: ``tickers.{symbol}`` (a snapshot, then deltas that carry only the changed
  fields: merged into per-symbol state, so each delta emits only the events whose inputs changed: Quote from
  bid1/ask1, MarkPrice from markPrice/indexPrice, Funding from fundingRate/fundingIntervalHour/
  nextFundingTime, OpenInterest from openInterest/openInterestValue), ``publicTrade.{symbol}``,
  ``kline.1.{symbol}``, each topic family on connections of its own. Subscribe acks (``success``) are checked
  per request; ``{"op":"ping"}`` every 20 s and its pong expected. The cross sequence ``cs`` of ticker frames
  must not go backwards.
- Inverse: the same topics and shapes; trade sizes are USD contracts (converted to coins at the trade
  price), ``tickers`` ``openInterest`` is USD and ``openInterestValue`` the coins, kline ``volume`` is USD
  contracts and ``turnover`` the base volume (used).
- Spot (``market: spot``): the Trading spot pair of each asset (``instruments-info?category=spot``) on
  ``/v5/public/spot``, ``orderbook.1.{symbol}``: the top of the spot book (the spot ``tickers`` carry a last
  price but no bid or ask). Level 1 is pushed as snapshots (again every 3 s when the book did not change,
  with the same update id ``u``; ``u`` = 1 after a venue restart starts the numbering afresh); a delta, should
  one come, replaces the side it names and a size of 0 empties it.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import orjson

from hedgewatch.connectors.base import Route, ms
from hedgewatch.connectors.bybit.decode import (
    BOOK,
    KLINE,
    KLINE_S,
    QUOTE_CONFIRM_S,
    TICKERS,
    TICKERS_DECODER,
    TRADES,
    Tick,
    TickerState,
    book_top,
    check_derivatives,
    check_mark,
    tick_from_dict,
)
from hedgewatch.connectors.bybit.instruments import bybit_category, bybit_perpetuals, bybit_spot
from hedgewatch.connectors.instruments import Instrument, get_json
from hedgewatch.connectors.sanity import (
    MAX_PRICE,
    accept_price,
    accept_seq,
    check_price,
    check_quote,
    check_seq,
    positive,
    venue_text,
)
from hedgewatch.connectors.venue import VenueConnector
from hedgewatch.connectors.wsconn import WsConnection, WsProtocol, group_routes
from hedgewatch.service.errors import FeedError, RejectedMessage
from hedgewatch.service.events import Candle, Funding, Market, MarkPrice, OpenInterest, Quote, Trade


class BybitProtocol(WsProtocol):
    """One Bybit public linear connection."""

    keepalive_s = 20.0
    ping_frame = '{"op":"ping"}'
    send_gap_s = 0.05
    subscribe_batch = 10

    def __init__(self, ctx: Any, url: str, routes: list[Route], funding_h: dict[str, float]) -> None:
        super().__init__(ctx, url, routes)
        self.by_topic = {r.key: r for r in routes}
        self.tickers: dict[str, TickerState] = {}
        self.funding_h = funding_h
        self.inverse = False  # coin-margined: sizes in USD contracts, open interest in USD
        self.want = frozenset()
        self._ex = ctx.exchange
        self._sink = ctx.sink
        self._clock = ctx.clock

    def on_connect(self) -> None:
        self.tickers.clear()  # a new connection starts with a fresh snapshot per symbol

    def subscribe_frame(self, req_id: int, routes: list[Route], unsubscribe: bool = False) -> tuple[str, Any]:
        op = "unsubscribe" if unsubscribe else "subscribe"
        text = orjson.dumps({"op": op, "req_id": str(req_id), "args": [r.key for r in routes]}).decode()
        return text, str(req_id)

    def handle(self, raw: bytes) -> None:
        """Hot path: a typed msgspec decode (numeric strings straight to floats, undeclared fields skipped);
        anything the schema does not fit goes to ``handle_generic``, which classifies rejects."""
        now = self._clock()
        try:
            m = TICKERS_DECODER.decode(raw)
        except (msgspec.DecodeError, RecursionError):  # msgspec recurses to skip deeply nested fields
            self.handle_generic(raw, now)
            return
        r = self.by_topic.get(m.topic)
        if r is None:
            self.handle_generic(raw, now)
            return
        d = m.data
        if r.kind == TICKERS and d.__class__ is Tick:
            self._apply(r, m.type, m.ts / 1000.0, m.cs, d, now)
        elif r.kind == TRADES and d.__class__ is list:
            self._trades(r, {"data": d}, now)
        elif r.kind == KLINE and d.__class__ is list:
            self._kline(r, {"data": d}, now)
        else:
            raise RejectedMessage("malformed", "data")
        r.count += 1

    def _routed(self, raw: bytes) -> tuple[Route, Any] | None:
        """The frame parsed and the route of its topic; None for a control frame (handled here)."""
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RejectedMessage("malformed") from None
        try:
            return self.by_topic[msg["topic"]], msg
        except (KeyError, TypeError):
            self._control(msg)
            return None

    def handle_generic(self, raw: bytes, now: float) -> None:
        routed = self._routed(raw)
        if routed is None:
            return
        r, msg = routed
        kind = r.kind
        if kind == TICKERS:
            self._tickers(r, msg, now)
        elif kind == TRADES:
            self._trades(r, msg, now)
        else:
            self._kline(r, msg, now)
        r.count += 1

    def _control(self, msg: Any) -> None:
        if not isinstance(msg, dict) or "op" not in msg:
            raise RejectedMessage("unexpected")
        op = msg["op"]
        if op in ("ping", "pong"):
            self.pong()
        elif op in ("subscribe", "unsubscribe"):
            # "already subscribed" answers a probe of a quiet topic: the venue confirms the subscription
            ok = msg.get("success") or "already subscribed" in str(msg.get("ret_msg"))
            self.resolve(str(msg.get("req_id")),
                         None if ok else f"{op} refused: {venue_text(msg.get('ret_msg'))}")
        else:
            raise RejectedMessage("unexpected", "control frame")

    def _tickers(self, r: Route, msg: dict[str, Any], now: float) -> None:
        try:
            d = msg["data"]
            ts = ms(msg["ts"])
            typ = msg["type"]
        except (KeyError, TypeError):
            raise RejectedMessage("missing_field", "data/ts/type") from None
        if not isinstance(d, dict):
            raise RejectedMessage("malformed", "data")
        cs = msg.get("cs")
        self._apply(r, typ, ts, cs if isinstance(cs, int) else None, tick_from_dict(d), now)

    def _apply(self, r: Route, typ: str, ts: float, cs: int | None, t: Tick,  # noqa: C901
               now: float) -> None:
        """Validate the fields ``t`` carries, merge them into the symbol's state and emit the events whose
        inputs changed. Every check runs before anything is merged, so a bad delta leaves the state intact.
        One function on purpose: it runs for every tickers frame and each call costs about 0.1 µs."""
        if typ == "snapshot":
            st = TickerState()
        else:
            st = self.tickers.get(r.instrument)  # type: ignore[assignment]
            if st is None:
                raise RejectedMessage("no_snapshot", r.key)
        if cs is not None:
            check_seq(r, cs, strict=False)
        bid, ask = t.bid1Price, t.ask1Price
        quoted = bid is not None or ask is not None
        if quoted:
            if bid is None:
                bid = st.bid
            if ask is None:
                ask = st.ask
            if bid and ask:
                check_quote(r, bid, ask, now)  # the merged book, both sides, spread and mid
            else:
                if bid is not None:
                    positive(bid, "bid")
                if ask is not None:
                    positive(ask, "ask")
                quoted = False  # one side still unknown: merge, emit nothing
        # fields of channels nobody asked for are neither checked nor kept
        mark, index = t.markPrice, t.indexPrice
        marked = self.want_mark and (mark is not None or index is not None)
        if marked:
            mark, index = check_mark(st, mark, index)
        derivs = self.want_derivatives and (
            t.fundingRate is not None or t.fundingIntervalHour is not None or t.nextFundingTime is not None
            or t.openInterest is not None or t.openInterestValue is not None)
        if derivs:
            check_derivatives(t)
        # every check passed: only now does the frame touch any state
        if cs is not None:
            accept_seq(r, cs, now)
            st.cs = cs
        if quoted:
            accept_price(r, (bid + ask) * 0.5, now)  # type: ignore[operator]
        if typ == "snapshot":
            self.tickers[r.instrument] = st
        if bid is not None:
            st.bid = bid
            st.ask = ask  # type: ignore[assignment]
            if quoted and self.want_quotes:
                st.quoted_at = ts
                self._sink(Quote(self._ex, r.asset, r.instrument, bid, ask, ts, now, r.quote))  # type: ignore[arg-type]
        elif self.want_quotes and st.bid and ts - st.quoted_at >= QUOTE_CONFIRM_S:
            # A delta without bid1/ask1 says the top of book is unchanged as of ts. Re-stating the quote
            # (at most once a second) keeps a quiet but live book from aging into "stale" at the oracle.
            st.quoted_at = ts
            self._sink(Quote(self._ex, r.asset, r.instrument, st.bid, st.ask, ts, now, r.quote))
        if marked:
            st.mark = mark  # type: ignore[assignment]  # check_mark returned floats
            st.index = index  # type: ignore[assignment]
            if mark:
                self._sink(MarkPrice(self._ex, r.asset, r.instrument, mark, index or None, ts, now, r.quote))
        if derivs:
            self._merge_derivatives(r, st, t, ts, now)

    def _merge_derivatives(self, r: Route, st: TickerState, t: Tick, ts: float, now: float) -> None:
        sink, ex = self._sink, self._ex
        if t.fundingRate is not None or t.fundingIntervalHour is not None or t.nextFundingTime is not None:
            if t.fundingRate is not None:
                st.rate = t.fundingRate
            if t.fundingIntervalHour is not None:
                st.interval_h = t.fundingIntervalHour
            if t.nextFundingTime is not None:
                st.next_ts = t.nextFundingTime / 1000.0
            if self.want_funding and (st.rate or st.next_ts):
                hours = st.interval_h or self.funding_h.get(r.instrument, 8.0)
                sink(Funding(ex, r.asset, r.instrument, st.rate, hours, st.next_ts, ts, now))
        if t.openInterest is not None or t.openInterestValue is not None:
            if t.openInterest is not None:
                st.oi = t.openInterest
            if t.openInterestValue is not None:
                st.oi_value = t.openInterestValue
            if self.want_oi:
                if self.inverse:  # openInterest is USD contracts, openInterestValue the coins
                    coins = st.oi_value if st.oi_value is not None else st.oi / st.mark if st.mark else 0.0
                    sink(OpenInterest(ex, r.asset, r.instrument, st.oi, coins, st.oi, ts, now))
                else:
                    sink(OpenInterest(ex, r.asset, r.instrument, st.oi, st.oi, st.oi_value, ts, now))

    @property
    def want(self) -> frozenset[str]:
        return self._want

    @want.setter
    def want(self, channels: frozenset[str]) -> None:
        """The channels to emit (the tickers topic carries four kinds of event)."""
        self._want = frozenset(channels)
        self.want_quotes = "quotes" in channels
        self.want_mark = "mark" in channels
        self.want_funding = "funding" in channels
        self.want_oi = "open_interest" in channels
        self.want_derivatives = self.want_funding or self.want_oi

    def _trades(self, r: Route, msg: dict[str, Any], now: float) -> None:
        rows = msg.get("data")
        if not isinstance(rows, list):
            raise RejectedMessage("malformed", "data")
        out = []
        for t in rows:
            try:
                price = positive(float(t["p"]), "price")
                qty = positive(float(t["v"]), "qty")
                ts = ms(t["T"])
            except KeyError:
                raise RejectedMessage("missing_field", "p/v/T") from None
            except (TypeError, ValueError):
                raise RejectedMessage("non_numeric", "p/v") from None
            check_price(r, price, now)
            if self.inverse:
                qty /= price  # contracts of 1 USD at this trade's price
            out.append(Trade(self._ex, r.asset, r.instrument, price, qty, ts, now, r.quote))
        if out:
            accept_price(r, out[-1].price, now)  # the whole frame passed: only now is a reference moved
        for t in out:
            self._sink(t)

    def _kline(self, r: Route, msg: dict[str, Any], now: float) -> None:
        rows = msg.get("data")
        if not isinstance(rows, list):
            raise RejectedMessage("malformed", "data")
        out = []
        for k in rows:
            try:
                tf = KLINE_S[str(k["interval"])]
                o, h, lo, c = (float(k[f]) for f in ("open", "high", "low", "close"))
                vol = float(k["turnover" if self.inverse else "volume"])
                start, ts, closed = ms(k["start"]), ms(k["timestamp"]), bool(k["confirm"])
            except KeyError:
                raise RejectedMessage("missing_field", "kline") from None
            except (TypeError, ValueError):
                raise RejectedMessage("non_numeric", "kline") from None
            if not (0.0 < lo <= min(o, c) <= max(o, c) <= h < MAX_PRICE and 0.0 <= vol < 1e15):
                raise RejectedMessage("absurd", "ohlcv")
            check_price(r, c, now)
            out.append(Candle(self._ex, r.asset, r.instrument, tf, start, o, h, lo, c, vol, closed, ts, now))
        if out:
            accept_price(r, out[-1].close, now)
        for k in out:
            self._sink(k)


class BybitSpotProtocol(BybitProtocol):
    """One Bybit ``/v5/public/spot`` connection: ``orderbook.1.{symbol}`` into quotes of market ``spot``."""

    def __init__(self, ctx: Any, url: str, routes: list[Route]) -> None:
        super().__init__(ctx, url, routes, {})
        self.want = frozenset({"quotes"})
        self.books: dict[str, tuple[float, float]] = {}  # instrument -> (best bid, best ask); 0.0: empty

    def on_connect(self) -> None:
        super().on_connect()
        self.books.clear()

    def handle(self, raw: bytes) -> None:
        now = self._clock()
        routed = self._routed(raw)
        if routed is None:
            return
        r, msg = routed
        self._book(r, msg, now)
        r.count += 1

    def _book(self, r: Route, msg: dict[str, Any], now: float) -> None:
        try:
            d = msg["data"]
            typ = msg["type"]
            ts = ms(msg["ts"])
            bids, asks, u = d["b"], d["a"], d["u"]
        except (KeyError, TypeError):
            raise RejectedMessage("missing_field", "data/type/ts/b/a/u") from None
        if type(u) is not int:
            raise RejectedMessage("non_numeric", "u")
        if typ == "snapshot":
            old = (0.0, 0.0)
            if u == 1:
                r.seq = 0  # the venue restarted its book: the numbering starts afresh
        elif typ == "delta":
            if r.instrument not in self.books:
                raise RejectedMessage("no_snapshot", r.key)
            old = self.books[r.instrument]
        else:
            raise RejectedMessage("unexpected", "type")
        check_seq(r, u, strict=False)  # level 1 re-sends an unchanged book with the same ``u``
        snapshot = typ == "snapshot"
        bid, ask = book_top(bids, old[0], snapshot), book_top(asks, old[1], snapshot)
        if bid and ask:
            check_quote(r, bid, ask, now)
        accept_seq(r, u, now)
        self.books[r.instrument] = (bid, ask)
        if bid and ask:
            accept_price(r, (bid + ask) * 0.5, now)
            self._sink(Quote(self._ex, r.asset, r.instrument, bid, ask, ts, now, r.quote, Market.SPOT))


class BybitConnector(VenueConnector):
    """Bybit v5 linear or inverse perpetuals: see the module docstring."""

    default_ws = "wss://stream.bybit.com"
    default_rest = "https://api.bybit.com"
    spot_supported = True

    async def load_spot(self, http: httpx.AsyncClient) -> list[Instrument]:
        body = await get_json(http, "/v5/market/instruments-info", {"category": "spot"})
        if not isinstance(body, dict):
            raise FeedError("instruments-info: unexpected body")
        return bybit_spot(body, self.source.symbols, self.spot_quote)

    def build_spot(self) -> list[WsConnection]:
        # level 1 re-sends an unchanged book every 3 s: a 1 s nominal cadence keeps a quiet book above its bound
        routes = [Route(f"orderbook.1.{i.instrument}", "spot", BOOK, i.asset, i.instrument, i.quote, cadence_s=1.0)
                  for i in self.spot]
        url = f"{self.spot_ws_base}/v5/public/spot"
        return [WsConnection(self.ctx, BybitSpotProtocol(self.ctx, url, group), f"spot-{k}")
                for k, (_, group) in enumerate(group_routes(routes, self.source.max_streams_per_connection))]

    async def load_instruments(self, http: httpx.AsyncClient) -> list[Instrument]:
        found: list[Instrument] = []
        cursor = ""
        for _ in range(50):  # pages of 1,000: far more than Bybit lists
            params = {"category": bybit_category(self.source.quote), "limit": "1000"}
            if cursor:
                params["cursor"] = cursor
            body = await get_json(http, "/v5/market/instruments-info", params)
            if not isinstance(body, dict):
                raise FeedError("instruments-info: unexpected body")
            found += bybit_perpetuals(body, self.source.symbols, self.source.quote)
            cursor = str(body.get("result", {}).get("nextPageCursor") or "")
            if not cursor:
                break
        seen: dict[str, Instrument] = {}
        for inst in found:
            seen.setdefault(inst.asset, inst)
        return list(seen.values())

    def routes(self) -> list[Route]:
        out = []
        ch = self.channels
        for inst in self.instruments:
            args = (inst.asset, inst.instrument, inst.quote)
            if ch & {"quotes", "mark", "funding", "open_interest"}:
                out.append(Route(f"tickers.{inst.instrument}", "tickers", TICKERS, *args, cadence_s=0.1))
            if "trades" in ch:
                out.append(Route(f"publicTrade.{inst.instrument}", "publicTrade", TRADES, *args,
                                 cadence_s=6.0, critical=False))
            if "candles" in ch:
                out.append(Route(f"kline.1.{inst.instrument}", "kline", KLINE, *args, cadence_s=12.0,
                                 critical=False))
        return out

    def build(self, http: httpx.AsyncClient) -> None:
        """Connections per topic family (``group_routes``): tickers, publicTrade and kline each on
        connections of their own, so a stalled family recycles nothing else."""
        funding_h = {i.instrument: i.funding_interval_h for i in self.instruments if i.funding_interval_h}
        category = bybit_category(self.source.quote)
        seen: dict[str, int] = {}
        for channel, group in group_routes(self.routes(), self.source.max_streams_per_connection):
            k = seen[channel] = seen.get(channel, -1) + 1
            proto = BybitProtocol(self.ctx, f"{self.ws_base}/v5/public/{category}", group, funding_h)
            proto.want = self.channels
            proto.inverse = category == "inverse"
            self.connections.append(WsConnection(self.ctx, proto, f"{category}-{channel}-{k}"))

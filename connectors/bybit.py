"""Native Bybit v5 linear connector.

- Instruments: ``/v5/market/instruments-info?category=linear`` (paged), the Trading LinearPerpetual of each
  asset with the configured quote (with its funding interval).
- Websocket ``/v5/public/linear``: ``tickers.{symbol}`` (a snapshot, then deltas that carry only the changed
  fields: merged into per-symbol state, so each delta emits only the events whose inputs changed: Quote from
  bid1/ask1, MarkPrice from markPrice/indexPrice, Funding from fundingRate/fundingIntervalHour/
  nextFundingTime, OpenInterest from openInterest/openInterestValue), ``publicTrade.{symbol}``,
  ``kline.1.{symbol}``. Subscribe acks (``success``) are checked per request; ``{"op":"ping"}`` every 20 s and
  its pong expected. The cross sequence ``cs`` of ticker frames must not go backwards.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from connectors.base import MAX_PRICE, Route, ms, positive
from connectors.instruments import Instrument, bybit_linear, get_json
from connectors.venue import VenueConnector
from connectors.wsconn import WsConnection, WsProtocol
from service.errors import FeedError, RejectedMessage
from service.events import Candle, Funding, MarkPrice, OpenInterest, Quote, Trade

TICKERS, TRADES, KLINE = range(3)
KLINE_S = {"1": 60, "3": 180, "5": 300, "15": 900, "30": 1800, "60": 3600, "240": 14400, "D": 86400}


class TickerState:
    """Merged ``tickers`` state of one symbol: the last accepted value of every field we use."""

    __slots__ = ("ask", "bid", "cs", "index", "interval_h", "mark", "next_ts", "oi", "oi_value", "rate")

    def __init__(self) -> None:
        self.bid = self.ask = self.mark = self.index = self.rate = self.oi = 0.0
        self.oi_value: float | None = None
        self.interval_h = 0.0
        self.next_ts: float | None = None
        self.cs = -1


def _f(d: dict[str, Any], key: str) -> float | None:
    """The field as a float, None when absent or empty (Bybit sends "" for an empty side)."""
    v = d.get(key)
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise RejectedMessage("non_numeric", key) from None


# tickers field -> (TickerState attribute, check)
_FIELDS = (("bid1Price", "bid", "price"), ("ask1Price", "ask", "price"), ("markPrice", "mark", "price"),
           ("indexPrice", "index", "price"), ("fundingRate", "rate", "rate"),
           ("fundingIntervalHour", "interval_h", "price"), ("nextFundingTime", "next_ts", "ms"),
           ("openInterest", "oi", "amount"), ("openInterestValue", "oi_value", "amount"))


def _changes(d: dict[str, Any]) -> dict[str, float]:
    """The validated fields a tickers frame carries, by TickerState attribute."""
    out = {}
    for key, attr, check in _FIELDS:
        v = _f(d, key)
        if v is None:
            continue
        if check == "price":
            positive(v, attr)
        elif check == "rate":
            if not -1.0 < v < 1.0:
                raise RejectedMessage("absurd", "funding")
        elif check == "ms":
            v /= 1000.0
        elif not 0.0 <= v < 1e15:
            raise RejectedMessage("non_positive" if v < 0 else "absurd", key)
        out[attr] = v
    return out


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
        now = self._clock()
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RejectedMessage("malformed") from None
        try:
            r = self.by_topic[msg["topic"]]
        except (KeyError, TypeError):
            self._control(msg)
            return
        r.last = now
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
            self.resolve(str(msg.get("req_id")),
                         None if msg.get("success") else f"{op} refused: {msg.get('ret_msg')}")

    def _tickers(self, r: Route, msg: dict[str, Any], now: float) -> None:
        try:
            d = msg["data"]
            ts = ms(msg["ts"])
            typ = msg["type"]
        except (KeyError, TypeError):
            raise RejectedMessage("missing_field", "data/ts/type") from None
        if not isinstance(d, dict):
            raise RejectedMessage("malformed", "data")
        st = self.tickers.get(r.instrument)
        if typ == "snapshot":
            st = TickerState()
        elif st is None:
            raise RejectedMessage("no_snapshot", r.key)
        cs = msg.get("cs")
        if isinstance(cs, int):
            if cs < st.cs:
                raise RejectedMessage("out_of_order", r.key)
            st.cs = cs
        # Validate every changed field before merging anything, so a bad delta leaves the state intact.
        ch = _changes(d)
        quote = ("bid" in ch or "ask" in ch) and ch.get("bid", st.bid) and ch.get("ask", st.ask)
        if quote:
            if ch.get("bid", st.bid) > ch.get("ask", st.ask):
                raise RejectedMessage("crossed", r.key)
            r.check_jump(ch.get("bid", st.bid))
        mark, index = ch.get("mark", st.mark), ch.get("index", st.index)
        if mark and index and not index / 3 < mark < index * 3:
            raise RejectedMessage("absurd", "mark")
        if typ == "snapshot":
            self.tickers[r.instrument] = st
        for attr, v in ch.items():
            setattr(st, attr, v)
        self._emit(r, st, ts, now, bool(quote), "mark" in ch or "index" in ch,
                   "rate" in ch or "interval_h" in ch or "next_ts" in ch, "oi" in ch or "oi_value" in ch)

    def _emit(self, r: Route, st: TickerState, ts: float, now: float, quote: bool, mark: bool, funding: bool,
              oi: bool) -> None:
        sink, ex, want = self._sink, self._ex, self.want
        if quote and "quotes" in want:
            sink(Quote(ex, r.asset, r.instrument, st.bid, st.ask, ts, now, r.quote))
        if mark and st.mark and "mark" in want:
            sink(MarkPrice(ex, r.asset, r.instrument, st.mark, st.index or None, ts, now, r.quote))
        if funding and "funding" in want and (st.rate or st.next_ts):
            interval = st.interval_h or self.funding_h.get(r.instrument, 8.0)
            sink(Funding(ex, r.asset, r.instrument, st.rate, interval, st.next_ts, ts, now))
        if oi and "open_interest" in want:
            sink(OpenInterest(ex, r.asset, r.instrument, st.oi, st.oi, st.oi_value, ts, now))

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
            r.check_jump(price)
            out.append(Trade(self._ex, r.asset, r.instrument, price, qty, ts, now, r.quote))
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
                vol = float(k["volume"])
                start, ts, closed = ms(k["start"]), ms(k["timestamp"]), bool(k["confirm"])
            except KeyError:
                raise RejectedMessage("missing_field", "kline") from None
            except (TypeError, ValueError):
                raise RejectedMessage("non_numeric", "kline") from None
            if not (0.0 < lo <= min(o, c) <= max(o, c) <= h < MAX_PRICE and 0.0 <= vol < 1e15):
                raise RejectedMessage("absurd", "ohlcv")
            r.check_jump(c)
            out.append(Candle(self._ex, r.asset, r.instrument, tf, start, o, h, lo, c, vol, closed, ts, now))
        for k in out:
            self._sink(k)


class BybitConnector(VenueConnector):
    """Bybit v5 linear perpetuals: see the module docstring."""

    default_ws = "wss://stream.bybit.com"
    default_rest = "https://api.bybit.com"

    async def load_instruments(self, http: httpx.AsyncClient) -> list[Instrument]:
        found: list[Instrument] = []
        cursor = ""
        for _ in range(50):  # pages of 1,000: far more than Bybit lists
            params = {"category": "linear", "limit": "1000"}
            if cursor:
                params["cursor"] = cursor
            body = await get_json(http, "/v5/market/instruments-info", params)
            if not isinstance(body, dict):
                raise FeedError("instruments-info: unexpected body")
            found += bybit_linear(body, self.source.symbols, self.source.quote)
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
        routes = self.routes()
        funding_h = {i.instrument: i.funding_interval_h for i in self.instruments if i.funding_interval_h}
        n = self.source.max_streams_per_connection
        for i in range(0, len(routes), n):
            proto = BybitProtocol(self.ctx, f"{self.ws_base}/v5/public/linear", routes[i:i + n], funding_h)
            proto.want = self.channels
            self.connections.append(WsConnection(self.ctx, proto, f"linear-{i // n}"))

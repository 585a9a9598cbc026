"""Binance combined-stream frames into events: the wire schemas and one decoder per message kind.

A frame is decoded once with the typed schema (``msgspec``, numeric strings straight into floats, only the
fields used materialized); what the schema does not fit (control replies, klines, composite index, every
malformed or odd frame) is decoded with orjson, its fields read with reject reasons. Either way each kind
ends in its one decoder: ``book``, ``trade``, ``mark``, ``kline``, ``composite``; the checks run there and
only there (``connectors.sanity``), every check before the commit, so a rejected frame moves neither the
update id nor the price reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from hedgewatch.connectors.base import Route, ms, num
from hedgewatch.connectors.sanity import (
    MAX_JUMP_FACTOR,
    MAX_PRICE,
    MAX_SEQ_JUMP,
    MAX_SPREAD_RATIO,
    MAX_STEP_RATIO,
    book_reject,
    check_price,
    check_seq,
    positive,
)
from hedgewatch.service.errors import RejectedMessage
from hedgewatch.service.events import Candle, CompositeIndex, Event, Funding, Market, MarkPrice, Quote, Trade

BOOK, MARK, TRADE, KLINE, COMPOSITE = range(5)
TIMEFRAMES = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200, "4h": 14400,
              "1d": 86400}
MAX_FUNDING_RATE = 1.0  # per interval; real caps are a few percent
_HALF_SPREAD = MAX_SPREAD_RATIO * 0.5
_UP = 1.0 + MAX_STEP_RATIO


# Typed wire schemas of the hot streams: msgspec decodes numeric strings straight into floats/ints
# (``strict=False``) and skips every field not declared here.
class Book(msgspec.Struct, tag_field="e", tag="bookTicker"):
    u: int
    b: float
    a: float
    E: int


class Agg(msgspec.Struct, tag_field="e", tag="aggTrade"):
    p: float
    q: float
    T: int


class Mark(msgspec.Struct, tag_field="e", tag="markPriceUpdate"):
    p: float
    E: int
    i: float | None = None
    r: float | None = None
    T: int | None = None


class Combined(msgspec.Struct):
    stream: str
    data: Book | Agg | Mark


class SpotBook(msgspec.Struct):
    """The spot ``bookTicker`` payload: no ``e`` and no ``E``."""

    u: int
    b: float
    a: float


class SpotCombined(msgspec.Struct):
    stream: str
    data: SpotBook


FUTURES_DECODER = msgspec.json.Decoder(Combined, strict=False)
SPOT_DECODER = msgspec.json.Decoder(SpotCombined, strict=False)
_UNFIT = (msgspec.DecodeError, RecursionError)  # msgspec recurses to skip deeply nested fields


def field(d: Any, key: str) -> Any:
    try:
        return d[key]
    except (KeyError, TypeError, IndexError):
        raise RejectedMessage("missing_field", key) from None


class StreamDecoder:
    """The frames of one connection into events, handed to ``sink``. ``spot``: the spot payload, stamped
    with the receive time (it has no event time). ``inverse`` (COIN-M): sizes are contracts of
    ``route.scale`` USD, converted to base units at the trade's price; kline volume is the base volume.
    ``control`` takes what is not a stream frame (subscribe replies)."""

    def __init__(self, ex: str, sink: Callable[[Event], None], clock: Callable[[], float],
                 routes: list[Route], control: Callable[[Any], None], *, funding_h: dict[str, float],
                 inverse: bool = False, market: str = Market.PERP, spot: bool = False) -> None:
        self.ex = ex
        self.sink = sink
        self.clock = clock
        self.by_stream = {r.key: r for r in routes}
        self.control = control
        self.funding_h = funding_h
        self.inverse = inverse
        self.market = market
        self.spot = spot
        self.want_mark = True
        self.want_funding = True
        self._typed = (SPOT_DECODER if spot else FUTURES_DECODER).decode
        self._by_kind: dict[int, Callable[[Route, Any, float], None]] = {
            BOOK: self._book_of, MARK: self._mark_of, TRADE: self._trade_of, KLINE: self.kline,
            COMPOSITE: self.composite}

    def frame(self, raw: bytes) -> None:
        """One websocket frame: typed where the schema fits, else through orjson; raises
        ``RejectedMessage`` for a frame that is not believed."""
        now = self.clock()
        try:
            m = self._typed(raw)
        except _UNFIT:
            self.untyped(raw, now)
            return
        r = self.by_stream.get(m.stream)
        if r is None:
            self.untyped(raw, now)
            return
        d: Any = m.data  # one of the typed structs, dispatched by exact class
        cls = d.__class__
        if cls is Book:
            self.book(r, d.u, d.b, d.a, d.E / 1000.0, now)
        elif cls is Agg:
            self.trade(r, d.p, d.q, d.T / 1000.0, now)
        elif cls is SpotBook:
            self.book(r, d.u, d.b, d.a, now, now)
        else:
            self.mark(r, d.p, d.i or None, d.r, d.T / 1000.0 if d.T else None, d.E / 1000.0, now)
        r.count += 1

    def untyped(self, raw: bytes, now: float) -> None:
        """A frame the typed schema does not fit: orjson, then control or the kind's fields with reject
        reasons."""
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RejectedMessage("malformed") from None
        try:
            r = self.by_stream[msg["stream"]]
            d = msg["data"]
        except (KeyError, TypeError):
            self.control(msg)
            return
        self._by_kind[r.kind](r, d, now)
        r.count += 1

    # -- the untyped payloads' fields, read with reject reasons, into the kinds' decoders -----------------
    def _book_of(self, r: Route, d: Any, now: float) -> None:
        if not isinstance(d, dict):
            raise RejectedMessage("malformed", "data")
        bid, ask = num(d, "b"), num(d, "a")
        ts = now
        if not self.spot:
            stamp = d.get("E", d.get("T"))
            if stamp is None:
                raise RejectedMessage("missing_field", "E")
            ts = ms(stamp)
        u = d.get("u")
        self.book(r, u if type(u) is int else None, bid, ask, ts, now)

    def _trade_of(self, r: Route, d: Any, now: float) -> None:
        self.trade(r, num(d, "p"), num(d, "q"), ms(field(d, "T")), now)

    def _mark_of(self, r: Route, d: Any, now: float) -> None:
        ts = ms(field(d, "E"))
        mark = num(d, "p")
        index = num(d, "i") if d.get("i") not in (None, "", "0") else None
        rate = num(d, "r") if d.get("r") not in (None, "") else None
        nxt = d.get("T")
        self.mark(r, mark, index, rate, ms(nxt) if nxt else None, ts, now)

    # -- one decoder per kind ---------------------------------------------------------------------------
    def book(self, r: Route, u: int | None, bid: float, ask: float, ts: float, now: float) -> None:
        """``bookTicker``: update id ``u`` (None when absent), both sides, spread and mid checked, then
        committed (the same checks as ``sanity.check_seq``/``check_quote``, their common case inlined)."""
        if u is not None:
            last = r.seq
            if not (last < u <= last + MAX_SEQ_JUMP) or r.seq_streak:
                check_seq(r, u)
        if not (0.0 < bid <= ask < MAX_PRICE):
            book_reject(bid, ask, r.key)
        if ask - bid > (ask + bid) * _HALF_SPREAD:
            raise RejectedMessage("wide_spread", r.key)
        mid = (bid + ask) * 0.5
        if not (r.lo < bid and ask < r.hi) or r.streak:
            check_price(r, mid, now, bid, ask)
        if u is not None:
            r.seq = u
            r.seq_at = now
        r.ref = mid
        r.ref_at = now
        r.lo = mid / _UP
        r.hi = mid * _UP
        r.streak = 0
        self.sink(Quote(self.ex, r.asset, r.instrument, bid, ask, ts, now, r.quote, self.market))

    def trade(self, r: Route, price: float, qty: float, ts: float, now: float) -> None:
        """``aggTrade``: price and size (COIN-M: contracts of ``scale`` USD, as coins at this price)."""
        if not (0.0 < price < MAX_PRICE and 0.0 < qty < 1e15):
            positive(price, "price")
            positive(qty, "qty")
        if self.inverse:
            qty = qty * r.scale / price
        r.check_jump(price, now)
        self.sink(Trade(self.ex, r.asset, r.instrument, price, qty, ts, now, r.quote))

    def mark(self, r: Route, mark: float, index: float | None, rate: float | None, next_ts: float | None,
             ts: float, now: float) -> None:
        """``markPriceUpdate``: the mark, the venue's index ``i`` and the funding rate ``r`` due at ``T``."""
        if not 0.0 < mark < MAX_PRICE:
            positive(mark, "mark")
        check_price(r, mark, now)
        if index is not None:
            if not 0.0 < index < MAX_PRICE:
                positive(index, "index")
            if not (mark < index * MAX_JUMP_FACTOR and index < mark * MAX_JUMP_FACTOR):
                raise RejectedMessage("absurd", "index")
        funding = None
        if self.want_funding and rate is not None:
            if not -MAX_FUNDING_RATE < rate < MAX_FUNDING_RATE:
                raise RejectedMessage("absurd", "funding")
            funding = Funding(self.ex, r.asset, r.instrument, rate, self.funding_h.get(r.instrument, 8.0),
                              next_ts, ts, now)
        r.ref = mark
        r.ref_at = now
        r.lo = mark / _UP
        r.hi = mark * _UP
        r.streak = 0
        if self.want_mark:
            self.sink(MarkPrice(self.ex, r.asset, r.instrument, mark, index, ts, now, r.quote))
        if funding is not None:
            self.sink(funding)

    def kline(self, r: Route, d: Any, now: float) -> None:
        """``kline_1m`` (COIN-M: ``v`` is contracts, ``q`` the base volume)."""
        k = field(d, "k")
        tf = TIMEFRAMES.get(field(k, "i"))
        if tf is None:
            raise RejectedMessage("unexpected", "interval")
        o, h, lo, c = (positive(num(k, f), f) for f in ("o", "h", "l", "c"))
        if not lo <= min(o, c) <= max(o, c) <= h:
            raise RejectedMessage("absurd", "ohlc")
        vol = num(k, "q" if self.inverse else "v")
        if not 0.0 <= vol < 1e15:
            raise RejectedMessage("absurd", "volume")
        start, ts = ms(field(k, "t")), ms(field(d, "E"))
        r.check_jump(c, now)
        self.sink(Candle(self.ex, r.asset, r.instrument, tf, start, o, h, lo, c, vol, bool(k.get("x")), ts, now))

    def composite(self, r: Route, d: Any, now: float) -> None:
        """``compositeIndex``: the index price and its constituents' weights."""
        price = positive(num(d, "p"), "price")
        comps = [(str(field(c, "b")), num(c, "w"), num(c, "W")) for c in field(d, "c")]
        ts = ms(field(d, "E"))
        r.check_jump(price, now)
        self.sink(CompositeIndex(self.ex, str(field(d, "s")), price, tuple(comps), ts, now))

"""Binance USDⓈ-M connector: the decoder on venue-format frames, and the whole connector against a small
Binance-speaking websocket + REST server on loopback (drops, silence, garbage, no service)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection

from hedgewatch.connectors.base import FeedContext, Route
from hedgewatch.connectors.binance.connector import BinanceProtocol
from hedgewatch.connectors.binance.decode import BOOK, COMPOSITE, KLINE, MARK, TRADE
from hedgewatch.connectors.binance.instruments import binance_usdm
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.errors import RejectedMessage
from hedgewatch.service.events import Candle, CompositeIndex, FeedStatus, Funding, MarkPrice, OpenInterest, Quote, Trade
from hedgewatch.service.metrics import Metrics
from tests.connector_fakes import FAST, FakeVenue, RefusingServer, metric, of, running
from tests.support import wait_for

# Frames in the venue's documented format (Binance USDⓈ-M websocket market streams documentation; the
# kline example's open is raised from 0.0010 to 0.0016 so that low <= open as in any real bar).
BOOK_FRAME = {"stream": "btcusdt@bookTicker", "data": {
    "e": "bookTicker", "u": 400900217, "E": 1568014460893, "T": 1568014460891, "s": "BTCUSDT",
    "b": "25.35190000", "B": "31.21000000", "a": "25.36520000", "A": "40.66000000"}}
MARK_FRAME = {"stream": "btcusdt@markPrice@1s", "data": {
    "e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15000000", "ap": "11794.15000000",
    "i": "11784.62659091", "P": "11784.25641265", "r": "0.00038167", "T": 1562306400000}}
TRADE_FRAME = {"stream": "btcusdt@aggTrade", "data": {
    "e": "aggTrade", "E": 123456789, "s": "BTCUSDT", "a": 5933014, "p": "0.001", "q": "100", "f": 100,
    "l": 105, "T": 123456785, "m": True}}
KLINE_FRAME = {"stream": "btcusdt@kline_1m", "data": {
    "e": "kline", "E": 1638747660000, "s": "BTCUSDT", "k": {
        "t": 1638747660000, "T": 1638747719999, "s": "BTCUSDT", "i": "1m", "f": 100, "L": 200, "o": "0.0016",
        "c": "0.0020", "h": "0.0025", "l": "0.0015", "v": "1000", "n": 100, "x": False, "q": "1.0000",
        "V": "500", "Q": "0.500", "B": "123456"}}}
COMPOSITE_FRAME = {"stream": "defiusdt@compositeIndex", "data": {
    "e": "compositeIndex", "E": 1602310596000, "s": "DEFIUSDT", "p": "554.41604065", "C": "baseAsset", "c": [
        {"b": "BAL", "q": "USDT", "w": "1.04884844", "W": "0.01457800", "i": "24.33521021"},
        {"b": "BAND", "q": "USDT", "w": "3.53782729", "W": "0.03935200", "i": "7.26420084"}]}}


def make_proto(sink: list[Any], clock: float = 1000.0) -> BinanceProtocol:
    ctx = FeedContext("binanceusdm", sink.append, Metrics(), lambda: clock, FAST)
    routes = [
        Route("btcusdt@bookTicker", "bookTicker", BOOK, "BTC", "BTCUSDT", "USDT", 0.1),
        Route("btcusdt@markPrice@1s", "markPrice", MARK, "BTC", "BTCUSDT", "USDT", 1.0),
        Route("btcusdt@aggTrade", "aggTrade", TRADE, "BTC", "BTCUSDT", "USDT", 6.0),
        Route("btcusdt@kline_1m", "kline", KLINE, "BTC", "BTCUSDT", "USDT", 2.0),
        Route("defiusdt@compositeIndex", "compositeIndex", COMPOSITE, "DEFI", "DEFIUSDT", "USDT", 1.0),
    ]
    return BinanceProtocol(ctx, "ws://x/market/stream", routes, {"BTCUSDT": 4.0})


def test_decodes_every_stream_to_exact_events() -> None:
    out: list[Any] = []
    p = make_proto(out)
    for frame in (BOOK_FRAME, MARK_FRAME, TRADE_FRAME, KLINE_FRAME, COMPOSITE_FRAME):
        p.handle(orjson.dumps(frame))
    q, mark, fund, trade, candle, comp = out
    assert q == Quote("binanceusdm", "BTC", "BTCUSDT", 25.3519, 25.3652, 1568014460.893, 1000.0, "USDT")
    assert mark == MarkPrice("binanceusdm", "BTC", "BTCUSDT", 11794.15, 11784.62659091, 1562305380.0, 1000.0)
    assert fund == Funding("binanceusdm", "BTC", "BTCUSDT", 0.00038167, 4.0, 1562306400.0, 1562305380.0,
                           1000.0)
    assert trade == Trade("binanceusdm", "BTC", "BTCUSDT", 0.001, 100.0, 123456.785, 1000.0)
    assert candle == Candle("binanceusdm", "BTC", "BTCUSDT", 60, 1638747660.0, 0.0016, 0.0025, 0.0015, 0.002,
                            1000.0, False, 1638747660.0, 1000.0)
    assert comp == CompositeIndex("binanceusdm", "DEFIUSDT", 554.41604065,
                                  (("BAL", 1.04884844, 0.014578), ("BAND", 3.53782729, 0.039352)),
                                  1602310596.0, 1000.0)


_next_u = itertools.count(int(BOOK_FRAME["data"]["u"]) + 1)  # type: ignore[index]


def book(**data: Any) -> bytes:
    """The documented bookTicker frame with ``data`` changed and, as on the venue, a fresh update id."""
    d = dict(BOOK_FRAME["data"])  # type: ignore[arg-type]
    d["u"] = next(_next_u)
    d.update(data)
    return orjson.dumps({"stream": "btcusdt@bookTicker", "data": d})


def test_an_older_or_repeated_book_is_rejected_until_the_next_subscribe() -> None:
    out: list[Any] = []
    p = make_proto(out)
    p.handle(book(u=100, b="25.30"))
    for stale in (book(u=100, b="25.31"), book(u=99, b="25.32")):
        with pytest.raises(RejectedMessage) as info:
            p.handle(stale)
        assert info.value.reason == "out_of_order"
    # the generic path (a frame the typed decoder does not fit: an extra-long id as a string) agrees
    with pytest.raises(RejectedMessage):
        p.handle(book(u=98, b="25.33", E=1568014460893.0))
    p.handle(book(u=101, b="25.34"))
    assert [q.bid for q in out] == [25.30, 25.34]
    for r in p.routes:
        r.seq = 0  # what a (re)subscribe does: a new connection's ids start afresh
    p.handle(book(u=5, b="25.35"))
    assert out[-1].bid == 25.35


@pytest.mark.parametrize(("raw", "reason"), [
    (b"not json", "malformed"),
    (b'{"stream":"btcusdt@bookTicker","data":{"a":"1","E":1}}', "missing_field"),
    (book(b="abc"), "non_numeric"),
    (book(b="NaN"), "non_finite"),
    (book(a="Infinity"), "non_finite"),
    (book(b="-1"), "non_positive"),
    (book(b="0"), "non_positive"),
    (book(b="26", a="25.5"), "crossed"),
    (book(b="25", a="1e12"), "absurd"),
    (book(b="2500", a="2501"), "absurd"),      # a 100x jump from the last accepted price
    (book(E="x"), "non_numeric"),
    (b'{"stream":"btcusdt@bookTicker","data":[1]}', "malformed"),
    (b'{"foo":1}', "unexpected"),
    (b'{"stream":"btcusdt@markPrice@1s","data":{"E":1,"p":"1","i":"1","r":"5"}}', "absurd"),
])
def test_rejects_bad_frames_with_a_reason(raw: bytes, reason: str) -> None:
    out: list[Any] = []
    p = make_proto(out)
    p.handle(orjson.dumps(BOOK_FRAME))
    with pytest.raises(RejectedMessage) as info:
        p.handle(raw)
    assert info.value.reason == reason
    assert len(out) == 1


def test_absurd_reference_is_dropped_after_a_streak() -> None:
    out: list[Any] = []
    p = make_proto(out)
    p.handle(orjson.dumps(BOOK_FRAME))
    accepted = 0
    for _ in range(30):
        with contextlib.suppress(RejectedMessage):
            p.handle(book(b="2500", a="2501"))
            accepted += 1
    assert accepted == 30 - 19


def test_absurd_streak_counts_consecutive_prices_only() -> None:
    out: list[Any] = []
    p = make_proto(out)
    p.handle(orjson.dumps(BOOK_FRAME))
    for _ in range(30):
        with pytest.raises(RejectedMessage):
            p.handle(book(b="2500", a="2501"))
        p.handle(book())
    assert all(q.bid == 25.3519 for q in out)


def test_instrument_mapping_from_exchange_info() -> None:
    found = binance_usdm(EXCHANGE_INFO, ["BTC", "ETH", "DEFI", "XYZ"], "USDT")
    assert [(i.asset, i.instrument, i.composite) for i in found] == [
        ("BTC", "BTCUSDT", False), ("ETH", "ETHUSDT", False), ("DEFI", "DEFIUSDT", True)]
    assert [i.instrument for i in binance_usdm(EXCHANGE_INFO, ["BTC"], "USDC")] == ["BTCUSDC"]


# --- a Binance-speaking server on loopback -------------------------------------------------------------

def _sym(base: str, quote: str = "USDT", ctype: str = "PERPETUAL", status: str = "TRADING",
         underlying: str = "COIN") -> dict[str, Any]:
    suffix = "" if ctype == "PERPETUAL" else "_251226"
    return {"symbol": f"{base}{quote}{suffix}", "pair": f"{base}{quote}", "contractType": ctype,
            "status": status, "baseAsset": base, "quoteAsset": quote, "marginAsset": quote,
            "underlyingType": underlying}


EXCHANGE_INFO = {"timezone": "UTC", "symbols": [
    _sym("BTC", ctype="CURRENT_QUARTER"), _sym("BTC"), _sym("ETH"), _sym("BTC", "USDC"),
    _sym("DEFI", underlying="INDEX"), _sym("OLD", status="SETTLING")]}
PRICES = {"BTCUSDT": 50000.0, "ETHUSDT": 3000.0, "DEFIUSDT": 500.0}


class FakeBinance(FakeVenue):
    def __init__(self) -> None:
        super().__init__()
        self.refuse = False
        self.rest["/fapi/v1/exchangeInfo"] = lambda q: EXCHANGE_INFO
        self.rest["/fapi/v1/fundingInfo"] = lambda q: [{"symbol": "ETHUSDT", "fundingIntervalHours": 4}]
        self.rest["/fapi/v1/openInterest"] = lambda q: {"openInterest": "10659.509", "symbol": q["symbol"],
                                                        "time": 1589437530011}

    def on_text(self, ws: ServerConnection, text: str) -> list[str]:
        msg = orjson.loads(text)
        if self.refuse:
            return [orjson.dumps({"error": {"code": 2, "msg": "Invalid request"}, "id": msg["id"]}).decode()]
        if msg["method"] == "SUBSCRIBE":
            self.subs[ws].update(msg["params"])
        elif msg["method"] == "UNSUBSCRIBE":
            self.subs[ws].difference_update(msg["params"])
        return [orjson.dumps({"result": None, "id": msg["id"]}).decode()]

    def frames(self, ws: ServerConnection, topic: str, n: int) -> list[str]:
        sym, _, kind = topic.partition("@")
        px = PRICES[sym.upper()] + n % 7
        ts = int(time.time() * 1000)
        if kind == "bookTicker":
            d: dict[str, Any] = {"e": "bookTicker", "u": n, "E": ts, "T": ts, "s": sym.upper(), "b": str(px),
                                 "B": "1.5", "a": str(px + 0.1), "A": "2"}
        elif kind == "markPrice@1s":
            if n % 3:
                return []
            d = {"e": "markPriceUpdate", "E": ts, "s": sym.upper(), "p": str(px), "i": str(px - 1),
                 "P": str(px), "r": "0.0001", "T": ts + 3_600_000}
        else:
            return []
        return [orjson.dumps({"stream": topic, "data": d}).decode()]


@pytest.fixture
async def venue() -> AsyncIterator[FakeBinance]:
    v = await FakeBinance().start()
    yield v
    await v.stop()


def src(v: FakeVenue | None, **kw: Any) -> SourceConfig:
    base = {"exchange": "binanceusdm", "symbols": ["BTC", "ETH", "DEFI", "NOPE"]}
    if v is not None:
        base.update(ws_url=v.ws_url, rest_url=v.url)
    base.update(kw)
    return SourceConfig.model_validate(base)


async def test_streams_routes_and_open_interest(venue: FakeBinance) -> None:
    async with running(src(venue, max_streams_per_connection=2, open_interest_poll_s=0.2)) as (conn, ev, m):
        await wait_for(lambda: {q.asset for q in of(ev, Quote)} == {"BTC", "ETH", "DEFI"}, 5, "quotes")
        await wait_for(lambda: len(of(ev, OpenInterest)) >= 3 and of(ev, Funding), 5, "OI and funding")
        await wait_for(lambda: metric(m, "hedgewatch_messages_total", exchange="binanceusdm",
                                      channel="bookTicker") > 0, 5, "message counter")
        paths = {p for p, _ in venue.received}
        assert paths == {"/public/stream", "/market/stream"}
        # 3 bookTicker streams on /public; 3 markPrice, 3 aggTrade, 1 compositeIndex on /market;
        # each stream family on connections of its own, two streams a connection
        st = conn.status()
        assert sorted(st["connections"]) == [
            "market-aggTrade-0", "market-aggTrade-1", "market-compositeIndex-0", "market-markPrice-0",
            "market-markPrice-1", "public-bookTicker-0", "public-bookTicker-1"]
        assert all(len(c["channels"]) <= 2 for c in st["connections"].values())
        assert st["instruments"] == {"BTC": "BTCUSDT", "ETH": "ETHUSDT", "DEFI": "DEFIUSDT"}
        subs = [msg for _, msg in venue.received if msg["method"] == "SUBSCRIBE"]
        assert all(isinstance(s["id"], int) for s in subs)
        eth = next(f for f in of(ev, Funding) if f.asset == "ETH")
        assert eth.interval_h == 4.0
        oi = of(ev, OpenInterest)[0]
        assert (oi.contracts, oi.base, oi.usd, oi.ts_exchange) == (10659.509, 10659.509, None, 1589437530.011)
        assert metric(m, "hedgewatch_feed_connected", exchange="binanceusdm") == 1
        assert orjson.dumps(st)


async def test_dropped_connection_is_reestablished_and_resubscribed(venue: FakeBinance) -> None:
    async with running(src(venue, symbols=["BTC"])) as (conn, ev, m):
        await wait_for(lambda: of(ev, Quote), 5, "first quote")
        subscribed = venue.connects
        await venue.drop_all()
        dropped_at = time.monotonic()
        n = len(of(ev, Quote))
        # bound: backoff cap 0.2 s + connect + subscribe ack; asserted at 2 s
        await wait_for(lambda: len(of(ev, Quote)) > n + 5 and venue.connects > subscribed, 2, "quotes again")
        assert time.monotonic() - dropped_at < 2
        assert metric(m, "hedgewatch_reconnects_total", exchange="binanceusdm") >= 1
        assert conn.status()["reconnects"] >= 1
        states = [(s.channel, s.state) for s in of(ev, FeedStatus)]
        assert ("public-bookTicker-0", "disconnected") in states
        assert states.count(("public-bookTicker-0", "subscribed")) >= 2


async def test_garbage_and_absurd_prices_are_counted_and_skipped(venue: FakeBinance) -> None:
    async with running(src(venue, symbols=["BTC"])) as (_, ev, m):
        await wait_for(lambda: of(ev, Quote), 5, "first quote")
        bad = [b"{garbage", orjson.dumps({"stream": "btcusdt@bookTicker", "data": {"b": "1", "a": "1e300",
                                                                                  "E": 1}}),
               orjson.dumps({"stream": "btcusdt@bookTicker", "data": {"b": "NaN", "a": "1", "E": 1}})]
        for raw in bad:
            await venue.broadcast(raw.decode(), topic="btcusdt@bookTicker")
        n = len(of(ev, Quote))
        await wait_for(lambda: len(of(ev, Quote)) > n + 10, 5, "good data keeps flowing")
        await wait_for(lambda: metric(m, "hedgewatch_messages_rejected_total", exchange="binanceusdm",
                                      reason="absurd") >= 1, 2, "absurd counted")
        for reason in ("malformed", "non_finite"):
            assert metric(m, "hedgewatch_messages_rejected_total", exchange="binanceusdm", reason=reason) >= 1
        assert all(q.bid < 60000 and not math.isnan(q.bid) for q in of(ev, Quote))


async def test_quiet_symbol_is_probed_without_a_gap_and_recycles_nothing(venue: FakeBinance) -> None:
    async with running(src(venue, symbols=["BTC", "ETH"], channels=["quotes", "mark"])) as (conn, ev, m):
        await wait_for(lambda: {e.asset for e in of(ev, MarkPrice)} == {"BTC", "ETH"}, 5, "first marks")
        venue.silenced.add("btcusdt@markPrice@1s")
        silenced_at = time.monotonic()
        # bound: max(1 x 1 s cadence, 0.3 s floor), or the learned one when that is longer (the fake
        # venue sends a mark every third 10 ms tick: 0.03 s), + one 0.05 s watchdog period = 1.05 s
        await wait_for(lambda: metric(m, "hedgewatch_channel_silent_total", exchange="binanceusdm",
                                      channel="markPrice") >= 1, 3, "quiet detected")
        assert time.monotonic() - silenced_at < 1.05 + 0.5
        assert ("btcusdt@markPrice@1s", "quiet") in [(s.channel, s.state) for s in of(ev, FeedStatus)]
        assert metric(m, "hedgewatch_feed_channel_quiet", exchange="binanceusdm", channel="markPrice",
                      asset="BTC") == 1
        # probed by a repeated SUBSCRIBE, never an UNSUBSCRIBE (which would open a gap)
        await wait_for(lambda: sum(1 for _, msg in venue.received if msg.get("method") == "SUBSCRIBE"
                                   and msg["params"] == ["btcusdt@markPrice@1s"]) >= 1, 2, "probe")
        assert not any(msg.get("method") == "UNSUBSCRIBE" for _, msg in venue.received)
        eth = len([e for e in of(ev, MarkPrice) if e.asset == "ETH"])
        await wait_for(lambda: len([e for e in of(ev, MarkPrice) if e.asset == "ETH"]) > eth + 20, 3, "ETH")
        st = conn.status()["connections"]
        assert all(c["reconnects"] == 0 for c in st.values()), "a quiet symbol recycled a connection"
        assert st["market-markPrice-0"]["channels"]["btcusdt@markPrice@1s"]["quiet"] is True
        assert metric(m, "hedgewatch_feed_connected", exchange="binanceusdm") == 1
        venue.silenced.clear()
        await wait_for(lambda: conn.status()["connections"]["market-markPrice-0"]["channels"]
                       ["btcusdt@markPrice@1s"]["state"] == "subscribed", 3, "recovered")
        assert metric(m, "hedgewatch_feed_channel_quiet", exchange="binanceusdm", channel="markPrice",
                      asset="BTC") == 0


async def test_a_stalled_stream_family_recycles_its_own_connection_only(venue: FakeBinance) -> None:
    """markPrice@1s silent for every symbol: its connection is silent as a whole and recycled; the quotes
    and trades connections, which share no fault with it, are not touched."""
    async with running(src(venue, symbols=["BTC", "ETH"], channels=["quotes", "mark", "trades"])) as (
            conn, ev, m):
        await wait_for(lambda: {e.asset for e in of(ev, MarkPrice)} == {"BTC", "ETH"}, 5, "first marks")
        venue.silenced.update({"btcusdt@markPrice@1s", "ethusdt@markPrice@1s"})
        await wait_for(lambda: conn.status()["connections"]["market-markPrice-0"]["reconnects"] >= 1, 3,
                       "the markPrice connection recycled")
        st = conn.status()["connections"]
        assert "no data on any of its 2 channels" in st["market-markPrice-0"]["last_error"]
        assert st["public-bookTicker-0"]["reconnects"] == 0
        assert st["market-aggTrade-0"]["reconnects"] == 0
        venue.silenced.clear()
        await wait_for(lambda: conn.status()["connections"]["market-markPrice-0"]["state"] == "subscribed"
                       and metric(m, "hedgewatch_feed_connected", exchange="binanceusdm") == 1, 3, "back")


async def test_every_loss_of_a_healthy_connection_is_logged(venue: FakeBinance,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A recycle opens a 60 s burst of "lost" lines; a later loss of the connection, once it delivered
    again, is logged all the same (it used to be swallowed by that open burst)."""
    caplog.set_level(logging.INFO, "hedgewatch")

    def lines(word: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if word in r.getMessage()]

    async with running(src(venue, symbols=["BTC"], channels=["quotes"])) as (_, ev, _m):
        await wait_for(lambda: of(ev, Quote), 5, "first quote")
        venue.silenced.add("btcusdt@bookTicker")
        await wait_for(lambda: len(lines("lost (no data on any of its 1 channels")) == 1, 3, "recycle logged")
        venue.silenced.clear()
        await wait_for(lambda: lines("delivering again"), 3, "delivering again")
        await venue.drop_all()
        await wait_for(lambda: lines("lost (closed by peer"), 3, "the loss after the recycle logged")
        await wait_for(lambda: len(lines("delivering again")) == 2, 3, "delivering again")


async def test_refused_subscription_reconnects_with_backoff(venue: FakeBinance,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    venue.refuse = True
    caplog.set_level(logging.INFO, "hedgewatch")
    async with running(src(venue, symbols=["BTC"], channels=["quotes"])) as (conn, _, _m):
        await wait_for(lambda: venue.connects >= 4, 5, "retries")
        assert "subscribe refused" in conn.status()["connections"]["public-bookTicker-0"]["last_error"]
    # one line for the burst of failures, not one per attempt
    assert len([r for r in caplog.records if "lost" in r.getMessage()]) == 1


async def test_no_service_keeps_retrying_without_spinning(caplog: pytest.LogCaptureFixture) -> None:
    dead = await RefusingServer().start()
    caplog.set_level(logging.INFO, "hedgewatch")
    try:
        source = src(None, rest_url=f"http://127.0.0.1:{dead.port}", ws_url=f"ws://127.0.0.1:{dead.port}")
        async with running(source) as (conn, _, _m):
            started = time.monotonic()
            await wait_for(lambda: dead.attempts >= 4, 5, "several attempts")
            await asyncio.sleep(0.6)  # a fixed window in which to count attempts: the property under test
            rate = dead.attempts / (time.monotonic() - started)
            assert rate < 25, f"{dead.attempts} attempts: spinning"
            assert conn.status()["state"] == "resolving instruments"
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]
    finally:
        await dead.stop()


async def test_no_websocket_service_keeps_retrying(venue: FakeBinance,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    dead = await RefusingServer().start()
    caplog.set_level(logging.INFO, "hedgewatch")
    try:
        source = src(venue, symbols=["BTC"], channels=["quotes"], ws_url=f"ws://127.0.0.1:{dead.port}")
        async with running(source) as (conn, _ev, m):
            await wait_for(lambda: dead.attempts >= 5, 5, "several attempts")
            assert conn.status()["connections"]["public-bookTicker-0"]["state"] == "disconnected"
            assert metric(m, "hedgewatch_reconnects_total", exchange="binanceusdm") >= 4
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) <= 2, [r.getMessage() for r in warnings]
    finally:
        await dead.stop()


async def test_unreadable_instrument_list_is_retried_not_fatal(venue: FakeBinance) -> None:
    broken = {"symbols": [{"contractType": "PERPETUAL", "status": "TRADING", "quoteAsset": "USDT"}]}
    venue.rest["/fapi/v1/exchangeInfo"] = lambda q: broken
    async with running(src(venue, symbols=["BTC"], channels=["quotes"])) as (conn, ev, _m):
        await wait_for(lambda: venue.rest_hits.get("/fapi/v1/exchangeInfo", 0) >= 3, 5, "retries")
        assert conn.status()["state"] == "resolving instruments"
        venue.rest["/fapi/v1/exchangeInfo"] = lambda q: EXCHANGE_INFO
        await wait_for(lambda: of(ev, Quote), 5, "quotes once the list is readable")


async def test_connections_are_recycled_before_the_age_limit(venue: FakeBinance) -> None:
    tuning = dataclasses.replace(FAST, max_conn_age_s=0.3, backoff_base_s=5.0, backoff_cap_s=5.0)
    async with running(src(venue, symbols=["BTC"], channels=["quotes"]), tuning) as (conn, ev, _m):
        # with a 5 s backoff, three connections within 3 s means the recycles reconnected at once
        await wait_for(lambda: venue.connects >= 3, 3, "recycled connections")
        assert "age limit" in conn.status()["connections"]["public-bookTicker-0"]["last_error"]
        n = len(of(ev, Quote))
        await wait_for(lambda: len(of(ev, Quote)) > n + 3, 2, "quotes keep flowing")

"""Hostile frames against the native decoders: symmetric, stateful quote checks; sequence numbers that
recover from a bogus jump; venue error text that cannot flood or forge the log; deep nesting and malformed
control frames counted under a proper reason. Each test feeds the real protocol objects frame by frame and
asserts what a user would see: which quotes come out, and that a rejected frame moved nothing."""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Any

import orjson
import pytest

from hedgewatch.connectors.base import FeedContext, Route, Tuning
from hedgewatch.connectors.binance.connector import BinanceProtocol
from hedgewatch.connectors.binance.decode import BOOK
from hedgewatch.connectors.bybit.connector import BybitProtocol
from hedgewatch.connectors.bybit.decode import TICKERS
from hedgewatch.connectors.okx.connector import OkxProtocol
from hedgewatch.connectors.okx.decode import TICKERS as OKX_TICKERS
from hedgewatch.connectors.sanity import REANCHOR_FRAMES, venue_text
from hedgewatch.service.errors import RejectedMessage
from hedgewatch.service.events import Quote
from hedgewatch.service.metrics import Metrics

FAST = Tuning(log_interval_s=60.0)
_u = itertools.count(400_900_217)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def binance(out: list[Any], clock: Clock) -> BinanceProtocol:
    ctx = FeedContext("binanceusdm", out.append, Metrics(), clock, FAST)
    routes = [Route("btcusdt@bookTicker", "bookTicker", BOOK, "BTC", "BTCUSDT", "USDT", 0.1)]
    return BinanceProtocol(ctx, "ws://x/public/stream", routes, {})


def bn_book(bid: float, ask: float, u: int | None = None) -> bytes:
    return orjson.dumps({"stream": "btcusdt@bookTicker", "data": {
        "e": "bookTicker", "u": next(_u) if u is None else u, "E": 1568014460893, "s": "BTCUSDT",
        "b": str(bid), "B": "1", "a": str(ask), "A": "1"}})


def bybit(out: list[Any], clock: Clock) -> BybitProtocol:
    ctx = FeedContext("bybit", out.append, Metrics(), clock, FAST)
    p = BybitProtocol(ctx, "ws://x", [Route("tickers.BTCUSDT", "tickers", TICKERS, "BTC", "BTCUSDT", "USDT",
                                            0.1)], {})
    p.want = frozenset({"quotes", "mark", "funding", "open_interest"})
    return p


def by_frame(typ: str, cs: int, **data: Any) -> bytes:
    return orjson.dumps({"topic": "tickers.BTCUSDT", "type": typ, "cs": cs, "ts": 1786540397684,
                         "data": {"symbol": "BTCUSDT", **{k: str(v) for k, v in data.items()}}})


def okx(out: list[Any], clock: Clock) -> OkxProtocol:
    ctx = FeedContext("okx", out.append, Metrics(), clock, FAST)
    r = Route("tickers:BTC-USDT-SWAP", "tickers", OKX_TICKERS, "BTC", "BTC-USDT-SWAP", "USDT", 0.1,
              topic={"channel": "tickers", "instId": "BTC-USDT-SWAP"})
    return OkxProtocol(ctx, "ws://x", [r])


def okx_book(bid: float, ask: float) -> bytes:
    return orjson.dumps({"arg": {"channel": "tickers", "instId": "BTC-USDT-SWAP"},
                         "data": [{"instId": "BTC-USDT-SWAP", "bidPx": str(bid), "askPx": str(ask),
                                   "ts": "1786540471710"}]})


def reason_of(handle: Any, raw: bytes) -> str:
    with pytest.raises(RejectedMessage) as info:
        handle(raw)
    return info.value.reason


VENUES = {
    "binanceusdm": (binance, bn_book),
    "okx": (okx, okx_book),
}


@pytest.mark.parametrize("venue", list(VENUES))
def test_one_sided_absurd_quotes_are_rejected_and_move_no_reference(venue: str) -> None:
    make, frame = VENUES[venue]
    out: list[Any] = []
    clock = Clock()
    p = make(out, clock)
    p.handle(frame(60000.0, 60000.5))
    hostile = [
        ((60000.0, 60_000_000.0), "wide_spread"),   # ask x1000: the mid would be +49,950%
        ((60.0, 60000.5), "wide_spread"),           # bid x0.001: the mid would be -49.95%
        ((30000.0, 60000.5), "wide_spread"),        # bid halved
        ((36000.0, 36000.5), "absurd"),             # both sides -40% within a tick
        ((84000.0, 84000.5), "absurd"),             # both sides +40%
        ((60001.0, 60000.0), "crossed"),
        ((0.0, 60000.5), "non_positive"),
        ((60000.0, 2e9), "absurd"),
    ]
    for (bid, ask), reason in hostile:
        clock.now += 0.1
        assert reason_of(p.handle, frame(bid, ask)) == reason
        # the very next genuine quote passes: the rejected frame did not become the reference
        p.handle(frame(60001.0, 60001.5))
    assert all(isinstance(q, Quote) and 59_000 < q.bid <= q.ask < 61_000 for q in out)
    assert len(out) == 1 + len(hostile)


def test_bybit_merged_book_is_checked_on_both_sides() -> None:
    out: list[Any] = []
    clock = Clock()
    p = bybit(out, clock)
    p.handle(by_frame("snapshot", 100, bid1Price=60000.0, ask1Price=60000.5, markPrice=60000.0,
                      indexPrice=60001.0))
    cs = 101
    for data, reason in (({"ask1Price": 60_000_000.0}, "wide_spread"), ({"bid1Price": 60.0}, "wide_spread"),
                         ({"bid1Price": 36000.0, "ask1Price": 36000.5}, "absurd"),
                         ({"bid1Price": 60002.0}, "crossed")):
        assert reason_of(p.handle, by_frame("delta", cs, **data)) == reason
        cs += 1
        p.handle(by_frame("delta", cs, bid1Price=60000.1))
        cs += 1
    quotes = [q for q in out if isinstance(q, Quote)]
    assert [q.bid for q in quotes] == [60000.0] + [60000.1] * 4
    assert all(q.ask == 60000.5 for q in quotes)


def test_bybit_a_rejected_delta_does_not_store_its_cross_sequence() -> None:
    out: list[Any] = []
    p = bybit(out, Clock())
    p.handle(by_frame("snapshot", 760_580_211_302, bid1Price=60000.0, ask1Price=60000.5))
    # a delta with an absurd price and cs = 2**62: rejected, and its cs must not be kept
    assert reason_of(p.handle, by_frame("delta", 2**62, bid1Price=60.0)) in ("wide_spread", "sequence_jump")
    # the same cs with a plausible price: a jump no stream makes, rejected without being adopted
    assert reason_of(p.handle, by_frame("delta", 2**62, bid1Price=60000.2)) == "sequence_jump"
    p.handle(by_frame("delta", 760_580_218_857, bid1Price=60000.3))
    assert [q.bid for q in out if isinstance(q, Quote)] == [60000.0, 60000.3]


def test_binance_a_huge_update_id_is_not_adopted() -> None:
    out: list[Any] = []
    clock = Clock()
    p = binance(out, clock)
    p.handle(bn_book(60000.0, 60000.5, u=1_000_000))
    for i in range(50):  # one bogus id every few frames must never black out the channel
        if i % 5 == 0:
            assert reason_of(p.handle, bn_book(60000.0, 60000.5, u=2**62)) == "sequence_jump"
        p.handle(bn_book(60000.0 + i, 60000.5 + i, u=1_000_001 + i))
    assert len(out) == 51


def test_a_renumbered_stream_is_followed_after_a_run_of_consistent_ids() -> None:
    out: list[Any] = []
    p = binance(out, Clock())
    p.handle(bn_book(60000.0, 60000.5, u=5_000_000_000))
    p.routes[0].seq = 6_000_000_000  # as if one plausible-looking bogus id had been accepted
    accepted = 0
    for i in range(REANCHOR_FRAMES + 5):
        try:
            p.handle(bn_book(60000.0, 60000.5, u=5_000_000_001 + i))
            accepted += 1
        except RejectedMessage as exc:
            assert exc.reason == "out_of_order"
    assert accepted == 6  # the 20th consistent id re-anchors; every later one flows


def test_a_lasting_new_level_is_adopted_but_scattered_hostile_frames_never() -> None:
    out: list[Any] = []
    clock = Clock()
    p = binance(out, clock)
    p.handle(bn_book(60000.0, 60000.5))
    for i in range(100):  # hostile frames at scattered absurd levels between genuine ones
        clock.now += 0.05
        with pytest.raises(RejectedMessage):
            p.handle(bn_book(30000.0 + 97 * i, 30000.5 + 97 * i))
        p.handle(bn_book(60000.0, 60000.5))
    assert all(q.bid == 60000.0 for q in out)
    for _ in range(REANCHOR_FRAMES):  # a venue that really re-based (or a gap): followed after a streak
        clock.now += 0.1
        with contextlib.suppress(RejectedMessage):
            p.handle(bn_book(30000.0, 30000.5))
    assert out[-1].bid == 30000.0


def test_venue_error_frames_neither_flood_nor_forge_the_log(caplog: pytest.LogCaptureFixture) -> None:
    p = okx([], Clock())
    caplog.set_level(logging.INFO, "hedgewatch")
    for i in range(1000):
        forged = f"bad\n2026-12-03 07:00:00 ERROR hedgewatch: alert firing FAKE {i}\r\x1b[2J" + "x" * 500
        p.handle(orjson.dumps({"event": "error", "code": str(60000 + i), "msg": forged}))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "\n" not in lines[0] and "\r" not in lines[0] and "\x1b" not in lines[0]
    assert len(lines[0]) < 250
    assert len(p.ctx.burst._open) == 1  # one key, whatever the codes


def test_venue_text_is_escaped_and_cut() -> None:
    assert venue_text("a\nb") == "a\\nb"
    assert venue_text("x" * 500).endswith("…") and len(venue_text("x" * 500)) == 120
    assert venue_text({"k": 1}) == "{'k': 1}"


DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(("venue", "raw", "reason"), [
    ("binanceusdm", DEEP, "malformed"),
    ("binanceusdm", b'{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":1,"b":"1","a":"1","E":1,'
                    b'"x":' + DEEP + b"}}", "malformed"),
    ("binanceusdm", b'{"id":{"a":1},"result":null}', "malformed"),
    ("binanceusdm", b'{"id":1,"error":"not an object"}', "malformed"),
    ("bybit", b'{"topic":"tickers.BTCUSDT","type":"delta","ts":1,"data":{"x":' + DEEP + b"}}", "malformed"),
    ("bybit", b'{"op":{"x":1}}', "unexpected"),
    ("okx", b'{"arg":{"channel":"tickers","instId":"BTC-USDT-SWAP"},"data":[{"x":' + DEEP + b"}]}",
     "malformed"),
    ("okx", b'{"event":"subscribe","arg":"tickers"}', "malformed"),
    ("okx", b'{"event":["error"]}', "malformed"),
    ("okx", b'{"event":"subscribe","arg":{"channel":["x"],"instId":1}}', "malformed"),
    ("okx", b'{"arg":{"channel":"tickers","instId":"BTC-USDT-SWAP"},"data":[1,2]}', "malformed"),
])
def test_deep_nesting_and_malformed_control_frames_have_a_proper_reason(venue: str, raw: bytes,
                                                                       reason: str) -> None:
    make = {"binanceusdm": binance, "bybit": bybit, "okx": okx}[venue]
    p = make([], Clock())
    assert reason_of(p.handle, raw) == reason


def test_a_re_subscribe_resets_the_sequence_expectation() -> None:
    out: list[Any] = []
    clock = Clock()
    p = binance(out, clock)
    p.handle(bn_book(60000.0, 60000.5, u=9_000_000_000))
    clock.now += 5.0
    assert reason_of(p.handle, bn_book(60000.0, 60000.5, u=100)) == "out_of_order"
    p.routes[0].resubscribed_at = clock.now  # what the watchdog's re-subscribe of a silent channel records
    clock.now += 0.1
    p.handle(bn_book(60000.0, 60000.5, u=100))  # the venue's numbering after the re-subscribe is taken
    p.handle(bn_book(60000.0, 60000.5, u=101))
    assert len(out) == 3

"""Bybit v5 linear connector: recorded frames to exact events, and the connector against a small
Bybit-speaking server on loopback (acks, ping/pong, snapshot then deltas, drops, garbage, silence)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection

from hedgewatch.connectors.base import FeedContext, Route
from hedgewatch.connectors.bybit.connector import BybitProtocol
from hedgewatch.connectors.bybit.decode import KLINE, TICKERS, TRADES
from hedgewatch.connectors.bybit.instruments import bybit_linear
from hedgewatch.connectors.venue import CHANNELS
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.errors import RejectedMessage
from hedgewatch.service.events import Candle, FeedStatus, Funding, MarkPrice, OpenInterest, Quote, Trade
from hedgewatch.service.metrics import Metrics
from tests.connector_fakes import FAST, FakeVenue, metric, of, running
from tests.support import FRAMES, wait_for


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


RECORDED = json.loads((FRAMES / "bybit.ws.watchTicker.linear.json").read_text())


def make_proto(out: list[Any], clock: float = 1000.0) -> BybitProtocol:
    ctx = FeedContext("bybit", out.append, Metrics(), lambda: clock, FAST)
    routes = [Route("tickers.BTCUSDT", "tickers", TICKERS, "BTC", "BTCUSDT", "USDT", 0.1),
              Route("publicTrade.BTCUSDT", "publicTrade", TRADES, "BTC", "BTCUSDT", "USDT", 6.0),
              Route("kline.1.BTCUSDT", "kline", KLINE, "BTC", "BTCUSDT", "USDT", 12.0)]
    p = BybitProtocol(ctx, "ws://x", routes, {})
    p.want = frozenset(CHANNELS)
    return p


def test_recorded_snapshot_then_delta() -> None:
    out: list[Any] = []
    p = make_proto(out)
    snap, delta = (orjson.dumps(m) for m in RECORDED["messages"])
    p.handle(snap)
    ts = 1786540397.684
    assert out == [
        Quote("bybit", "BTC", "BTCUSDT", 63958.6, 63958.7, ts, 1000.0, "USDT"),
        MarkPrice("bybit", "BTC", "BTCUSDT", 63958.6, 63986.67, ts, 1000.0, "USDT"),
        Funding("bybit", "BTC", "BTCUSDT", 0.0000544, 8.0, 1786550400.0, ts, 1000.0),
        OpenInterest("bybit", "BTC", "BTCUSDT", 57798.137, 57798.137, 3696687925.13, ts, 1000.0),
    ]
    out.clear()
    p.handle(delta)
    # the delta carries only indexPrice: one MarkPrice, the mark carried over from the snapshot
    assert out == [MarkPrice("bybit", "BTC", "BTCUSDT", 63958.6, 63986.66, 1786540397.983, 1000.0, "USDT")]


def test_quiet_book_is_restated_at_most_once_a_second() -> None:
    """Deltas without bid1/ask1 mean the top of book is unchanged; the quote is re-stated (with the delta's
    venue time) once a second so a quiet, live book does not age into "stale" at the oracle."""
    out: list[Any] = []
    p = make_proto(out)
    p.handle(orjson.dumps(RECORDED["messages"][0]))  # snapshot at ...397.684
    out.clear()
    for i, ts_ms in enumerate((1786540398000, 1786540398500, 1786540398700, 1786540399900)):
        p.handle(orjson.dumps({"topic": "tickers.BTCUSDT", "type": "delta",
                               "data": {"symbol": "BTCUSDT", "indexPrice": f"{63986.0 + i}"},
                               "cs": 760580218857 + i, "ts": ts_ms}))
    quotes = [e for e in out if isinstance(e, Quote)]
    assert [q.ts_exchange for q in quotes] == [1786540398.7, 1786540399.9]
    assert all((q.bid, q.ask) == (63958.6, 63958.7) for q in quotes)


def test_delta_merges_and_bad_delta_leaves_state_intact() -> None:
    out: list[Any] = []
    p = make_proto(out)
    p.handle(orjson.dumps(RECORDED["messages"][0]))
    out.clear()
    bad = {"topic": "tickers.BTCUSDT", "type": "delta", "data": {"bid1Price": "63959", "ask1Price": "NaN"},
           "cs": 760580218858, "ts": 1786540398000}
    with pytest.raises(RejectedMessage) as info:
        p.handle(orjson.dumps(bad))
    assert info.value.reason == "non_finite"
    good = {"topic": "tickers.BTCUSDT", "type": "delta", "data": {"ask1Price": "63960.1"},
            "cs": 760580218859, "ts": 1786540398100}
    p.handle(orjson.dumps(good))
    assert out == [Quote("bybit", "BTC", "BTCUSDT", 63958.6, 63960.1, 1786540398.1, 1000.0, "USDT")]
    stale = dict(good, cs=760580211300)
    with pytest.raises(RejectedMessage) as info:
        p.handle(orjson.dumps(stale))
    assert info.value.reason == "out_of_order"


def test_delta_before_snapshot_is_rejected() -> None:
    p = make_proto([])
    with pytest.raises(RejectedMessage) as info:
        p.handle(orjson.dumps(RECORDED["messages"][1]))
    assert info.value.reason == "no_snapshot"


def test_trades_and_klines() -> None:
    out: list[Any] = []
    p = make_proto(out)
    p.handle(orjson.dumps({"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1672304486868, "data": [
        {"T": 1672304486865, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "16578.50", "L": "PlusTick",
         "i": "20f43950-d8dd-5b31-9112-a178eb6023af", "BT": False}]}))
    p.handle(orjson.dumps({"topic": "kline.1.BTCUSDT", "type": "snapshot", "ts": 1672324988882, "data": [
        {"start": 1672324800000, "end": 1672325099999, "interval": "1", "open": "16649.5", "close": "16677",
         "high": "16677", "low": "16608", "volume": "2.081", "turnover": "34666.4005", "confirm": False,
         "timestamp": 1672324988882}]}))
    assert out == [
        Trade("bybit", "BTC", "BTCUSDT", 16578.5, 0.001, 1672304486.865, 1000.0, "USDT"),
        Candle("bybit", "BTC", "BTCUSDT", 60, 1672324800.0, 16649.5, 16677.0, 16608.0, 16677.0, 2.081, False,
               1672324988.882, 1000.0),
    ]


def instruments_body() -> dict[str, Any]:
    rows = [{"symbol": f"{b}{q}", "contractType": ct, "status": st, "baseCoin": b, "quoteCoin": q,
             "settleCoin": q, "fundingInterval": fi}
            for b, q, ct, st, fi in [("BTC", "USDT", "LinearPerpetual", "Trading", 480),
                                     ("ETH", "USDT", "LinearPerpetual", "Trading", 240),
                                     ("BTC", "USDC", "LinearPerpetual", "Trading", 480),
                                     ("SOL", "USDT", "LinearFutures", "Trading", 0),
                                     ("XRP", "USDT", "LinearPerpetual", "Closed", 480)]]
    result = {"category": "linear", "list": rows, "nextPageCursor": ""}
    return {"retCode": 0, "retMsg": "OK", "result": result}


def test_instrument_mapping() -> None:
    found = bybit_linear(instruments_body(), ["BTC", "ETH", "SOL", "XRP"], "USDT")
    assert [(i.asset, i.instrument, i.funding_interval_h) for i in found] == [
        ("BTC", "BTCUSDT", 8.0), ("ETH", "ETHUSDT", 4.0)]


# --- a Bybit-speaking server on loopback ---------------------------------------------------------------

class FakeBybit(FakeVenue):
    def __init__(self) -> None:
        super().__init__()
        self.answer_pings = True
        self._snapped: set[tuple[Any, str]] = set()
        self.rest["/v5/market/instruments-info"] = lambda q: instruments_body()

    def on_text(self, ws: ServerConnection, text: str) -> list[str]:
        msg = orjson.loads(text)
        op = msg["op"]
        if op == "ping":
            if not self.answer_pings:
                return []
            return [dumps({"success": True, "ret_msg": "pong", "conn_id": "c1", "op": "ping"})]
        if op == "subscribe":
            if self.subs[ws] & set(msg["args"]):  # as Bybit answers a topic subscribed twice
                return [dumps({"success": False, "ret_msg": f"error:already subscribed,topic:{msg['args'][0]}",
                               "conn_id": "c1", "req_id": msg.get("req_id"), "op": op})]
            self.subs[ws].update(msg["args"])
        elif op == "unsubscribe":
            self.subs[ws].difference_update(msg["args"])
        return [orjson.dumps({"success": True, "ret_msg": "", "conn_id": "c1", "req_id": msg.get("req_id"),
                              "op": op}).decode()]

    def frames(self, ws: ServerConnection, topic: str, n: int) -> list[str]:
        if not topic.startswith("tickers."):
            return []
        sym = topic.split(".")[1]
        px = (50000.0 if sym.startswith("BTC") else 3000.0) + n % 5
        ts = int(time.time() * 1000)
        if n == 1 or (ws, topic) not in self._snapped:
            self._snapped.add((ws, topic))
            data = {"symbol": sym, "bid1Price": str(px), "ask1Price": str(px + 0.5), "markPrice": str(px),
                    "indexPrice": str(px - 1), "fundingRate": "0.0001", "fundingIntervalHour": "8",
                    "nextFundingTime": "1786550400000", "openInterest": "100", "openInterestValue": "5000000"}
            return [dumps({"topic": topic, "type": "snapshot", "data": data, "cs": n, "ts": ts})]
        data = {"symbol": sym, "bid1Price": str(px)} if n % 2 else {"symbol": sym, "markPrice": str(px + 0.2)}
        return [dumps({"topic": topic, "type": "delta", "data": data, "cs": n, "ts": ts})]


@pytest.fixture
async def venue() -> AsyncIterator[FakeBybit]:
    v = await FakeBybit().start()
    yield v
    await v.stop()


def src(v: FakeVenue, **kw: Any) -> SourceConfig:
    base = {"exchange": "bybit", "symbols": ["BTC", "ETH"], "ws_url": v.ws_url, "rest_url": v.url}
    base.update(kw)
    return SourceConfig.model_validate(base)


async def test_feed_flows_and_survives_a_drop(venue: FakeBybit) -> None:
    async with running(src(venue)) as (conn, ev, m):
        await wait_for(lambda: {q.asset for q in of(ev, Quote)} == {"BTC", "ETH"}, 5, "quotes")
        await wait_for(lambda: of(ev, OpenInterest) and of(ev, Funding) and of(ev, MarkPrice), 5, "derivs")
        await wait_for(lambda: all(c.state == "subscribed" for c in conn.connections), 3, "both connections")
        subs = sorted(msg["args"] for p, msg in venue.received if msg["op"] == "subscribe")
        # each topic family on a connection of its own
        assert subs == [["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"], ["tickers.BTCUSDT", "tickers.ETHUSDT"]]
        assert {p for p, _ in venue.received} == {"/v5/public/linear"}
        await venue.drop_all()
        n = len(of(ev, Quote))
        await wait_for(lambda: len(of(ev, Quote)) > n + 5 and venue.connects == 4, 2, "quotes again")
        assert metric(m, "hedgewatch_reconnects_total", exchange="bybit") == 2  # both connections
        assert metric(m, "hedgewatch_messages_rejected_total", exchange="bybit", reason="no_snapshot") == 0
        channels = conn.status()["connections"]["linear-tickers-0"]["channels"]
        assert channels["tickers.BTCUSDT"]["state"] == "subscribed"


async def test_garbage_is_counted_and_skipped(venue: FakeBybit) -> None:
    async with running(src(venue, symbols=["BTC"])) as (_, ev, m):
        await wait_for(lambda: of(ev, Quote), 5, "first quote")
        for raw in ("]]", '{"topic":"tickers.BTCUSDT","type":"delta","data":{"bid1Price":"-5"},"ts":1}',
                    '{"topic":"tickers.BTCUSDT","type":"delta","data":{"ask1Price":"9e99"},"ts":1}'):
            await venue.broadcast(raw, topic="tickers.BTCUSDT")
        n = len(of(ev, Quote))
        await wait_for(lambda: len(of(ev, Quote)) > n + 5, 5, "good data keeps flowing")
        for reason in ("malformed", "non_positive", "absurd"):
            assert metric(m, "hedgewatch_messages_rejected_total", exchange="bybit", reason=reason) == 1


async def test_keepalive_ping_and_missing_pong(venue: FakeBybit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BybitProtocol, "keepalive_s", 0.1)
    async with running(src(venue, symbols=["BTC"], channels=["quotes"])) as (_, ev, _m):
        await wait_for(lambda: sum(1 for _, msg in venue.received if msg["op"] == "ping") >= 2, 3, "pings")
        assert venue.connects == 1
        venue.answer_pings = False
        # no pong within ack_timeout_s (1 s): the connection is recycled
        await wait_for(lambda: venue.connects >= 2, 3, "recycled for a missing pong")
        assert any(s.state == "disconnected" and "pong" in s.detail for s in of(ev, FeedStatus))


async def test_quiet_ticker_is_probed_and_confirmed_without_a_gap(venue: FakeBybit) -> None:
    async with running(src(venue, symbols=["BTC", "ETH"], channels=["quotes"])) as (conn, ev, m):
        await wait_for(lambda: {q.asset for q in of(ev, Quote)} == {"BTC", "ETH"}, 5, "first quotes")
        venue.silenced.add("tickers.BTCUSDT")
        started = time.monotonic()
        await wait_for(lambda: metric(m, "hedgewatch_channel_silent_total", exchange="bybit",
                                      channel="tickers") == 1, 2, "quiet detected")
        assert time.monotonic() - started < 0.3 + 0.05 + 0.3
        # the probe is a subscribe the venue answers "already subscribed": confirmed, no unsubscribe, no gap
        await wait_for(lambda: sum(1 for _, msg in venue.received if msg["op"] == "subscribe") >= 2, 2,
                       "probe")
        assert not any(msg["op"] == "unsubscribe" for _, msg in venue.received)
        eth = len([q for q in of(ev, Quote) if q.asset == "ETH"])
        await wait_for(lambda: len([q for q in of(ev, Quote) if q.asset == "ETH"]) > eth + 10, 3, "ETH")
        assert venue.connects == 1 and conn.status()["connections"]["linear-tickers-0"]["reconnects"] == 0
        venue.silenced.clear()
        n = len(of(ev, Quote))
        await wait_for(lambda: len(of(ev, Quote)) > n + 3, 3, "data again")

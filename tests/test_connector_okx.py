"""OKX v5 connector: recorded frames to exact events (ctVal applied), and the connector against a small
OKX-speaking server on loopback (per-argument acks, text ping/pong, errors, drops, silence)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection

from hedgewatch.connectors import build_connector
from hedgewatch.connectors.base import FeedContext, Route
from hedgewatch.connectors.okx.connector import OkxProtocol
from hedgewatch.connectors.okx.decode import CANDLE, FUNDING, INDEX, MARK, OI, TICKERS, TRADES, decode_open_interest
from hedgewatch.connectors.okx.instruments import okx_swaps
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.errors import RejectedMessage
from hedgewatch.service.events import Candle, Funding, MarkPrice, OpenInterest, Quote, Trade
from hedgewatch.service.metrics import Metrics
from tests.connector_fakes import FAST, FakeVenue, metric, of, running
from tests.support import FRAMES, wait_for

TICKER_REC = json.loads((FRAMES / "okx.ws.watchTicker.swap.json").read_text())
OI_REC = json.loads((FRAMES / "okx.fetchOpenInterest.json").read_text())


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def route(channel: str, inst_id: str, kind: int) -> Route:
    return Route(f"{channel}:{inst_id}", channel, kind, "BTC", "BTC-USDT-SWAP", "USDT", 1.0,
                 topic={"channel": channel, "instId": inst_id}, scale=0.01)


def make_proto(out: list[Any]) -> OkxProtocol:
    ctx = FeedContext("okx", out.append, Metrics(), lambda: 1000.0, FAST)
    swap = "BTC-USDT-SWAP"
    routes = [route("tickers", swap, TICKERS), route("mark-price", swap, MARK),
              route("index-tickers", "BTC-USDT", INDEX), route("funding-rate", swap, FUNDING),
              route("open-interest", swap, OI), route("trades", swap, TRADES),
              route("candle1m", swap, CANDLE)]
    return OkxProtocol(ctx, "ws://x", routes)


def test_recorded_tickers_frames() -> None:
    out: list[Any] = []
    p = make_proto(out)
    for m in TICKER_REC["messages"]:
        p.handle(orjson.dumps(m))
    assert out == [
        Quote("okx", "BTC", "BTC-USDT-SWAP", 63921.0, 63921.1, 1786540471.71, 1000.0, "USDT"),
        Quote("okx", "BTC", "BTC-USDT-SWAP", 63921.0, 63921.1, 1786540471.871, 1000.0, "USDT"),
    ]


def test_recorded_open_interest_in_base_units() -> None:
    row = OI_REC["fetchOpenInterest"][0]["httpResponse"]["data"][0]
    oi = decode_open_interest("okx", route("open-interest", "BTC-USDT-SWAP", OI), row, 1000.0)
    assert oi == OpenInterest("okx", "BTC", "BTC-USDT-SWAP", 2663107.29999999861, 26631.0729999999861,
                              1676426045.349999124995, 1728728314.766, 1000.0)
    # without oiCcy the contract value gives the base amount
    del row["oiCcy"]
    assert decode_open_interest("okx", route("open-interest", "BTC-USDT-SWAP", OI), row, 1.0).base == \
        pytest.approx(26631.073)


def test_mark_index_funding_trades_candles() -> None:
    out: list[Any] = []
    p = make_proto(out)

    def push(channel: str, inst: str, rows: list[Any]) -> None:
        p.handle(orjson.dumps({"arg": {"channel": channel, "instId": inst}, "data": rows}))

    push("index-tickers", "BTC-USDT", [{"instId": "BTC-USDT", "idxPx": "63900.5", "ts": "1786540471000"}])
    assert out == []  # no mark yet
    push("mark-price", "BTC-USDT-SWAP", [{"instType": "SWAP", "instId": "BTC-USDT-SWAP", "markPx": "63920.2",
                                          "ts": "1786540471500"}])
    push("funding-rate", "BTC-USDT-SWAP", [{"fundingRate": "0.0001", "fundingTime": "1786550400000",
                                            "nextFundingTime": "1786564800000", "instId": "BTC-USDT-SWAP",
                                            "instType": "SWAP", "method": "current_period",
                                            "ts": "1786540470000"}])
    push("trades", "BTC-USDT-SWAP", [{"instId": "BTC-USDT-SWAP", "tradeId": "1", "px": "63921", "sz": "18.68",
                                      "side": "buy", "ts": "1786540471871", "count": "1"}])
    push("candle1m", "BTC-USDT-SWAP", [["1786540440000", "63900", "63950", "63890", "63921", "1000", "10",
                                        "639210", "0"]])
    assert out == [
        MarkPrice("okx", "BTC", "BTC-USDT-SWAP", 63920.2, 63900.5, 1786540471.5, 1000.0, "USDT"),
        Funding("okx", "BTC", "BTC-USDT-SWAP", 0.0001, 4.0, 1786550400.0, 1786540470.0, 1000.0),
        Trade("okx", "BTC", "BTC-USDT-SWAP", 63921.0, 0.1868, 1786540471.871, 1000.0, "USDT"),
        Candle("okx", "BTC", "BTC-USDT-SWAP", 60, 1786540440.0, 63900.0, 63950.0, 63890.0, 63921.0, 10.0,
               False, 1786540440.0, 1000.0),
    ]
    out.clear()
    push("index-tickers", "BTC-USDT", [{"instId": "BTC-USDT", "idxPx": "63901", "ts": "1786540472000"}])
    assert out == [MarkPrice("okx", "BTC", "BTC-USDT-SWAP", 63920.2, 63901.0, 1786540472.0, 1000.0, "USDT")]


@pytest.mark.parametrize(("row", "reason"), [
    ({"askPx": "1", "ts": "1"}, "missing_field"),
    ({"bidPx": "x", "askPx": "1", "ts": "1"}, "non_numeric"),
    ({"bidPx": "2", "askPx": "1", "ts": "1"}, "crossed"),
    ({"bidPx": "inf", "askPx": "1", "ts": "1"}, "non_finite"),
    ({"bidPx": "1", "askPx": "1.0001"}, "missing_field"),
])
def test_bad_rows_are_rejected(row: dict[str, Any], reason: str) -> None:
    p = make_proto([])
    with pytest.raises(RejectedMessage) as info:
        p.handle(orjson.dumps({"arg": {"channel": "tickers", "instId": "BTC-USDT-SWAP"}, "data": [row]}))
    assert info.value.reason == reason


def test_pong_is_not_a_reject() -> None:
    p = make_proto([])
    p.ping_sent_at = 5.0
    p.handle(b"pong")
    assert p.ping_sent_at == 0.0
    with pytest.raises(RejectedMessage):
        p.handle(b"pang")


def instruments_body() -> dict[str, Any]:
    def swap(base: str, quote: str, ct: str, ct_type: str = "linear", state: str = "live") -> dict[str, Any]:
        return {"instId": f"{base}-{quote}-SWAP", "instType": "SWAP", "uly": f"{base}-{quote}",
                "instFamily": f"{base}-{quote}", "ctVal": ct,
                "ctValCcy": base if ct_type == "linear" else quote,
                "ctType": ct_type, "settleCcy": quote, "state": state}
    rows = [swap("BTC", "USD", "100", "inverse"), swap("BTC", "USDT", "0.01"), swap("ETH", "USDT", "0.1"),
            swap("XRP", "USDT", "100", state="suspend")]
    return {"code": "0", "msg": "", "data": rows}


def test_instrument_mapping() -> None:
    found = okx_swaps(instruments_body(), ["BTC", "ETH", "XRP"], "USDT")
    assert [(i.asset, i.instrument, i.ct_val) for i in found] == [("BTC", "BTC-USDT-SWAP", 0.01),
                                                                  ("ETH", "ETH-USDT-SWAP", 0.1)]


# --- an OKX-speaking server on loopback ----------------------------------------------------------------

class FakeOkx(FakeVenue):
    def __init__(self) -> None:
        super().__init__()
        self.refuse = False
        self.rest["/api/v5/public/instruments"] = lambda q: instruments_body()

    def on_text(self, ws: ServerConnection, text: str) -> list[str]:
        if text == "ping":
            return ["pong"]
        msg = orjson.loads(text)
        if self.refuse:
            return [dumps({"event": "error", "code": "60018", "msg": "Wrong URL or channel", "connId": "a"})]
        out = []
        for arg in msg["args"]:
            key = f"{arg['channel']}:{arg['instId']}"
            if msg["op"] == "subscribe":
                self.subs[ws].add(key)
            else:
                self.subs[ws].discard(key)
            out.append(dumps({"event": msg["op"], "arg": arg, "connId": "a"}))
        return out

    def frames(self, ws: ServerConnection, topic: str, n: int) -> list[str]:
        channel, _, inst = topic.partition(":")
        px = 50000.0 + n % 5
        ts = str(int(time.time() * 1000))
        if channel == "tickers":
            row = {"instId": inst, "bidPx": str(px), "askPx": str(px + 0.1), "ts": ts}
        elif channel == "mark-price":
            row = {"instId": inst, "markPx": str(px), "ts": ts}
        elif channel == "index-tickers":
            row = {"instId": inst, "idxPx": str(px - 2), "ts": ts}
        elif channel == "open-interest" and n % 5 == 0:
            row = {"instId": inst, "oi": "200000", "oiCcy": "2000", "oiUsd": "100000000", "ts": ts}
        else:
            return []
        return [dumps({"arg": {"channel": channel, "instId": inst}, "data": [row]})]


@pytest.fixture
async def venue() -> AsyncIterator[FakeOkx]:
    v = await FakeOkx().start()
    yield v
    await v.stop()


def src(v: FakeVenue, **kw: Any) -> SourceConfig:
    base = {"exchange": "okx", "symbols": ["BTC", "ETH"], "ws_url": v.ws_url, "rest_url": v.url,
            "channels": ["quotes", "mark", "open_interest"]}
    base.update(kw)
    return SourceConfig.model_validate(base)


async def test_feed_flows_and_survives_a_drop(venue: FakeOkx, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OkxProtocol, "keepalive_s", 0.1)
    async with running(src(venue)) as (conn, ev, m):
        await wait_for(lambda: {q.asset for q in of(ev, Quote)} == {"BTC", "ETH"}, 5, "quotes")
        await wait_for(lambda: of(ev, OpenInterest) and [e for e in of(ev, MarkPrice) if e.index], 5,
                       "derivatives")
        oi = of(ev, OpenInterest)[0]
        assert (oi.contracts, oi.base, oi.usd) == (200000.0, 2000.0, 100000000.0)
        args = [a for _, msg in venue.received if isinstance(msg, dict) for a in msg["args"]]
        assert {"channel": "index-tickers", "instId": "BTC-USDT"} in args
        assert {p for p, _ in venue.received} == {"/ws/v5/public"}
        await wait_for(lambda: sum(1 for _, msg in venue.received if msg == "ping") >= 2, 3, "text pings")
        await wait_for(lambda: all(c.state == "subscribed" for c in conn.connections), 3, "all connections")
        await venue.drop_all()
        n = len(of(ev, Quote))
        # tickers, mark-price, index-tickers and open-interest: four connections, each reconnected
        await wait_for(lambda: len(of(ev, Quote)) > n + 5 and venue.connects == 8, 2, "quotes again")
        assert metric(m, "hedgewatch_reconnects_total", exchange="okx") == 4
        assert conn.status()["connections"]["public-tickers-0"]["state"] == "subscribed"


async def test_error_event_fails_the_subscription(venue: FakeOkx) -> None:
    venue.refuse = True
    async with running(src(venue, symbols=["BTC"], channels=["quotes"])) as (conn, _ev, _m):
        await wait_for(lambda: venue.connects >= 3, 5, "retries")
        assert "60018" in conn.status()["connections"]["public-tickers-0"]["last_error"]


async def test_silent_channel_and_garbage(venue: FakeOkx) -> None:
    async with running(src(venue, symbols=["BTC"])) as (_, ev, m):
        await wait_for(lambda: of(ev, Quote), 5, "first quote")
        await venue.broadcast("{oops", topic="tickers:BTC-USDT-SWAP")
        await venue.broadcast(dumps({"arg": {"channel": "tickers", "instId": "BTC-USDT-SWAP"},
                                     "data": [{"bidPx": "5e15", "askPx": "6e15", "ts": "1"}]}),
                              topic="tickers:BTC-USDT-SWAP")
        venue.silenced.add("mark-price:BTC-USDT-SWAP")
        await wait_for(lambda: metric(m, "hedgewatch_channel_silent_total", exchange="okx",
                                      channel="mark-price") == 1, 3, "silence detected")
        assert metric(m, "hedgewatch_messages_rejected_total", exchange="okx", reason="malformed") == 1
        assert metric(m, "hedgewatch_messages_rejected_total", exchange="okx", reason="absurd") == 1
        n = len(of(ev, Quote))
        await wait_for(lambda: len(of(ev, Quote)) > n + 3, 3, "quotes keep flowing")


async def test_cancellation_is_never_swallowed_while_failing(venue: FakeOkx) -> None:
    """Cancel the connector at many moments of a refuse-and-retry cycle: it must stop every time."""
    venue.refuse = True
    source = src(venue, symbols=["BTC"], channels=["quotes"])
    for i in range(30):
        conn = build_connector(source, [].append, Metrics(), tuning=FAST)
        task = asyncio.create_task(conn.run(), name=f"connector-{i}")
        await asyncio.sleep(0.003 * i)  # the moment of cancellation is the variable under test
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done, f"connector ignored its cancellation (attempt {i})"
        assert task.cancelled()

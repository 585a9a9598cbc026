"""Generic ccxt connector: real ccxt exchange objects whose endpoints point at loopback servers (REST
polling and ccxt.pro websockets), and a ccxt exchange subclass that raises network errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import ccxt
import ccxt.pro as ccxtpro
import orjson
import pytest
from websockets.asyncio.server import ServerConnection

from hedgewatch.connectors import build_connector
from hedgewatch.connectors.ccxt import connector as ccxt_generic
from hedgewatch.connectors.ccxt.connector import CcxtConnector, pick_market
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.errors import FeedError
from hedgewatch.service.events import FeedStatus, Funding, OpenInterest, Quote
from hedgewatch.service.metrics import Metrics
from tests.connector_fakes import FakeVenue, metric, of, running
from tests.support import wait_for

MARKETS = [
    {"id": "BTCUSDT", "lowercaseId": "btcusdt", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT",
     "baseId": "BTC", "quoteId": "USDT",
     "type": "spot", "spot": True, "swap": False, "future": False, "option": False, "contract": False,
     "linear": None, "inverse": None, "active": True, "precision": {"price": 0.01, "amount": 0.00001},
     "limits": {}, "info": {}},
]


def ticker_24h(sym: str, px: float, n: int) -> dict[str, Any]:
    ts = int(time.time() * 1000)
    return {"symbol": sym, "priceChange": "1", "priceChangePercent": "0.1", "weightedAvgPrice": str(px),
            "prevClosePrice": str(px), "lastPrice": str(px), "lastQty": "1", "bidPrice": str(px - 0.5),
            "bidQty": "1", "askPrice": str(px + 0.5), "askQty": "1", "openPrice": str(px),
            "highPrice": str(px),
            "lowPrice": str(px), "volume": "10", "quoteVolume": "100", "openTime": ts - 86400000,
            "closeTime": ts, "firstId": 1, "lastId": n, "count": n}


class FakeBinanceSpot(FakeVenue):
    """Enough of Binance spot for ccxt: REST 24 h ticker, websocket SUBSCRIBE and 24hrTicker events."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.rest["/api/v3/ticker/24hr"] = self._rest_ticker

    def _rest_ticker(self, q: dict[str, str]) -> dict[str, Any]:
        self.n += 1
        return ticker_24h(q["symbol"], 50000.0 + self.n % 5, self.n)

    def on_text(self, ws: ServerConnection, text: str) -> list[str]:
        msg = orjson.loads(text)
        if msg.get("method") == "SUBSCRIBE":
            self.subs[ws].update(msg["params"])
        return [orjson.dumps({"result": None, "id": msg.get("id")}).decode()]

    def frames(self, ws: ServerConnection, topic: str, n: int) -> list[str]:
        sym, _, kind = topic.partition("@")
        if kind != "ticker":
            return []
        px, ts = 50000.0 + n % 5, int(time.time() * 1000)
        return [orjson.dumps({
            "e": "24hrTicker", "E": ts, "s": sym.upper(), "p": "1", "P": "0.1", "w": str(px), "x": str(px),
            "c": str(px), "Q": "1", "b": str(px - 0.5), "B": "1", "a": str(px + 0.5), "A": "1", "o": str(px),
            "h": str(px), "l": str(px), "v": "10", "q": "100", "O": ts - 86400000, "C": ts, "F": 1, "L": n,
            "n": n}).decode()]


@pytest.fixture
async def venue() -> AsyncIterator[FakeBinanceSpot]:
    v = await FakeBinanceSpot().start()
    yield v
    await v.stop()


def src(**kw: Any) -> SourceConfig:
    base: dict[str, Any] = {"exchange": "binance", "symbols": ["BTC"], "channels": ["quotes"]}
    base.update(kw)
    return SourceConfig.model_validate(base)


def loopback_factory(v: FakeVenue, ws: bool, cls: type = ccxtpro.binance) -> Any:
    def make(source: SourceConfig) -> Any:
        ex = cls({"enableRateLimit": False})
        ex.urls["api"]["public"] = f"{v.url}/api/v3"
        ex.urls["api"]["ws"]["spot"] = f"{v.ws_url}/ws"
        ex.has = dict(ex.has, watchTicker=ws, watchBidsAsks=False)  # this stand-in streams tickers only
        ex.options["watchTickers"]["name"] = "ticker"  # the full ticker carries bid/ask, miniTicker not
        ex.set_markets(MARKETS)
        return ex
    return make


def test_market_choice_prefers_the_linear_swap() -> None:
    swap = {"base": "BTC", "quote": "USDT", "settle": "USDT", "swap": True, "linear": True, "active": True}
    spot = {"base": "BTC", "quote": "USDT", "spot": True, "active": True}
    inverse = {"base": "BTC", "quote": "USD", "settle": "BTC", "swap": True, "linear": False}
    assert pick_market({"a": spot, "b": swap, "c": inverse}, "BTC", "USDT") is swap
    assert pick_market({"a": spot, "c": inverse}, "BTC", "USDT") is spot
    assert pick_market({"c": inverse}, "BTC", "USDT") is None


def test_factory_routes_unknown_ids_to_ccxt() -> None:
    conn = build_connector(src(exchange="deribit"), [].append, Metrics())
    assert isinstance(conn, CcxtConnector)
    with pytest.raises(FeedError, match="no exchange"):
        build_connector(src(exchange="nosuchvenue"), [].append, Metrics())


async def test_rest_polling_path(venue: FakeBinanceSpot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ccxt_generic, "TICKER_POLL_S", 0.02)
    async with running(src(), exchange_factory=loopback_factory(venue, ws=False)) as (conn, ev, m):
        await wait_for(lambda: len(of(ev, Quote)) >= 3, 5, "polled quotes")
        q = of(ev, Quote)[0]
        assert (q.exchange, q.asset, q.instrument, q.quote) == ("binance", "BTC", "BTCUSDT", "USDT")
        assert q.ask - q.bid == pytest.approx(1.0)
        assert conn.status()["channels"]["ticker:BTC/USDT"]["mode"] == "poll"
        await wait_for(lambda: metric(m, "hedgewatch_messages_total", exchange="binance",
                                      channel="ticker") >= 3, 2, "counted")


async def test_websocket_path_survives_a_drop(venue: FakeBinanceSpot) -> None:
    async with running(src(), exchange_factory=loopback_factory(venue, ws=True)) as (conn, ev, m):
        await wait_for(lambda: len(of(ev, Quote)) >= 3, 5, "streamed quotes")
        assert conn.status()["channels"]["ticker:BTC/USDT"]["mode"] == "watch"
        assert any(msg.get("method") == "SUBSCRIBE" for _, msg in venue.received)
        await venue.drop_all()
        n = len(of(ev, Quote))
        await wait_for(lambda: len(of(ev, Quote)) > n + 3 and venue.connects >= 2, 3, "quotes again")
        assert metric(m, "hedgewatch_reconnects_total", exchange="binance") >= 1


class Flaky(ccxtpro.binance):  # type: ignore[misc]
    """A real ccxt exchange whose REST ticker fails with network errors a few times."""

    failures = 0

    async def fetch_ticker(self, symbol: str, params: Any = None) -> Any:
        if Flaky.failures < 4:
            Flaky.failures += 1
            raise (ccxt.RequestTimeout if Flaky.failures % 2 else ccxt.NetworkError)("boom")
        return await super().fetch_ticker(symbol, params or {})


async def test_survives_network_errors(venue: FakeBinanceSpot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ccxt_generic, "TICKER_POLL_S", 0.02)
    Flaky.failures = 0
    factory = loopback_factory(venue, ws=False, cls=Flaky)
    async with running(src(), exchange_factory=factory) as (conn, ev, _m):
        await wait_for(lambda: of(ev, Quote), 5, "quotes after the errors")
        assert Flaky.failures == 4
        states = [s.state for s in of(ev, FeedStatus)]
        assert states[:2] == ["disconnected", "subscribed"]
        assert conn.status()["channels"]["ticker:BTC/USDT"]["state"] == "subscribed"


async def test_unreachable_markets_keep_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    class Down(ccxtpro.binance):  # type: ignore[misc]
        async def load_markets(self, reload: bool = False, params: Any = None) -> Any:
            nonlocal calls
            calls += 1
            raise ccxt.ExchangeNotAvailable("down")

    async with running(src(), exchange_factory=lambda s: Down()) as (conn, _ev, _m):
        await wait_for(lambda: calls >= 4, 5, "retries")
        assert conn.status()["state"] == "loading markets"


SWAP = dict(MARKETS[0], symbol="BTC/USDT:USDT", settle="USDT", settleId="USDT", type="swap", spot=False,
            swap=True, contract=True, linear=True, inverse=False, contractSize=1.0)


class FakeBinanceUsdm(FakeBinanceSpot):
    """The futures REST endpoints ccxt polls for ticker, funding rate and open interest."""

    def __init__(self) -> None:
        super().__init__()
        self.rest["/fapi/v1/ticker/24hr"] = self._rest_ticker
        self.rest["/fapi/v1/premiumIndex"] = lambda q: {
            "symbol": q["symbol"], "markPrice": "50001.5", "indexPrice": "50000.2", "estimatedSettlePrice": "1",
            "lastFundingRate": "0.00012", "interestRate": "0.0001", "nextFundingTime": 1786550400000,
            "time": 1786540400000}
        self.rest["/fapi/v1/openInterest"] = lambda q: {"openInterest": "10659.509", "symbol": q["symbol"],
                                                        "time": 1786540400123}
        # settlements 4 h apart: premiumIndex states no interval, so the history tells it
        self.rest["/fapi/v1/fundingRate"] = lambda q: [
            {"symbol": q["symbol"], "fundingTime": 1786550400000 - k * 14_400_000, "fundingRate": "0.0001",
             "markPrice": "50000"} for k in (3, 2, 1)]


async def test_funding_and_open_interest_by_rest_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ccxt_generic, "TICKER_POLL_S", 0.05)
    monkeypatch.setattr(ccxt_generic, "FUNDING_POLL_S", 0.05)
    v = await FakeBinanceUsdm().start()

    def make(source: SourceConfig) -> Any:
        ex = ccxtpro.binanceusdm({"enableRateLimit": False})
        ex.urls["api"]["fapiPublic"] = f"{v.url}/fapi/v1"
        ex.has = dict(ex.has, watchTicker=False, watchFundingRate=False, watchBidsAsks=False)
        ex.set_markets([SWAP])
        return ex

    source = src(exchange="binanceusdm", channels=["quotes", "funding", "open_interest"],
                 open_interest_poll_s=0.05)
    try:
        events: list[Any] = []
        conn = CcxtConnector(source, events.append, Metrics(), exchange_factory=make)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(conn.run(), name="ccxt")
            await wait_for(lambda: of(events, Funding) and of(events, OpenInterest) and of(events, Quote), 5,
                           "funding, open interest and quotes")
            task.cancel()
        f = of(events, Funding)[0]
        assert (f.exchange, f.instrument, f.rate, f.interval_h, f.next_funding_ts) == (
            "binanceusdm", "BTCUSDT", 0.00012, 4.0, 1786550400.0)
        oi = of(events, OpenInterest)[0]
        assert (oi.contracts, oi.base, oi.ts_exchange) == (10659.509, 10659.509, 1786540400.123)
        assert set(conn.status()["channels"]) == {"ticker:BTC/USDT:USDT", "funding:BTC/USDT:USDT",
                                                  "open_interest:BTC/USDT:USDT"}
    finally:
        await v.stop()


def test_url_overrides_keep_each_endpoints_path() -> None:
    ex = ccxt_generic.default_factory(SourceConfig(exchange="binanceusdm", symbols=("BTC",),
                                                   rest_url="http://127.0.0.1:8001",
                                                   ws_url="ws://127.0.0.1:8002"))
    api = ex.urls["api"]
    assert api["fapiPublic"] == "http://127.0.0.1:8001/fapi/v1"
    assert api["fapiData"] == "http://127.0.0.1:8001/futures/data"
    assert api["ws"]["linear"] == "ws://127.0.0.1:8002/ws"
    assert ccxt_generic.rebase_url("wss://ws.okx.com:443/ws/v5/public?x=1", "ws://h:1/okx/") == \
        "ws://h:1/okx/ws/v5/public?x=1"

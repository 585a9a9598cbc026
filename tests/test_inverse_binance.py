"""Binance COIN-M (``binancecoinm``): coin-margined ``BTCUSD_PERP`` contracts of ``contractSize`` USD, as an
oracle source (a USD price from the inverse quote) with sizes converted to coins. Every message kind the
connector decodes is checked against the documented frames in ``tests/frames/binance_coinm.json``; the
connector runs against a loopback stand-in answering those documented bodies, and against the simulator's
COIN-M venue, whose frames must have the documented fields."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection

from hedgewatch.connectors import build_connector
from hedgewatch.connectors.base import FeedContext, Route
from hedgewatch.connectors.binance.connector import BinanceCoinmConnector, BinanceProtocol
from hedgewatch.connectors.binance.decode import BOOK, KLINE, MARK, TRADE
from hedgewatch.connectors.binance.instruments import binance_coinm
from hedgewatch.connectors.klines import fetch_history, page_limit, parse_rows
from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.connectors.simulator.scenario import VenueSpec
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.events import Candle, Funding, MarkPrice, OpenInterest, Quote, Trade
from hedgewatch.service.metrics import Metrics
from tests.connector_fakes import FAST, FakeVenue, of, running
from tests.support import wait_for

FRAMES = json.loads((Path(__file__).parent / "frames" / "binance_coinm.json").read_text())
SYM = "BTCUSD_200626"  # the documented stream examples' symbol
NOW = 1_600_000_000.0


def make_proto(out: list[Any], symbol: str = SYM, ct_val: float = 100.0) -> BinanceProtocol:
    ctx = FeedContext("binancecoinm", out.append, Metrics(), lambda: NOW, FAST)
    s = symbol.lower()
    args = ("BTC", symbol, "USD")
    routes = [Route(f"{s}@bookTicker", "bookTicker", BOOK, *args, 0.1),
              Route(f"{s}@markPrice@1s", "markPrice", MARK, *args, 1.0),
              Route(f"{s}@aggTrade", "aggTrade", TRADE, *args, 6.0, scale=ct_val),
              Route(f"{s}@kline_1m", "kline", KLINE, *args, 2.0)]
    return BinanceProtocol(ctx, "ws://x", routes, {}, inverse=True)


def combined(stream: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps({"stream": stream, "data": payload})


def test_instruments_are_the_perpetuals_with_their_contract_size() -> None:
    btc, eth = binance_coinm(FRAMES["rest.exchangeInfo"], ["BTC", "ETH", "SOL"])
    assert (btc.instrument, btc.quote, btc.ct_val, btc.inverse) == ("BTCUSD_PERP", "USD", 100.0, True)
    assert (eth.instrument, eth.ct_val, eth.inverse) == ("ETHUSD_PERP", 10.0, True)
    # 15,004 contracts of $100 at 50,000 are 30.008 BTC
    assert btc.base_qty(15_004, 50_000.0) == pytest.approx(30.008)


def handler(proto: BinanceProtocol, fast: bool) -> Callable[[bytes], None]:
    """The protocol's frame handler, or (``fast`` False) its untyped path alone, as a frame the typed schema
    did not fit takes."""
    return proto.handle if fast else (lambda raw: proto.decoder.untyped(raw, proto.ctx.clock()))


@pytest.mark.parametrize("fast", [True, False], ids=["typed path", "generic path"])
def test_book_ticker_is_a_usd_quote(fast: bool) -> None:
    out: list[Any] = []
    proto = make_proto(out)
    raw = combined(f"{SYM.lower()}@bookTicker", FRAMES["ws.bookTicker"])
    handler(proto, fast)(raw)
    assert out == [Quote("binancecoinm", "BTC", SYM, 9548.1, 9548.5, 1591268628.166, NOW, "USD")]


@pytest.mark.parametrize("fast", [True, False], ids=["typed path", "generic path"])
def test_agg_trade_contracts_become_coins_at_the_trade_price(fast: bool) -> None:
    out: list[Any] = []
    proto = make_proto(out)
    handler(proto, fast)(combined(f"{SYM.lower()}@aggTrade", FRAMES["ws.aggTrade"]))
    (t,) = out
    assert isinstance(t, Trade) and (t.price, t.quote, t.ts_exchange) == (9643.5, "USD", 1591261134.199)
    assert t.qty == pytest.approx(2 * 100 / 9643.5)  # 2 contracts of $100


@pytest.mark.parametrize("fast", [True, False], ids=["typed path", "generic path"])
def test_mark_price_carries_index_and_funding(fast: bool) -> None:
    out: list[Any] = []
    proto = make_proto(out, "BTCUSD_PERP")
    handler(proto, fast)(combined("btcusd_perp@markPrice@1s", FRAMES["ws.markPrice"]))
    mark, funding = out
    assert mark == MarkPrice("binancecoinm", "BTC", "BTCUSD_PERP", 11012.31359011, 10933.62615417,
                             1596095725.0, NOW, "USD")
    assert funding == Funding("binancecoinm", "BTC", "BTCUSD_PERP", 0.0, 8.0, 1596096000.0, 1596095725.0, NOW)


def test_a_delivery_mark_without_funding_gives_the_mark_only() -> None:
    out: list[Any] = []
    proto = make_proto(out, "BTCUSD_201225")
    proto.handle(combined("btcusd_201225@markPrice@1s", FRAMES["ws.markPrice.delivery"]))
    assert [type(e) for e in out] == [MarkPrice] and out[0].mark == 10934.62615417


def test_kline_volume_is_the_base_volume() -> None:
    out: list[Any] = []
    proto = make_proto(out)
    proto.handle(combined(f"{SYM.lower()}@kline_1m", FRAMES["ws.kline"]))
    (c,) = out
    assert isinstance(c, Candle)
    assert (c.open, c.high, c.low, c.close, c.closed) == (9638.9, 9639.8, 9638.6, 9639.8, False)
    assert c.volume == 1.61836886  # "q": the base asset volume; "v" (156) is contracts


def test_rest_klines_take_the_base_volume_and_pages_fit_the_200_day_span() -> None:
    (btc,) = binance_coinm(FRAMES["rest.exchangeInfo"], ["BTC"])
    (c,) = parse_rows("binancecoinm", "binancecoinm", btc, 60, FRAMES["rest.klines"], NOW)
    assert (c.open_ts, c.open, c.close, c.volume, c.closed) == (1591258320.0, 9640.7, 9642.0, 2.13660389, True)
    assert page_limit("binancecoinm", 86400) == 200 and page_limit("binancecoinm", 60) == 1500
    assert page_limit("binanceusdm", 86400) == 1500


class FakeCoinm(FakeVenue):
    """COIN-M on loopback: the documented REST bodies, and the documented stream payloads re-addressed to
    the perpetual (``dstream`` serves ``/stream`` only)."""

    def __init__(self) -> None:
        super().__init__()
        self.rest["/dapi/v1/exchangeInfo"] = lambda q: FRAMES["rest.exchangeInfo"]
        self.rest["/dapi/v1/fundingInfo"] = lambda q: []
        self.rest["/dapi/v1/openInterest"] = lambda q: FRAMES["rest.openInterest"]
        self.rest["/dapi/v1/premiumIndex"] = lambda q: FRAMES["rest.premiumIndex"][:1]
        self.rest["/dapi/v1/klines"] = lambda q: FRAMES["rest.klines"]

    def on_text(self, ws: ServerConnection, text: str) -> list[str]:
        msg = orjson.loads(text)
        self.subs[ws].update(msg["params"])
        return [orjson.dumps({"result": None, "id": msg["id"]}).decode()]

    def frames(self, ws: ServerConnection, topic: str, n: int) -> list[str]:
        sym, _, kind = topic.partition("@")
        key = {"bookTicker": "ws.bookTicker", "aggTrade": "ws.aggTrade", "markPrice@1s": "ws.markPrice"}.get(kind)
        if key is None or n > 1:
            return []
        return [orjson.dumps({"stream": topic, "data": dict(FRAMES[key], s=sym.upper())}).decode()]


@pytest.fixture
async def venue() -> AsyncIterator[FakeCoinm]:
    v = await FakeCoinm().start()
    yield v
    await v.stop()


def source(v: FakeVenue, **kw: Any) -> SourceConfig:
    return SourceConfig.model_validate({"exchange": "binancecoinm", "symbols": ["BTC", "ETH"],
                                        "ws_url": v.ws_url, "rest_url": v.url, **kw})


async def test_the_connector_on_documented_bodies(venue: FakeCoinm) -> None:
    async with running(source(venue, channels=["quotes", "trades", "mark", "funding"])) as (conn, ev, _):
        assert isinstance(conn, BinanceCoinmConnector)
        await wait_for(lambda: {e.asset for e in of(ev, Quote)} == {"BTC", "ETH"} and of(ev, Trade)
                       and of(ev, Funding), 5, "quotes, trades and funding")
        assert {p for p, _ in venue.received} == {"/stream"}
        assert conn.status()["instruments"] == {"BTC": "BTCUSD_PERP", "ETH": "ETHUSD_PERP"}
        eth = next(t for t in of(ev, Trade) if t.asset == "ETH")
        assert eth.qty == pytest.approx(2 * 10 / 9643.5)  # ETH contracts are $10
        assert all(q.quote == "USD" for q in of(ev, Quote))
        assert not conn.status()["rejected"]


async def test_open_interest_in_contracts_is_valued_exactly_in_usd(venue: FakeCoinm) -> None:
    async with running(source(venue, symbols=["BTC"], channels=["open_interest"],
                              open_interest_poll_s=0.2)) as (_, ev, _):
        await wait_for(lambda: of(ev, OpenInterest), 5, "open interest")
    oi = of(ev, OpenInterest)[0]
    # 15,004 contracts of $100: $1,500,400, in BTC at the mark (premiumIndex: no price streamed yet)
    assert (oi.contracts, oi.usd, oi.ts_exchange) == (15004.0, 1_500_400.0, 1591261042.378)
    assert oi.base == pytest.approx(1_500_400.0 / 11029.69574559)
    assert venue.rest_hits["/dapi/v1/premiumIndex"] >= 1


async def test_history_from_dapi_klines(venue: FakeCoinm) -> None:
    (c,) = await fetch_history(source(venue, symbols=["BTC"]), {"BTC": {60: 1}})
    assert (c.exchange, c.instrument, c.volume) == ("binancecoinm", "BTCUSD_PERP", 2.13660389)
    assert venue.rest_hits["/dapi/v1/klines"] == 1


# --- against the simulator: the same decoding on frames the simulator's COIN-M venue sends -------------


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    sc = load_scenario("default.yaml")
    async with Simulator(sc.model_copy(update={"venues": (VenueSpec(name="cm", protocol="binancecoinm"),)})) as s:
        yield s


def _keys(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _keys(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_keys(x[0])] if x else []
    return type(x).__name__


def test_simulated_frames_have_the_documented_fields(sim: Simulator) -> None:
    srv: Any = sim.servers["cm"]
    q = sim.models["cm"].quotes["BTC"]
    q.trades = [(7, q.ask, 0.05, False)]
    assert _keys(srv.book_ticker(q)) == _keys(FRAMES["ws.bookTicker"])
    assert _keys(srv.agg_trade(q, q.trades[0])) == _keys(FRAMES["ws.aggTrade"])
    assert _keys(srv.mark_price(q)) == _keys(FRAMES["ws.markPrice"])
    (kline,) = srv.klines_due(q, "1m")
    assert _keys(kline) == _keys(FRAMES["ws.kline"])
    assert _keys(srv.rest("/dapi/v1/openInterest", {"symbol": "BTCUSD_PERP"})) == _keys(FRAMES["rest.openInterest"])
    assert _keys(srv.rest("/dapi/v1/premiumIndex", {"symbol": "BTCUSD_PERP"})) == _keys(FRAMES["rest.premiumIndex"][:1])
    assert _keys(srv.rest("/dapi/v1/fundingRate", {"symbol": "BTCUSD_PERP", "limit": "2"})) == _keys(
        FRAMES["rest.fundingRate"])
    assert _keys(srv.rest("/dapi/v1/klines", {"symbol": "BTCUSD_PERP", "interval": "1m", "limit": "1"})) == _keys(
        FRAMES["rest.klines"])
    doc = FRAMES["rest.exchangeInfo"]["symbols"][1]
    row = next(s for s in srv.rest("/dapi/v1/exchangeInfo", {})["symbols"] if s["symbol"] == "BTCUSD_PERP")
    assert set(doc) - set(row) == set() and "status" not in row
    assert (row["contractSize"], row["marginAsset"], row["quoteAsset"]) == (100, "BTC", "USD")


async def test_coin_m_source_against_the_simulator(sim: Simulator) -> None:
    ep = sim.endpoints[0]
    assert (ep.exchange, ep.quote) == ("binancecoinm", "USD")
    src = SourceConfig.model_validate({"exchange": "binancecoinm", "symbols": ["BTC", "ETH"], "ws_url": ep.ws_url,
                                       "rest_url": ep.rest_url, "open_interest_poll_s": 0.2,
                                       "channels": ["quotes", "trades", "mark", "open_interest", "candles"]})
    events: list[Any] = []
    conn = build_connector(src, events.append, Metrics(), tuning=FAST)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(conn.run(), name="coinm")
        await wait_for(lambda: all(any(e.asset == a for e in of(events, cls)) for a in ("BTC", "ETH")
                                   for cls in (Quote, MarkPrice, OpenInterest, Trade, Candle)), 20, "coin-m feeds")
        task.cancel()
    for a, ct in (("BTC", 100.0), ("ETH", 10.0)):
        true = sim.models["cm"].quotes[a]
        quote = next(e for e in of(events, Quote) if e.asset == a)
        assert (quote.instrument, quote.quote) == (f"{a}USD_PERP", "USD")
        assert abs(quote.mid / true.mark - 1) < 0.01  # the inverse quote is a USD price
        oi = next(e for e in of(events, OpenInterest) if e.asset == a)
        assert oi.usd == oi.contracts * ct
        assert oi.base == pytest.approx(true.open_interest, rel=0.01)  # the venue's coins, within the price move
        trade = next(e for e in of(events, Trade) if e.asset == a)
        assert 0 < trade.qty * trade.price <= 10 * ct * 1000  # whole contracts converted to coins
    assert not conn.status()["rejected"]

"""Bybit inverse (a ``bybit`` source with quote ``USD``): coin-margined ``BTCUSD`` contracts of 1 USD on
``category=inverse`` and ``/v5/public/inverse``. Every message kind the connector decodes is checked against
the documented frames in ``tests/frames/bybit_inverse.json``; the connector runs against the simulator's
inverse venue, whose frames and REST bodies must have the documented fields."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from hedgewatch.connectors import build_connector
from hedgewatch.connectors.base import FeedContext, Route
from hedgewatch.connectors.bybit.connector import BybitProtocol
from hedgewatch.connectors.bybit.decode import KLINE, TICKERS, TRADES
from hedgewatch.connectors.bybit.instruments import bybit_category, bybit_perpetuals
from hedgewatch.connectors.klines import fetch_history
from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.connectors.simulator.scenario import VenueSpec
from hedgewatch.connectors.venue import CHANNELS
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.events import Candle, Funding, MarkPrice, OpenInterest, Quote, Trade
from hedgewatch.service.metrics import Metrics
from tests.connector_fakes import FAST, of
from tests.support import wait_for

FRAMES = json.loads((Path(__file__).parent / "frames" / "bybit_inverse.json").read_text())
NOW = 1_672_376_497.0


def make_proto(out: list[Any]) -> BybitProtocol:
    ctx = FeedContext("bybit", out.append, Metrics(), lambda: NOW, FAST)
    args = ("BTC", "BTCUSD", "USD")
    routes = [Route("tickers.BTCUSD", "tickers", TICKERS, *args, 0.1),
              Route("publicTrade.BTCUSD", "publicTrade", TRADES, *args, 6.0),
              Route("kline.1.BTCUSD", "kline", KLINE, *args, 12.0)]
    p = BybitProtocol(ctx, "ws://x", routes, {"BTCUSD": 8.0})
    p.want = frozenset(CHANNELS)
    p.inverse = True
    return p


def test_quote_usd_selects_the_inverse_perpetuals() -> None:
    body = FRAMES["rest.instrumentsInfo"]
    btc, eth = bybit_perpetuals(body, ["BTC", "ETH"], "USD")
    assert (btc.instrument, btc.quote, btc.ct_val, btc.inverse, btc.funding_interval_h) == (
        "BTCUSD", "USD", 1.0, True, 8.0)
    assert eth.instrument == "ETHUSD"  # the dated BTCUSDH26 (InverseFutures) is not the perpetual
    assert bybit_perpetuals(body, ["BTC"], "USDT") == []
    assert (bybit_category("USD"), bybit_category("USDT")) == ("inverse", "linear")


@pytest.mark.parametrize("fast", [True, False], ids=["typed path", "generic path"])
def test_tickers_snapshot_then_delta(fast: bool) -> None:
    out: list[Any] = []
    proto = make_proto(out)
    handle = proto.handle if fast else (lambda raw: proto.handle_generic(raw, NOW))
    handle(orjson.dumps(FRAMES["ws.tickers.snapshot"]))
    ts = 1672376496.682
    assert of(out, Quote) == [Quote("bybit", "BTC", "BTCUSD", 16596.0, 16597.5, ts, NOW, "USD")]
    assert of(out, MarkPrice) == [MarkPrice("bybit", "BTC", "BTCUSD", 16596.0, 16598.54, ts, NOW, "USD")]
    assert of(out, Funding) == [Funding("bybit", "BTC", "BTCUSD", -0.001034, 8.0, 1672387200.0, ts, NOW)]
    # openInterest is USD (contracts of $1), openInterestValue the coins
    assert of(out, OpenInterest) == [OpenInterest("bybit", "BTC", "BTCUSD", 373504107.0, 22505.67, 373504107.0,
                                                  ts, NOW)]
    out.clear()
    handle(orjson.dumps(FRAMES["ws.tickers.delta"]))
    assert [(q.bid, q.ask) for q in of(out, Quote)] == [(16596.5, 16597.5)]
    (oi,) = of(out, OpenInterest)
    assert (oi.contracts, oi.base, oi.usd) == (373512107.0, 22506.15, 373512107.0)


def test_trade_sizes_are_usd_contracts_converted_at_the_trade_price() -> None:
    out: list[Any] = []
    make_proto(out).handle(orjson.dumps(FRAMES["ws.publicTrade"]))
    # 16,597 contracts of $1 at 16,597: 1 BTC
    assert out == [Trade("bybit", "BTC", "BTCUSD", 16597.0, 1.0, 1672376496.862, NOW, "USD")]


def test_kline_volume_is_the_turnover_in_coins() -> None:
    out: list[Any] = []
    make_proto(out).handle(orjson.dumps(FRAMES["ws.kline"]))
    (c,) = out
    assert isinstance(c, Candle) and (c.open, c.close, c.closed) == (16590.5, 16597.0, False)
    assert c.volume == 2.000482  # "turnover" in BTC; "volume" (33,194) is USD contracts


# --- against the simulator ------------------------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    sc = load_scenario("default.yaml")
    venue = VenueSpec(name="bybit-inverse", protocol="bybit", inverse=True)
    async with Simulator(sc.model_copy(update={"venues": (venue,)})) as s:
        yield s


def _keys(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _keys(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_keys(x[0])] if x else []
    return type(x).__name__


def test_simulated_bodies_have_the_documented_fields(sim: Simulator) -> None:
    srv: Any = sim.servers["bybit-inverse"]
    assert srv.accepts_path("/v5/public/inverse", "") and not srv.accepts_path("/v5/public/linear", "")
    tickers = srv.rest("/v5/market/tickers", {"category": "inverse", "symbol": "BTCUSD"})
    doc = FRAMES["rest.tickers"]
    assert set(doc["result"]["list"][0]) <= set(tickers["result"]["list"][0])
    assert tickers["result"]["category"] == "inverse"
    row, q = tickers["result"]["list"][0], sim.models["bybit-inverse"].quotes["BTC"]
    assert float(row["openInterest"]) == pytest.approx(float(row["openInterestValue"]) * q.mark, rel=1e-3)
    oi = srv.rest("/v5/market/open-interest", {"category": "inverse", "symbol": "BTCUSD", "intervalTime": "5min",
                                               "limit": "2"})
    assert _keys(oi["result"]) == _keys(FRAMES["rest.openInterest"]["result"])
    assert float(oi["result"]["list"][0]["openInterest"]) > 1e6  # USD, not coins
    (inst,) = srv.rest("/v5/market/instruments-info", {"category": "inverse", "symbol": "BTCUSD"})["result"]["list"]
    doc_inst = FRAMES["rest.instrumentsInfo"]["result"]["list"][0]
    assert (inst["contractType"], inst["quoteCoin"], inst["settleCoin"]) == ("InversePerpetual", "USD", "BTC")
    assert inst["lotSizeFilter"]["qtyStep"] == doc_inst["lotSizeFilter"]["qtyStep"] == "1"
    assert srv.rest("/v5/market/tickers", {"category": "linear"})["retCode"] == 10001
    snapshot = set(FRAMES["ws.tickers.snapshot"]["data"])
    assert snapshot <= set(srv.ticker_fields(q, refresh=True))
    book = srv.orderbook(q)
    assert _keys(book) == _keys(FRAMES["ws.orderbook.1"])
    assert book["topic"] == "orderbook.1.BTCUSD" and float(book["data"]["b"][0][1]) >= 1  # whole USD contracts


async def test_inverse_source_against_the_simulator(sim: Simulator) -> None:
    ep = sim.endpoints[0]
    assert (ep.exchange, ep.quote) == ("bybit", "USD")
    src = SourceConfig.model_validate({"exchange": "bybit", "quote": "USD", "symbols": ["BTC", "ETH"],
                                       "ws_url": ep.ws_url, "rest_url": ep.rest_url,
                                       "channels": ["quotes", "trades", "mark", "open_interest", "candles"]})
    events: list[Any] = []
    conn = build_connector(src, events.append, Metrics(), tuning=FAST)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(conn.run(), name="bybit-inverse")
        await wait_for(lambda: all(any(e.asset == a for e in of(events, cls)) for a in ("BTC", "ETH")
                                   for cls in (Quote, MarkPrice, OpenInterest, Trade)), 20, "inverse feeds")
        task.cancel()
    assert sorted(conn.status()["connections"])[0].startswith("inverse-")
    for a in ("BTC", "ETH"):
        true = sim.models["bybit-inverse"].quotes[a]
        quote = next(e for e in of(events, Quote) if e.asset == a)
        assert (quote.instrument, quote.quote) == (f"{a}USD", "USD")
        assert abs(quote.mid / true.mark - 1) < 0.01
        oi = next(e for e in of(events, OpenInterest) if e.asset == a)
        assert oi.base == pytest.approx(true.open_interest, rel=0.01)
        assert oi.usd == oi.contracts and oi.usd == pytest.approx(oi.base * true.mark, rel=0.01)
    assert not conn.status()["rejected"]
    (candle,) = await fetch_history(src, {"BTC": {60: 1}})
    bar = sim.models["bybit-inverse"].candles.klines("BTC", 60_000, sim.path.now_ms if sim.path else 0,
                                                      limit=1)[-1]
    # the base volume (the bar may have grown by a trade between the two reads), not USD contracts
    assert candle.instrument == "BTCUSD" and candle.volume == pytest.approx(bar[5], rel=0.5)


async def test_orderbook_1_over_the_inverse_websocket(sim: Simulator) -> None:
    ep = sim.endpoints[0]
    async with connect(f"{ep.ws_url}/v5/public/inverse") as ws:
        await ws.send(orjson.dumps({"op": "subscribe", "req_id": "1", "args": ["orderbook.1.BTCUSD"]}).decode())
        ack = orjson.loads(await ws.recv())
        assert (ack["success"], ack["op"], ack["req_id"]) == (True, "subscribe", "1")
        book = orjson.loads(await ws.recv())
    assert _keys(book) == _keys(FRAMES["ws.orderbook.1"])
    q = sim.models["bybit-inverse"].quotes["BTC"]
    assert float(book["data"]["a"][0][0]) > float(book["data"]["b"][0][0]) > q.mid * 0.99

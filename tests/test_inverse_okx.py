"""Coin-margined (inverse) contracts on OKX: ``BTC-USD-SWAP`` with ``ctVal`` in USD, as an oracle source
(a USD price from the inverse quote), its sizes in base units, against the simulator speaking OKX."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from hedgewatch.connectors.base import FeedContext, Route
from hedgewatch.connectors.okx.connector import OkxConnector, OkxProtocol
from hedgewatch.connectors.okx.decode import TRADES
from hedgewatch.connectors.okx.instruments import okx_swaps
from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.events import MarkPrice, OpenInterest, Quote, Trade
from hedgewatch.service.metrics import Metrics
from tests.connector_fakes import FAST, of
from tests.support import wait_for

# The shape of OKX's documented /api/v5/public/instruments row for an inverse swap
BTC_USD_SWAP = {
    "instType": "SWAP", "instId": "BTC-USD-SWAP", "uly": "BTC-USD", "instFamily": "BTC-USD", "baseCcy": "",
    "quoteCcy": "", "settleCcy": "BTC", "ctVal": "100", "ctMult": "1", "ctValCcy": "USD", "optType": "",
    "stk": "", "listTime": "1573557408000", "expTime": "", "lever": "125", "tickSz": "0.1", "lotSz": "1",
    "minSz": "1", "ctType": "inverse", "alias": "", "state": "live",
}
BTC_USDT_SWAP = dict(BTC_USD_SWAP, instId="BTC-USDT-SWAP", uly="BTC-USDT", instFamily="BTC-USDT",
                     settleCcy="USDT", ctVal="0.01", ctValCcy="BTC", ctType="linear")


def test_instrument_mapping_picks_the_inverse_swap_for_usd() -> None:
    body = {"code": "0", "msg": "", "data": [BTC_USDT_SWAP, BTC_USD_SWAP,
                                             dict(BTC_USD_SWAP, instId="ETH-USD-SWAP", uly="ETH-USD",
                                                  instFamily="ETH-USD", settleCcy="ETH", ctVal="10")]}
    (btc, eth) = okx_swaps(body, ["BTC", "ETH"], "USD")
    assert (btc.instrument, btc.quote, btc.ct_val, btc.inverse) == ("BTC-USD-SWAP", "USD", 100.0, True)
    assert (eth.instrument, eth.ct_val, eth.inverse) == ("ETH-USD-SWAP", 10.0, True)
    (lin,) = okx_swaps(body, ["BTC"], "USDT")
    assert (lin.instrument, lin.ct_val, lin.inverse) == ("BTC-USDT-SWAP", 0.01, False)
    # 1,000 contracts of $100 at 50,000 are 2 BTC; 1,000 linear contracts of 0.01 BTC are 10 BTC
    assert btc.base_qty(1000, 50_000.0) == 2.0 and lin.base_qty(1000, 50_000.0) == 10.0


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    sc = load_scenario("default.yaml")
    venues = [v.model_copy(update={"inverse": True, "latency_ms": 0.0}) for v in sc.venues if v.protocol == "okx"]
    async with Simulator(sc.model_copy(update={"venues": venues})) as s:
        yield s


async def test_inverse_swaps_are_oracle_sources_in_usd(sim: Simulator) -> None:
    ep = sim.endpoints[0]
    source = SourceConfig.model_validate({
        "exchange": "okx", "symbols": ["BTC", "ETH"], "quote": "USD", "ws_url": ep.ws_url,
        "rest_url": ep.rest_url, "channels": ["quotes", "mark", "open_interest", "trades"]})
    events: list[Any] = []
    conn = OkxConnector(source, events.append, Metrics(), tuning=FAST)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(conn.run(), name="okx-inverse")
        await wait_for(lambda: all(any(e.asset == a for e in of(events, cls)) for a in ("BTC", "ETH")
                                   for cls in (Quote, MarkPrice, OpenInterest, Trade)), 20, "inverse feeds")
        task.cancel()
    assert sim.path is not None
    for a, ct in (("BTC", 100.0), ("ETH", 10.0)):
        q = next(e for e in of(events, Quote) if e.asset == a)
        assert (q.instrument, q.quote) == (f"{a}-USD-SWAP", "USD")
        true = sim.models["okx"].quotes[a].mark
        assert abs(q.mid / true - 1) < 0.01  # the inverse quote is a USD price
        oi = next(e for e in of(events, OpenInterest) if e.asset == a)
        # oi is in $ct contracts, oiCcy in the coin: contracts x ct / price = coins
        assert oi.contracts * ct / oi.base == pytest.approx(true, rel=0.01)
    assert not conn.status().get("rejected")


def test_inverse_trade_sizes_are_converted_at_the_trade_price() -> None:
    out: list[Any] = []
    ctx = FeedContext("okx", out.append, Metrics(), lambda: 1000.0, FAST)
    r = Route("trades:BTC-USD-SWAP", "trades", TRADES, "BTC", "BTC-USD-SWAP", "USD", 1.0,
              topic={"channel": "trades", "instId": "BTC-USD-SWAP"}, scale=100.0)
    proto = OkxProtocol(ctx, "ws://x", [r])
    proto.inverse = frozenset({"BTC-USD-SWAP"})
    proto.handle(orjson.dumps({"arg": {"channel": "trades", "instId": "BTC-USD-SWAP"}, "data": [
        {"instId": "BTC-USD-SWAP", "tradeId": "1", "px": "50000", "sz": "25", "side": "buy",
         "ts": "1786540471871"}]}))
    # 25 contracts of $100 at 50,000: $2,500 = 0.05 BTC
    assert out == [Trade("okx", "BTC", "BTC-USD-SWAP", 50_000.0, 0.05, 1786540471.871, 1000.0, "USD")]

"""A hedge held in Binance COIN-M ``BTCUSD_PERP`` through the whole daemon.

The four-phase scenario's venues plus a simulated Binance COIN-M venue (coin-margined ``<A>USD_PERP``: 100
USD a contract for BTC); the daemon's COIN-M source feeds the oracle with USD prices from the inverse
quotes, and the hedge is configured as the venue's own contract: inverse, 100 USD of face value, settled
in BTC, 10x. The advice must be sized in contracts of 100 USD whatever BTC's price, with its value, margin
and funding stated in BTC at BTC's mark; the position's P&L and funding, booked with the same contract,
come out in BTC as the venue settles them (``1/price`` P&L, funding on the coin value of the position).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.connectors.binance.connector import BinanceCoinmConnector
from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import config_from_dict
from hedgewatch.service.contracts import ContractSpec
from hedgewatch.service.hedge import hedge_spec
from hedgewatch.service.ledger import Ledger
from tests.stepped import settle, stepped_sources, warm_up
from tests.support import RedisServer, free_port
from tests.test_four_phase_daemon import INDEX, KEYS, PREFIX, R1, RULES, S1, UNITS, Collector, at

FACE_USD = 100.0
LEVERAGE = 10.0
RUN_S = 10 * 60


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    sc = load_scenario("four_phase.yaml")
    binance = next(v for v in sc.venues if v.protocol == "binanceusdm")
    coinm = binance.model_copy(update={"name": "binance-coinm", "protocol": "binancecoinm", "rates": {}})
    async with Simulator(sc.model_copy(update={"speed": 1e-9, "venues": (*sc.venues, coinm)})) as s:
        yield s


def config(sim: Simulator, redis_url: str, tmp_path: Path) -> Any:
    return config_from_dict({
        "sources": stepped_sources(sim),
        "index": {"name": INDEX, "constituents": list(sim.scenario.assets), "weighting": "equal",
                  "base_level": 1000.0, "publish_interval_s": 5.0},
        "portfolio": {"holdings": {INDEX: UNITS}, "hedge_ratio": 0.2, "lot_size": 1,
                      "position_contracts": -2000, "tolerance_ratio": 0.02,
                      "instrument": {"kind": "inverse", "asset": "BTC", "contract_size": FACE_USD,
                                     "exchange": "binance-coinm", "symbol": "BTCUSD_PERP", "leverage": LEVERAGE}},
        "rules": {"files": [str(RULES)], "levels": {"R1": R1, "S1": S1}},
        "redis": {"url": redis_url, "prefix": PREFIX, "outbox_dir": str(tmp_path / "outbox")},
        "http": {"port": free_port()},
    }, "<coin-m hedge>", {})


@pytest.mark.timeout(300)
async def test_a_hedge_on_binance_coin_m_is_sized_and_accounted_in_its_contract(
        sim: Simulator, redis_srv: RedisServer, tmp_path: Path) -> None:
    assert sim.path is not None
    path = sim.path
    cfg = config(sim, redis_srv.url, tmp_path)
    daemon = Daemon(cfg, clock=lambda: path.now_ms / 1000.0)
    hedge_ch, index_ch = KEYS.hedge_channel(INDEX), KEYS.index_channel(INDEX)
    collector = Collector(redis_srv.url, [hedge_ch, index_ch])
    hedges, snapshots = collector.messages[hedge_ch], collector.messages[index_ch]
    stop, subscribed = asyncio.Event(), asyncio.Event()
    coinm = next(c for c in daemon.connectors if c.name == "binance-coinm")
    assert isinstance(coinm, BinanceCoinmConnector)
    try:
        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(collector.run(subscribed), name="collector")
            await subscribed.wait()
            run = tg.create_task(daemon.run(stop), name="daemon")
            await daemon.started.wait()

            def ready() -> bool:
                oracle = daemon.market.oracle("BTC")
                return bool(hedges) and oracle is not None and oracle.n_valid == 4

            await warm_up(sim, daemon, ready, 300)
            end = path.elapsed_s + RUN_S
            while path.elapsed_s < end:
                sim.step()
                await settle(daemon)
            stop.set()
            assert await run == 0
            await asyncio.sleep(0.2)
            listener.cancel()
    finally:
        await collector.close()

    # the venue's own contract: BTCUSD_PERP of contractSize 100 USD, and its quotes a USD source of BTC
    (btc,) = [i for i in coinm.instruments if i.asset == "BTC"]
    assert (btc.instrument, btc.ct_val, btc.inverse, btc.quote) == ("BTCUSD_PERP", FACE_USD, True, "USD")
    spec = hedge_spec(cfg.portfolio)
    assert spec == ContractSpec.inverse(btc.ct_val, "BTC", lot_size=1)
    last = snapshots[-1]
    assert last["constituents"]["BTC"]["sources"] == 4

    h = next(h for h in hedges if h["reason"] == "initial")
    mark = h["futures_price"]  # BTC's mark, the price of a BTC contract
    snap = at(snapshots, h["ts"])
    assert mark == pytest.approx(snap["assets"]["BTC"]["mark_price"], rel=1e-3)
    assert abs(mark / sim.models["binance-coinm"].quotes["BTC"].mark - 1) < 0.05
    # sized in contracts of $100 whatever BTC's price: the target notional over the face value
    assert (h["contract_kind"], h["contract_size"], h["settle"]) == ("inverse", FACE_USD, "BTC")
    target = h["target_contracts"]
    assert target == round(h["portfolio_value_usd"] * h["ratio"] / FACE_USD)
    assert 1900 <= target <= 2100 and h["within_band"] and h["side"] == "none"
    # value and margin in BTC: contracts x 100 / price, over the leverage
    assert h["target_value_settle"] == pytest.approx(target * FACE_USD / mark)
    assert h["margin_settle"] == pytest.approx(target * FACE_USD / mark / LEVERAGE)
    # funding in BTC on the coin value of the short: received while the rate is positive (3 fundings a day)
    fr = snap["assets"]["BTC"]["funding_rate_8h"]
    assert h["funding_per_day_settle"] == pytest.approx(-target * FACE_USD / mark * fr * 3)
    assert h["funding_per_day_usd"] == pytest.approx(h["funding_per_day_settle"] * mark)

    # the short booked in that contract: P&L in BTC is 100 x N x (1/p0 - 1/p1), funding on N x 100 / mark
    p0, p1 = mark, last["assets"]["BTC"]["mark_price"]
    ledger = Ledger(spec)
    ledger.target(h["ts"], -target, p0)
    ledger.mark_to(last["ts"], p1)
    pnl_btc = -target * FACE_USD * (1 / p0 - 1 / p1)
    assert spec.pnl(-target, p0, p1) == pytest.approx(pnl_btc)
    assert ledger.pnl_usd == pytest.approx(pnl_btc * p1)
    assert (ledger.pnl_usd > 0) == (p1 < p0)  # the short gains while BTC falls
    rate = sim.models["binance-coinm"].quotes["BTC"].funding_rate  # BTCUSD_PERP's own rate
    received_btc = target * FACE_USD / p1 * rate
    assert ledger.fund(last["ts"], rate, p1) == pytest.approx(received_btc * p1)
    # the position is worth N x 100 USD whatever the price: its notional does not move with BTC
    assert spec.notional_usd(-target, p1) == spec.notional_usd(-target, p0) == -target * FACE_USD

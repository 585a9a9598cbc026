"""The four-phase story through the whole daemon with a coin-margined hedge.

The same scenario, rules and $1,000,000 portfolio as ``test_four_phase_daemon.py``, with a fourth venue
serving OKX's coin-margined ``<ASSET>-USD-SWAP`` (a USD price from each inverse quote joins the oracle), and
the hedge held in an inverse BTC contract of $100 (Binance COIN-M ``BTCUSD_PERP``'s size): sized in
contracts of $100 of face value whatever BTC's price, its value, margin and funding stated in BTC.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import config_from_dict
from hedgewatch.service.contracts import ContractSpec
from tests.stepped import settle, stepped_sources, warm_up
from tests.support import RedisServer, free_port
from tests.test_four_phase_daemon import INDEX, KEYS, PHASES_S, PREFIX, R1, RULES, S1, UNITS, Collector, at

FACE_USD = 100.0
END_S = 75 * 60
SPEC = ContractSpec.inverse(FACE_USD, "BTC", lot_size=1)


def phase(t: float, start: float) -> int:
    return sum(1 for p in PHASES_S if t - start >= p)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    sc = load_scenario("four_phase.yaml")
    okx = next(v for v in sc.venues if v.protocol == "okx")
    venues = [*sc.venues, okx.model_copy(update={"name": "okx-inverse", "inverse": True})]
    async with Simulator(sc.model_copy(update={"speed": 1e-9, "venues": venues})) as s:
        yield s


def config(sim: Simulator, redis_url: str, tmp_path: Path) -> Any:
    sources = stepped_sources(sim)
    for s in sources:
        if s["name"] == "okx-inverse":
            s["quote"] = "USD"
    return config_from_dict({
        "sources": sources,
        "index": {"name": INDEX, "constituents": list(sim.scenario.assets), "weighting": "equal",
                  "base_level": 1000.0, "publish_interval_s": 5.0},
        "portfolio": {"holdings": {INDEX: UNITS}, "hedge_ratio": 0.2, "lot_size": 1,
                      "position_contracts": -2000, "tolerance_ratio": 0.02,
                      "instrument": {"kind": "inverse", "asset": "BTC", "contract_size": FACE_USD,
                                     "exchange": "okx-inverse", "symbol": "BTC-USD-SWAP", "leverage": 10}},
        "rules": {"files": [str(RULES)], "levels": {"R1": R1, "S1": S1}},
        "redis": {"url": redis_url, "prefix": PREFIX, "outbox_dir": str(tmp_path / "outbox")},
        "http": {"port": free_port()},
    }, "<four-phase coin-margined>", {})


@pytest.mark.timeout(400)  # 75 simulated minutes over four venues: ~25 s alone, much longer on a loaded machine
async def test_four_phase_story_with_a_coin_margined_hedge(sim: Simulator, redis_srv: RedisServer,
                                                           tmp_path: Path) -> None:
    assert sim.path is not None
    path = sim.path
    start = path.now_ms / 1000.0
    daemon = Daemon(config(sim, redis_srv.url, tmp_path), clock=lambda: path.now_ms / 1000.0)
    hedge_ch, index_ch = KEYS.hedge_channel(INDEX), KEYS.index_channel(INDEX)
    collector = Collector(redis_srv.url, [hedge_ch, index_ch])
    hedges, snapshots = collector.messages[hedge_ch], collector.messages[index_ch]
    stop, subscribed = asyncio.Event(), asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(collector.run(subscribed), name="collector")
            await subscribed.wait()
            run = tg.create_task(daemon.run(stop), name="daemon")
            await daemon.started.wait()

            def ready() -> bool:
                oracles = [daemon.market.oracle(a) for a in daemon.config.index.constituents]
                return (bool(hedges) and all(o is not None and o.n_valid == 4 for o in oracles)
                        and daemon.rules.state()["signals"].get("sma_50_1d") is not None)

            await warm_up(sim, daemon, ready, 300)
            warm_at = start + path.elapsed_s
            while path.elapsed_s < END_S:
                sim.step()
                await settle(daemon)
            stop.set()
            assert await run == 0
            await asyncio.sleep(0.2)
            listener.cancel()
    finally:
        await collector.close()

    # the inverse quotes are a fourth USD source of every constituent
    assert all(s["constituents"][a]["sources"] == 4 for s in snapshots if s["ts"] >= warm_at
               for a in sim.scenario.assets)
    # the same story of ratios, in contracts of $100 whatever BTC's price: about 2,000 -> 5,000 -> 1,000
    # (the position does not follow the advice yet, and $100 lots make the target move by a lot with every
    # small change of the portfolio's value: drift reminders repeat; the target changes are what matter here)
    drift = [h for h in hedges if h["reason"] == "drift"]
    assert all((round(h["ratio"], 6), h["side"]) in {(0.5, "sell"), (0.1, "buy")} for h in drift)
    hedges = [h for h in hedges if h["reason"] != "drift"]
    recs = [(phase(h["ts"], start), h["reason"], h["ratio"], h["side"]) for h in hedges]
    assert recs == [(1, "initial", 0.2, "none"), (1, "target_changed", pytest.approx(0.5), "sell"),
                    (4, "target_changed", pytest.approx(0.1), "buy")]
    for h in hedges:
        assert (h["contract_kind"], h["contract_size"], h["settle"]) == ("inverse", FACE_USD, "BTC")
        assert h["target_contracts"] == round(h["portfolio_value_usd"] * h["ratio"] / FACE_USD)
        btc = h["futures_price"]  # the BTC contract at BTC's mark, not the index level
        assert 50_000 < btc < 150_000
        assert h["target_value_settle"] == pytest.approx(h["target_contracts"] * FACE_USD / btc)
        assert h["margin_settle"] == pytest.approx(h["target_value_settle"] / 10)
        assert h["trade_notional_usd"] == pytest.approx(h["trade_contracts"] * FACE_USD)
    initial, raised, lowered = hedges
    assert 1900 <= initial["target_contracts"] <= 2100 and initial["within_band"]
    assert 4800 <= raised["target_contracts"] <= 5200
    assert raised["trade_contracts"] == raised["target_contracts"] - 2000
    assert 900 <= lowered["target_contracts"] <= 1100
    # the short of the raised size from the raise to the drop: its P&L is in BTC, 1/price
    p0 = at(snapshots, raised["ts"])["assets"]["BTC"]["mark_price"]
    p1 = at(snapshots, lowered["ts"] - 5)["assets"]["BTC"]["mark_price"]
    n = raised["target_contracts"]
    pnl_btc = SPEC.pnl(-n, p0, p1)
    assert pnl_btc == pytest.approx(-n * FACE_USD * (1 / p0 - 1 / p1))
    assert (pnl_btc > 0) == (p1 < p0)  # the short gains in the coin while BTC falls

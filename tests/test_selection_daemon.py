"""Selected constituents through the whole daemon: the exchange simulator on loopback serves the venues and a
CoinGecko-style ``/api/v3/coins/markets``; the daemon (in this process, real connectors, real HTTP) polls it
with the REST provider, builds the index from the top N by market cap, and keeps members at a refresh that
reorders them within the rank buffer.

The scenario's market caps (price x circulating supply): BTC 1.19T, ETH 360B, TRX 210B (no source is
configured for it: passed over, said once), USDT 140B (a stablecoin: never a member), XRP 110B (a source is
configured for it, but no venue lists it: passed over once the others are priced), BNB 87B, SOL 72B,
DOGE 22B. The top 3 members are therefore BTC, ETH and BNB.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from hedgewatch.connectors.simulator import Scenario, Simulator, parse_scenario
from hedgewatch.service.app import Daemon, Deadlines
from hedgewatch.service.config import config_from_dict
from hedgewatch.service.constituents import parse_candidates, select
from tests.support import free_port, wait_for

INDEX = "SEL"
QUOTED = ["BTC", "ETH", "BNB", "SOL", "DOGE"]  # what the venues list
CONFIGURED = [*QUOTED, "XRP"]  # what the daemon's sources ask for
SCENARIO = """
seed: 5
tick_interval_s: 0.1
history_days: 2
assets:
  BTC: {price: 60000, volatility: 0.2, circulating_supply: 19800000, max_supply: 21000000}
  ETH: {price: 3000, volatility: 0.2, circulating_supply: 120000000, tick_size: 0.01}
  USDT: {price: 1.0, volatility: 0.0, circulating_supply: 140000000000, tick_size: 0.0001, qty_step: 1}
  XRP: {price: 2.0, volatility: 0.2, circulating_supply: 55000000000, tick_size: 0.0001, qty_step: 1}
  TRX: {price: 0.3, volatility: 0.2, circulating_supply: 700000000000, tick_size: 0.00001, qty_step: 1}
  BNB: {price: 600, volatility: 0.2, circulating_supply: 145000000, tick_size: 0.01}
  SOL: {price: 150, volatility: 0.2, circulating_supply: 480000000, total_supply: 600000000,
        tick_size: 0.01, qty_step: 0.01}
  DOGE: {price: 0.15, volatility: 0.2, circulating_supply: 146000000000, tick_size: 0.00001, qty_step: 1}
venues:
  - {name: binanceusdm, protocol: binanceusdm, assets: [BTC, ETH, BNB, SOL, DOGE]}
  - {name: bybit, protocol: bybit, assets: [BTC, ETH, BNB, SOL, DOGE]}
"""


def scenario(ports: tuple[int, int] = (0, 0)) -> Scenario:
    sc = parse_scenario(SCENARIO, "<selection>")
    venues = tuple(v.model_copy(update={"port": p}) for v, p in zip(sc.venues, ports, strict=True))
    return sc.model_copy(update={"venues": venues})


def daemon(endpoints: list[tuple[str, str, str, str]], url: str, refresh_s: float) -> Daemon:
    cfg = config_from_dict({
        "sources": [{"exchange": ex, "name": name, "symbols": CONFIGURED, "ws_url": ws, "rest_url": rest}
                    for name, ex, ws, rest in endpoints],
        "index": {"name": INDEX, "weighting": "cap", "rebalance": {"schedule": "manual"},
                  "selection": {"top_n": 3, "provider": "rest", "url": url, "rank_buffer": 1,
                                "refresh_s": refresh_s}},
        "http": {"port": free_port()},
    }, "<selection>", {})
    d = Daemon(cfg, deadlines=Deadlines(drain_s=1.0, flush_s=1.0, cancel_s=1.0))
    assert d.selection is not None
    # production: retries from 1 s, 60 s of grace for an unpriced member; the shapes are the same
    d.selection.retry_base_s = 0.05
    d.selection.price_grace_s, d.selection.price_check_s = 1.0, 0.05
    return d


@asynccontextmanager
async def running(d: Daemon) -> AsyncIterator[asyncio.Task[int]]:
    """The daemon running in this loop; stopped on exit, and the stop must be prompt and clean."""
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop), name="daemon")
    await d.started.wait()
    try:
        yield task
    finally:
        stop.set()
        t0 = time.monotonic()
        assert await task == 0
        assert time.monotonic() - t0 < 3.5  # the selection task is cancelled with the others


async def readyz(d: Daemon) -> bool:
    async with httpx.AsyncClient(timeout=1.0) as http:
        try:
            r = await http.get(f"http://127.0.0.1:{d.http.port}/readyz")
        except httpx.TransportError:
            return False
    return r.status_code == 200


def caps_now(sim: Simulator, assets: list[str]) -> dict[str, float]:
    assert sim.coins is not None
    return {a: sim.reference_price(a) * sim.coins.supply[a][0] for a in assets}


def check_cap_weights(d: Daemon, sim: Simulator, members: list[str]) -> None:
    snap: dict[str, Any] = d.market.snapshot(time.time())
    assert sorted(snap["constituents"]) == sorted(members)
    caps = caps_now(sim, members)
    total = sum(caps.values())
    for a, c in snap["constituents"].items():
        # the path moves ~1e-5 between the provider's answer and this check
        assert c["target_weight"] == pytest.approx(caps[a] / total, rel=1e-3), a
        assert c["weight"] == pytest.approx(c["target_weight"], rel=1e-3), a
    assert sum(c["target_weight"] for c in snap["constituents"].values()) == pytest.approx(1.0)


async def test_rest_selection_builds_turns_ready_and_does_not_churn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with Simulator(scenario()) as sim:
        endpoints = [(e.name, e.exchange, e.ws_url, e.rest_url) for e in sim.endpoints]
        d = daemon(endpoints, sim.coins_markets_url(1), refresh_s=0.2)
        assert d.selection is not None
        async with running(d):
            await wait_for(lambda: readyz(d), 10, "/readyz to turn 200")
            assert d.market.rebalancer.members == ["BTC", "ETH", "BNB"]
            check_cap_weights(d, sim, ["BTC", "ETH", "BNB"])
            assert d.market.snapshot(time.time())["weighting"] == "cap"
            assert d.state()["selection"]["passed_over"] == ["TRX", "XRP"]

            # SOL's circulating supply grows 35%: it overtakes BNB (97B against 87B), but BNB stays
            # within top_n + rank_buffer, so a rebalance keeps the members and only re-weights them
            assert sim.coins is not None
            sim.coins.set_supply("SOL", 648_000_000)
            seen = d.selection.fetched
            await wait_for(lambda: d.selection is not None and d.selection.fetched >= seen + 2, 5,
                           "two refreshes after the supply change")
            cands = d.market.rebalancer.candidates
            assert cands is not None
            held = ["BTC", "ETH", "BNB"]
            assert "XRP" not in {c.symbol for c in cands}  # still unpriced: still passed over
            assert select(cands, 3, held, rank_buffer=0, allowed=set(QUOTED)) == ["BTC", "ETH", "SOL"]
            assert d.market.rebalance_now(time.time())
            assert d.market.rebalancer.history[-1]["added"] == []
            assert d.market.rebalancer.history[-1]["removed"] == []
            assert d.market.rebalancer.members == held
            check_cap_weights(d, sim, held)
            assert await readyz(d)

    unsourced = [r.getMessage() for r in caplog.records if "no configured source" in r.getMessage()]
    assert len(unsourced) == 1 and "TRX" in unsourced[0]  # once, whatever the refreshes
    assert "USDT" not in unsourced[0]  # a stablecoin is no candidate at all
    unpriced = [r.getMessage() for r in caplog.records if "still unpriced" in r.getMessage()]
    assert len(unpriced) == 1 and "XRP" in unpriced[0]
    assert not [r for r in caplog.records if "did not stop" in r.getMessage()]


async def test_unreachable_provider_is_retried_until_it_answers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ports = (free_port(), free_port())
    names = [("binanceusdm", "binanceusdm"), ("bybit", "bybit")]
    endpoints = [(n, ex, f"ws://127.0.0.1:{p}", f"http://127.0.0.1:{p}") for (n, ex), p in zip(names, ports,
                                                                                            strict=True)]
    url = f"http://127.0.0.1:{ports[0]}/api/v3/coins/markets?vs_currency=usd"
    d = daemon(endpoints, url, refresh_s=3600.0)
    assert d.selection is not None
    async with running(d):
        # nothing listens yet: the provider fails, is retried, and the index waits
        await wait_for(lambda: d.selection is not None and d.selection.failures >= 3, 5, "three failed fetches")
        assert not d.market.basket.built and not d.market.ready and not await readyz(d)
        async with Simulator(scenario(ports)) as sim:
            assert sim.coins_markets_url(0) == url
            await wait_for(lambda: readyz(d), 10, "/readyz to turn 200 once the simulator is up")
            assert d.selection.fetched == 1
            assert d.market.rebalancer.members == ["BTC", "ETH", "BNB"]
            check_cap_weights(d, sim, ["BTC", "ETH", "BNB"])
    failures = [r for r in caplog.records if "market-cap data unavailable" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.WARNING  # rate-limited: one line a minute
    assert any("market-cap data available again" in r.getMessage() for r in caplog.records)
    built = [r.getMessage() for r in caplog.records if "built from the selection" in r.getMessage()]
    assert len(built) <= 1  # the index may instead build on the first price after the data arrived


def test_candidates_parse_from_the_simulator_shape() -> None:
    """The endpoint's rows are what the REST provider parses: free float from circulating/total supply."""
    rows = [{"id": "sol", "symbol": "sol", "name": "SOL", "current_price": 150.0, "market_cap": 72_000_000_000,
             "total_volume": 1e9, "circulating_supply": 480e6, "total_supply": 600e6, "market_cap_rank": 5}]
    (c,) = parse_candidates(rows)
    assert (c.symbol, c.market_cap_usd, c.free_float_ratio) == ("SOL", 7.2e10, pytest.approx(0.8))

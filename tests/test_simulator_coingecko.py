"""The simulator's CoinGecko-style ``/api/v3/coins/markets`` (over real HTTP on a venue's port), and the
selection feed on the file provider."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.config import config_from_dict
from hedgewatch.service.market import MarketState
from hedgewatch.service.providers import FileProvider, RestProvider
from hedgewatch.service.selection import SelectionFeed
from tests.support import wait_for


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(load_scenario(None).model_copy(update={"speed": 1e-9})) as s:
        yield s


async def test_rows_follow_the_simulated_prices_and_supplies(sim: Simulator) -> None:
    async with httpx.AsyncClient() as http:
        rows = (await http.get(sim.coins_markets_url(2))).json()
        assert [r["symbol"] for r in rows] == ["btc", "eth", "sol"]  # composites are no coins
        assert [r["market_cap_rank"] for r in rows] == [1, 2, 3]
        btc = rows[0]
        assert btc["id"] == "btc" and btc["name"] == "BTC"
        assert btc["current_price"] == sim.reference_price("BTC")
        assert btc["market_cap"] == round(sim.reference_price("BTC") * 19_800_000)
        assert btc["fully_diluted_valuation"] == round(sim.reference_price("BTC") * 21_000_000)
        assert btc["total_volume"] > 0 and btc["max_supply"] == 21_000_000
        assert rows[2]["total_supply"] == 590_000_000 and rows[2]["max_supply"] is None
        for _ in range(50):
            sim.step()
        moved = (await http.get(sim.coins_markets_url())).json()
        assert moved[0]["current_price"] == sim.reference_price("BTC") != btc["current_price"]
        # the same answer on every venue's port
        assert (await http.get(sim.coins_markets_url(1))).json() == moved
        # ranking follows a supply change
        assert sim.coins is not None
        sim.coins.set_supply("SOL", 3e9)
        assert [r["symbol"] for r in (await http.get(sim.coins_markets_url())).json()] == ["btc", "sol", "eth"]
        # the REST provider reads it
        cands = await RestProvider(sim.coins_markets_url(), http).fetch()
        assert [c.symbol for c in cands] == ["BTC", "SOL", "ETH"]
        assert cands[1].free_float_ratio == pytest.approx(3e9 / 3e9)


async def test_parameters_as_coingecko_reads_them(sim: Simulator) -> None:
    base = sim.endpoints[0].rest_url + "/api/v3/coins/markets"
    async with httpx.AsyncClient() as http:
        async def get(query: str) -> httpx.Response:
            return await http.get(f"{base}?{query}" if query else base)

        r = await get("")
        assert r.status_code == 422 and r.json() == {"error": "Missing parameter vs_currency"}
        r = await get("vs_currency=eur")
        assert r.status_code == 400 and r.json() == {"error": "invalid vs_currency"}
        r = await get("vs_currency=USD&sparkline=true&price_change_percentage=1h&x_cg_demo_api_key=k&whatever=1")
        assert r.status_code == 200 and len(r.json()) == 3  # unknown and unmodelled parameters are ignored
        syms = [x["symbol"] for x in (await get("vs_currency=usd&ids=eth,sol")).json()]
        assert syms == ["eth", "sol"]
        assert [x["symbol"] for x in (await get("vs_currency=usd&symbols=BTC")).json()] == ["btc"]
        assert [x["id"] for x in (await get("vs_currency=usd&order=id_desc")).json()] == ["sol", "eth", "btc"]
        assert [x["id"] for x in (await get("vs_currency=usd&order=market_cap_asc")).json()] == [
            "sol", "eth", "btc"]
        r = await get("vs_currency=usd&order=bogus")
        assert r.status_code == 400
        paged = (await get("vs_currency=usd&per_page=2&page=2")).json()
        assert [x["id"] for x in paged] == ["sol"] and paged[0]["market_cap_rank"] == 3
        assert (await get("vs_currency=usd&per_page=2&page=9")).json() == []
        assert len((await get("vs_currency=usd&per_page=0")).json()) == 1  # clipped to 1..250


async def test_file_provider_is_refreshed_and_a_broken_file_keeps_the_last_data(tmp_path: Path) -> None:
    caps = tmp_path / "caps.json"
    caps.write_text(json.dumps([{"symbol": "BTC", "market_cap_usd": 10}, {"symbol": "ETH", "market_cap_usd": 5}]))
    cfg = config_from_dict({
        "sources": [{"exchange": "binanceusdm", "symbols": ["BTC", "ETH"]}],
        "index": {"selection": {"top_n": 2, "path": str(caps), "refresh_s": 0.05}, "weighting": "cap"},
    }, "<file>", {})
    market = MarketState(cfg, 1.0)
    assert market.rebalancer.candidates is not None  # the file is applied at construction already
    feed = SelectionFeed.for_config(cfg, market, clock=lambda: 1.0, retry_base_s=0.01)
    assert feed is not None and isinstance(feed.provider, FileProvider)
    task = asyncio.create_task(feed.run(), name="selection")
    try:
        await wait_for(lambda: feed.fetched >= 1, 5, "the first read")
        caps.write_text(json.dumps([{"symbol": "BTC", "market_cap_usd": 10}, {"symbol": "ETH", "market_cap_usd": 30}]))
        await wait_for(lambda: market.rebalancer.market_caps.get("ETH") == 30, 5, "the rewritten file")
        caps.write_text("[not json")
        await wait_for(lambda: feed.failures >= 2, 5, "failed re-reads")
        assert market.rebalancer.market_caps["ETH"] == 30  # the last good data stays in force
        caps.write_text("[]")  # a provider listing nothing is a failure too, not an empty index
        failures = feed.failures
        await wait_for(lambda: feed.failures > failures, 5, "an empty list refused")
        assert market.rebalancer.candidates is not None and len(market.rebalancer.candidates) == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_failing_apply_does_not_end_the_feed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caps = tmp_path / "caps.json"
    caps.write_text(json.dumps([{"symbol": "BTC", "market_cap_usd": 10}]))
    cfg = config_from_dict({
        "sources": [{"exchange": "binanceusdm", "symbols": ["BTC"]}],
        "index": {"selection": {"top_n": 1, "path": str(caps), "refresh_s": 0.02}},
    }, "<file>", {})

    def broken(now: float) -> None:
        raise RuntimeError("a bug downstream")

    feed = SelectionFeed.for_config(cfg, MarketState(cfg, 1.0), clock=lambda: 1.0, on_change=broken)
    assert feed is not None
    task = asyncio.create_task(feed.run(), name="selection")
    try:
        await wait_for(lambda: feed.fetched >= 3, 5, "refreshes going on")
        assert not task.done()
        assert any("applying the market-cap data failed" in r.getMessage() for r in caplog.records)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

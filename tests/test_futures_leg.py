"""The contract-mode futures leg (``index.futures.mode: contract``): a real contract read in index points
through its multiplier (stated, or the underlying's price over the index level), its basis, term structure
and roll cost in those units, the hedge sized in its contracts, and the hedge's funding at the hedging
instrument's own rate. End to end against the simulator's dated futures (Binance quarterlies, OKX
FUTURES) with the daemon publishing to a real redis-server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import PortfolioConfig, config_from_dict, parse_config
from hedgewatch.service.errors import ConfigError
from hedgewatch.service.events import Funding, Market, MarkPrice, Quote
from hedgewatch.service.hedge import HedgeBook
from hedgewatch.service.market import MarketState
from hedgewatch.service.overlay import Overlay
from hedgewatch.service.preflight import preflight
from tests.stepped import stepped_sources
from tests.support import REPO, RedisServer, free_port

H = 3600.0
DAY = 86400.0
NOW = datetime(2026, 2, 25, 8, tzinfo=UTC).timestamp()
FRONT, NEXT = "BTCUSDT_260327", "BTCUSDT_260626"  # 30 and 121 days from NOW
VENUES = ("binanceusdm", "bybit", "okx")


def config(futures: dict[str, Any], constituents: tuple[str, ...] = ("BTC",), **portfolio: Any) -> Any:
    return config_from_dict({
        "sources": [{"exchange": v, "symbols": ["BTC", "ETH"], "channels": ["quotes", "funding", "futures"]}
                    for v in VENUES],
        "index": {"name": "HW", "constituents": list(constituents), "weighting": "equal", "base_level": 1000.0,
                  "futures": futures},
        "portfolio": portfolio,
    }, "<t>", {})


def priced(cfg: Any, prices: dict[str, float], t: float) -> MarketState:
    m = MarketState(cfg, now=t)
    move(m, prices, t)
    return m


def move(m: MarketState, prices: dict[str, float], t: float) -> None:
    for a, p in prices.items():
        for v in VENUES:
            m.apply(Quote(v, a, f"{a}USDT", p - 0.5, p + 0.5, t, t, "USD"))


def dated(m: MarketState, instrument: str, price: float, t: float, venue: str = "binanceusdm") -> None:
    m.apply(Quote(venue, "BTC", instrument, price - 1, price + 1, t, t, "USD", Market.FUTURE))


# --- config ----------------------------------------------------------------------------------------------


def test_a_contract_leg_without_a_multiplier_or_an_underlying_is_an_error_naming_futures_multiplier() -> None:
    text = ("sources: [{exchange: binanceusdm, symbols: [BTC]}]\n"
            "index:\n  name: HW\n  constituents: [BTC]\n  futures: {mode: contract, symbol: BTCUSDT_261225}\n")
    with pytest.raises(ConfigError) as err:
        parse_config(text, "hw.yaml", {})
    (line,) = str(err.value).splitlines()
    assert line.startswith("hw.yaml:5:") and "index.futures.multiplier: cannot read BTCUSDT_261225" in line
    assert "futures.underlying" in line  # the other way to state it
    with pytest.raises(ConfigError, match=r"index.futures.underlying: DOGE is neither the index \(HW\) nor"):
        config({"mode": "contract", "symbol": FRONT, "underlying": "doge"})
    # stated either way, it loads; the synthetic leg needs neither
    assert config({"mode": "contract", "symbol": FRONT, "multiplier": 100}).index.futures.multiplier == 100
    assert config({"mode": "contract", "symbol": FRONT, "underlying": "btc"}).index.futures.underlying == "BTC"
    assert config({}).index.futures.mode == "synthetic"


def test_run_refuses_a_dated_leg_it_could_never_price() -> None:
    def problems(futures: dict[str, Any], channels: tuple[str, ...]) -> list[str]:
        cfg = config(futures).model_copy(deep=True)
        sources = tuple(s.model_copy(update={"channels": channels}) for s in cfg.sources)
        return [f"{p.field}: {p.message}" for p in preflight(cfg.model_copy(update={"sources": sources}), "hw.yaml",
                                                               now=NOW)]

    leg = {"mode": "contract", "exchange": "binanceusdm", "symbol": FRONT, "underlying": "BTC"}
    assert problems(leg, ("quotes", "futures")) == []
    assert problems(leg, ("quotes",)) == [
        f"index.futures.symbol: {FRONT} is a dated future, quoted on the 'futures' channel, which source "
        "binanceusdm does not subscribe: add 'futures' to its channels"]
    assert problems({**leg, "symbol": "BTCUSDT_251226"}, ("quotes", "futures")) == [
        "index.futures.symbol: BTCUSDT_251226 expired at 2025-12-26 08:00 UTC: name the contract that follows it"]
    assert problems({**leg, "symbol": "BTCUSDT"}, ("quotes",)) == []  # a perpetual: its mark on "mark"


def test_check_names_the_missing_futures_channel(tmp_path: Path) -> None:
    cfg = tmp_path / "hw.yaml"
    cfg.write_text("sources: [{exchange: okx, symbols: [BTC]}]\nindex:\n  constituents: [BTC]\n"
                   "  futures: {mode: contract, exchange: okx, symbol: BTC-USDT-991231, underlying: BTC}\n")
    r = subprocess.run([sys.executable, "-m", "hedgewatch.service", "check", str(cfg)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 1
    assert r.stderr == (f"{cfg}: index.futures.symbol: BTC-USDT-991231 is a dated future, quoted on the 'futures' "
                        "channel, which source okx does not subscribe: add 'futures' to its channels\n")


# --- the leg in index points ----------------------------------------------------------------------------


def test_the_multiplier_puts_a_dated_btc_future_in_index_points() -> None:
    # HW holds BTC only, based at 1,000 when BTC was 100,000: a point is 100 USD of BTC price
    m = priced(config({"mode": "contract", "exchange": "binanceusdm", "symbol": FRONT, "multiplier": 100}),
               {"BTC": 100_000.0}, NOW)
    dated(m, FRONT, 100_800.0, NOW)
    dated(m, NEXT, 102_400.0, NOW)
    d = m.snapshot(NOW)["derivatives"]
    assert m.level == pytest.approx(1000.0)
    assert d["futures_price"] == pytest.approx(1008.0)  # 100,800 / 100, not 100,800 against 1,000 points
    assert d["basis"] == pytest.approx(8.0) and d["basis_ratio"] == pytest.approx(0.008)
    assert d["state"] == "contango"
    # the expiry the instrument id encodes: 27 March 2026 08:00 UTC, 30 days away
    assert d["days_to_expiry"] == pytest.approx(30.0)
    assert d["basis_annualized"] == pytest.approx(0.008 * 365 / 30)
    c = d["contract"]
    assert (c["price_usd"], c["multiplier"], c["multiplier_source"]) == (100_800.0, 100, "futures.multiplier")
    assert [row["price"] for row in c["term_structure"]["curve"]] == pytest.approx([1008.0, 1024.0])
    # the roll from March to June, a ratio: the same in points and in USD
    assert d["roll_cost_annualized"] == pytest.approx((102_400 / 100_800 - 1) * 365 / 91)


def test_the_underlying_scales_the_contract_to_a_multi_asset_index() -> None:
    """With ``underlying: BTC`` the leg is level x F / S_BTC: its basis is the contract's own premium over
    BTC, whatever ETH does to the index."""
    cfg = config({"mode": "contract", "exchange": "binanceusdm", "symbol": FRONT, "underlying": "BTC"},
                 constituents=("BTC", "ETH"))
    m = priced(cfg, {"BTC": 100_000.0, "ETH": 4_000.0}, NOW)
    for t, eth, btc, fut in ((NOW, 4_000.0, 100_000.0, 100_500.0), (NOW + H, 3_200.0, 101_000.0, 101_505.0)):
        move(m, {"BTC": btc, "ETH": eth}, t)
        dated(m, FRONT, fut, t)
        snap = m.snapshot(t)
        d, level = snap["derivatives"], snap["level"]
        assert d["contract"]["multiplier"] == pytest.approx(btc / level)
        assert d["futures_price"] == pytest.approx(level * fut / btc)
        assert d["basis_ratio"] == pytest.approx(fut / btc - 1) and 0 < d["basis_ratio"] < 0.01
    assert level == pytest.approx(1000 * (0.5 * 101_000 / 100_000 + 0.5 * 3_200 / 4_000))  # ETH fell 20%


def test_a_contract_on_the_index_itself_is_in_its_points() -> None:
    m = priced(config({"mode": "contract", "exchange": "okx", "symbol": "HW-260327", "underlying": "HW"}),
               {"BTC": 100_000.0}, NOW)
    m.apply(Quote("okx", "HW", "HW-260327", 1009.0, 1011.0, NOW, NOW, "USD", Market.FUTURE))
    d = m.snapshot(NOW)["derivatives"]
    assert (d["futures_price"], d["contract"]["multiplier_source"]) == (1010.0, "the index itself")
    assert d["basis_ratio"] == pytest.approx(0.01)


def test_a_perpetual_contract_leg_is_annualized_at_its_own_funding() -> None:
    m = priced(config({"mode": "contract", "exchange": "bybit", "symbol": "BTCUSDT", "underlying": "BTC"}),
               {"BTC": 100_000.0}, NOW)
    for v, rate in zip(VENUES, (0.0001, 0.0003, -0.0001), strict=True):
        m.apply(Funding(v, "BTC", "BTCUSDT", rate, 8.0, None, NOW, NOW))
    m.apply(MarkPrice("bybit", "BTC", "BTCUSDT", 100_050.0, None, NOW, NOW, "USD"))
    d = m.snapshot(NOW)["derivatives"]
    assert d["contract"]["perpetual"] and "days_to_expiry" not in d
    assert d["basis_ratio"] == pytest.approx(0.0005)
    assert d["basis_annualized"] == pytest.approx(0.0003 * 3 * 365)  # bybit's, not the index's mean
    assert d["funding_annualized"] == pytest.approx(0.0001 * 3 * 365)


# --- the hedge in the leg's contract ---------------------------------------------------------------------


def test_the_hedge_in_contracts_of_the_leg() -> None:
    """$500,000 of BTC hedged 50% in OKX's BTC-USDT-260327 (0.01 BTC a contract) at 100,800: one contract
    is $1,008 (0.01 x 100 = $1 a point at 1,008 points), so 248 contracts."""
    fut = {"mode": "contract", "exchange": "okx", "symbol": "BTC-USDT-260327", "multiplier": 100,
           "contract_size": 0.01}
    cfg = config(fut, holdings={"BTC": 5.0}, hedge_ratio=0.5, lot_size=1)
    m = priced(cfg, {"BTC": 100_000.0}, NOW)
    dated(m, "BTC-USDT-260327", 100_800.0, NOW, venue="okx")
    book = HedgeBook("HW", cfg.portfolio, cfg.index.futures)
    s = book.size(m.snapshot(NOW), 0.5, NOW)
    assert s is not None
    assert (s.portfolio_value_usd, s.target_notional_usd) == (500_000.0, 250_000.0)
    assert (s.futures_price, s.contract_size) == (100_800.0, 0.01)  # the contract at its own price
    assert (s.futures_price_points, s.point_value_usd) == (pytest.approx(1008.0), pytest.approx(1.0))
    assert s.target_contracts == 248 == round(250_000 / (1008.0 * 0.01 * 100))
    assert (s.side, s.delta_contracts) == ("sell", -248)
    assert s.trade_notional_usd == pytest.approx(248 * 1008.0)
    # a dated future pays no funding: the carry is the basis, seen in the roll cost
    assert (s.funding_rate_8h, s.funding_source, s.funding_per_day_usd) == (0.0, "dated future: no funding",
                                                                            0.0)


def test_without_a_contract_size_the_hedge_stays_an_index_future_of_portfolio_multiplier() -> None:
    cfg = config({"mode": "contract", "symbol": FRONT, "multiplier": 100}, holdings={"BTC": 5.0},
                 multiplier=10, lot_size=0.01)
    m = priced(cfg, {"BTC": 100_000.0}, NOW)
    dated(m, FRONT, 100_800.0, NOW)
    s = HedgeBook("HW", cfg.portfolio, cfg.index.futures).size(m.snapshot(NOW), 0.5, NOW)
    assert s is not None and s.futures_price == pytest.approx(1008.0)  # the leg, in points, at $10 a point
    assert s.target_contracts == pytest.approx(round(250_000 / (1008.0 * 10), 2))


# --- the hedge's funding: the instrument's own -----------------------------------------------------------


def perp_hedge(exchange: str | None, symbol: str | None) -> PortfolioConfig:
    return PortfolioConfig(holdings={"BTC": 5.0}, hedge_ratio=0.5, lot_size=0.001, instrument={
        "kind": "linear", "asset": "BTC", "contract_size": 1, "exchange": exchange, "symbol": symbol})


def test_a_perpetual_hedge_pays_its_own_venues_funding_in_sizing_and_ledger() -> None:
    cfg = config({}, holdings={"BTC": 5.0})
    m = priced(cfg, {"BTC": 100_000.0}, NOW)
    # bybit funds hourly: 0.00005 an hour is 0.0004 per 8 h; the others 8-hourly
    for v, rate, interval in (("binanceusdm", 0.0001, 8.0), ("bybit", 0.00005, 1.0), ("okx", -0.0002, 8.0)):
        m.apply(Funding(v, "BTC", "BTCUSDT", rate, interval, None, NOW, NOW))
    snap = m.snapshot(NOW)
    assert snap["assets"]["BTC"]["funding_instruments"] == pytest.approx(
        {"binanceusdm:BTCUSDT": 0.0001, "bybit:BTCUSDT": 0.0004, "okx:BTCUSDT": -0.0002})
    own = HedgeBook("HW", perp_hedge("bybit", "BTCUSDT")).size(snap, 0.5, NOW)
    venue = HedgeBook("HW", perp_hedge("bybit", None)).size(snap, 0.5, NOW)
    mean = HedgeBook("HW", perp_hedge(None, None)).size(snap, 0.5, NOW)
    assert own is not None and venue is not None and mean is not None
    assert (own.funding_rate_8h, own.funding_source) == (pytest.approx(0.0004), "bybit:BTCUSDT")
    assert (venue.funding_rate_8h, venue.funding_source) == (pytest.approx(0.0004), "bybit:BTCUSDT")
    assert (mean.funding_rate_8h, mean.funding_source) == (pytest.approx(0.0001), "BTC: mean of its venues")
    # a 2.5 BTC short receives 0.04% three times a day on $250,000: $300 a day (a negative cost)
    assert own.target_contracts == 2.5 and own.funding_per_day_usd == pytest.approx(-300.0)

    # the ledger settles the same rate: 07:00 to 09:00 crosses the 08:00 funding once
    full = config({}, holdings={"BTC": 5.0}, hedge_ratio=0.5, lot_size=0.001,
                  instrument={"kind": "linear", "asset": "BTC", "contract_size": 1, "exchange": "bybit",
                              "symbol": "BTCUSDT"})
    full = full.model_copy(update={"rules": full.rules.model_copy(update={"files": ()})})
    o = Overlay("live", full, NOW - H, follow_advice=True)
    o.evaluate({**snap, "ts": NOW - H}, NOW - H)
    assert o.ledger.position == -2.5
    o.evaluate({**snap, "ts": NOW + H}, NOW + H)
    assert o.ledger.funding_usd == pytest.approx(2.5 * 100_000 * 0.0004)


# --- end to end: the simulator's dated futures through the daemon, published to Redis -----------------------


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(load_scenario("default.yaml")) as s:
        yield s


async def _published(r: aioredis.Redis, channel: str, accept: Any, timeout_s: float) -> dict[str, Any]:
    pubsub = r.pubsub()
    await pubsub.subscribe(channel)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout_s)
                if msg is not None and accept(body := orjson.loads(msg["data"])):
                    return dict(body)
    finally:
        await pubsub.aclose()


@pytest.mark.parametrize("venue", ["binanceusdm", "okx"])
async def test_a_dated_future_leg_from_the_simulator_has_a_real_basis(sim: Simulator, redis_srv: RedisServer,
                                                                     tmp_path: Path, venue: str) -> None:
    sources = stepped_sources(sim)
    for s in sources:
        if s["exchange"] in ("binanceusdm", "okx"):
            s["channels"] = [*s["channels"], "futures"]
    srv: Any = sim.servers[venue]
    listed = srv.dated if venue == "binanceusdm" else srv.futures
    # the later of the two BTC quarterlies: at least a quarter away, so the annualized basis is steady
    expiry_ms, symbol = max((exp, name.upper()) for name, (a, exp, _) in listed.items() if a == "BTC")
    contract_size = 0.001 if venue == "binanceusdm" else 0.01
    cfg = config_from_dict({
        "sources": sources,
        "index": {"name": "FUT", "constituents": list(sim.scenario.assets), "weighting": "equal",
                  "base_level": 1000.0, "publish_interval_s": 0.5,
                  "futures": {"mode": "contract", "exchange": venue, "symbol": symbol, "underlying": "BTC",
                              "contract_size": contract_size}},
        "portfolio": {"holdings": {"BTC": 2.0}, "hedge_ratio": 0.5, "lot_size": 1},
        "rules": {"files": [], "startup_grace_s": 0},
        "redis": {"url": redis_srv.url, "prefix": "futleg", "outbox_dir": str(tmp_path / "outbox")},
        "http": {"port": free_port()},
    }, "<futleg>", {})
    r = aioredis.Redis.from_url(redis_srv.url)
    daemon = Daemon(cfg)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(daemon.run(stop), name="daemon")
        snapshot = tg.create_task(_published(
            r, "futleg:index:FUT",
            lambda s: s["status"] == "ok" and s["derivatives"]["futures_price"] is not None
            and s["derivatives"].get("roll_cost_annualized") is not None, 40), name="snapshot")
        hedge = tg.create_task(_published(r, "futleg:hedge:FUT", lambda h: h.get("futures_price"), 40),
                               name="hedge")
        snap, advice = await snapshot, await hedge
        stop.set()
        assert await run == 0
    await r.aclose()

    d, level = snap["derivatives"], snap["level"]
    c, btc = d["contract"], snap["constituents"]["BTC"]["price"]
    assert (c["symbol"], c["underlying"], c["multiplier_source"]) == (symbol, "BTC", "BTC price / index level")
    # in index points: the level times the contract's premium over BTC (a BTC future is ~65,000 USD)
    assert c["multiplier"] == pytest.approx(btc / level)
    assert d["futures_price"] == pytest.approx(level * c["price_usd"] / btc)
    assert abs(d["futures_price"] - level) < 0.05 * level
    days = (expiry_ms / 1000 - snap["ts"]) / DAY
    assert d["days_to_expiry"] == pytest.approx(days, abs=1e-6) and days > 60
    # contango while the perpetuals' funding is positive, carried at about that funding (10.95% a year)
    carry = sim.models[venue].quotes["BTC"].funding_rate * 3 * 365
    assert 0 < d["basis_ratio"] < 0.05 and d["state"] == "contango"
    assert d["basis_annualized"] == pytest.approx(carry, abs=0.02)
    assert d["basis"] == pytest.approx(d["futures_price"] - level)
    # the term structure in the same points: the leg's own contract on it at the leg's price
    row = next(x for x in c["term_structure"]["curve"] if x["contract"] == f"{venue}:{symbol}")
    assert row["price"] == pytest.approx(d["futures_price"])
    assert 0 < d["roll_cost_annualized"] < 0.5

    # the hedge in the contract: 2 BTC hedged 50% is 1 BTC of notional, at the future's price (above spot
    # by the basis) 1 / (1 + basis) / contract size contracts
    assert advice["futures_price"] == pytest.approx(c["price_usd"], rel=0.01)  # the contract's own price
    assert advice["contract_size"] == contract_size
    assert advice["target_notional_usd"] == pytest.approx(advice["portfolio_value_usd"] * 0.5)
    assert advice["target_contracts"] == round(advice["target_notional_usd"] / (advice["futures_price"]
                                                                                 * contract_size))
    assert advice["target_contracts"] == pytest.approx(1 / (1 + d["basis_ratio"]) / contract_size, rel=0.01)
    assert advice["point_value_usd"] == pytest.approx(
        contract_size * advice["futures_price"] / advice["futures_price_points"], rel=1e-9)
    assert advice["funding_source"] == "dated future: no funding" and advice["funding_per_day_usd"] == 0


async def test_a_perpetual_hedge_on_the_simulator_pays_its_own_venues_funding(sim: Simulator, redis_srv: RedisServer,
                                                                             tmp_path: Path) -> None:
    """The simulator's venues fund BTC differently (Bybit 0.012 %, Binance 0.010 %, OKX 0.009 % per 8 h): a
    hedge in Bybit's BTCUSDT is carried at Bybit's rate, not at the venues' mean."""
    cfg = config_from_dict({
        "sources": stepped_sources(sim),
        "index": {"name": "PERP", "constituents": list(sim.scenario.assets), "publish_interval_s": 0.5},
        "portfolio": {"holdings": {"BTC": 2.0}, "hedge_ratio": 0.5, "lot_size": 0.001, "instrument": {
            "kind": "linear", "asset": "BTC", "contract_size": 1, "exchange": "bybit", "symbol": "BTCUSDT"}},
        "rules": {"files": [], "startup_grace_s": 0},
        "redis": {"url": redis_srv.url, "prefix": "perpfund", "outbox_dir": str(tmp_path / "outbox")},
        "http": {"port": free_port()},
    }, "<perp>", {})
    r = aioredis.Redis.from_url(redis_srv.url)
    daemon = Daemon(cfg)
    stop = asyncio.Event()
    rates = {v: sim.models[v].quotes["BTC"].funding_rate for v in VENUES}
    assert len(set(rates.values())) == 3
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(daemon.run(stop), name="daemon")
        advice = await _published(r, "perpfund:hedge:PERP", lambda h: h.get("funding_source") == "bybit:BTCUSDT",
                                  40)
        snap = daemon.market.snapshot(daemon.clock())
        stop.set()
        assert await run == 0
    await r.aclose()
    # as the venue states it (rounded to 1e-7), far from the mean of the three (0.0103 %)
    assert advice["funding_rate_8h"] == pytest.approx(rates["bybit"], abs=1e-6)
    assert abs(advice["funding_rate_8h"] - sum(rates.values()) / 3) > 1e-5
    # a 1 BTC short receives Bybit's rate three times a day
    assert advice["funding_per_day_usd"] == pytest.approx(-advice["futures_price"] * 1.0 * rates["bybit"] * 3,
                                                          rel=0.01)
    # the snapshot states each perpetual's rate by venue and instrument
    assert snap["assets"]["BTC"]["funding_instruments"]["bybit:BTCUSDT"] == pytest.approx(rates["bybit"], abs=1e-6)

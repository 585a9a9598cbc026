"""Kline history: the documented row shapes of each venue, and fetching from the simulator's real REST
endpoints (including paging back past a venue's page limit)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hedgewatch.connectors import klines
from hedgewatch.connectors.instruments import Instrument
from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.errors import RejectedMessage
from tests.rules_support import stage_for

NOW = 1_700_000_000.0
BTC = Instrument("BTC", "BTCUSDT", "USDT")


def test_binance_rows_oldest_first_with_closed_flag() -> None:
    # GET /fapi/v1/klines: [openTime, o, h, l, c, volume, closeTime, quoteVolume, trades, ...]
    body = [
        [1699999800000, "100", "110", "95", "105", "12.5", 1699999859999, "0", 10, "0", "0", "0"],
        [1700000000000, "105", "106", "104", "105.5", "1", 1700000059999, "0", 1, "0", "0", "0"],
    ]
    out = klines.parse_rows("binanceusdm", "b", BTC, 60, body, NOW)
    assert [c.open_ts for c in out] == [1699999800.0, 1700000000.0]
    assert (out[0].open, out[0].high, out[0].low, out[0].close, out[0].volume) == (100, 110, 95, 105, 12.5)
    assert [c.closed for c in out] == [True, False]


def test_bybit_rows_are_reversed_newest_first() -> None:
    body = {"retCode": 0, "result": {"category": "linear", "symbol": "BTCUSDT", "list": [
        ["1700000000000", "105", "106", "104", "105.5", "1", "105.5"],
        ["1699999940000", "100", "110", "95", "105", "12.5", "1300"],
    ]}}
    out = klines.parse_rows("bybit", "y", BTC, 60, body, NOW)
    assert [c.open_ts for c in out] == [1699999940.0, 1700000000.0]
    assert [c.closed for c in out] == [True, False]


def test_okx_uses_base_volume_and_confirm() -> None:
    inst = Instrument("BTC", "BTC-USDT-SWAP", "USDT", ct_val=0.01)
    body = {"code": "0", "data": [
        ["1700000000000", "105", "106", "104", "105.5", "100", "1", "105.5", "0"],
        ["1699999940000", "100", "110", "95", "105", "1250", "12.5", "1300", "1"],
    ]}
    out = klines.parse_rows("okx", "o", inst, 60, body, NOW)
    assert [c.volume for c in out] == [12.5, 1.0]  # volCcy (base units), not contracts
    assert [c.closed for c in out] == [True, False]


@pytest.mark.parametrize("row", [
    ["1700000000000", "105", "100", "104", "105.5", "1", "0"],   # high below open
    ["1700000000000", "105", "106", "-1", "105.5", "1", "0"],    # negative low
    ["1700000000000", "x", "106", "104", "105.5", "1", "0"],     # non-numeric
    ["1700000000000", "105"],                                     # short row
])
def test_bad_rows_are_rejected(row: list[str]) -> None:
    with pytest.raises(RejectedMessage):
        klines.parse_rows("bybit", "y", BTC, 60, {"result": {"list": [row]}}, NOW)


def test_plan_spreads_index_needs_over_constituents() -> None:
    got = klines.plan({"": {3600: 24, 86400: 183}, "BTC": {86400: 400}}, ["BTC", "ETH"])
    # one more bar each: the last kline is still forming
    assert got == {"BTC": {3600: 25, 86400: 401}, "ETH": {3600: 25, 86400: 184}}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(load_scenario(None)) as s:
        yield s


async def test_fetch_history_from_each_venue(sim: Simulator) -> None:
    for ep in sim.endpoints:
        src = SourceConfig(exchange=ep.exchange, name=ep.name, symbols=("BTC", "ETH"), rest_url=ep.rest_url)
        # more daily bars than OKX's page of 300: paging back must stitch pages without gaps
        candles = await klines.fetch_history(src, {"BTC": {86400: 40, 3600: 400}, "ETH": {86400: 10}})
        by = {(c.asset, c.timeframe_s): [x for x in candles if (x.asset, x.timeframe_s) == (c.asset, c.timeframe_s)]
              for c in candles}
        assert {k: len(v) for k, v in by.items()} == {("BTC", 86400): 40, ("BTC", 3600): 400, ("ETH", 86400): 10}
        for (_, tf), series in by.items():
            steps = {b.open_ts - a.open_ts for a, b in itertools.pairwise(series)}
            assert steps == {tf}, f"{ep.name}: gaps or overlaps in {tf} s klines"
            assert all(c.closed for c in series[:-1])
            assert all(c.exchange == ep.name and c.low <= c.close <= c.high for c in series)
        btc_daily = by[("BTC", 86400)]
        assert btc_daily[-1].close == pytest.approx(sim.reference_price("BTC"), rel=0.05)


async def test_unknown_asset_is_skipped(sim: Simulator) -> None:
    ep = sim.endpoints[0]
    src = SourceConfig(exchange=ep.exchange, name=ep.name, symbols=("BTC", "NOPE"), rest_url=ep.rest_url)
    candles = await klines.fetch_history(src, {"NOPE": {86400: 5}, "BTC": {86400: 5}})
    assert {c.asset for c in candles} == {"BTC"}


async def test_planned_history_gives_a_50_day_average_from_the_start(sim: Simulator, tmp_path: Path) -> None:
    """What the daemon fetches for the rules' needs leaves them their full count of closed bars: the venues'
    last kline is still forming, so a 50-day average needs 51 daily klines."""
    stage = stage_for(tmp_path, """
groups:
  - name: g
    rules:
      - {name: A, expr: 'price < sma(50, "1d") and asset_sma("BTC", 20, "1d") > 0', action: notify}
""")
    ep = sim.endpoints[0]
    src = SourceConfig(exchange=ep.exchange, name=ep.name, symbols=("BTC", "ETH"), rest_url=ep.rest_url)
    assert sim.path is not None
    now = sim.path.now_ms / 1000.0
    stage.bootstrap(await klines.fetch_history(src, klines.plan(stage.history_needed(), ["BTC", "ETH"]),
                                               clock=lambda: now))
    prices = {a: sim.reference_price(a) for a in ("BTC", "ETH")}
    snapshot = {"index": "HW", "ts": now, "level": 1000.0, "status": "ok", "divisor": 1.0,
                "constituents": {a: {"price": p, "units": 500.0 / p} for a, p in prices.items()}}
    stage.evaluate(snapshot, now)
    signals = stage.state()["signals"]
    assert signals["sma_50_1d"] is not None and signals["asset_sma_BTC_20_1d"] is not None


@pytest.fixture
async def long_sim() -> AsyncIterator[Simulator]:
    """1,000 days of history, falling into the start: the all-time high is long before the last 184 days."""
    scenario = load_scenario(None).model_copy(update={"history_days": 1000, "history_drift": -0.8})
    async with Simulator(scenario) as s:
        yield s


async def test_okx_pages_past_its_recent_candles_into_history_candles(long_sim: Simulator) -> None:
    """OKX's candles endpoint serves the latest 1,440 bars; older ones come from history-candles."""
    ep = next(e for e in long_sim.endpoints if e.exchange == "okx")
    src = SourceConfig(exchange="okx", name=ep.name, symbols=("BTC",), rest_url=ep.rest_url)
    candles = await klines.fetch_history(src, {"BTC": {3600: 2000}})
    assert len(candles) == 2000
    assert {b.open_ts - a.open_ts for a, b in itertools.pairwise(candles)} == {3600}


ATH_RULES = """
groups:
  - name: g
    rules:
      - {name: A, expr: 'price > ath and price < trendline("long_term")', action: notify}
"""


async def test_all_time_high_from_the_whole_daily_history_on_the_level_basis(
        long_sim: Simulator, tmp_path: Path) -> None:
    """A rule reading `ath` makes the daemon page back through every daily kline the venue serves (not
    the ~184 days other signals need), and the all-time high is the highest level of the index at a
    daily close of the back-cast (not the sum of the constituents' highs)."""
    needed = klines.plan(stage_for(tmp_path, ATH_RULES).history_needed(), ["BTC", "ETH"])
    assert needed["BTC"][86400] > 1000
    assert long_sim.path is not None
    now = long_sim.path.now_ms / 1000.0
    prices = {a: long_sim.reference_price(a) for a in ("BTC", "ETH")}
    units = {a: 500.0 / p for a, p in prices.items()}
    for ep in long_sim.endpoints:
        src = SourceConfig(exchange=ep.exchange, name=ep.name, symbols=("BTC", "ETH"), rest_url=ep.rest_url)
        candles = await klines.fetch_history(src, needed, clock=lambda: now)
        daily = {a: {c.open_ts: c for c in candles if c.asset == a and c.timeframe_s == 86400}
                 for a in ("BTC", "ETH")}
        assert all(len(d) >= 1000 for d in daily.values()), ep.name  # the whole history, paged
        s = stage_for(tmp_path, ATH_RULES)
        s.bootstrap(candles)
        s.evaluate({"index": "HW", "ts": now, "level": 1000.0, "status": "ok", "divisor": 1.0,
                    "constituents": {a: {"price": p, "units": units[a]} for a, p in prices.items()}}, now)
        closes = {t: sum(daily[a][t].close * units[a] for a in units)
                  for t in daily["BTC"] if t in daily["ETH"] and daily["BTC"][t].closed and daily["ETH"][t].closed}
        highs = {t: sum(daily[a][t].high * units[a] for a in units) for t in closes}
        peak = max(closes, key=closes.__getitem__)
        assert s.book.ath == pytest.approx(closes[peak], rel=1e-12), ep.name
        assert s.book.ath < max(highs.values())  # not the summed highs, which the index never reached
        assert peak < now - 184 * 86400  # the high is older than the history fetched before
        assert s.book.ath > max(v for t, v in closes.items() if t >= now - 184 * 86400)

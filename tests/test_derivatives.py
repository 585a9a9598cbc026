"""Derivatives signals: futures leg, basis, funding, open interest, term structure and roll cost."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hedgewatch.service.derivatives import expiry_from_instrument, roll_cost
from hedgewatch.service.events import Candle, Funding, Market, MarkPrice, OpenInterest
from hedgewatch.service.market import MarketState
from tests.market_support import VENUES, config, quote

DAY = 86400.0
PRICES = {"BTC": 100_000.0, "ETH": 2_000.0}


def market(index: str = "weighting: cap\nmarket_caps: {BTC: 3, ETH: 1}") -> MarketState:
    m = MarketState(config(index=index), now=0.0)
    for a, p in PRICES.items():
        for v in VENUES[:3]:
            m.apply(quote(v, a, p, 1.0))
    return m


def test_expiry_parsing_for_common_venue_ids() -> None:
    mar28 = datetime(2025, 3, 28, 8, tzinfo=UTC).timestamp()
    assert expiry_from_instrument("BTCUSDT_250328") == mar28
    assert expiry_from_instrument("BTC-USD-250328") == mar28
    assert expiry_from_instrument("BTC-28MAR25") == mar28
    assert expiry_from_instrument("BTCUSDT") is None
    assert expiry_from_instrument("BTC-USDT-SWAP") is None


def test_roll_cost_formula() -> None:
    assert roll_cost(100.0, 101.0, 91.0) == pytest.approx(0.01 * 365 / 91)


def test_synthetic_perp_basis_and_contango() -> None:
    m = market()
    for v in VENUES[:3]:
        m.apply(MarkPrice(v, "BTC", "BTCUSDT", 100_200.0, None, 2.0, 2.0, "USD"))
        m.apply(MarkPrice(v, "ETH", "ETHUSDT", 2_000.0, None, 2.0, 2.0, "USD"))
    d = m.snapshot(2.0)["derivatives"]
    # BTC is 75 % of the basket and trades 0.2 % over spot: the basket perp 0.15 % over the index.
    assert d["futures_price"] == pytest.approx(1001.5)
    assert d["basis"] == pytest.approx(1.5)
    assert d["basis_ratio"] == pytest.approx(0.0015)
    assert d["state"] == "contango" and d["futures_coverage"] == pytest.approx(1.0)


def test_backwardation_and_partial_coverage() -> None:
    m = market()
    m.apply(MarkPrice("okx", "BTC", "BTCUSDT", 99_000.0, None, 2.0, 2.0, "USD"))
    d = m.snapshot(2.0)["derivatives"]
    assert d["state"] == "backwardation"
    assert d["futures_coverage"] == pytest.approx(0.75)  # ETH has no mark: priced at spot
    assert d["basis_ratio"] == pytest.approx(-0.0075)


def test_index_funding_is_notional_weighted_and_normalized_to_8h() -> None:
    m = market()
    m.apply(Funding("binanceusdm", "BTC", "BTCUSDT", 0.0001, 8.0, None, 2.0, 2.0))
    m.apply(Funding("bybit", "BTC", "BTCUSDT", 0.00005, 4.0, None, 2.0, 2.0))  # = 0.0001 per 8 h
    m.apply(Funding("okx", "ETH", "ETHUSDT", -0.0002, 8.0, None, 2.0, 2.0))
    snap = m.snapshot(2.0)
    d = snap["derivatives"]
    assert d["funding_rate_8h"] == pytest.approx(0.75 * 0.0001 + 0.25 * -0.0002)
    assert d["funding_annualized"] == pytest.approx(d["funding_rate_8h"] * 3 * 365)
    assert snap["assets"]["BTC"]["funding_rate_8h"] == pytest.approx(0.0001)
    # A perpetual's annualized carry comes from funding.
    m.apply(MarkPrice("okx", "BTC", "BTCUSDT", 100_000.0, None, 2.0, 2.0, "USD"))
    d = m.snapshot(2.0)["derivatives"]
    assert d["basis_annualized"] == d["funding_annualized"]


def test_stale_funding_is_ignored() -> None:
    m = market()
    m.apply(Funding("okx", "BTC", "BTCUSDT", 0.001, 8.0, None, 2.0, 2.0))
    assert m.snapshot(2.0 + 61.0)["derivatives"]["funding_rate_8h"] is None


def _step_prices(m: MarketState, t: float, scale: float = 1.0, venues: tuple[str, ...] = VENUES[:3]) -> None:
    for a, p in PRICES.items():
        for v in venues:
            m.apply(quote(v, a, p * scale, t))


def test_open_interest_in_usd_and_its_change_in_contracts_over_windows() -> None:
    m = market()
    m.apply(OpenInterest("binanceusdm", "BTC", "BTCUSDT", 1000.0, 1000.0, None, 2.0, 2.0))
    m.apply(OpenInterest("okx", "ETH", "ETH-USDT-SWAP", 10.0, 1250.0, 2.5e6, 2.0, 2.0))
    snap = m.snapshot(2.0)
    assert snap["derivatives"]["open_interest_usd"] == pytest.approx(1e8 + 2.5e6)
    assert snap["assets"]["ETH"]["open_interest_usd"] == pytest.approx(2.5e6)
    assert snap["assets"]["ETH"]["open_interest_venues"] == {"okx": [1250.0, 2.5e6]}
    assert snap["derivatives"]["open_interest_change"]["1h"] is None  # no history yet
    t = 2.0
    for i in range(1, 13):  # an hour later, BTC open interest up 10 %
        t = 2.0 + i * 300.0
        _step_prices(m, t)
        m.apply(OpenInterest("binanceusdm", "BTC", "BTCUSDT", 1100.0, 1100.0, None, t, t))
        m.apply(OpenInterest("okx", "ETH", "ETH-USDT-SWAP", 10.0, 1250.0, 2.5e6, t, t))
        m.snapshot(t)
    d = m.snapshot(t)["derivatives"]
    assert d["open_interest_change"]["1h"] == pytest.approx((1.1e8 + 2.5e6) / (1e8 + 2.5e6) - 1)
    assert d["open_interest_change_usd"]["1h"] == pytest.approx((1.1e8 + 2.5e6) / (1e8 + 2.5e6) - 1)
    assert d["open_interest_change_coverage"]["1h"] == pytest.approx(1.0)
    m.apply(OpenInterest("binanceusdm", "BTC", "BTCUSDT", 1210.0, 1210.0, None, t + 1, t + 1))
    change = m.snapshot(t + 11.0)["derivatives"]["open_interest_change"]
    assert change["1h"] == pytest.approx((1.21e8 + 2.5e6) / (1e8 + 2.5e6) - 1)
    assert change["24h"] is None


def test_a_rally_with_no_new_contracts_is_no_open_interest_change() -> None:
    """Price +10 % with the same contracts open: 0 % in contracts, +10 % in USD beside it."""
    m = market()
    t = 2.0
    for i in range(13):
        t = 2.0 + i * 300.0
        _step_prices(m, t, 1.0 + 0.1 * i / 12)
        for v in VENUES[:3]:
            m.apply(OpenInterest(v, "BTC", "BTCUSDT", 1000.0, 1000.0, None, t, t))
        m.snapshot(t)
    d = m.snapshot(t)["derivatives"]
    assert d["open_interest_change"]["1h"] == pytest.approx(0.0, abs=1e-12)
    assert d["open_interest_change_usd"]["1h"] == pytest.approx(0.1, rel=1e-3)


def test_a_venue_outage_is_not_a_fall_in_open_interest() -> None:
    """Three venues with equal open interest growing 2 % an hour; one stops reporting (stale): the change
    is the other two's, coverage-adjusted (never -33 %); with two of the three gone it is unavailable."""
    m = market()
    seen = {"two": 0, "none": 0}
    for i in range(25):  # two hours of 5-minute samples; okx stops after an hour, bybit after 1 h 30
        t = 2.0 + i * 300.0
        _step_prices(m, t)
        for v, stop in (("binanceusdm", 1e9), ("okx", 3600.0), ("bybit", 5400.0)):
            if t <= stop:
                m.apply(OpenInterest(v, "BTC", "BTCUSDT", 0.0, 1000.0 * (1 + 0.02 * t / 3600), None, t, t))
        d = m.snapshot(t)["derivatives"]
        change, coverage = d["open_interest_change"]["1h"], d["open_interest_change_coverage"]["1h"]
        if 3600.0 + 61 <= t <= 5400.0:  # okx stale: the change over binance and bybit, two thirds covered
            assert change == pytest.approx(0.02 / (1 + 0.02 * (t - 3600) / 3600))
            assert coverage == pytest.approx(2 / 3, rel=0.02)
            seen["two"] += 1
        elif 5400.0 + 61 <= t <= 3302.0 + 3600:  # okx and bybit out: a third of it, too little to tell
            assert change is None
            seen["none"] += 1
        assert change is None or change > 0
    assert seen == {"two": 5, "none": 5}


def test_dated_contract_basis_is_annualized_to_expiry() -> None:
    expiry = "2026-03-27"
    m = market(f"weighting: cap\nmarket_caps: {{BTC: 3, ETH: 1}}\nfutures: {{mode: contract, exchange: okx, "
               f"symbol: HW-260327, underlying: HW, expiry: '{expiry}'}}")
    now = datetime(2026, 2, 25, 8, tzinfo=UTC).timestamp()  # 30 days to expiry at 08:00 UTC
    for a, p in PRICES.items():
        for v in VENUES[:3]:
            m.apply(quote(v, a, p, now))
    m.apply(MarkPrice("okx", "HW", "HW-260327", 1010.0, None, now, now, "USD", Market.FUTURE))
    d = m.snapshot(now)["derivatives"]
    assert d["futures_price"] == 1010.0 and d["basis_ratio"] == pytest.approx(0.01)
    assert d["days_to_expiry"] == pytest.approx(30.0)
    assert d["basis_annualized"] == pytest.approx(0.01 * 365 / 30)


def test_term_structure_and_roll_cost_per_asset() -> None:
    m = market()
    now = datetime(2025, 1, 10, tzinfo=UTC).timestamp()
    for a, p in PRICES.items():
        for v in VENUES[:3]:
            m.apply(quote(v, a, p, now))
    for contract, price in (("BTCUSDT_250328", 101_000.0), ("BTCUSDT_250627", 102_500.0)):
        m.apply(MarkPrice("binanceusdm", "BTC", contract, price, None, now, now, "USDT", Market.FUTURE))
    ts = m.snapshot(now)["assets"]["BTC"]["term_structure"]
    assert [row["price"] for row in ts["curve"]] == [101_000.0, 102_500.0]
    days = (datetime(2025, 6, 27, tzinfo=UTC) - datetime(2025, 3, 28, tzinfo=UTC)).days
    assert ts["roll_cost_annualized"] == pytest.approx((102_500 / 101_000 - 1) * 365 / days)


def test_volume_24h_from_candles_of_the_volume_venue() -> None:
    """The 24 h USD volume of an asset is its volume venue's (the first source listing it: binanceusdm
    here), from closed klines: history hours, then live minutes, an hour's own kline winning over them."""
    m = market()

    def k(venue: str, tf: int, ts: float, volume: float, closed: bool = True) -> Candle:
        return Candle(venue, "BTC", "BTCUSDT", tf, ts, 1, 1, 1, 100_000.0, volume, closed, ts + tf, ts + tf)

    assert m.snapshot(0.0)["assets"]["BTC"]["volume_24h"] is None
    for i in range(3):
        m.apply(k("binanceusdm", 3600, 3600.0 * i, 2.0))
        m.apply(k("okx", 3600, 3600.0 * i, 50.0))  # another venue: not the volume basis
    m.apply(k("binanceusdm", 3600, 3 * 3600.0, 9.0, closed=False))  # still forming: not counted
    for minute in range(10):
        m.apply(k("binanceusdm", 60, 3 * 3600.0 + minute * 60, 0.1))
    assert m.snapshot(3 * 3600.0 + 600)["assets"]["BTC"]["volume_24h"] == pytest.approx(7.0 * 100_000)
    m.apply(k("binanceusdm", 3600, 3 * 3600.0, 1.5))  # the hour's own kline replaces its minutes
    assert m.snapshot(4 * 3600.0)["assets"]["BTC"]["volume_24h"] == pytest.approx(7.5 * 100_000)
    assert m.snapshot(DAY + 3600.0 + 1)["assets"]["BTC"]["volume_24h"] == pytest.approx(3.5 * 100_000)



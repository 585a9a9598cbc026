"""Hedge sizing: the textbook example, rounding, the drift band, beta and carrying cost."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hedgewatch.service.config import PortfolioConfig
from hedgewatch.service.hedge import HedgeBook, RollingBeta, contracts_for, portfolio_value, short_pnl


def snapshot(level: float = 2000.0, fut: float | None = 2000.0, **deriv) -> dict:
    return {"index": "HW", "ts": 1.0, "level": level, "status": "ok",
            "constituents": {"BTC": {"price": 100_000.0}, "ETH": {"price": 2500.0}},
            "derivatives": {"futures_price": fut, **deriv}}


def test_textbook_example() -> None:
    # $500,000 at 50% = $250,000; one contract is 2,000 x $100 = $200,000 -> 1.25 contracts
    assert contracts_for(500_000 * 0.5, 2000.0, 100.0, 0.01) == 1.25
    book = HedgeBook("HW", PortfolioConfig(cash_usd=500_000, multiplier=100, lot_size=0.01))
    s = book.size(snapshot(), 0.5, 1.0)
    assert s is not None
    assert (s.portfolio_value_usd, s.target_notional_usd, s.target_contracts) == (500_000, 250_000, 1.25)
    assert (s.delta_contracts, s.side, s.within_band) == (-1.25, "sell", False)


@given(st.floats(0, 1e9), st.floats(1, 1e6), st.sampled_from([1.0, 0.1, 0.001]))
def test_contracts_are_whole_lots_nearest_the_target(notional: float, price: float, lot: float) -> None:
    c = contracts_for(notional, price, 10.0, lot)
    lots = c / lot
    assert lots == pytest.approx(round(lots), rel=1e-12, abs=1e-6)
    assert abs(c - notional / (price * 10.0)) <= lot / 2 * (1 + 1e-9) + 1e-9 * c


def test_portfolio_value_from_oracle_prices() -> None:
    snap = snapshot()
    assert portfolio_value({"BTC": 2, "ETH": 10, "HW": 5}, 1000.0, snap) == 200_000 + 25_000 + 10_000 + 1000
    assert portfolio_value({"SOL": 1}, 0.0, snap) is None


def test_drift_band_and_recommendations() -> None:
    cfg = PortfolioConfig(cash_usd=1_000_000, multiplier=1, lot_size=1, position_contracts=-100,
                          tolerance_ratio=0.05)
    book = HedgeBook("HW", cfg)
    s = book.size(snapshot(level=1000, fut=1000), 0.1, 1.0)  # target 100 short: held exactly
    assert s is not None and s.within_band and s.side == "none"
    first = book.recommend(s, ratio_changed=False)  # the first advice states the hedge: nothing to trade
    assert first is not None and (first["reason"], first["side"], first["trade_contracts"]) == ("initial", "none", 0)
    s = book.size(snapshot(level=1000, fut=1000), 0.14, 2.0)  # 140 vs 100 held: 4% of value, in the band
    assert s is not None and s.within_band
    assert book.recommend(s, ratio_changed=False) is None
    s = book.size(snapshot(level=1000, fut=1000), 0.2, 3.0)
    rec = book.recommend(s, ratio_changed=True)
    assert rec is not None and rec["reason"] == "target_changed"
    assert (rec["target_contracts"], rec["delta_contracts"], rec["side"], rec["trade_contracts"]) == (
        200, -100, "sell", 100)
    assert rec["trade_notional_usd"] == 100_000
    again = book.size(snapshot(level=1000, fut=1000), 0.2, 4.0)
    assert book.recommend(again, ratio_changed=False) is None  # same drift, same size: said once


def test_beta_scales_the_notional() -> None:
    book = HedgeBook("HW", PortfolioConfig(cash_usd=1_000_000, beta=1.5, multiplier=1, lot_size=1))
    s = book.size(snapshot(level=1000, fut=1000), 0.5, 1.0)
    assert s is not None and s.target_notional_usd == 750_000 and s.target_contracts == 750


def test_rolling_beta_recovers_the_slope() -> None:
    rb = RollingBeta(window=50, interval_s=3600)
    level, value = 1000.0, 1_000_000.0
    for i, r in enumerate([0.01, -0.02, 0.015, 0.005, -0.01, 0.02, -0.005, 0.0]):
        rb.add(i * 3600.0, value, level)
        rb.add(i * 3600.0 + 10, value * 2, level * 3)  # same bucket: ignored
        level *= 1 + r
        value *= 1 + 1.8 * r
    assert rb.beta == pytest.approx(1.8)


def test_carrying_cost_of_the_short() -> None:
    cfg = PortfolioConfig(cash_usd=1_000_000, multiplier=1, lot_size=1)
    book = HedgeBook("HW", cfg)
    s = book.size(snapshot(level=1000, fut=1000, funding_rate_8h=0.0005, roll_cost_annualized=0.0365), 0.5, 1)
    assert s is not None
    # a short of 500,000 receives 0.05% three times a day: -750 a day; rolling in contango earns 50 a day
    assert s.funding_per_day_usd == pytest.approx(-750.0)
    assert s.roll_cost_per_day_usd == pytest.approx(-50.0)


def test_short_pnl() -> None:
    assert short_pnl(2.0, 100.0, 2000.0, 1900.0) == 20_000.0


def test_roll_cost_from_constituent_term_structures() -> None:
    from hedgewatch.service.hedge import roll_cost_annualized

    snap = {"constituents": {"BTC": {"weight": 0.75}, "ETH": {"weight": 0.25}},
            "assets": {"BTC": {"term_structure": {"roll_cost_annualized": 0.08}},
                       "ETH": {"term_structure": {"roll_cost_annualized": 0.04}}},
            "derivatives": {}}
    assert roll_cost_annualized(snap) == pytest.approx(0.07)
    assert roll_cost_annualized({**snap, "derivatives": {"roll_cost_annualized": 0.01}}) == 0.01
    assert roll_cost_annualized({"assets": {"BTC": {}}}) is None


def test_coin_margined_hedge_is_sized_in_usd_face_value_and_accounted_in_the_coin() -> None:
    # 4 BTC at 50,000 = $200,000; hedged 50% with Binance COIN-M BTCUSD_PERP ($100 a contract)
    cfg = PortfolioConfig(holdings={"BTC": 4}, lot_size=1, position_contracts=-200,
                          instrument={"kind": "inverse", "asset": "btc", "contract_size": 100,
                                      "exchange": "binancecoinm", "symbol": "BTCUSD_PERP", "leverage": 5})
    book = HedgeBook("HW", cfg)
    snap = {"index": "HW", "level": 1000.0, "ts": 1.0,
            "constituents": {"BTC": {"price": 50_010.0}},
            "assets": {"BTC": {"mark_price": 50_000.0, "funding_rate_8h": 0.0001}},
            "derivatives": {"futures_price": 1000.0, "funding_rate_8h": 0.0009}}
    s = book.size(snap, 0.5, 1.0)
    assert s is not None
    assert s.portfolio_value_usd == 200_040.0  # holdings at the oracle price
    assert s.futures_price == 50_000.0  # the contract at its mark
    # $100,020 / $100 = 1,000.2 -> 1,000 contracts, whatever the price; 200 held short: sell 800
    assert (s.target_contracts, s.delta_contracts, s.side) == (1000.0, -800.0, "sell")
    assert s.trade_notional_usd == 80_000.0
    assert (s.contract_kind, s.contract_size, s.settle) == ("inverse", 100.0, "BTC")
    # 1,000 x $100 / 50,000 = 2 BTC short; margin at 5x 0.4 BTC
    assert s.target_value_settle == pytest.approx(2.0)
    assert s.margin_settle == pytest.approx(0.4)
    # the BTC contract's own funding (0.01% per 8 h), not the index's: 2 BTC x 0.0003 a day received
    assert s.funding_per_day_settle == pytest.approx(-0.0006)
    assert s.funding_per_day_usd == pytest.approx(-30.0)
    rec = book.recommendation(s, "target_changed")
    assert (rec["trade_contracts"], rec["trade_notional_usd"], rec["settle"]) == (800.0, 80_000.0, "BTC")
    # at twice the price the same $ target is the same number of contracts
    snap["assets"]["BTC"]["mark_price"] = 100_000.0
    snap["constituents"]["BTC"]["price"] = 100_000.0
    s2 = book.size(snap, 0.5, 2.0)
    assert s2 is not None and s2.target_contracts == 2000.0  # $200,000 of the $400,000 now held


def test_inverse_instrument_needs_its_coin() -> None:
    with pytest.raises(ValueError, match="asset"):
        PortfolioConfig(instrument={"kind": "inverse", "contract_size": 100})

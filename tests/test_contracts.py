"""Contract arithmetic: linear and inverse contracts, figures computed by hand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hedgewatch.service.contracts import ContractKind, ContractSpec

INDEX_FUT = ContractSpec.linear(100.0, "USD", lot_size=0.01)  # $100 a point
OKX_LINEAR = ContractSpec.linear(0.01, "USDT")  # BTC-USDT-SWAP: ctVal 0.01 BTC
COINM_BTC = ContractSpec.inverse(100.0, "BTC")  # Binance COIN-M BTCUSD_PERP
COINM_ETH = ContractSpec.inverse(10.0, "ETH")  # Binance COIN-M ETHUSD_PERP


def test_linear_index_future_textbook_sizing() -> None:
    # $500,000 x 50% = $250,000; one contract at 2,000 points x $100 is $200,000: 1.25 contracts
    assert INDEX_FUT.contracts_for(250_000.0, 2000.0) == 1.25
    assert INDEX_FUT.notional_usd(1.25, 2000.0) == 250_000.0
    # a short of 2 from 2,000 to 1,900 gains 2 x 100 x 100 = $20,000
    assert INDEX_FUT.pnl(-2.0, 2000.0, 1900.0) == 20_000.0
    assert INDEX_FUT.pnl_usd(-2.0, 2000.0, 1900.0) == 20_000.0


def test_linear_venue_contract_in_base_units() -> None:
    # $200,000 at 50,000 USDT is 4 BTC, 400 contracts of 0.01 BTC
    assert OKX_LINEAR.contracts_for(200_000.0, 50_000.0) == 400.0
    assert OKX_LINEAR.pnl(-400.0, 50_000.0, 40_000.0) == pytest.approx(40_000.0)
    # margin at 10x: 4 BTC x 50,000 / 10 = 20,000 USDT
    assert OKX_LINEAR.margin(-400.0, 50_000.0, 10.0) == pytest.approx(20_000.0)
    # a short of 400 at mark 50,000 and +0.01% receives 200,000 x 0.0001 = 20 USDT
    assert OKX_LINEAR.funding(-400.0, 50_000.0, 0.0001) == pytest.approx(20.0)


def test_inverse_sizing_is_in_usd_face_value_whatever_the_price() -> None:
    assert COINM_BTC.kind == ContractKind.INVERSE
    # $200,000 is 2,000 contracts of $100 at any BTC price
    assert COINM_BTC.contracts_for(200_000.0, 50_000.0) == 2000.0
    assert COINM_BTC.contracts_for(200_000.0, 20_000.0) == 2000.0
    assert COINM_BTC.notional_usd(-2000.0, 12_345.0) == -200_000.0
    # ETH contracts are $10: $15,000 is 1,500 of them
    assert COINM_ETH.contracts_for(15_000.0, 3_000.0) == 1500.0


def test_inverse_pnl_margin_and_funding_are_in_the_coin() -> None:
    # short 2,000 x $100 from 50,000 to 40,000: -200,000 x (1/50,000 - 1/40,000) = +1 BTC
    assert COINM_BTC.pnl(-2000.0, 50_000.0, 40_000.0) == pytest.approx(1.0)
    assert COINM_BTC.pnl_usd(-2000.0, 50_000.0, 40_000.0) == pytest.approx(40_000.0)
    # the same short when BTC rises to 62,500: -200,000 x (1/50,000 - 1/62,500) = -0.8 BTC
    assert COINM_BTC.pnl(-2000.0, 50_000.0, 62_500.0) == pytest.approx(-0.8)
    # its value is 4 BTC at 50,000; margin at 10x is 0.4 BTC, at 20x 0.2 BTC
    assert COINM_BTC.value(-2000.0, 50_000.0) == pytest.approx(-4.0)
    assert COINM_BTC.margin(-2000.0, 50_000.0, 10.0) == pytest.approx(0.4)
    assert COINM_BTC.margin(-2000.0, 50_000.0, 20.0) == pytest.approx(0.2)
    # funding +0.01% on a 4 BTC short: receives 0.0004 BTC; at -0.02% pays 0.0008 BTC
    assert COINM_BTC.funding(-2000.0, 50_000.0, 0.0001) == pytest.approx(0.0004)
    assert COINM_BTC.funding(-2000.0, 50_000.0, -0.0002) == pytest.approx(-0.0008)
    assert COINM_BTC.to_usd(0.0004, 50_000.0) == pytest.approx(20.0)


def test_lot_rounding_is_half_away_from_zero_without_float_residue() -> None:
    assert ContractSpec.linear(1.0).round_lots(2.5) == 3.0
    assert ContractSpec.linear(1.0).round_lots(-2.5) == -3.0
    assert ContractSpec.linear(1.0).round_lots(2.4999) == 2.0
    assert ContractSpec.linear(1.0, lot_size=0.001).round_lots(0.1 + 0.2) == 0.3
    assert ContractSpec.linear(1.0, lot_size=0.001).round_lots(0.0025) == 0.003
    assert ContractSpec.inverse(100.0, "BTC").contracts_for(250.0, 1.0) == 3.0


def test_bad_specs_and_prices_are_refused() -> None:
    with pytest.raises(ValueError, match="contract size"):
        ContractSpec.inverse(0.0, "BTC")
    with pytest.raises(ValueError, match="lot size"):
        ContractSpec.linear(1.0, lot_size=0.0)
    with pytest.raises(ValueError, match="price"):
        INDEX_FUT.contracts_for(1000.0, 0.0)
    with pytest.raises(ValueError, match="price"):
        COINM_BTC.pnl(-1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="leverage"):
        COINM_BTC.margin(1.0, 1.0, 0.0)


@given(coins=st.floats(0.01, 1000.0), p0=st.floats(100.0, 200_000.0), p1=st.floats(100.0, 200_000.0))
def test_a_full_inverse_short_keeps_the_coins_usd_value(coins: float, p0: float, p1: float) -> None:
    """Holding ``coins`` and shorting their USD value in inverse contracts locks the USD value at p0."""
    short = -COINM_BTC.contracts_raw(coins * p0, p0)
    hedged_usd = coins * p1 + COINM_BTC.pnl_usd(short, p0, p1)
    assert hedged_usd == pytest.approx(coins * p0, rel=1e-9)


@given(contracts=st.floats(-1e6, 1e6), p0=st.floats(1.0, 1e5), p1=st.floats(1.0, 1e5))
def test_linear_pnl_is_notional_change(contracts: float, p0: float, p1: float) -> None:
    spec = ContractSpec.linear(0.01)
    expected = spec.notional_usd(contracts, p1) - spec.notional_usd(contracts, p0)
    assert spec.pnl(contracts, p0, p1) == pytest.approx(expected, rel=1e-9, abs=1e-6)

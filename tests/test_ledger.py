"""The hedge ledger: fills, realized and unrealized P&L, funding, fees, rolls, state; answers by hand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hedgewatch.service.contracts import ContractSpec
from hedgewatch.service.ledger import Drawdown, Ledger, funding_times_between


def test_a_short_at_the_sizing_example_with_fees_and_slippage() -> None:
    # $500,000 x 50% = $250,000 of index futures at 2,000 points x $100 = 1.25 contracts, sold
    led = Ledger(ContractSpec.linear(100), fee_bps=4, slippage_bps=2)
    f = led.trade(0, -1.25, 2000.0)
    assert f is not None
    assert f.fill_price == pytest.approx(1999.6)  # a sell fills 2 bps lower
    assert f.fee_usd == pytest.approx(1.25 * 1999.6 * 100 * 4e-4)  # $99.98
    assert led.position == -1.25 and led.entry_price == pytest.approx(1999.6)
    # straight after the fill the mark is the futures price: the slippage shows as a loss of $50
    assert led.pnl_usd == pytest.approx(-50.0)
    led.mark_to(3600, 1800.0)  # the index falls 10%
    assert led.unrealized_usd == pytest.approx(1.25 * 100 * (1999.6 - 1800.0))  # $24,950
    assert led.net_usd == pytest.approx(24_950 - 99.98)
    assert led.hedged(450_000) == pytest.approx(450_000 + 24_950 - 99.98)


def test_reducing_realizes_and_the_entry_stays() -> None:
    led = Ledger(ContractSpec.linear(10))
    led.trade(0, -50, 1000.0)
    led.trade(1, 40, 900.0)  # buy back 40 of the 50 short: 40 x 10 x 100 gained
    assert led.realized_usd == pytest.approx(40_000)
    assert led.position == -10 and led.entry_price == 1000.0
    assert led.unrealized_usd == pytest.approx(10 * 10 * 100)
    led.trade(2, 30, 950.0)  # through zero: close 10 (+10 x 10 x 50), 20 long at 950
    assert led.realized_usd == pytest.approx(45_000)
    assert led.position == 20 and led.entry_price == 950.0
    led.trade(3, -20, 960.0)
    assert led.position == 0 and led.entry_price is None and led.unrealized_usd == 0
    assert led.realized_usd == pytest.approx(47_000)
    assert led.changes == 4 and led.traded_contracts == 140


def test_adding_averages_the_entry() -> None:
    led = Ledger(ContractSpec.linear(1))
    led.trade(0, -1, 100.0)
    led.trade(1, -3, 200.0)
    assert led.entry_price == pytest.approx(175.0)


def test_one_funding_payment_of_known_size() -> None:
    led = Ledger(ContractSpec.linear(10))
    led.trade(0, -20, 1000.0)
    # 20 contracts x $10 x 1,000 points = $200,000 short; 0.01% per 8 h: the short receives $20
    assert led.fund(8 * 3600, 1e-4, 1000.0) == pytest.approx(20.0)
    # a negative rate: the short pays
    assert led.fund(16 * 3600, -5e-5, 1000.0) == pytest.approx(-10.0)
    assert led.funding_usd == pytest.approx(10.0) and led.fundings == 2
    assert led.summary()["funding_received_usd"] == pytest.approx(20.0)
    assert led.summary()["funding_paid_usd"] == pytest.approx(10.0)
    assert led.net_usd == pytest.approx(10.0)  # no price move, no fees


def test_a_position_held_from_the_start_counts_from_its_first_mark() -> None:
    led = Ledger(ContractSpec.linear(10), position=-20)
    led.mark_to(0, 1000.0)
    led.mark_to(1, 990.0)
    assert led.pnl_usd == pytest.approx(20 * 10 * 10)


def test_roll_costs_both_legs() -> None:
    led = Ledger(ContractSpec.linear(10), fee_bps=5, slippage_bps=1)
    led.trade(0, -10, 1000.0)
    fees_before = led.fees_usd
    cost = led.roll(100, 1000.0, 1000.0)
    # buy back at 1000.1, sell again at 999.9: 2 x 10 x 10 x 0.1 slippage, fees of both legs
    fees = 10 * 10 * (1000.1 + 999.9) * 5e-4
    assert cost == pytest.approx(20.0 + fees)
    assert led.fees_usd - fees_before == pytest.approx(fees)
    assert led.position == -10 and led.rolls == 1 and led.changes == 1


def test_an_inverse_contract_counts_in_the_coin() -> None:
    # Binance COIN-M BTCUSD_PERP: $100 face a contract; 100 short = $10,000 whatever the price
    led = Ledger(ContractSpec.inverse(100, "BTC"), fee_bps=4)
    f = led.trade(0, -100, 50_000.0)
    assert f is not None and f.fee_usd == pytest.approx(10_000 * 4e-4)  # fees on the face value
    led.mark_to(1, 40_000.0)
    # 100 x $100 x (1/50,000 - 1/40,000) = +0.05 BTC for the short, $2,000 at 40,000
    assert led.unrealized_usd == pytest.approx(0.05 * 40_000)
    # funding in the coin: $10,000 / 40,000 x 0.01% = 0.000025 BTC, $1
    assert led.fund(8 * 3600, 1e-4, 40_000.0) == pytest.approx(1.0)
    led.trade(2, -100, 40_000.0)  # adding: the entry is the harmonic mean
    assert led.entry_price == pytest.approx(200 / (100 / 50_000 + 100 / 40_000))
    led.trade(3, 200, 40_000.0)  # closed at 40,000: the coin P&L realized, in USD at that price
    assert led.position == 0 and led.realized_usd == pytest.approx(2_000)
    assert led.net_usd == pytest.approx(2_000 + 1.0 - 400 * 100 * 4e-4)  # fees on 400 contracts' face value


def test_state_round_trip() -> None:
    led = Ledger(ContractSpec.linear(10), fee_bps=4, slippage_bps=2)
    led.trade(0, -20, 1000.0)
    led.fund(28800, 1e-4, 990.0)
    led.mark_to(30000, 985.0)
    back = Ledger(ContractSpec.linear(10), fee_bps=4, slippage_bps=2)
    assert back.load(led.dump())
    assert back.summary() == led.summary() and back.fills == led.fills
    assert not Ledger(ContractSpec.linear(10)).load({"version": 99})
    assert not Ledger(ContractSpec.linear(10)).load({"version": 1, "fills": [{"bad": 1}]})


def test_drawdown_and_funding_times() -> None:
    dd = Drawdown()
    for v in (100.0, 120.0, 90.0, 130.0, 117.0):
        dd.add(v)
    assert dd.max_ratio == pytest.approx(-0.25) and dd.current_ratio == pytest.approx(-0.1)
    h = 3600.0
    assert funding_times_between(7 * h, 17 * h, 8) == [8 * h, 16 * h]
    assert funding_times_between(8 * h, 9 * h, 8) == []  # (after, until]


trades = st.lists(st.tuples(st.floats(-50, 50).map(lambda x: round(x, 2)), st.floats(500, 2000)),
                  min_size=1, max_size=30)


@given(trades, st.floats(500, 2000))
def test_pnl_equals_the_cash_flows(rows: list[tuple[float, float]], mark: float) -> None:
    """Realized + unrealized is what the fills paid and received plus the position at the mark."""
    led = Ledger(ContractSpec.linear(10), fee_bps=3, slippage_bps=2)
    cash = 0.0
    for i, (qty, price) in enumerate(rows):
        f = led.trade(i, qty, price)
        if f is not None:
            cash -= f.contracts * f.fill_price * 10
    led.mark_to(len(rows), mark)
    assert led.pnl_usd == pytest.approx(cash + led.position * mark * 10, abs=1e-6 * (1 + abs(cash)))
    assert led.fees_usd == pytest.approx(sum(f.fee_usd for f in led.fills))


@given(trades, st.floats(500, 2000), st.floats(-1e-3, 1e-3))
def test_doubling_the_position_doubles_the_hedge(rows: list[tuple[float, float]], mark: float,
                                                 rate: float) -> None:
    spec = ContractSpec.linear(10)
    one, two = Ledger(spec, fee_bps=3, slippage_bps=2), Ledger(spec, fee_bps=3, slippage_bps=2)
    for i, (qty, price) in enumerate(rows):
        one.trade(i, qty, price)
        two.trade(i, 2 * qty, price)
        one.fund(i, rate, price)
        two.fund(i, rate, price)
    one.mark_to(99, mark)
    two.mark_to(99, mark)
    tol = 1e-6 * (1 + abs(one.pnl_usd))
    assert two.pnl_usd == pytest.approx(2 * one.pnl_usd, abs=tol)
    assert two.funding_usd == pytest.approx(2 * one.funding_usd, abs=1e-6)
    assert two.fees_usd == pytest.approx(2 * one.fees_usd)

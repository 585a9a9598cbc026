"""The overlay the daemon runs: the ledger on the advice, funding at the funding times, the daily summary
alert, persistence, and the metrics it exports."""

from __future__ import annotations

import pytest

from hedgewatch.service.config import config_from_dict
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.overlay import SUMMARY_RULE, Overlay
from tests.rules_support import snap

H = 3600.0


def overlay(**ledger: object) -> Overlay:
    cfg = config_from_dict({
        "sources": [{"exchange": "binanceusdm", "symbols": ["BTC", "ETH"]}],
        "index": {"name": "HW", "constituents": ["BTC", "ETH"]},
        "portfolio": {"holdings": {"HW": 1000}, "hedge_ratio": 0.5, "multiplier": 10, "lot_size": 1},
        "rules": {"files": []},
        "ledger": {"fee_bps": 0, "slippage_bps": 0, **ledger},
    }, "<overlay>", {})
    return Overlay("configured", cfg, 0.0)


def test_advice_moves_the_ledger_and_funding_is_paid_at_funding_times() -> None:
    o = overlay()
    r = o.evaluate(snap(1000.0, 7 * H, funding_rate_8h=1e-4), 7 * H)
    assert r.hedge is not None and r.hedge["target_contracts"] == 50
    assert o.ledger.position == 0  # live: the ledger holds what is held, and nothing was done yet
    o.rules.hedge.ack(None, r.hedge["id"], "test", 7 * H)  # the user did as advised
    assert o.follow_position(7 * H) and o.ledger.position == -50  # at the last futures price, 1,000
    o.evaluate(snap(990.0, 8 * H + 1, funding_rate_8h=1e-4), 8 * H + 1)
    # the 08:00 funding on 50 x $10 x 990: the short receives 0.01%
    assert o.ledger.fundings == 1 and o.ledger.funding_usd == pytest.approx(50 * 10 * 990 * 1e-4)
    assert o.ledger.pnl_usd == pytest.approx(50 * 10 * 10)
    assert o.unhedged_usd == pytest.approx(990_000)
    assert o.hedged_usd == pytest.approx(990_000 + 5000 + 49.5)
    o.evaluate(snap(990.0, 16 * H + 5), 16 * H + 5)  # no rate known at 16:00: zero, and counted
    assert o.ledger.fundings == 2 and o.funding_missing == 1
    m = Metrics()
    o.export(m)
    text = m.render().decode()
    assert 'hedgewatch_hedge_position_contracts{index="HW"} -50.0' in text
    assert 'hedgewatch_hedge_pnl_usd{index="HW"} 5000.0' in text
    assert 'hedgewatch_portfolio_value_usd{index="HW",view="unhedged"} 990000.0' in text
    assert 'hedgewatch_portfolio_drawdown_ratio{index="HW",view="unhedged"} -0.01' in text


def test_the_daily_summary_is_off_unless_switched_on() -> None:
    o = overlay()
    o.evaluate(snap(1000.0, 23 * H), 23 * H)
    assert not o.evaluate(snap(1000.0, 24 * H + 1), 24 * H + 1).alerts


def test_the_daily_summary_alert() -> None:
    o = overlay(daily_summary={"enabled": True, "time_utc": "00:00"})
    first = o.evaluate(snap(1000.0, 23 * H), 23 * H)
    assert not first.alerts and first.hedge is not None
    o.rules.hedge.ack(None, None, "test", 23 * H)
    o.follow_position(23 * H)
    assert not o.evaluate(snap(1000.0, 23.5 * H), 23.5 * H).alerts
    alerts = o.evaluate(snap(950.0, 24 * H + 1), 24 * H + 1).alerts
    assert [a.rule for a in alerts] == [SUMMARY_RULE]
    a = alerts[0]
    assert a.status == "firing" and a.severity == "info" and a.values["date"] == "1970-01-02"
    assert a.values["position_contracts"] == -50 and a.values["pnl_usd"] == pytest.approx(25_000)
    assert a.values["portfolio_unhedged_usd"] == pytest.approx(950_000)
    assert a.summary == ("HW hedge: -50 contracts, P&L $25,000, funding $0, fees $0; portfolio $975,000 hedged "
                         "(-2.5% from peak), $950,000 unhedged (-5.0%)")
    assert not o.evaluate(snap(950.0, 30 * H), 30 * H).alerts  # once a day
    assert [x.rule for x in o.evaluate(snap(950.0, 48 * H), 48 * H).alerts] == [SUMMARY_RULE]


def test_the_ledger_persists() -> None:
    o = overlay()
    o.evaluate(snap(1000.0, 7 * H, funding_rate_8h=1e-4), 7 * H)
    o.evaluate(snap(990.0, 9 * H, funding_rate_8h=1e-4), 9 * H)
    saved = o.dump()
    back = overlay()
    assert back.load(saved)
    assert back.ledger.summary() == o.ledger.summary()
    assert back.drawdowns["hedged"].peak == o.drawdowns["hedged"].peak and back.evaluated_at == 9 * H
    assert not overlay().load({"ledger": {"version": 7}})


def test_a_reported_position_reconciles_the_ledger() -> None:
    o = overlay()
    r = o.evaluate(snap(1000.0, 7 * H), 7 * H)
    assert r.hedge is not None and r.hedge["trade_contracts"] == 50 and o.ledger.position == 0
    o.reconcile(7 * H + 60, -30.0)  # the venue says 30 short: 20 of the 50 advised were never sold
    assert o.ledger.position == -30 and o.rules.hedge.position == -30
    assert o.ledger.fills[-1].reason == "venue" and o.ledger.fills[-1].price == 1000.0
    nxt = o.evaluate(snap(1000.0, 7 * H + 120), 7 * H + 120)  # advised afresh from the 30 held
    assert nxt.hedge is not None and (nxt.hedge["reason"], nxt.hedge["trade_contracts"]) == ("position_changed", 20)

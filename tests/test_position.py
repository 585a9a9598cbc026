"""The believed hedge position and the life of an advice (service.position), through the sizing book."""

from __future__ import annotations

from typing import Any

import pytest

from hedgewatch.service.config import PortfolioConfig
from hedgewatch.service.hedge import HedgeBook
from hedgewatch.service.position import AckError, AdviceState, PositionSource

VALUE = 1_000_000.0


def snap(level: float = 1000.0) -> dict[str, Any]:
    """A snapshot of an index held as cash only: the portfolio is worth $1,000,000 at any level."""
    return {"index": "HW", "ts": 0.0, "level": level, "constituents": {}, "derivatives": {"futures_price": level}}


def book(**kw: Any) -> HedgeBook:
    cfg = dict(cash_usd=VALUE, multiplier=1, lot_size=1, tolerance_ratio=0.02, drift_min_interval_s=300)
    cfg.update(kw)
    return HedgeBook("HW", PortfolioConfig(**cfg))


def advise(b: HedgeBook, ratio: float, now: float, changed: bool = False, level: float = 1000.0
           ) -> dict[str, Any] | None:
    s = b.size(snap(level), ratio, now)
    assert s is not None
    return b.recommend(s, changed, now)


def test_a_user_who_follows_every_advice_ends_at_the_target() -> None:
    b = book(position_contracts=0)
    first = advise(b, 0.2, 0.0)
    assert first is not None and (first["reason"], first["side"], first["trade_contracts"]) == ("initial", "sell", 200)
    b.ack(None, first["id"], "cli", 10.0)
    assert b.position == -200 and b.positions.position.source is PositionSource.ACK
    assert advise(b, 0.2, 20.0) is None  # held as advised: nothing more to do
    raised = advise(b, 0.5, 30.0, changed=True)
    assert raised is not None and (raised["side"], raised["trade_contracts"], raised["position_contracts"]) == (
        "sell", 300, -200)
    b.ack(None, None, "cli", 40.0)
    lowered = advise(b, 0.1, 50.0, changed=True)
    assert lowered is not None and (lowered["side"], lowered["trade_contracts"]) == ("buy", 400)  # from 500
    b.ack(None, lowered["id"], "cli", 60.0)
    assert b.position == -100
    states = [a.state for a in b.positions.history]
    assert states == [AdviceState.ACKNOWLEDGED] * 3


def test_a_user_who_does_nothing_keeps_the_same_advice() -> None:
    b = book(position_contracts=0, remind_s=600)
    first = advise(b, 0.2, 0.0)
    assert first is not None
    # price wobbles move the target by a lot or two: the same advice stands, no new one, no new id
    for i, level in enumerate([1000.5, 999.0, 1001.0, 998.0, 1002.0]):
        assert advise(b, 0.2, 10.0 + i, level=level) is None
    again = advise(b, 0.2, 700.0)  # a reminder: the same advice, the same id
    assert again is not None and again["id"] == first["id"] and again["trade_contracts"] == 200
    assert len(b.positions.history) == 1


def test_drift_needs_half_a_band_of_change_and_the_minimum_interval() -> None:
    b = book(position_contracts=-200)
    assert advise(b, 0.2, 0.0) is not None  # initial, held: nothing to trade
    # the price falls 12%: the value is cash, so the target grows from 200 to 227 short; the 200 held are
    # $24,000 (2.4% of the value) short of it: out of the 2% band
    drift = advise(b, 0.2, 10.0, level=880.0)
    assert drift is not None and (drift["reason"], drift["side"], drift["trade_contracts"]) == ("drift", "sell", 27)
    # two lots more: not a new advice (half the band is 11 contracts here)
    assert advise(b, 0.2, 400.0, level=875.0) is None
    # a move of more than half the band from the open advice's target, but within the minimum interval
    b.positions.policy.min_interval_s = 1000
    assert advise(b, 0.2, 500.0, level=800.0) is None
    newer = advise(b, 0.2, 1100.0, level=800.0)
    assert newer is not None and newer["reason"] == "drift" and newer["id"] != drift["id"]
    assert b.positions.history[-2].state is AdviceState.SUPERSEDED
    # back inside half the band: the drift advice is moot and expires once, published in its new state
    back = advise(b, 0.2, 1200.0, level=1000.0)
    assert back is not None and back["id"] == newer["id"] and back["state"] == "expired"
    assert advise(b, 0.2, 1300.0, level=1000.0) is None


def test_stating_another_position_supersedes_the_advice_and_advises_from_it() -> None:
    b = book(position_contracts=0)
    first = advise(b, 0.2, 0.0)
    assert first is not None
    b.ack(-150.0, None, "telegram:1", 5.0)  # only part of it was done
    assert b.positions.history[-1].state is AdviceState.SUPERSEDED
    nxt = advise(b, 0.2, 6.0)  # at once, not after the drift interval
    assert nxt is not None and (nxt["reason"], nxt["trade_contracts"], nxt["position_contracts"]) == (
        "position_changed", 50, -150)


def test_acknowledgements_that_cannot_apply_are_refused() -> None:
    b = book(position_contracts=0)
    with pytest.raises(AckError, match="no open advice"):
        b.ack(None, None, "cli", 0.0)
    first = advise(b, 0.2, 0.0)
    assert first is not None
    with pytest.raises(AckError, match="HW-9 is not open"):
        b.ack(None, "HW-9", "cli", 1.0)
    with pytest.raises(AckError, match="finite"):
        b.ack(float("nan"), None, "cli", 1.0)
    assert b.position == 0


def test_the_venue_is_the_source_of_truth() -> None:
    b = book(position_contracts=0)
    first = advise(b, 0.2, 0.0)
    assert first is not None
    b.ack(None, None, "cli", 1.0)
    adv = b.set_position(-200.0, 2.0)  # the venue confirms what was acknowledged
    assert adv is not None and adv.state is AdviceState.RECONCILED
    assert b.positions.position.source is PositionSource.VENUE
    b.set_position(-120.0, 3.0)  # someone closed part of it on the venue
    nxt = advise(b, 0.2, 4.0)
    assert nxt is not None and (nxt["reason"], nxt["side"], nxt["trade_contracts"]) == ("position_changed", "sell", 80)


def test_the_position_and_advice_survive_a_restart_and_the_config_wins_when_edited() -> None:
    b = book(position_contracts=0)
    first = advise(b, 0.2, 0.0)
    assert first is not None
    b.ack(None, None, "cli", 1.0)
    saved = b.dump()
    again = book(position_contracts=0)
    again.load(saved, 2.0)
    assert again.position == -200 and again.positions.position.source is PositionSource.ACK
    assert advise(again, 0.2, 3.0) is None  # no new "initial" after a restart
    nxt = advise(again, 0.5, 4.0, changed=True)
    assert nxt is not None and nxt["id"] == "HW-2"  # ids continue
    edited = book(position_contracts=-50)
    edited.load(saved, 5.0)
    assert edited.position == -50 and edited.positions.position.source is PositionSource.CONFIG


def test_assume_executed_follows_every_advice() -> None:
    b = book(position_contracts=0, assume_executed=True)
    first = advise(b, 0.3, 0.0)
    assert first is not None and first["trade_contracts"] == 300
    assert b.position == -300 and b.positions.history[-1].state is AdviceState.EXECUTED

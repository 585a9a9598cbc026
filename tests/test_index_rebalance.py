"""Rebalance schedules, scheduled and manual rebalances through MarketState, the preview."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgewatch.service.config import RebalanceConfig
from hedgewatch.service.market import MarketState
from hedgewatch.service.rebalance import next_rebalance
from tests.market_support import VENUES, config, quote


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_quarterly_last_business_day_at_16_utc() -> None:
    cfg = RebalanceConfig()
    assert next_rebalance(ts(2026, 11, 21), cfg) == ts(2026, 12, 31, 16)
    assert next_rebalance(ts(2026, 12, 31, 16), cfg) == ts(2027, 3, 31, 16)
    # June 2024 ends on a Sunday: Friday the 28th.
    assert next_rebalance(ts(2024, 4, 1), cfg) == ts(2024, 6, 28, 16)


def test_monthly_on_a_fixed_day_and_time() -> None:
    cfg = RebalanceConfig(schedule="monthly", day=31, time_utc="08:30")
    assert next_rebalance(ts(2026, 2, 1), cfg) == ts(2026, 2, 28, 8, 30)  # clipped to the month
    assert next_rebalance(ts(2026, 2, 28, 8, 30), cfg) == ts(2026, 3, 31, 8, 30)
    assert next_rebalance(ts(2026, 2, 1), RebalanceConfig(schedule="manual")) is None


@settings(max_examples=200)
@given(st.floats(0, 4e9), st.sampled_from(["monthly", "quarterly"]))
def test_schedule_always_lands_on_a_weekday_after_the_given_time(after, schedule) -> None:
    t = next_rebalance(after, RebalanceConfig(schedule=schedule))
    assert t is not None and t > after
    d = datetime.fromtimestamp(t, UTC)
    assert d.weekday() < 5 and (d.hour, d.minute) == (16, 0)
    assert schedule == "monthly" or d.month in (3, 6, 9, 12)


def feed(m: MarketState, prices: dict[str, float], t: float) -> None:
    for a, p in prices.items():
        for v in VENUES[:3]:
            m.apply(quote(v, a, p, t))


def test_scheduled_rebalance_resets_weights_keeps_the_level_and_is_previewed() -> None:
    start = ts(2026, 11, 1)
    cfg = config(index="weighting: equal\nrebalance: {schedule: monthly, preview_s: 3600}")
    m = MarketState(cfg, now=start)
    feed(m, {"BTC": 100.0, "ETH": 100.0}, start)
    due = ts(2026, 11, 30, 16)
    assert m.snapshot(start)["rebalance"]["next_ts"] == due
    # Drift: BTC +4 % over the month, in steps the oracle follows.
    for i in range(1, 5):
        feed(m, {"BTC": 100.0 + i, "ETH": 100.0}, due - 7200 + i)
    drifted = m.snapshot(due - 7000)
    assert drifted["constituents"]["BTC"]["weight"] > 0.5
    assert "preview" not in drifted["rebalance"]
    feed(m, {"BTC": 104.0, "ETH": 100.0}, due - 5)
    preview = m.snapshot(due - 5)["rebalance"]["preview"]
    assert preview["weights"] == {"BTC": 0.5, "ETH": 0.5} and preview["effective_ts"] == due
    level = m.level
    m.tick(due - 4)
    previews = [t for t in m.drain_transitions() if t.kind == "rebalance_preview"]
    assert len(previews) == 1 and "added -; removed -" in previews[0].reason
    assert not m.tick(due - 1)
    assert m.tick(due)
    snap = m.snapshot(due)
    assert snap["level"] == pytest.approx(level, rel=1e-12)
    assert snap["constituents"]["BTC"]["weight"] == pytest.approx(0.5)
    assert snap["rebalance"]["last_ts"] == due and snap["rebalance"]["next_ts"] == ts(2026, 12, 31, 16)
    assert [t.kind for t in m.drain_transitions()] == ["rebalance"]
    assert m.state(due)["rebalance_history"][-1]["divisor_before"] == pytest.approx(1.0)


def test_manual_rebalance_on_demand() -> None:
    cfg = config(index="weighting: equal\nrebalance: {schedule: manual}")
    m = MarketState(cfg, now=0.0)
    feed(m, {"BTC": 100.0, "ETH": 100.0}, 1.0)
    feed(m, {"BTC": 104.0, "ETH": 100.0}, 2.0)
    assert m.snapshot(2.0)["rebalance"]["next_ts"] is None
    level = m.level
    assert m.rebalance_now(3.0)
    assert m.level == pytest.approx(level)
    assert m.snapshot(3.0)["constituents"]["ETH"]["weight"] == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["BTC", "ETH", "SOL"]), st.sampled_from(VENUES[:3]),
                          st.floats(-0.01, 0.01)), max_size=200))
def test_market_state_incremental_level_equals_a_full_recompute(ticks) -> None:
    cfg = config(assets=("BTC", "ETH", "SOL"), index="weighting: cap\nmarket_caps: {BTC: 5, ETH: 3, SOL: 1}")
    m = MarketState(cfg, now=0.0)
    base = {"BTC": 100_000.0, "ETH": 3_000.0, "SOL": 150.0}
    feed(m, base, 1.0)
    for i, (a, v, mv) in enumerate(ticks):
        m.apply(quote(v, a, base[a] * (1 + mv), 1.0 + i * 0.01))
    b = m.basket
    full = sum(u * m.oracle(a).price for a, u in b.units.items()) / b.divisor
    assert m.level == pytest.approx(full, rel=1e-12)

"""The pieces of restart safety, alone: the basket taken back from a persisted snapshot, a restored pending
rule held through the start-up, and the local state copy (tests/test_restart_daemon.py runs them through
the whole daemon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgewatch.rules.stage import STATUS_GRACE_S
from hedgewatch.service import statefile
from hedgewatch.service.market import MarketState
from tests.market_support import VENUES, config, quote
from tests.rules_support import snap, stage_for

PENDING = """
groups:
  - name: g
    rules:
      - {name: High, expr: price > 110, for: 60s, action: notify}
"""


def feed(m: MarketState, ts: float, prices: dict[str, float]) -> None:
    for a, p in prices.items():
        for v in VENUES[:3]:
            m.apply(quote(v, a, p, ts))


def test_the_level_continues_from_the_persisted_basket() -> None:
    first = MarketState(config(), now=0.0)
    feed(first, 1.0, {"BTC": 100_000.0, "ETH": 3_000.0})
    feed(first, 2.0, {"BTC": 104_000.0, "ETH": 3_000.0})
    saved = first.snapshot(2.0)
    assert saved["level"] == pytest.approx(1020.0)
    # a new start sees the same prices: without the basket it would re-base them to 1,000
    again = MarketState(config(), now=10.0)
    assert again.restore(saved, 10.0)
    assert again.status == "stale" and again.level is None  # built, waiting for prices
    feed(again, 11.0, {"BTC": 104_000.0, "ETH": 3_000.0})
    assert again.level == pytest.approx(1020.0) and again.status == "ok"
    assert again.snapshot(11.0)["divisor"] == saved["divisor"]
    fresh = MarketState(config(), now=10.0)
    feed(fresh, 11.0, {"BTC": 104_000.0, "ETH": 3_000.0})
    assert fresh.level == pytest.approx(1000.0)


def test_a_basket_of_another_composition_is_not_restored() -> None:
    first = MarketState(config(), now=0.0)
    feed(first, 1.0, {"BTC": 100_000.0, "ETH": 3_000.0})
    saved = first.snapshot(1.0)
    only_btc = MarketState(config(assets=("BTC",)), now=5.0)
    assert not only_btc.restore(saved, 5.0)
    assert not MarketState(config(), now=5.0).restore({"constituents": {}}, 5.0)
    assert not first.restore(saved, 5.0)  # already built


def test_a_restored_pending_rule_keeps_its_for_through_the_start_up(tmp_path: Path) -> None:
    before = stage_for(tmp_path, PENDING)
    before.evaluate(snap(111, 0), 0)
    before.evaluate(snap(111, 30), 30)
    assert before.engine.states["High"].state == "pending"
    after = stage_for(tmp_path, PENDING)
    after.restore_state(before.dump_state(), 40)
    # the start-up: stale, then degraded, then ok; 60 s after it started pending, it fires
    after.evaluate(snap(111, 41, status="stale"), 41)
    after.evaluate(snap(111, 45, status="degraded"), 45)
    assert after.engine.states["High"].state == "pending" and after.engine.states["High"].since == 0
    assert [a.status for a in after.evaluate(snap(111, 60), 60).alerts] == ["firing"]
    # once the index has been ok, a degraded spell longer than a momentary flip starts a pending rule over
    again = stage_for(tmp_path, PENDING)
    again.restore_state(before.dump_state(), 40)
    again.evaluate(snap(111, 41), 41)
    again.evaluate(snap(111, 45, status="degraded"), 45)
    assert again.engine.states["High"].state == "pending"  # paused, not restarted
    again.evaluate(snap(111, 45 + STATUS_GRACE_S, status="degraded"), 45 + STATUS_GRACE_S)
    assert again.engine.states["High"].state == "inactive"


def test_local_state_copy(tmp_path: Path) -> None:
    path = statefile.state_path(tmp_path / "outbox", "DEFI/x")
    assert path.name == "state-DEFI_x.json"
    assert statefile.load(path) is None
    statefile.save(path, {"saved_at": 5.0, "rules": {"a": 1}})
    assert statefile.load(path) == {"saved_at": 5.0, "rules": {"a": 1}}
    assert not path.with_suffix(".tmp").exists()
    path.write_bytes(b"{torn")
    assert statefile.load(path) is None
    old, new = {"saved_at": 1.0}, {"saved_at": 2.0}
    assert statefile.newer(old, new) is new and statefile.newer(new, old) is new
    assert statefile.newer(None, old) is old and statefile.newer(old, None) is old
    assert statefile.newer(None, None) is None


def test_a_basket_of_another_weighting_is_not_restored() -> None:
    first = MarketState(config(), now=0.0)
    feed(first, 1.0, {"BTC": 100_000.0, "ETH": 3_000.0})
    saved = first.snapshot(1.0)
    capped = MarketState(config(index="weighting: cap\nmarket_caps: {BTC: 3, ETH: 1}"), now=5.0)
    assert not capped.restore(saved, 5.0)


def test_a_rebalance_missed_while_down_is_due_at_once() -> None:
    first = MarketState(config(), now=0.0)
    feed(first, 1.0, {"BTC": 100_000.0, "ETH": 3_000.0})
    saved = first.snapshot(1.0)
    assert saved["rebalance"]["last_ts"] == 1.0
    soon = MarketState(config(), now=2.0)
    assert soon.restore(saved, 2.0) and not soon.rebalancer.due(2.0)
    later = 100 * 86400.0  # past the quarterly rebalance at the end of March 1970
    back = MarketState(config(), now=later)
    assert back.restore(saved, later) and back.rebalancer.due(later)
    feed(back, later + 1, {"BTC": 100_000.0, "ETH": 3_300.0})
    level = back.level
    assert back.tick(later + 1) and back.rebalancer.last_ts == later + 1
    assert back.level == pytest.approx(level)  # the rebalance keeps the level continuous

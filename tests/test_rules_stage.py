"""The stage as the daemon sees it: metrics export, /state, mixed-timeframe bootstrap, the bundled rules."""

from __future__ import annotations

import json
from pathlib import Path

from hedgewatch.rules.stage import RuleStage
from hedgewatch.service.config import parse_config
from hedgewatch.service.events import Candle
from hedgewatch.service.metrics import Metrics
from tests.rules_support import snap, stage_for

DAY = 86400
RULES = """
groups:
  - name: g
    rules:
      - {name: Up, expr: price > 110, for: 1m, action: {set_hedge: 0.5}}
      - {name: Quiet, expr: funding > 1, action: notify}
"""


def test_export_and_state(tmp_path: Path) -> None:
    s = stage_for(tmp_path, RULES)
    s.evaluate(snap(111, 0), 0)
    s.evaluate(snap(112, 60), 60)
    m = Metrics()
    s.export(m)
    text = m.render().decode()
    assert 'hedgewatch_rule_state{index="HW",rule="Up"} 2.0' in text
    assert 'hedgewatch_rule_state{index="HW",rule="Quiet"} 0.0' in text
    assert 'hedgewatch_hedge_ratio{index="HW"} 0.5' in text
    assert 'hedgewatch_hedge_contracts{index="HW"} 500.0' in text
    assert s.sizing is not None and s.sizing.portfolio_value_usd == 112000.0
    st = json.loads(json.dumps(s.state()))
    assert st["hedge_ratio"] == 0.5 and st["status"] == "ok"
    up, quiet = st["rules"]
    assert (up["state"], up["fired_at"], up["action"], up["value"]) == ("firing", 60, "set_hedge 0.5", 112.0)
    assert quiet["health"] == "unavailable: funding_rate_8h"
    assert st["signals"]["price"] == 112 and st["hedge"]["target_contracts"] == 500.0


def test_bootstrap_mixes_daily_and_minute_klines(tmp_path: Path) -> None:
    s = stage_for(tmp_path, """
groups:
  - name: g
    rules:
      - {name: M, expr: 'price < sma(3, "1d") and price > sma(5, "1m")', action: notify}
""")
    t0 = 100 * DAY
    klines = [Candle("x", "HW", "HW", DAY, t0 + d * DAY, 10.0, 10.0, 10.0, 10.0 * (d + 1), 1.0, True, 0, 0)
              for d in range(3)]
    # minutes of the third day, then that day's own (closed) daily kline, which replaces their aggregate
    klines += [Candle("x", "HW", "HW", 60, t0 + 2 * DAY + i * 60, 1.0, 1.0, 1.0, 1.0 + i, 1.0, True, 0, 0)
               for i in range(10)]
    s.bootstrap(reversed(klines))
    s.evaluate(snap(9, t0 + 3 * DAY + 1), t0 + 3 * DAY + 1)
    assert s.env["sma_3_1d"] == 20.0  # (10 + 20 + 30) / 3
    assert s.env["sma_5_1m"] == 8.0   # (6 + 7 + 8 + 9 + 10) / 5


def test_bundled_rules_load_and_hold_without_history() -> None:
    cfg = parse_config("""
sources: [{exchange: binanceusdm, symbols: [BTC, ETH]}]
index: {name: HW, constituents: [BTC, ETH]}
portfolio: {holdings: {BTC: 5}, hedge_ratio: 0.2}
""", env={})
    s = RuleStage(cfg, 0.0)
    assert cfg.rules.files == ("builtin:default",)
    res = s.evaluate(snap(1000, 10.0), 10.0)
    assert res.alerts == [] and s.engine.ratio == 0.2
    health = {r["name"]: r["health"] for r in s.state()["rules"]}
    assert health["BelowMA50d"] == "unavailable: sma_50_1d"
    assert health["IndexNotOk"] == "ok"


def test_history_needed_tells_the_daemon_what_to_fetch(tmp_path: Path) -> None:
    s = stage_for(tmp_path, """
groups:
  - name: g
    rules:
      - {name: A, expr: 'price < sma(50, "1d") and price > ema(20, "4h")', action: notify}
      - {name: B, expr: 'price < trendline("long_term") and asset_sma("BTC", 10, "1h") > 0', action: notify}
""")
    assert s.history_needed() == {"": {4 * 3600: 60, DAY: 183}, "BTC": {3600: 10}}


OPTED_IN = """
groups:
  - name: g
    rules:
      - {name: Anyway, expr: price > 0, act_on: [ok, degraded], action: {set_hedge: 0.35}}
"""


def test_no_rule_acts_on_a_not_ok_index_in_the_start_up_grace(tmp_path: Path) -> None:
    s = stage_for(tmp_path, OPTED_IN)  # started at 0; rules.startup_grace_s defaults to 30 s
    for t in (0.0, 1.0, 4.0):  # the venues connecting one by one: degraded
        assert s.evaluate(snap(100, t, status="degraded"), t).alerts == []
    assert s.engine.ratio == 0.2 and s.engine.states["Anyway"].health == "skipped: index starting"
    s.end_grace()  # every source priced its assets: the opt-in holds again
    assert [a.rule for a in s.evaluate(snap(100, 5.0, status="degraded"), 5.0).alerts] == ["Anyway"]
    assert s.engine.ratio == 0.35
    late = stage_for(tmp_path, OPTED_IN)
    assert late.evaluate(snap(100, 29.0, status="degraded"), 29.0).alerts == []
    assert [a.rule for a in late.evaluate(snap(100, 30.0, status="degraded"), 30.0).alerts] == ["Anyway"]

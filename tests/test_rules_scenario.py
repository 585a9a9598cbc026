"""The four-phase hedging scenario at the level of the rule stage: scripted snapshots through RuleStage
with a rule file written for it. A $1,000,000 portfolio (1,000 index units at 1,000) hedged with index
futures of multiplier 10 starts with a 20% baseline hedge:

1. baseline: 20% (20 contracts);
2. the index approaches resistance while funding runs at 0.05% per 8 h with rising open interest: the hedge
   is raised by 30 points to 50% (50 contracts);
3. it breaks below its 50-day MA and falls: the hedge stays at 50%, and the short's gain offsets half of
   the spot loss;
4. funding turns slightly negative and the price finds support: the hedge is lowered to 10% (10 contracts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hedgewatch.rules.stage import RuleStage
from hedgewatch.service.events import Candle
from hedgewatch.service.hedge import short_pnl
from tests.rules_support import config_for

DAY = 86400
T0 = 1_732_060_800  # a UTC midnight
RULES = """
groups:
  - name: scenario
    rules:
      - name: LeveragedApproachToResistance
        expr: price >= level("R1") * 0.98 and funding >= 0.0005 and oi_change("1h") > 0.02
        for: 10m
        resolve: funding < 0.0002
        severity: warning
        priority: 20
        action: {adjust_hedge: +30%}
        annotations:
          summary: >-
            {{ $index }} near R1 with funding {{ .funding_rate_8h | pct }}
            and OI +{{ .oi_change_1h | pct }}
      - name: BelowMA50
        expr: price < sma(50, "1d")
        for: 10m
        resolve: price > sma(50, "1d") * 1.01
        severity: warning
        priority: 30
        action: {raise_hedge_to: 30%}
      - name: FundingNegativeAtSupport
        expr: funding < 0 and price <= level("S1") * 1.01
        for: 10m
        severity: info
        priority: 40
        action: {lower_hedge_to: 10%}
"""


def snapshot(t: float, level: float, funding: float, oi: float) -> dict[str, Any]:
    return {"index": "HW", "ts": t, "level": level, "status": "ok",
            "constituents": {"BTC": {"price": level * 95, "weight": 0.5, "status": "ok", "sources": 3},
                             "ETH": {"price": level * 3.4, "weight": 0.5, "status": "ok", "sources": 3}},
            "derivatives": {"futures_price": level, "funding_rate_8h": funding, "open_interest_usd": oi,
                            "state": "contango"},
            # the open interest in contracts (base units) on one venue, with its USD figure
            "assets": {"BTC": {"open_interest_venues": {"binanceusdm": [oi / 1e5, oi]}}}}


def script() -> list[tuple[str, float, float, float, float]]:
    """(phase, t, level, funding, oi) every minute for four phases."""
    rows = []
    t = T0 + 60 * DAY + 3600.0
    oi = 1.0e10
    for _ in range(30):  # 1: baseline
        rows.append(("1", t, 1000.0, 0.0001, oi))
        t += 60
    for i in range(60):  # 2: towards R1 = 1050, funding 0.05%/8h, OI +6% an hour
        oi *= 1.001
        rows.append(("2", t, 1000.0 + i * 0.7, 0.0005, oi))
        t += 60
    for i in range(60):  # 3: below the 50-day MA (~980) and falling to 920, funding back to normal
        rows.append(("3", t, 1040.0 - i * 2.0, 0.0001, oi))
        t += 60
    for _ in range(30):  # 4: funding slightly negative, price holding above support S1 = 900
        rows.append(("4", t, 905.0, -0.00005, oi))
        t += 60
    return rows


@pytest.fixture
def stage(tmp_path: Path) -> RuleStage:
    f = tmp_path / "scenario.yaml"
    f.write_text(RULES)
    cfg = config_for(f, portfolio=", position_contracts: -20, tolerance_ratio: 0.02",
                     rules_extra=", levels: {R1: 1050, S1: 900}")
    cfg = cfg.model_copy(update={"portfolio": cfg.portfolio.model_copy(update={"multiplier": 10.0})})
    s = RuleStage(cfg, T0)
    # 60 days of daily index klines around 980 so the 50-day MA is known from the first evaluation
    s.bootstrap(Candle("binanceusdm", "HW", "HW", DAY, T0 + d * DAY, 975.0, 990.0, 960.0, 975.0 + d * 0.2,
                       1.0, True, T0 + d * DAY, T0 + d * DAY) for d in range(60))
    return s


def test_four_phases(stage: RuleStage) -> None:
    ratios: dict[str, list[float]] = {}
    contracts: dict[str, list[float]] = {}
    alerts = []
    hedges = []
    for phase, t, level, funding, oi in script():
        res = stage.evaluate(snapshot(t, level, funding, oi), t)
        alerts += [(phase, a) for a in res.alerts]
        if res.hedge:
            hedges.append((phase, res.hedge))
            if res.hedge["side"] != "none":  # a user who does as advised
                stage.hedge.ack(None, res.hedge["id"], "test", t)
        assert stage.sizing is not None
        ratios.setdefault(phase, []).append(round(stage.engine.ratio, 9))
        contracts.setdefault(phase, []).append(stage.sizing.target_contracts)

    sma50 = sum(975.0 + d * 0.2 for d in range(10, 60)) / 50
    assert stage.state()["signals"]["sma_50_1d"] == pytest.approx(sma50)

    # the sequence of hedge ratios and the contracts at each step
    assert [ratios[p][-1] for p in "1234"] == [0.2, 0.5, 0.5, 0.1]
    assert set(ratios["1"]) == {0.2} and set(ratios["3"]) == {0.5}
    assert [contracts[p][-1] for p in "1234"] == [20.0, 50.0, 50.0, 10.0]

    # the alerts, in order, with the hedge change on the acting ones
    seen = [(p, a.rule, a.status, a.hedge and (a.hedge.from_ratio, a.hedge.to_ratio, a.hedge.contracts,
                                                  a.hedge.side)) for p, a in alerts]
    assert seen == [
        ("2", "LeveragedApproachToResistance", "firing", (0.2, 0.5, 50.0, "sell")),
        ("3", "LeveragedApproachToResistance", "resolved", None),
        ("3", "BelowMA50", "firing", (0.5, 0.5, 50.0, "none")),
        ("4", "FundingNegativeAtSupport", "firing", (0.5, pytest.approx(0.1), 10.0, "buy")),
    ]
    first = alerts[0][1]
    assert first.summary.startswith("HW near R1 with funding 0.05% and OI +")
    assert first.values["funding_rate_8h"] == 0.0005 and first.values["level_R1"] == 1050

    # recommendations: the initial one (baseline held: within the band), then one per target change
    assert [(p, h["reason"], h["target_contracts"], h["side"]) for p, h in hedges] == [
        ("1", "initial", 20.0, "none"), ("2", "target_changed", 50.0, "sell"),
        ("4", "target_changed", 10.0, "buy")]
    # each from what that user holds: 20, then the 50 of the first advice
    assert hedges[1][1]["delta_contracts"] == -30.0 and hedges[2][1]["delta_contracts"] == 40.0
    assert stage.hedge.position == -10.0


def test_phase_three_short_gain_offsets_the_spot_loss(stage: RuleStage) -> None:
    rows = script()
    phase3 = [r for r in rows if r[0] == "3"]
    for _, t, level, funding, oi in rows:
        stage.evaluate(snapshot(t, level, funding, oi), t)
        if t == phase3[-1][1]:
            break
    start, end = phase3[0][2], phase3[-1][2]
    spot_loss = 1000 * (start - end)  # 1,000 index units
    gain = short_pnl(50.0, 10.0, start, end)
    assert (spot_loss, gain) == (118_000.0, 59_000.0)
    assert gain == pytest.approx(0.5 * spot_loss)  # a 50% hedge offsets half the loss
    assert stage.engine.ratio == 0.5

"""The four-phase hedging story as a backtest: the same ratios, contracts and alerts as the live daemon's
test (``test_four_phase_daemon.py``), and the short's gain from the ledger equal to the hand computation.

The history comes from the bundled simulator playing ``four_phase.yaml``, fetched with ``history fetch``
from its Binance USDⓈ-M REST API: daily klines for the months before (the 50-day average), one-minute
klines of the story. The story compresses funding and open interest into minutes, which settled funding
records (every 8 h) and the venues' 5-minute open-interest files cannot carry; they are written from the
scenario's regimes, one row a minute, in the published CSV shapes (funding as the rate the venue was
publishing, open interest as the metrics files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hedgewatch.connectors.simulator import Simulator
from hedgewatch.service.backtest.run import run_backtest
from hedgewatch.service.config import config_from_dict
from hedgewatch.service.hedge import short_pnl
from hedgewatch.service.history.fetch import FetchPlan, run_fetch
from hedgewatch.service.history.files import load_history, parse_date
from tests.stepped import stepped_simulator, stepped_sources
from tests.test_four_phase_daemon import END_S, INDEX, MULTIPLIER, PHASES_S, R1, RULES, S1, UNITS, phase

MINUTE = 60


def regime_at(sim: Simulator, t_s: float) -> tuple[float, float]:
    """(funding rate, open-interest growth per hour) of the scenario at ``t_s`` into the story."""
    sc = sim.scenario
    funding = next(iter(sc.assets.values())).funding_rate
    growth = 0.0
    for r in sc.regimes:
        if r.at_s <= t_s:
            funding = r.funding_rate if r.funding_rate is not None else funding
            growth = r.oi_growth_per_hour if r.oi_growth_per_hour is not None else growth
    return funding, growth


def write_carry(sim: Simulator, folder: Path, start: float, closes: dict[str, dict[float, float]]) -> None:
    sc = sim.scenario
    for a, spec in sc.assets.items():
        oi = spec.open_interest
        fund = ["calc_time,funding_interval_hours,last_funding_rate"]
        metrics = ["create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
                   "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio"]
        for m in range(END_S // MINUTE + 1):
            t = start + m * MINUTE
            rate, growth = regime_at(sim, m * MINUTE)
            if m:
                oi *= (1.0 + growth) ** (MINUTE / 3600)
            fund.append(f"{int(t * 1000)},8,{rate:.8f}")
            price = closes[a].get(t)
            if price is not None:
                metrics.append(f"{int(t * 1000)},{a}USDT,{oi:.4f},{oi * price:.4f},1,1,1,1")
        (folder / f"{a}USDT-fundingRate-2026-01.csv").write_text("\n".join(fund) + "\n")
        (folder / f"{a}USDT-metrics-2026-01-01.csv").write_text("\n".join(metrics) + "\n")


def backtest_config(sim: Simulator) -> Any:
    data: dict[str, Any] = {
        "sources": stepped_sources(sim),
        "index": {"name": INDEX, "constituents": list(sim.scenario.assets), "weighting": "equal",
                  "base_level": 1000.0},
        "portfolio": {"holdings": {INDEX: UNITS}, "hedge_ratio": 0.2, "multiplier": MULTIPLIER,
                      "lot_size": 1, "position_contracts": -20, "tolerance_ratio": 0.02},
        "rules": {"files": [str(RULES)], "levels": {"R1": R1, "S1": S1}},
        "ledger": {"fee_bps": 0.0, "slippage_bps": 0.0},
    }
    return config_from_dict(data, "<four-phase backtest>", {})


async def play_and_fetch(folder: Path) -> tuple[Any, float]:
    """Play the story on the simulator, fetch its history, write its funding and open interest."""
    async with stepped_simulator() as sim:
        assert sim.path is not None
        start = sim.path.now_ms / 1000.0
        while sim.path.elapsed_s < END_S + MINUTE:
            sim.step()
        cfg = backtest_config(sim)
        for frm, to, iv in (("2025-10-01", "2026-01-01", "1d"), ("2026-01-01", "2026-01-02", "1m")):
            plan = FetchPlan.for_config(cfg, parse_date(frm), parse_date(to), folder, iv, None, 1000.0)
            assert await run_fetch(plan, show_progress=False) > 0
        h = load_history(folder)
        closes = {a: {b.open_ts + 60: b.close for b in h.klines[a][60]} for a in sim.scenario.assets}
        write_carry(sim, folder, start, closes)
    return cfg, start


@pytest.fixture
async def story(tmp_path: Path) -> tuple[Any, Path, float]:
    cfg, start = await play_and_fetch(tmp_path / "data")
    return cfg, tmp_path / "data", start


def test_the_four_phase_story_as_a_backtest(story: tuple[Any, Path, float]) -> None:
    cfg, folder, start = story
    history = load_history(folder)
    res = run_backtest(cfg, history, start, start + END_S)
    assert res.interval_s == 60 and len(res.times) == END_S // MINUTE
    tr = res.tracks["configured"]

    # the recommendations: the baseline, raised to 50%, lowered to 10% (the backtest takes the advice as
    # executed, so the last trade is from the 50 then held, where the live test still holds the 20)
    recs = [(phase(a["ts"], start), a["reason"], a["ratio"], a["target_contracts"], a["side"], a["trade_contracts"])
            for a in tr.advice]
    assert recs == [
        (1, "initial", 0.2, 20.0, "none", 0.0),
        (1, "target_changed", pytest.approx(0.5), 50.0, "sell", 30.0),
        (4, "target_changed", pytest.approx(0.1), 10.0, "buy", 40.0),
    ]
    # the alerts, in order, with the hedge change on the acting ones: as live
    seen = [(f["rule"], f["status"], f.get("hedge_change") and (
        f["hedge_change"]["from_ratio"], f["hedge_change"]["to_ratio"], f["hedge_change"]["contracts"],
        f["hedge_change"]["side"])) for f in tr.firings]
    assert seen == [
        ("LeveragedApproachToResistance", "firing", (0.2, pytest.approx(0.5), 50.0, "sell")),
        ("LeveragedApproachToResistance", "resolved", None),
        ("BelowMA50", "firing", (pytest.approx(0.5), pytest.approx(0.5), 50.0, "none")),
        ("FundingNegativeAtSupport", "firing", (pytest.approx(0.5), pytest.approx(0.1), 10.0, "buy")),
    ]
    fired = [f["ts"] - start for f in tr.firings]
    assert [phase(start + t, start) for t in fired] == [1, 2, 2, 4]
    assert fired[0] >= 20 * 60  # 15 minutes of open-interest history, then 5 minutes of `for`
    ratios = sorted(set(tr.ratio), key=tr.ratio.index)
    assert ratios == [0.2, pytest.approx(0.5), pytest.approx(0.1)]

    # from the break to support the hedge is 50 contracts short: the ledger's gain over those bars is the
    # hand computation, and it offsets half the spot loss of the 1,000 units held
    i_break, i_held = res.times.index(tr.firings[2]["ts"]), res.times.index(tr.firings[3]["ts"]) - 1
    assert set(tr.position[i_break:i_held + 1]) == {-50.0}
    level_b, level_h = res.level[i_break], res.level[i_held]
    assert level_b is not None and level_h is not None
    gain = tr.pnl[i_held] - tr.pnl[i_break]
    assert gain == pytest.approx(short_pnl(50.0, MULTIPLIER, level_b, level_h))  # futures at the bars' closes
    spot_loss = UNITS * (level_b - level_h)
    assert spot_loss > 30_000 and gain == pytest.approx(0.5 * spot_loss)
    assert tr.hedged[i_held] - tr.hedged[i_break] == pytest.approx(-spot_loss + gain)  # type: ignore[operator]

    # the ledger at the end: 10 short, no funding time crossed in the 75 minutes, no fees configured
    led = res.ledgers["configured"]
    assert led["position_contracts"] == -10 and led["fundings"] == 0 and led["changes"] == 2
    assert PHASES_S[-1] < END_S

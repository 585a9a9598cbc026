"""The summary figures of one overlay's backtest, from its per-bar series.

    return              hedged value at the end over the start, minus one
    max drawdown        the deepest fall of the hedged value from its running peak (<= 0)
    volatility          standard deviation of the per-bar returns, annualized (x sqrt(bars per year))
    worst month         the lowest calendar-month return (a partial first or last month counts as it ran;
                        a bar closing at midnight on the 1st belongs to the month it ran in)
    cost of protection  the return given up while the market rose: the mean, over the calendar months in
                        which the unhedged value rose, of (unhedged - hedged) monthly return
    drawdown saved      hedged max drawdown minus unhedged max drawdown (> 0: the hedge kept it shallower)
    turnover            traded notional over the mean unhedged portfolio value
"""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from typing import Any

from hedgewatch.service.backtest.run import Result, Track

YEAR_S = 365.0 * 86400.0


def _pairs(tr: Track) -> list[tuple[int, float, float]]:
    return [(i, h, u) for i, (h, u) in enumerate(zip(tr.hedged, tr.unhedged, strict=True))
            if h is not None and u is not None]


def max_drawdown(values: list[float]) -> float:
    peak, worst = -math.inf, 0.0
    for v in values:
        peak = max(peak, v)
        if peak > 0:
            worst = min(worst, v / peak - 1.0)
    return worst


def returns(values: list[float]) -> list[float]:
    return [b / a - 1.0 for a, b in itertools.pairwise(values) if a]


def volatility(values: list[float], interval_s: float) -> float:
    r = returns(values)
    if len(r) < 2:
        return 0.0
    mean = sum(r) / len(r)
    var = sum((x - mean) ** 2 for x in r) / (len(r) - 1)
    return math.sqrt(var) * math.sqrt(YEAR_S / interval_s)


def monthly(times: list[float], values: list[float]) -> dict[str, float]:
    """Calendar-month returns: each month's last value over the previous month's last (the first value for
    the first month). A value is at a bar's close: one closing at midnight on the 1st is the month before's."""
    out: dict[str, float] = {}
    prev = values[0] if values else 0.0
    last_key, last_val = None, prev
    for t, v in zip(times, values, strict=True):
        key = datetime.fromtimestamp(t - 1e-3, UTC).strftime("%Y-%m")
        if last_key is not None and key != last_key:
            out[last_key] = last_val / prev - 1.0 if prev else 0.0
            prev = last_val
        last_key, last_val = key, v
    if last_key is not None:
        out[last_key] = last_val / prev - 1.0 if prev else 0.0
    return out


def cost_of_protection(times: list[float], hedged: list[float], unhedged: list[float]) -> float:
    """The mean, over the calendar months in which the unhedged portfolio rose, of the unhedged minus the
    hedged return of the month; 0 without such a month."""
    mu, mh = monthly(times, unhedged), monthly(times, hedged)
    up = [mu[k] - mh[k] for k in mu if mu[k] > 0]
    return sum(up) / len(up) if up else 0.0


def summarize(res: Result, name: str) -> dict[str, Any]:
    tr = res.tracks[name]
    rows = _pairs(tr)
    led = res.ledgers[name]
    if not rows:
        return {"rule_set": name, "bars_valued": 0}
    times = [res.times[i] for i, _, _ in rows]
    hedged = [h for _, h, _ in rows]
    unhedged = [u for _, _, u in rows]
    cost = cost_of_protection(times, hedged, unhedged)
    dd_h, dd_u = max_drawdown(hedged), max_drawdown(unhedged)
    months = monthly(times, hedged)
    mean_value = sum(unhedged) / len(unhedged)
    return {
        "rule_set": name,
        "bars_valued": len(rows),
        "start_value_usd": hedged[0],
        "end_value_usd": hedged[-1],
        "return_ratio": hedged[-1] / hedged[0] - 1.0,
        "unhedged_return_ratio": unhedged[-1] / unhedged[0] - 1.0,
        "max_drawdown_ratio": dd_h,
        "volatility_annualized_ratio": volatility(hedged, res.interval_s),
        "worst_month": min(months.items(), key=lambda kv: kv[1])[0] if months else None,
        "worst_month_ratio": min(months.values()) if months else None,
        "up_months": sum(1 for v in monthly(times, unhedged).values() if v > 0),
        "cost_of_protection_ratio": cost,
        "drawdown_saved_ratio": dd_h - dd_u,
        "hedge_pnl_usd": led["pnl_usd"],
        "funding_net_usd": led["funding_usd"],
        "funding_received_usd": led["funding_received_usd"],
        "funding_paid_usd": led["funding_paid_usd"],
        "fees_usd": led["fees_usd"],
        "slippage_usd": led["slippage_usd"],
        "roll_cost_usd": led["roll_cost_usd"],
        "hedge_changes": led["changes"],
        "traded_contracts": led["traded_contracts"],
        "turnover_ratio": led["traded_notional_usd"] / mean_value if mean_value else 0.0,
        "final_position_contracts": led["position_contracts"],
        "firings": sum(1 for f in tr.firings if f["status"] == "firing"),
    }


def summary_table(res: Result) -> list[dict[str, Any]]:
    return [summarize(res, name) for name in res.tracks]

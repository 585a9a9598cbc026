"""One hedge overlay: a rule set with its hedge sizing (``RuleStage``) and the ledger of the hedge it
advises, with the portfolio valued hedged and unhedged and the drawdown of each.

Per evaluation, in this order: funding due since the last evaluation is settled on the position held then
(at the snapshot's funding rate; none known counts as zero and is counted), a dated future past its expiry
is rolled, the ledger is marked at the futures price, the rules run, and advice moves the ledger's
position to what the position book believes is held, at the futures price: live, an advice acknowledged by
the user or reconciled from the venue; with ``follow_advice`` (a backtest) every advice is taken as
executed at once. Pure and synchronous.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hedgewatch.rules.stage import RuleStage, StageResult
from hedgewatch.service.alerts import Alert, fingerprint
from hedgewatch.service.config import Config
from hedgewatch.service.hedge import hedge_expiry, hedge_funding, hedge_price, portfolio_value
from hedgewatch.service.ledger import Drawdown, Ledger, funding_times_between

if TYPE_CHECKING:  # the exporter's registry is handed in; the engine loads no metrics library
    from hedgewatch.service.metrics import Metrics

DAY_S = 86400.0
SUMMARY_RULE = "HedgeDailySummary"


class Overlay:
    """Rules, hedge sizing and ledger of one rule set on one index."""

    def __init__(self, name: str, config: Config, now: float, *, follow_advice: bool = False) -> None:
        self.name = name
        self.config = config
        self.index = config.index.name
        self.rules = RuleStage(config, now)
        lc = config.ledger
        p = config.portfolio
        self.ledger = Ledger(self.rules.hedge.spec, lc.fee_bps, lc.slippage_bps, position=p.position_contracts)
        self.follow = follow_advice
        self.funding_h = lc.funding_interval_h
        self.leg = config.index.futures
        self.expiry = hedge_expiry(p, self.leg)
        self.rolled = False
        self.unhedged_usd: float | None = None
        self.hedged_usd: float | None = None
        self.drawdowns = {"hedged": Drawdown(), "unhedged": Drawdown()}
        self.funding_missing = 0  # funding times settled at zero for want of a rate
        self.evaluated_at: float | None = None
        self.summary_due = self._next_summary(now)
        self.other_alerts: list[Alert] = []  # raised by event rules outside ``evaluate`` (backtests read them)

    # --- the step ---------------------------------------------------------------------------------

    def evaluate(self, snapshot: dict[str, Any], now: float) -> StageResult:
        fut = hedge_price(self.config.portfolio, snapshot, self.leg)
        if fut is not None:
            self._carry(snapshot, fut, now)
            self.ledger.mark_to(now, fut)
        self.evaluated_at = now
        result = self.rules.evaluate(snapshot, now)
        h = result.hedge
        hedge = self.rules.hedge
        if self.follow and h is not None:
            hedge.positions.assume_executed(now)  # a backtest: every advice is done at once
        price = float(h["futures_price"]) if h is not None and h.get("futures_price") else fut
        self.follow_position(now, price)
        self._value(snapshot)
        if self.summary_due is not None and now >= self.summary_due:
            self.summary_due = self._next_summary(now)
            if self.hedged_usd is not None:
                result.alerts.append(self.daily_summary(now))
        return result

    def follow_position(self, now: float, price: float | None = None) -> bool:
        """Move the ledger to what the position book believes is held (advice acknowledged, reconciled from
        the venue, or assumed executed), at ``price`` or else the last futures price marked; True when it
        moved."""
        hedge = self.rules.hedge
        held = hedge.position
        price = self.ledger.mark if price is None else price
        if price is None or abs(held - self.ledger.position) <= 1e-12:
            return False
        self.ledger.target(now, held, price, str(hedge.positions.position.source))
        return True

    def _carry(self, snapshot: dict[str, Any], fut: float, now: float) -> None:
        last = self.evaluated_at
        if last is not None and self.ledger.position:
            rate = _funding_rate(self.config, snapshot)
            for t in funding_times_between(last, now, self.funding_h):
                if rate is None:
                    self.funding_missing += 1
                self.ledger.fund(t, 0.0 if rate is None else float(rate) * self.funding_h / 8.0, fut)
        if self.expiry is not None and not self.rolled and now >= self.expiry:
            # the next contract's price is not known here: both legs at the expiring one's last price
            self.ledger.roll(self.expiry, fut, fut)
            self.rolled = True

    def _value(self, snapshot: dict[str, Any]) -> None:
        sizing = self.rules.sizing
        if sizing is not None and sizing.ts == snapshot.get("ts"):
            value: float | None = sizing.portfolio_value_usd  # valued by the sizing just now
        else:
            value = portfolio_value(self.rules.hedge.holdings, self.config.portfolio.cash_usd, snapshot)
        if value is None:
            return  # a held asset has no price: the valuation waits for it (never filled in)
        self.unhedged_usd = value
        self.hedged_usd = self.ledger.hedged(value)
        self.drawdowns["unhedged"].add(value)
        self.drawdowns["hedged"].add(self.hedged_usd)

    def reconcile(self, ts: float, position: float, price: float | None = None) -> None:
        """The position reported by the venue: the position book takes it as held (the source of truth)
        and the ledger moves to it at ``price`` (default: its last mark)."""
        self.rules.hedge.set_position(position, ts)
        self.follow_position(ts, price)

    def note_alerts(self, alerts: list[Alert]) -> None:
        self.other_alerts.extend(alerts)

    # --- the daily summary ------------------------------------------------------------------------

    def _next_summary(self, now: float) -> float | None:
        ds = self.config.ledger.daily_summary
        if not ds.enabled:
            return None
        hh, mm = (int(x) for x in ds.time_utc.split(":"))
        day = math.floor(now / DAY_S) * DAY_S
        t = day + hh * 3600 + mm * 60
        return t if t > now else t + DAY_S

    def daily_summary(self, now: float) -> Alert:
        """The daily alert with the ledger's figures (Slack/Telegram through the notifier)."""
        s = self.ledger.summary()
        hedged, unhedged = self.hedged_usd or 0.0, self.unhedged_usd or 0.0
        dd_h, dd_u = self.drawdowns["hedged"].current_ratio, self.drawdowns["unhedged"].current_ratio
        summary = (f"{self.index} hedge: {s['position_contracts']:g} contracts, P&L ${s['pnl_usd']:,.0f}, "
                   f"funding ${s['funding_usd']:,.0f}, fees ${s['fees_usd']:,.0f}; portfolio "
                   f"${hedged:,.0f} hedged ({dd_h:.1%} from peak), ${unhedged:,.0f} unhedged ({dd_u:.1%})")
        labels = {"kind": "daily_summary"}
        fp = fingerprint(SUMMARY_RULE, self.index, labels)
        day = datetime.fromtimestamp(now, UTC).date().isoformat()
        values: dict[str, float | str | bool | None] = {
            "date": day, "position_contracts": s["position_contracts"], "pnl_usd": s["pnl_usd"],
            "funding_usd": s["funding_usd"], "fees_usd": s["fees_usd"], "net_usd": s["net_usd"],
            "portfolio_hedged_usd": hedged, "portfolio_unhedged_usd": unhedged,
            "drawdown_hedged_ratio": dd_h, "drawdown_unhedged_ratio": dd_u,
        }
        return Alert(id=Alert.make_id(fp, "firing", now), fingerprint=fp, rule=SUMMARY_RULE, index=self.index,
                     status="firing", severity=self.config.ledger.daily_summary.severity, summary=summary,
                     starts_at=now, labels=labels, values=values)

    # --- reading, state, metrics ------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "overlay": self.name, **self.ledger.summary(),
            "portfolio_hedged_usd": self.hedged_usd, "portfolio_unhedged_usd": self.unhedged_usd,
            "drawdown": {k: {"current_ratio": d.current_ratio, "max_ratio": d.max_ratio, "peak_usd": d.peak}
                         for k, d in self.drawdowns.items()},
            "funding_missing": self.funding_missing, "fills": [f.to_dict() for f in self.ledger.fills[-20:]],
        }

    def dump(self) -> dict[str, Any]:
        return {"ledger": self.ledger.dump(), "evaluated_at": self.evaluated_at, "rolled": self.rolled,
                "funding_missing": self.funding_missing,
                "drawdowns": {k: [d.peak, d.max_ratio] for k, d in self.drawdowns.items()}}

    def load(self, state: dict[str, Any]) -> bool:
        """Restore the ledger and the drawdown peaks; True when a ledger was restored."""
        if not state or not self.ledger.load(state.get("ledger") or {}):
            return False
        self.rolled = bool(state.get("rolled"))
        self.funding_missing = int(state.get("funding_missing") or 0)
        last = state.get("evaluated_at")
        self.evaluated_at = float(last) if isinstance(last, int | float) else None
        for k, row in (state.get("drawdowns") or {}).items():
            if k in self.drawdowns and isinstance(row, list) and len(row) == 2:
                self.drawdowns[k].peak, self.drawdowns[k].max_ratio = row[0], float(row[1])
        return True

    def export(self, metrics: Metrics) -> None:
        idx = self.index
        s = self.ledger
        metrics.hedge_position_contracts.labels(index=idx).set(s.position)
        metrics.hedge_pnl_usd.labels(index=idx).set(s.pnl_usd)
        metrics.hedge_funding_usd.labels(index=idx).set(s.funding_usd)
        metrics.hedge_fees_usd.labels(index=idx).set(s.fees_usd)
        for view, value in (("hedged", self.hedged_usd), ("unhedged", self.unhedged_usd)):
            if value is not None:
                metrics.portfolio_value_usd.labels(index=idx, view=view).set(value)
            metrics.portfolio_drawdown_ratio.labels(index=idx, view=view).set(self.drawdowns[view].current_ratio)


def _funding_rate(config: Config, snapshot: dict[str, Any]) -> float | None:
    """The hedge instrument's funding rate per 8 h (``service.hedge.hedge_funding``)."""
    return hedge_funding(config.portfolio, snapshot, config.index.futures)[0]

"""Hedge sizing: from a target hedge ratio to a number of index futures contracts.

    portfolio value  = cash + sum(holding_i x oracle price_i)      (a holding named after the index is
                                                                     valued at the index level)
    target notional  = value x ratio x beta                        (beta 1, fixed, or a rolling regression
                                                                     of portfolio returns on index returns)
    contracts        = target notional / (futures price x multiplier), rounded to the lot size
                       (a linear index future); with ``portfolio.instrument`` the contract's own
                       arithmetic (service/contracts.py): a coin-margined (inverse) contract carries its USD
                       face value, so contracts = target notional / contract size, and its value, margin
                       and funding are stated in the coin as well; with a contract-mode futures leg of
                       ``futures.contract_size`` (and no ``portfolio.instrument``) the leg's contract:
                       contracts = target notional / (F in points x contract size x multiplier)
                                 = target notional / (contract price x contract size)

Positions are signed as venues report them: a short hedge of 2 contracts is ``-2``. A recommendation is
emitted when the target changes or when the held position drifts from the target by more than
``tolerance_ratio`` of the portfolio value. Carrying cost of the target short: funding per day (a short
receives funding while the rate is positive: negative cost) at the hedge instrument's own rate where it is a
perpetual the venues report (its venue and symbol), none for a dated future, and roll cost per day from
the term structure.
Pure and synchronous; the caller passes time and prices.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from hedgewatch.service.config import FuturesLegConfig, PortfolioConfig
from hedgewatch.service.contracts import ContractSpec
from hedgewatch.service.expiry import expiry_from_instrument
from hedgewatch.service.futures_leg import leg_expiry
from hedgewatch.service.position import AckResult, Advice, DriftPolicy, PositionBook


def contracts_for(notional: float, futures_price: float, multiplier: float, lot_size: float) -> float:
    """Linear contracts of ``multiplier`` that carry ``notional``, rounded to the nearest lot (textbook:
    250,000 / (2,000 x 100) = 1.25)."""
    if futures_price <= 0 or multiplier <= 0:
        raise ValueError("futures price and multiplier must be positive")
    return ContractSpec.linear(multiplier, lot_size=lot_size).contracts_for(notional, futures_price)


def leg_contract_size(config: PortfolioConfig, leg: FuturesLegConfig | None) -> float | None:
    """The size of the contract-mode futures leg's contract when the hedge is held in it (no
    ``portfolio.instrument``, the leg's ``contract_size`` given), else None."""
    if config.instrument is None and leg is not None and leg.mode == "contract":
        return leg.contract_size
    return None


def hedge_spec(config: PortfolioConfig, leg: FuturesLegConfig | None = None) -> ContractSpec:
    """The hedge instrument's contract: ``portfolio.instrument`` when configured, else the contract-mode
    leg's contract of ``futures.contract_size`` units, else a linear index future of
    ``portfolio.multiplier`` USD a point."""
    inst = config.instrument
    if inst is None:
        size = leg_contract_size(config, leg)
        if size is not None:
            return ContractSpec.linear(size, "USD", config.lot_size)
        return ContractSpec.linear(config.multiplier, "USD", config.lot_size)
    if inst.kind == "inverse":
        return ContractSpec.inverse(inst.contract_size, str(inst.asset), config.lot_size)
    return ContractSpec.linear(inst.contract_size, "USD", config.lot_size)


def hedge_price(config: PortfolioConfig, snapshot: dict[str, Any], leg: FuturesLegConfig | None = None
                ) -> float | None:
    """The hedge instrument's price: an asset contract at the asset's mark (else its oracle price), the
    leg's contract at its own price (USD; none while it has no fresh price), an index future at the futures
    leg (else the index level)."""
    inst = config.instrument
    deriv = snapshot.get("derivatives") or {}
    if inst is not None and inst.asset:
        mark = ((snapshot.get("assets") or {}).get(inst.asset) or {}).get("mark_price")
        price = mark or ((snapshot.get("constituents") or {}).get(inst.asset) or {}).get("price")
        return float(price) if price else None
    if leg_contract_size(config, leg) is not None:
        price = (deriv.get("contract") or {}).get("price_usd")
        return float(price) if price else None
    fut = deriv.get("futures_price") or snapshot.get("level")
    return float(fut) if fut else None


def hedge_expiry(config: PortfolioConfig, leg: FuturesLegConfig | None = None) -> float | None:
    """When the hedge instrument settles: a dated ``portfolio.instrument``'s expiry, else the contract-mode
    leg's (the index future is priced at the leg); None for a perpetual."""
    if config.instrument is not None:
        return expiry_from_instrument(config.instrument.symbol or "")
    return None if leg is None else leg_expiry(leg)


def hedge_funding(config: PortfolioConfig, snapshot: dict[str, Any], leg: FuturesLegConfig | None = None
                  ) -> tuple[float | None, str]:
    """The funding rate per 8 h the hedge pays or receives, and whose it is: none for a dated future; a
    perpetual's own rate where its venue reports it (``portfolio.instrument``'s ``exchange`` and
    ``symbol``, or the leg's contract), else the mean of its asset's venues; an index future the index's."""
    if hedge_expiry(config, leg) is not None:
        return 0.0, "dated future: no funding"
    inst, assets = config.instrument, snapshot.get("assets") or {}
    deriv = snapshot.get("derivatives") or {}
    if inst is not None and inst.asset:
        row = assets.get(inst.asset) or {}
        own = row.get("funding_instruments") or {}
        if inst.exchange:
            key = f"{inst.exchange}:{inst.symbol}" if inst.symbol else next(
                (k for k in own if k.partition(":")[0] == inst.exchange), "")
            if own.get(key) is not None:
                return float(own[key]), key
        rate = row.get("funding_rate_8h")
        return (None if rate is None else float(rate)), f"{inst.asset}: mean of its venues"
    if leg_contract_size(config, leg) is not None:
        contract = deriv.get("contract") or {}
        if contract.get("funding_rate_8h") is not None:
            return float(contract["funding_rate_8h"]), f"{contract.get('exchange') or '*'}:{contract.get('symbol')}"
        asset = contract.get("underlying")
        rate = (assets.get(asset) or {}).get("funding_rate_8h") if asset else None
        return (None if rate is None else float(rate)), f"{asset}: mean of its venues"
    rate = deriv.get("funding_rate_8h")
    return (None if rate is None else float(rate)), "index"


def short_pnl(contracts: float, multiplier: float, price_from: float, price_to: float) -> float:
    """Gain of a short of ``contracts`` when the futures price moves from ``price_from`` to ``price_to``."""
    return contracts * multiplier * (price_from - price_to)


def portfolio_value(holdings: dict[str, float], cash_usd: float, snapshot: dict[str, Any]) -> float | None:
    """Value at the snapshot's oracle prices; None when a held asset has no price."""
    prices = {a: (c or {}).get("price") for a, c in (snapshot.get("constituents") or {}).items()}
    prices[snapshot.get("index") or ""] = snapshot.get("level")
    total = cash_usd
    for asset, qty in holdings.items():
        price = prices.get(asset)
        if price is None:
            return None
        total += qty * float(price)
    return total


def roll_cost_annualized(snapshot: dict[str, Any]) -> float | None:
    """The index's roll cost: the derivatives block's own figure, else the constituents' term-structure
    roll costs weighted by their index weights (assets without dated futures are left out)."""
    deriv = snapshot.get("derivatives") or {}
    if deriv.get("roll_cost_annualized") is not None:
        return float(deriv["roll_cost_annualized"])
    num = den = 0.0
    consts = snapshot.get("constituents") or {}
    for asset, a in (snapshot.get("assets") or {}).items():
        rc = ((a or {}).get("term_structure") or {}).get("roll_cost_annualized")
        w = (consts.get(asset) or {}).get("weight")
        if rc is not None and w:
            num, den = num + float(rc) * float(w), den + float(w)
    return num / den if den > 0 else None


class RollingBeta:
    """Beta of portfolio returns on index returns over the last ``window`` samples, one sample per
    ``interval_s`` (OLS slope: cov / var)."""

    def __init__(self, window: int, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last: tuple[float, float, float] | None = None  # bucket, portfolio value, index level
        self.returns: deque[tuple[float, float]] = deque(maxlen=window)

    def add(self, ts: float, value: float, level: float) -> None:
        bucket = ts - ts % self.interval_s
        if self.last is not None:
            if bucket <= self.last[0]:
                return
            _, v0, l0 = self.last
            if v0 > 0 and l0 > 0:
                self.returns.append((value / v0 - 1.0, level / l0 - 1.0))
        self.last = (bucket, value, level)

    @property
    def beta(self) -> float | None:
        n = len(self.returns)
        if n < 3:
            return None
        mp = sum(r[0] for r in self.returns) / n
        mi = sum(r[1] for r in self.returns) / n
        var = sum((r[1] - mi) ** 2 for r in self.returns)
        if var == 0:
            return None
        return sum((r[0] - mp) * (r[1] - mi) for r in self.returns) / var


@dataclass(frozen=True)
class Sizing:
    """The hedge for one ratio at one snapshot. ``target_contracts`` is the size of the short (positive);
    ``delta_contracts`` what to trade (negative: sell)."""

    index: str
    ts: float
    ratio: float
    beta: float
    portfolio_value_usd: float
    target_notional_usd: float
    futures_price: float
    multiplier: float
    lot_size: float
    target_contracts: float
    position_contracts: float
    delta_contracts: float
    side: str
    within_band: bool
    funding_per_day_usd: float | None
    roll_cost_per_day_usd: float | None
    contract_kind: str = "linear"
    contract_size: float = 1.0
    settle: str = "USD"
    target_value_settle: float | None = None
    margin_settle: float | None = None
    funding_per_day_settle: float | None = None
    trade_notional_usd: float = 0.0
    funding_rate_8h: float | None = None
    funding_source: str = "index"
    futures_price_points: float | None = None  # the futures leg in index points
    point_value_usd: float | None = None  # USD one contract gains or loses per index point

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class HedgeBook:
    """Sizes the hedge for one index and decides when an advice is due, from the position believed held
    (``service.position``)."""

    def __init__(self, index: str, config: PortfolioConfig, leg: FuturesLegConfig | None = None) -> None:
        self.index = index
        self.config = config
        self.leg = leg
        self.spec = hedge_spec(config, leg)
        policy = DriftPolicy(self.spec.lot_size, config.tolerance_ratio, config.drift_min_interval_s,
                             config.remind_s, config.advice_ttl_s)
        self.positions = PositionBook.from_config(index, config.position_contracts, policy)
        self.holdings = dict(config.holdings)
        self.holdings_source = "config"
        self.rolling = (RollingBeta(config.beta_window, config.beta_interval_s)
                        if config.beta == "rolling" else None)
        self.last: Sizing | None = None
        self.last_message: dict[str, Any] | None = None  # the last advice as published

    @property
    def position(self) -> float:
        """The signed position believed held (negative: short)."""
        return self.positions.position.contracts

    @property
    def beta(self) -> float:
        if self.rolling is not None:
            b = self.rolling.beta
            return b if b is not None else 1.0
        return float(self.config.beta)  # type: ignore[arg-type]

    def observe(self, snapshot: dict[str, Any], now: float) -> None:
        """Feed the rolling beta (when configured)."""
        if self.rolling is None:
            return
        value = portfolio_value(self.holdings, 0.0, snapshot)
        level = snapshot.get("level")
        if value is not None and level:
            self.rolling.add(now if snapshot.get("ts") is None else snapshot["ts"], value, float(level))

    def size(self, snapshot: dict[str, Any], ratio: float, now: float) -> Sizing | None:
        """The hedge at ``ratio``; None when the portfolio or the hedge instrument cannot be valued."""
        c, spec = self.config, self.spec
        value = portfolio_value(self.holdings, c.cash_usd, snapshot)
        deriv = snapshot.get("derivatives") or {}
        price = hedge_price(c, snapshot, self.leg)
        if value is None or not price:
            return None
        beta = self.beta
        notional = value * ratio * beta
        target = spec.contracts_for(notional, price)
        delta = -target - self.position
        held_notional = -spec.notional_usd(self.position, price)
        within = abs(held_notional - notional) <= c.tolerance_ratio * value
        short_notional = spec.notional_usd(target, price)
        fr, fr_source = hedge_funding(c, snapshot, self.leg)
        roll = roll_cost_annualized(snapshot)
        points, point_value = None, None
        if leg_contract_size(c, self.leg) is not None:
            points, point_value = deriv.get("futures_price"), (deriv.get("contract") or {}).get("point_value_usd")
        elif c.instrument is None:
            points, point_value = price, spec.size
        # a cost, like roll: negative while the short receives funding (three 8 h fundings a day)
        funding_settle = None if fr is None else -spec.funding(-target, price, float(fr) * 3.0)
        sizing = Sizing(
            index=self.index, ts=now if snapshot.get("ts") is None else snapshot["ts"], ratio=ratio,
            beta=beta, portfolio_value_usd=value,
            target_notional_usd=notional, futures_price=price, multiplier=spec.size,
            lot_size=spec.lot_size, target_contracts=target, position_contracts=self.position,
            delta_contracts=round(delta, 10), side="none" if abs(delta) < spec.lot_size / 2 else
            ("sell" if delta < 0 else "buy"), within_band=within,
            funding_per_day_usd=None if funding_settle is None else spec.to_usd(funding_settle, price),
            roll_cost_per_day_usd=None if roll is None else -short_notional * float(roll) / 365.0,
            contract_kind=str(spec.kind), contract_size=spec.size, settle=spec.settle,
            target_value_settle=spec.value(target, price),
            margin_settle=spec.margin(target, price, c.instrument.leverage if c.instrument else 1.0),
            funding_per_day_settle=funding_settle,
            trade_notional_usd=abs(spec.notional_usd(delta, price)),
            funding_rate_8h=fr, funding_source=fr_source, futures_price_points=points,
            point_value_usd=point_value,
        )
        self.last = sizing
        return sizing

    def recommend(self, sizing: Sizing, ratio_changed: bool, now: float | None = None) -> dict[str, Any] | None:
        """The advice JSON when one is due: the target ratio moved, the position drifted out of the band
        (with hysteresis and a minimum interval), the position changed otherwise, or a reminder of the
        open advice (same id) is due; an open advice that expired is published once in its new state."""
        now = sizing.ts if now is None else now
        c = self.config
        per_contract = abs(self.spec.notional_usd(1.0, sizing.futures_price))  # USD value of one contract
        band = c.tolerance_ratio * sizing.portfolio_value_usd
        drift = abs(-self.position * per_contract - sizing.target_notional_usd)
        if not ratio_changed and drift <= band / 2 and (moot := self.positions.moot(now)) is not None:
            return self.message(sizing, moot)
        reason = self.positions.decide(
            target=sizing.target_contracts, out_of_band=drift > band,
            band_contracts=band / per_contract if per_contract > 0 else 0.0, ratio_changed=ratio_changed,
            now=now)
        if reason is not None:
            adv = self.positions.advise(reason=reason, ratio=sizing.ratio, target=sizing.target_contracts,
                                        now=now)
            if c.assume_executed:
                self.positions.assume_executed(now)
            return self.message(sizing, adv)
        later = self.positions.reminder(now) or self.positions.expire(now)
        return None if later is None else self.message(sizing, later)

    def message(self, sizing: Sizing | None, adv: Advice) -> dict[str, Any]:
        """The advice JSON published on ``hedgewatch:hedge:<INDEX>``: the sizing, the trade from what was
        held when it was made, its id and state, and where the position belief comes from."""
        rec = {} if sizing is None else sizing.to_dict()
        per_contract = abs(self.spec.notional_usd(1.0, sizing.futures_price)) if sizing is not None else 0.0
        rec.update({
            "id": adv.id, "state": str(adv.state), "reason": adv.reason, "advised_at": adv.created_at,
            "target_contracts": adv.target_contracts, "position_contracts": adv.held_contracts,
            "delta_contracts": round(-adv.target_contracts - adv.held_contracts, 10), "side": adv.side,
            "trade_contracts": adv.trade_contracts, "trade_notional_usd": adv.trade_contracts * per_contract,
            "position": self.positions.view() | {"advice": None},
        })
        self.last_message = rec
        return rec

    @staticmethod
    def recommendation(sizing: Sizing, reason: str) -> dict[str, Any]:
        """A sizing as advice JSON without an advice behind it (tests, previews)."""
        rec = sizing.to_dict()
        rec["reason"] = reason
        rec["trade_contracts"] = abs(sizing.delta_contracts)
        return rec

    def set_position(self, contracts: float, now: float = 0.0) -> Advice | None:
        """The venue's reported position (read-only balances), signed: the source of truth."""
        return self.positions.reconcile(contracts, now)

    def set_holdings(self, holdings: dict[str, float]) -> None:
        """Holdings read from the venue replace the configured ones."""
        self.holdings = dict(holdings)
        self.holdings_source = "venue"

    def ack(self, contracts: float | None, advice_id: str | None, by: str, now: float) -> AckResult:
        """The user did the open advice, or states what is held (see ``PositionBook.ack``)."""
        return self.positions.ack(contracts=contracts, advice_id=advice_id, by=by, now=now)

    def dump(self) -> dict[str, Any]:
        return {"positions": self.positions.dump(), "advice": self.last_message,
                "holdings": self.holdings if self.holdings_source == "venue" else None}

    def load(self, state: dict[str, Any], now: float = 0.0) -> None:
        """Restore the position and its advice; a position edited in the config since then wins."""
        if isinstance(state.get("positions"), dict):
            self.positions.load(state["positions"])
            self.positions.config_changed(self.config.position_contracts, now)
        if isinstance(state.get("advice"), dict):
            self.last_message = state["advice"]
        if isinstance(state.get("holdings"), dict):
            self.holdings, self.holdings_source = dict(state["holdings"]), "venue"

"""The hedge ledger: what the short index-futures position did for the portfolio.

Pure and synchronous; the caller passes the time and the prices. One ledger per hedge (per index and
rule set). Every position change is a fill at a stated price: the futures price at the time, moved against
the trade by ``slippage_bps`` (a sell fills lower, a buy higher), with ``fee_bps`` of the traded notional
paid on top. Funding is accrued at each funding time on the position held then; a dated future is rolled at
its expiry (closed and re-opened, both legs paying slippage and fees: the roll cost).

The contract arithmetic is the instrument's (``service/contracts.py``), every figure in USD:

    linear (size units, or USD a point)     inverse (size USD face value, settled in the coin)
    notional = contracts x size x price      notional = contracts x size
    P&L = position x size x (mark - entry)   P&L = position x size x (1/entry - 1/mark), in coin, x mark
    funding = -position x size x mark x rate funding = -position x size / mark x rate, in coin, x mark
    entry = size-weighted mean of the fills  entry = harmonic mean of the fills (a coin P&L adds up so)

    hedge P&L     = realized + unrealized (slippage is in the fills)
    hedged value  = unhedged value + hedge P&L + funding - fees

so ``hedged - unhedged == pnl + funding - fees`` holds at every mark by construction. A coin-margined
contract's realized P&L and funding are counted in USD at the price they were realized at. Positions are
signed as venues report them: a short of 20 contracts is ``-20``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hedgewatch.service.contracts import ContractSpec

LEDGER_VERSION = 1
TRADES_KEPT = 500  # recent fills kept in the persisted state and /state; totals cover every fill


@dataclass(frozen=True)
class Fill:
    """One position change (a trade, or one leg of a roll)."""

    ts: float
    contracts: float  # signed: negative sells
    price: float  # the futures price before slippage
    fill_price: float
    fee_usd: float
    position_after: float
    reason: str
    realized_usd: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ledger:
    """Position, entry price, realized P&L, funding, fees and roll cost of one hedge, and the portfolio
    valued with and without it."""

    spec: ContractSpec
    fee_bps: float = 0.0
    slippage_bps: float = 0.0
    position: float = 0.0
    entry_price: float | None = None
    realized_usd: float = 0.0
    fees_usd: float = 0.0
    funding_usd: float = 0.0  # net: received minus paid
    funding_received_usd: float = 0.0
    funding_paid_usd: float = 0.0
    roll_cost_usd: float = 0.0
    slippage_usd: float = 0.0
    traded_contracts: float = 0.0
    traded_notional_usd: float = 0.0
    changes: int = 0
    fundings: int = 0
    rolls: int = 0
    mark: float | None = None
    marked_at: float | None = None
    last_funding_ts: float | None = None
    fills: list[Fill] = field(default_factory=list)

    # --- position changes --------------------------------------------------------------------------

    def trade(self, ts: float, contracts: float, price: float, reason: str = "advice") -> Fill | None:
        """Change the position by ``contracts`` (signed) at the futures ``price``; None for no change."""
        if not contracts or not math.isfinite(contracts):
            return None
        if not price > 0:
            raise ValueError(f"a fill needs a positive futures price, got {price!r}")
        side = 1.0 if contracts > 0 else -1.0
        fill = price * (1.0 + side * self.slippage_bps / 1e4)
        notional = abs(self.spec.notional_usd(contracts, fill))
        fee = notional * self.fee_bps / 1e4
        realized = self._apply(contracts, fill)
        self.fees_usd += fee
        self.slippage_usd += abs(self.spec.pnl_usd(contracts, fill, price))
        self.traded_contracts += abs(contracts)
        self.traded_notional_usd += notional
        self.changes += reason != "roll"
        f = Fill(ts, contracts, price, fill, fee, self.position, reason, realized)
        self.fills.append(f)
        del self.fills[:-TRADES_KEPT]
        self.mark_to(ts, price)
        return f

    def target(self, ts: float, position: float, price: float, reason: str = "advice") -> Fill | None:
        """Trade to the signed ``position`` at ``price``."""
        return self.trade(ts, round(position - self.position, 10), price, reason)

    def _apply(self, contracts: float, fill: float) -> float:
        """Move the position and its average entry; the P&L realized by the part that closes."""
        pos, entry = self.position, self.entry_price
        new = round(pos + contracts, 10)
        realized = 0.0
        if pos == 0 or entry is None or (pos > 0) == (contracts > 0):
            # opening or adding: the mean entry (harmonic for an inverse contract)
            a, b = abs(pos), abs(contracts)
            if entry is None or pos == 0:
                self.entry_price = fill
            elif self.spec.inverse_kind:
                self.entry_price = (a + b) / (a / entry + b / fill)
            else:
                self.entry_price = (a * entry + b * fill) / (a + b)
        else:
            closed = min(abs(contracts), abs(pos))
            realized = self.spec.pnl_usd(closed if pos > 0 else -closed, entry, fill)
            if new == 0:
                self.entry_price = None
            elif (new > 0) != (pos > 0):
                self.entry_price = fill  # flipped through zero: the rest opened at this fill
        self.realized_usd += realized
        self.position = new
        return realized

    def roll(self, ts: float, close_price: float, open_price: float) -> float:
        """Roll a dated future at expiry: close the position at ``close_price``, re-open the same size in
        the next contract at ``open_price``. Returns the roll's cost (both legs' slippage and fees)."""
        pos = self.position
        if not pos:
            return 0.0
        fees0, slip0 = self.fees_usd, self.slippage_usd
        self.trade(ts, -pos, close_price, "roll")
        self.trade(ts, pos, open_price, "roll")
        self.mark_to(ts, open_price)
        cost = (self.fees_usd - fees0) + (self.slippage_usd - slip0)
        self.roll_cost_usd += cost
        self.rolls += 1
        return cost

    # --- carry and marks ---------------------------------------------------------------------------

    def fund(self, ts: float, rate: float, mark: float) -> float:
        """Funding at a funding time on the position held then: ``rate`` for the interval just ended, at
        the ``mark`` price. Returns the USD received (negative: paid)."""
        amount = self.spec.to_usd(self.spec.funding(self.position, mark, rate), mark)
        self.funding_usd += amount
        if amount > 0:
            self.funding_received_usd += amount
        else:
            self.funding_paid_usd -= amount
        self.fundings += 1
        self.last_funding_ts = ts
        return amount

    def mark_to(self, ts: float, price: float) -> None:
        """The futures price now (for the unrealized P&L)."""
        if price > 0:
            self.mark, self.marked_at = price, ts
            if self.position and self.entry_price is None:
                self.entry_price = price  # a position held from the start is counted from its first mark

    # --- reading -----------------------------------------------------------------------------------

    @property
    def unrealized_usd(self) -> float:
        if not self.position or self.entry_price is None or self.mark is None:
            return 0.0
        return self.spec.pnl_usd(self.position, self.entry_price, self.mark)

    @property
    def pnl_usd(self) -> float:
        """Price P&L of the hedge (realized + unrealized), slippage included."""
        return self.realized_usd + self.unrealized_usd

    @property
    def net_usd(self) -> float:
        """What the hedge added to the portfolio: price P&L + funding - fees."""
        return self.pnl_usd + self.funding_usd - self.fees_usd

    def hedged(self, unhedged_usd: float) -> float:
        return unhedged_usd + self.net_usd

    def summary(self) -> dict[str, Any]:
        """Totals, for ``/state``, reports and the daily summary."""
        return {
            "position_contracts": self.position, "entry_price": self.entry_price, "mark": self.mark,
            "marked_at": self.marked_at, "realized_usd": self.realized_usd, "unrealized_usd": self.unrealized_usd,
            "pnl_usd": self.pnl_usd, "funding_usd": self.funding_usd,
            "funding_received_usd": self.funding_received_usd, "funding_paid_usd": self.funding_paid_usd,
            "fees_usd": self.fees_usd,
            "slippage_usd": self.slippage_usd, "roll_cost_usd": self.roll_cost_usd, "net_usd": self.net_usd,
            "changes": self.changes, "fundings": self.fundings, "rolls": self.rolls,
            "traded_contracts": self.traded_contracts, "traded_notional_usd": self.traded_notional_usd,
        }

    # --- state -------------------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("fills", "spec")}
        d["version"] = LEDGER_VERSION
        d["fills"] = [f.to_dict() for f in self.fills[-TRADES_KEPT:]]
        return d

    def load(self, state: dict[str, Any]) -> bool:
        """Restore what ``dump`` saved (the contract terms stay the configured ones); False when the state
        is of another version or malformed, and nothing changes then."""
        if not state or state.get("version") != LEDGER_VERSION:
            return False
        keep = ("spec", "fee_bps", "slippage_bps")
        try:
            values = {k: state[k] for k in self.__dataclass_fields__ if k in state and k not in keep and k != "fills"}
            fills = [Fill(**f) for f in state.get("fills") or []]
        except (TypeError, KeyError):
            return False
        for k, v in values.items():
            setattr(self, k, v)
        self.fills = fills
        return True


@dataclass
class Drawdown:
    """Running peak and drawdown of a value series."""

    peak: float | None = None
    current_ratio: float = 0.0
    max_ratio: float = 0.0

    def add(self, value: float) -> float:
        if self.peak is None or value > self.peak:
            self.peak = value
        dd = value / self.peak - 1.0 if self.peak > 0 else 0.0
        self.current_ratio = dd
        self.max_ratio = min(self.max_ratio, dd)
        return dd


def funding_times_between(after: float, until: float, interval_h: float) -> list[float]:
    """Funding times (multiples of ``interval_h`` hours from midnight UTC, as the venues settle) in
    ``(after, until]``."""
    step = interval_h * 3600.0
    first = math.floor(after / step) * step + step
    out = []
    t = first
    while t <= until:
        out.append(t)
        t += step
    return out

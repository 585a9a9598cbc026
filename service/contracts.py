"""Contract arithmetic of the hedge instrument: linear (USD-margined) and inverse (coin-margined) contracts.

One ``ContractSpec`` describes what one contract is; every figure the hedge and its ledger need comes from
it, so sizing, P&L, margin and funding agree for every kind of contract.

Linear (Binance USDⓈ-M, Bybit ``linear``, OKX ``BTC-USDT-SWAP``, an index future of ``multiplier`` USD a
point). A contract is ``size`` units of the underlying (``multiplier x ctVal``: 0.01 BTC for OKX's
``BTC-USDT-SWAP``, 10 for "$10 a point"); P&L and margin are in the quote::

    notional (USD)      = contracts x size x price
    contracts           = notional / (size x price)
    P&L (quote)         = position x size x (exit - entry)
    margin (quote)      = |contracts| x size x price / leverage
    funding (quote)     = -position x size x mark x rate            (longs pay shorts while rate > 0)

Inverse (Binance COIN-M ``BTCUSD_PERP``: 100 USD a contract for BTC, 10 USD for the others; Bybit
``inverse`` ``BTCUSD``: 1 USD; OKX ``BTC-USD-SWAP``: ``ctVal`` 100 USD). A contract is ``size`` USD of
face value; its value in the coin moves with 1/price, and P&L and margin are in the coin::

    notional (USD)      = contracts x size                          (whatever the price)
    contracts           = notional / size
    value (coin)        = contracts x size / price
    P&L (coin)          = position x size x (1/entry - 1/exit)
    margin (coin)       = |contracts| x size / price / leverage
    funding (coin)      = -position x size / mark x rate

Positions are signed as venues report them (a short of 20 contracts is ``-20``). Rounding to the lot is
half away from zero (2.5 lots are 3, -2.5 lots are -3), the way a person rounds an order size.
Pure and synchronous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum


class ContractKind(StrEnum):
    LINEAR = "linear"
    INVERSE = "inverse"


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """What one contract is. ``size`` is units of the underlying per contract (linear) or USD face value per
    contract (inverse); ``settle`` is the currency of P&L and margin (the quote of a linear contract, the
    coin of an inverse one); ``lot_size`` the smallest step of a position in contracts."""

    kind: ContractKind = ContractKind.LINEAR
    size: float = 1.0
    settle: str = "USD"
    lot_size: float = 1.0

    def __post_init__(self) -> None:
        if not (self.size > 0 and math.isfinite(self.size)):
            raise ValueError(f"contract size must be positive, got {self.size!r}")
        if not (self.lot_size > 0 and math.isfinite(self.lot_size)):
            raise ValueError(f"lot size must be positive, got {self.lot_size!r}")

    @classmethod
    def linear(cls, size: float, settle: str = "USD", lot_size: float = 1.0) -> ContractSpec:
        return cls(ContractKind.LINEAR, size, settle, lot_size)

    @classmethod
    def inverse(cls, face_usd: float, coin: str, lot_size: float = 1.0) -> ContractSpec:
        return cls(ContractKind.INVERSE, face_usd, coin, lot_size)

    @property
    def inverse_kind(self) -> bool:
        return self.kind == ContractKind.INVERSE

    # --- sizing --------------------------------------------------------------------------------------

    def notional_usd(self, contracts: float, price: float) -> float:
        """USD notional of ``contracts`` (signed in, signed out) at ``price``."""
        if self.inverse_kind:
            return contracts * self.size
        return contracts * self.size * _positive(price)

    def contracts_raw(self, notional_usd: float, price: float) -> float:
        """Contracts carrying ``notional_usd``, before rounding to the lot."""
        if self.inverse_kind:
            return notional_usd / self.size
        return notional_usd / (self.size * _positive(price))

    def round_lots(self, contracts: float) -> float:
        """``contracts`` rounded to the nearest lot, half away from zero, without binary-float residue
        (0.1 + 0.2 lots of 0.001 is 0.3, not 0.30000000000000004)."""
        step = Decimal(repr(self.lot_size))
        lots = (Decimal(repr(contracts)) / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return float(lots * step)

    def contracts_for(self, notional_usd: float, price: float) -> float:
        """Contracts carrying ``notional_usd`` at ``price``, rounded to the lot."""
        return self.round_lots(self.contracts_raw(notional_usd, price))

    # --- accounting ----------------------------------------------------------------------------------

    def pnl(self, position: float, entry: float, exit_price: float) -> float:
        """P&L of ``position`` (signed) from ``entry`` to ``exit_price``, in the settlement currency."""
        if self.inverse_kind:
            return position * self.size * (1.0 / _positive(entry) - 1.0 / _positive(exit_price))
        return position * self.size * (exit_price - entry)

    def pnl_usd(self, position: float, entry: float, exit_price: float) -> float:
        """The same P&L in USD: an inverse contract's coin P&L valued at ``exit_price``."""
        return self.to_usd(self.pnl(position, entry, exit_price), exit_price)

    def value(self, contracts: float, price: float) -> float:
        """What ``contracts`` are worth in the settlement currency at ``price``."""
        if self.inverse_kind:
            return contracts * self.size / _positive(price)
        return contracts * self.size * price

    def margin(self, contracts: float, price: float, leverage: float = 1.0) -> float:
        """Initial margin of ``contracts`` at ``leverage``, in the settlement currency."""
        if not leverage > 0:
            raise ValueError(f"leverage must be positive, got {leverage!r}")
        return abs(self.value(contracts, price)) / leverage

    def funding(self, position: float, mark: float, rate: float) -> float:
        """Funding received (positive) or paid by ``position`` at one funding time, in the settlement
        currency: longs pay shorts while ``rate`` is positive."""
        return -self.value(position, mark) * rate

    def to_usd(self, amount: float, price: float) -> float:
        """An amount in the settlement currency, in USD (a coin amount at ``price``)."""
        return amount * _positive(price) if self.inverse_kind else amount


def _positive(price: float) -> float:
    if not price > 0:
        raise ValueError(f"price must be positive, got {price!r}")
    return price

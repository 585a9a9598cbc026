"""The contract-mode futures leg (``index.futures.mode: contract``): a real contract read in index points.

A contract trades in its own price units (USD per BTC for ``BTCUSDT_261225``); the index is in points. The
leg is the contract's price in USD (a USDT quote at the oracle's USDT rate) divided by the multiplier, the
contract's price per index point::

    multiplier   = futures.multiplier                        (stated: fixed)
                 = S_underlying / level                      (``futures.underlying`` an asset: at each moment)
                 = 1                                         (``futures.underlying`` the index itself)
    F (points)   = contract price / multiplier

so with an underlying the leg is ``level x contract price / S_underlying`` and its basis ratio is the
contract's own premium over its underlying's oracle price, whatever else the index holds. Basis, contango,
the annualized basis (to the expiry the instrument id encodes, else ``futures.expiry``), the term structure
and the roll cost are all in these units. As the hedge (``futures.contract_size`` set, no
``portfolio.instrument``) one contract is worth ``contract_size x multiplier`` USD a point: ``contract_size``
units of the underlying at the contract's price.

The price is the contract's mark where the venue streams one (perpetuals), else the mid of its book (dated
futures, on the ``futures`` channel). Pure and synchronous.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hedgewatch.service.config import Config, FuturesLegConfig
from hedgewatch.service.errors import Problem
from hedgewatch.service.expiry import expiry_from_instrument, parse_expiry

DAY_S = 86400.0


def leg_expiry(fut: FuturesLegConfig) -> float | None:
    """The contract's settlement time: ``futures.expiry`` when given, else the one its id encodes; None for
    a perpetual (and in synthetic mode)."""
    if fut.mode != "contract":
        return None
    return parse_expiry(fut.expiry) if fut.expiry else expiry_from_instrument(fut.symbol or "")


def leg_problems(cfg: Config, file: str, now: float) -> list[Problem]:
    """What would leave a contract-mode leg without a price for ever: a dated contract no source subscribes
    on its ``futures`` channel, or one that has expired."""
    fut = cfg.index.futures
    expiry = leg_expiry(fut)
    if expiry is None:
        return []
    if expiry <= now:
        when = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return [Problem(file, None, None, "index.futures.symbol",
                        f"{fut.symbol} expired at {when}: name the contract that follows it")]
    if not any(src.enabled and "futures" in (src.channels or ()) and fut.exchange in (None, src.source_id)
               for src in cfg.sources):
        venue = f"source {fut.exchange}" if fut.exchange else "any source"
        return [Problem(file, None, None, "index.futures.symbol",
                        f"{fut.symbol} is a dated future, quoted on the 'futures' channel, which {venue} does "
                        "not subscribe: add 'futures' to its channels")]
    return []


class ContractLeg:
    """The configured contract's latest prices and its conversion to index points."""

    def __init__(self, fut: FuturesLegConfig, index: str) -> None:
        self.symbol = fut.symbol or ""
        self.exchange = fut.exchange
        self.index = index
        self.underlying = fut.underlying
        self.multiplier = fut.multiplier
        self.contract_size = fut.contract_size
        self.expiry = leg_expiry(fut)
        self.asset: str | None = None  # the asset the venue lists the contract under
        self.mark: tuple[float, float] | None = None  # (USD, receive time)
        self.mid: tuple[float, float] | None = None
        self.funding: tuple[float, float] | None = None  # a perpetual's own rate per 8 h

    @property
    def perpetual(self) -> bool:
        return self.expiry is None

    def matches(self, exchange: str, instrument: str) -> bool:
        return instrument == self.symbol and self.exchange in (None, exchange)

    def on_mark(self, exchange: str, asset: str, instrument: str, mark_usd: float, ts: float) -> None:
        if self.matches(exchange, instrument):
            self.asset, self.mark = asset, (mark_usd, ts)

    def on_quote(self, exchange: str, asset: str, instrument: str, mid_usd: float, ts: float) -> None:
        if self.matches(exchange, instrument):
            self.asset, self.mid = asset, (mid_usd, ts)

    def on_funding(self, exchange: str, instrument: str, rate_8h: float, ts: float) -> None:
        if self.matches(exchange, instrument):
            self.funding = (rate_8h, ts)

    @property
    def tracked_asset(self) -> str | None:
        """The asset the contract tracks: ``futures.underlying``, else the asset its venue lists it under."""
        return self.underlying or self.asset

    def price(self, now: float, max_age: float) -> float | None:
        """The contract's price in USD: its fresh mark, else its fresh mid."""
        for p in (self.mark, self.mid):
            if p is not None and p[1] >= now - max_age:
                return p[0]
        return None

    def own_funding(self, now: float, max_age: float) -> float | None:
        if self.funding is None or self.funding[1] < now - max_age:
            return None
        return self.funding[0]

    def multiplier_now(self, level: float | None, underlying_price: float | None) -> tuple[float | None, str]:
        """The contract's price per index point and where it comes from."""
        if self.multiplier is not None:
            return self.multiplier, "futures.multiplier"
        if self.underlying == self.index:
            return 1.0, "the index itself"
        if level and underlying_price:
            return underlying_price / level, f"{self.underlying} price / index level"
        return None, f"{self.underlying} price / index level"

    def summary(self, level: float | None, underlying_price: float | None, now: float, max_age: float,
                term_structure: dict[str, Any] | None) -> tuple[float | None, dict[str, Any]]:
        """The leg in index points (None without a fresh price or a multiplier) and the contract block of
        the snapshot's ``derivatives``: the contract's own price, the multiplier, its term structure in
        index points."""
        price = self.price(now, max_age)
        mult, source = self.multiplier_now(level, underlying_price)
        points = None if price is None or mult is None else price / mult
        block: dict[str, Any] = {
            "exchange": self.exchange, "symbol": self.symbol, "underlying": self.tracked_asset,
            "price_usd": price, "multiplier": mult, "multiplier_source": source,
            "contract_size": self.contract_size,
            "point_value_usd": None if mult is None or self.contract_size is None else self.contract_size * mult,
            "expiry_ts": self.expiry, "perpetual": self.perpetual,
            "funding_rate_8h": self.own_funding(now, max_age) if self.perpetual else None,
            "term_structure": None,
        }
        if term_structure is not None and mult is not None:
            block["term_structure"] = {
                **term_structure,
                "curve": [{**row, "price": row["price"] / mult} for row in term_structure["curve"]],
            }
        return points, block

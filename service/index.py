"""The basket index: ``level = sum(price_i * units_i) / divisor``, updated in O(1) per price change.

Units are fixed between rebalances, so the index drifts with prices the way a real cap-weighted index does.
At a rebalance the units change (new members, new target weights) and the divisor is rescaled so that the
level is the same just before and just after: the rebalance itself never moves the index.

The running sum is updated incrementally (``sum += units * (new - old)``); ``recompute`` redoes the full
sum to bound floating-point drift and is called off the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping

from hedgewatch.service.errors import HedgewatchError


class IndexError_(HedgewatchError):
    """The basket cannot be built or rebalanced (a member without a price, no members)."""


class Basket:
    """Members, their units and the divisor. Prices are fed one at a time with ``set_price``."""

    __slots__ = ("_priced", "_sum", "divisor", "prices", "units")

    def __init__(self) -> None:
        self.units: dict[str, float] = {}
        self.prices: dict[str, float] = {}
        self.divisor = 1.0
        self._sum = 0.0
        self._priced = 0

    @property
    def members(self) -> list[str]:
        return list(self.units)

    @property
    def built(self) -> bool:
        return bool(self.units)

    @property
    def level(self) -> float | None:
        """None until every member has a price."""
        if not self.units or self._priced < len(self.units):
            return None
        return self._sum / self.divisor

    @property
    def value(self) -> float:
        """``sum(price * units)``: the basket's value before the divisor."""
        return self._sum

    def set_price(self, asset: str, price: float) -> None:
        """Feed a member's (or future member's) latest price; O(1)."""
        old = self.prices.get(asset)
        self.prices[asset] = price
        u = self.units.get(asset)
        if u is not None:
            if old is None:
                self._sum += u * price
                self._priced += 1
            else:
                self._sum += u * (price - old)

    def recompute(self) -> float:
        """Redo the full sum (bounds floating drift); returns it."""
        self._sum = sum(u * self.prices[a] for a, u in self.units.items() if a in self.prices)
        self._priced = sum(1 for a in self.units if a in self.prices)
        return self._sum

    def weights(self) -> dict[str, float]:
        """Current (drifted) weights: each member's share of the basket value."""
        total = self._sum
        if not total:
            return dict.fromkeys(self.units, 0.0)
        return {a: u * self.prices.get(a, 0.0) / total for a, u in self.units.items()}

    def missing_prices(self, members: Mapping[str, float] | list[str]) -> list[str]:
        return [m for m in members if m not in self.prices]

    def set_units(self, units: Mapping[str, float], divisor: float = 1.0) -> None:
        """Install units and a divisor as given (e.g. a venue's published composite definition)."""
        self.units = {a: float(u) for a, u in units.items()}
        self.divisor = divisor
        self.recompute()

    def rebalance(self, weights: Mapping[str, float], base_level: float) -> tuple[float, float]:
        """Make ``weights`` the basket's target weights at the current prices, keeping the level continuous
        (or starting at ``base_level`` when the basket is new). Returns the (old, new) divisor."""
        missing = self.missing_prices(list(weights))
        if missing:
            raise IndexError_(f"cannot rebalance without prices for {', '.join(missing)}")
        if not weights:
            raise IndexError_("cannot rebalance to an empty basket")
        old_divisor = self.divisor
        level = self.level if self.units else base_level
        if level is None or not level > 0:
            level = base_level
        # Units sized so the basket is worth the current level: a share of the index in each asset.
        notional = level
        self.units = {a: w * notional / self.prices[a] for a, w in weights.items() if w > 0}
        new_sum = self.recompute()
        self.divisor = new_sum / level
        return old_divisor, self.divisor

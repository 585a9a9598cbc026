"""Which of a venue's markets prices it in the oracle: its spot pair, or its perpetual standing in.

A venue's index engine builds its index from spot markets and, while a constituent exchange's spot feed is
unavailable, takes that exchange's perpetual (or futures) price instead. The oracle does the same for each
source of ``market: spot``, asset by asset:

- the source's spot quote prices it while the last one is at most ``spot_max_age_s`` old (at most half of
  the oracle's ``max_age_s``, so the perpetual takes over before the source could go stale);
- past that, the source's latest perpetual quote prices it (the switch happens on the next perpetual quote
  or the next ``tick``, whichever comes first);
- spot takes over again once it has quoted with no gap longer than ``spot_max_age_s`` for
  ``spot_return_s``, so a flickering spot feed does not move the source back and forth; a source's very
  first spot quote takes over at once (start-up, not a recovery);
- the spot quote also takes over at once when the perpetual has nothing fresh (``max_age_s``) to offer;
- a venue that lists no spot pair for an asset, or whose spot market is not configured, is priced from its
  perpetual throughout.

A source of ``market: perp`` is the mirror image: its perpetual prices it, and a spot quote (a spot-only
ccxt market, a backtest's gap filled from spot history) stands in only while the perpetual is quiet.

The source keeps its name in the oracle whatever market prices it: the median is over venues, each venue
counted once. Every switch is a ``market`` transition, and ``/state`` shows per source the market that
prices it now and its spot quote's age. Pure and synchronous: times are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hedgewatch.service.events import Market


@dataclass(slots=True)
class VenuePrice:
    """One source's two markets for one asset, and which of them prices it (``""`` before any quote)."""

    preferred: str
    market: str = ""
    last: dict[str, tuple[float, float]] = field(default_factory=dict)  # market -> (USD price, time)
    streak_since: float | None = None  # when the preferred market's current run without a long gap began
    preferred_priced: bool = False     # the preferred market has priced the source at least once
    switches: int = 0
    reason: str = "no quote yet"

    @property
    def other(self) -> str:
        return Market.PERP if self.preferred == Market.SPOT else Market.SPOT


@dataclass(frozen=True, slots=True)
class Switch:
    """A source that changed markets: what prices it from now, and the price it contributes."""

    asset: str
    source: str
    old: str
    new: str
    reason: str
    price: float | None
    ts: float | None


class VenueMarkets:
    """The market choice of every (asset, source). ``on_spot``/``on_perp`` return the USD price to feed
    the oracle (None: this quote does not price the source now); ``tick`` returns the switches that time
    alone caused (a spot feed gone quiet)."""

    def __init__(self, spot_sources: set[str], spot_max_age_s: float, spot_return_s: float,
                 max_age_s: float) -> None:
        self._spot_sources = frozenset(spot_sources)
        self._max_pref_age = min(spot_max_age_s, max_age_s * 0.5)
        self._return = spot_return_s
        self._max_age = max_age_s
        self.entries: dict[tuple[str, str], VenuePrice] = {}
        self.switches: list[Switch] = []

    def _entry(self, asset: str, source: str) -> VenuePrice:
        key = (asset, source)
        e = self.entries.get(key)
        if e is None:
            pref = Market.SPOT if source in self._spot_sources else Market.PERP
            e = self.entries[key] = VenuePrice(pref)
        return e

    def _switch(self, asset: str, source: str, e: VenuePrice, new: str, reason: str, price: float | None,
                ts: float | None) -> None:
        # where a source starts (its first quote, then its preferred market's first) is not a switch
        if e.market and (e.preferred_priced or new != e.preferred):
            self.switches.append(Switch(asset, source, e.market, new, reason, price, ts))
            e.switches += 1
        e.market = new
        e.reason = reason
        if new == e.preferred:
            e.preferred_priced = True

    def on_spot(self, asset: str, source: str, price: float, ts: float) -> float | None:
        return self._on(asset, source, Market.SPOT, price, ts)

    def on_perp(self, asset: str, source: str, price: float, ts: float) -> float | None:
        return self._on(asset, source, Market.PERP, price, ts)

    def _fresh(self, e: VenuePrice, market: str, now: float, age: float) -> bool:
        last = e.last.get(market)
        return last is not None and now - last[1] <= age

    def _on(self, asset: str, source: str, market: str, price: float, ts: float) -> float | None:
        e = self._entry(asset, source)
        if market == e.preferred:
            if not self._fresh(e, market, ts, self._max_pref_age) or e.streak_since is None:
                e.streak_since = ts  # a gap (or the first quote) starts a new run
            e.last[market] = (price, ts)
            if e.market == market:
                return price
            if not e.preferred_priced:
                self._switch(asset, source, e, market, f"{market} quoting", price, ts)
            elif not self._fresh(e, e.other, ts, self._max_age):
                self._switch(asset, source, e, market, f"{market} back; the other market has nothing fresh",
                             price, ts)
            elif ts - e.streak_since >= self._return:
                self._switch(asset, source, e, market, f"{market} back: quoting without a gap for "
                                                       f"{self._return:g}s", price, ts)
            else:
                return None
            return price
        stale = not self._fresh(e, e.preferred, ts, self._max_pref_age)
        e.last[market] = (price, ts)
        if e.market == market:
            return price
        if not e.market or stale:
            self._switch(asset, source, e, market, self._stale_reason(e), price, ts)
            return price
        return None

    def tick(self, now: float) -> list[Switch]:
        """Sources whose preferred market went quiet fall back to the other one when it is fresh; the
        switches, with that market's price (the oracle's own staleness rules handle a source with neither)."""
        out = []
        for (asset, source), e in self.entries.items():
            if e.market != e.preferred or self._fresh(e, e.preferred, now, self._max_pref_age):
                continue
            other = e.last.get(e.other)
            if other is None or now - other[1] > self._max_age:
                continue
            self._switch(asset, source, e, e.other, self._stale_reason(e), other[0], other[1])
            out.append(self.switches[-1])
        return out

    def _stale_reason(self, e: VenuePrice) -> str:
        if not e.preferred_priced:
            return f"no {e.preferred} quote yet" if e.preferred == Market.SPOT else f"{e.preferred} not quoting"
        other = "perpetual" if e.other == Market.PERP else "spot quote"
        return f"{e.preferred} quiet for more than {self._max_pref_age:g}s: the {other} stands in"

    def drain(self) -> list[Switch]:
        out = self.switches[:]
        self.switches.clear()
        return out

    def describe(self, asset: str, source: str, now: float) -> dict[str, object] | None:
        """The ``/state`` view of one source's markets for one asset (None when it has sent no quote)."""
        e = self.entries.get((asset, source))
        if e is None:
            return None
        spot, perp = e.last.get(Market.SPOT), e.last.get(Market.PERP)
        return {
            "market": str(e.market),
            "preferred_market": str(e.preferred),
            "market_reason": e.reason,
            "spot_age_s": None if spot is None else round(now - spot[1], 3),
            "perp_age_s": None if perp is None else round(now - perp[1], 3),
            "market_switches": e.switches,
        }

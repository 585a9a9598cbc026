"""Prometheus export of a ``MarketState``: the oracle, index and derivatives gauges.

Called about once a second, never per tick. Labelled children are cached so an export of a 1,000-member
index (5,000 source series) does not pay ``labels()`` lookups each time.

A stale source's price is not exported as if it were current: ``hedgewatch_source_price`` has no sample
while the source is stale (its series stops, and comes back with the next fresh price), and
``hedgewatch_source_stale`` (always present) says so; ``hedgewatch_source_age_seconds`` keeps counting.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from hedgewatch.service.metrics import Metrics
from hedgewatch.service.oracle import OK, SRC_STALE, STATUS_CODE

if TYPE_CHECKING:
    from hedgewatch.service.market import MarketState


class GaugeExporter:
    """Writes one MarketState into a Metrics registry."""

    def __init__(self) -> None:
        # Keyed by the metric object itself (not its id) so a new Metrics never hits a stale child.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _gauge(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _drop(self, metric: Any, *labels: str) -> None:
        """Remove a labelled sample (a stale price): its series then has no sample until set again."""
        if self._children.pop((metric, *labels), None) is not None:
            with contextlib.suppress(KeyError):
                metric.remove(*labels)

    def export(self, state: MarketState, m: Metrics, now: float) -> None:
        g, name, basket = self._gauge, state.name, state.basket
        if basket.level is not None:
            g(m.index_price, name).set(basket.level)
        g(m.index_status, name).set(STATUS_CODE[state.status])
        m.ready.set(1 if state.ready else 0)
        for a, w in basket.weights().items():
            g(m.index_constituent_weight, name, a).set(w)
        te = state.tracking.get("tracking_error")
        if te is not None:
            g(m.index_tracking_error, name).set(te)
        self._oracles(state, m, now)
        self._derivatives(state, m, now)

    def _oracles(self, state: MarketState, m: Metrics, now: float) -> None:
        g = self._gauge
        markets = state.venue_markets.entries
        for a, o in state.oracles.items():
            if o.price is not None:
                g(m.asset_price, a).set(o.price)
            g(m.asset_status, a).set(STATUS_CODE[o.status])
            g(m.oracle_sources, a).set(o.n_valid)
            if o.confidence is not None:
                g(m.asset_confidence, a).set(o.confidence)
            for s in o.sources:
                stale = s.status == SRC_STALE
                if s.price is not None:
                    if stale:
                        self._drop(m.source_price, a, s.name)
                    else:
                        g(m.source_price, a, s.name).set(s.price)
                    g(m.source_age, a, s.name).set(max(0.0, now - s.ts))
                g(m.source_excluded, a, s.name).set(0 if s.status == OK else 1)
                g(m.source_stale, a, s.name).set(1 if stale else 0)
                vp = markets.get((a, s.name))
                if vp is not None and vp.market:
                    g(m.source_spot, a, s.name).set(1 if vp.market == "spot" else 0)

    def _derivatives(self, state: MarketState, m: Metrics, now: float) -> None:
        g, name = self._gauge, state.name
        deriv = state.derivatives_summary(now)
        for key, metric in (
            ("funding_rate_8h", m.index_funding_rate),
            ("open_interest_usd", m.index_open_interest_usd),
            ("basis_ratio", m.index_basis_ratio),
            ("basis_annualized", m.index_basis_annualized_ratio),
            ("futures_price", m.index_futures_price),
        ):
            if deriv.get(key) is not None:
                g(metric, name).set(deriv[key])
        d = state.derivatives
        for a, venues in d.funding.items():
            for ex, (rate, _) in venues.items():
                g(m.asset_funding_rate, a, ex).set(rate)
        for a, by_venue in d.oi.items():
            o = state.oracles.get(a)
            price = o.price if o is not None else None
            for ex, (base, usd, _) in by_venue.items():
                value = usd if usd is not None else (base * price if price is not None else None)
                if value is not None:
                    g(m.asset_open_interest_usd, a, ex).set(value)

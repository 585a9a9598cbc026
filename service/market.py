"""``MarketState``: the facade the daemon feeds with events and asks for snapshots.

It owns one ``AssetOracle`` per asset, the ``Basket`` and the ``Derivatives`` book, routes each event to
them in O(1) (a venue's spot and perpetual quotes through ``VenueMarkets``, which picks the market that
prices the venue: spot first, the perpetual standing in), and turns their state into the index snapshot
JSON, the ``/state`` JSON and Prometheus gauges. Pure and synchronous: the time is an argument
(``tick``/``snapshot``/``state``/``export``) or the event's receive time (``apply``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hedgewatch.rules.synth import volume_venues
from hedgewatch.service.config import Config
from hedgewatch.service.constituents import Candidate
from hedgewatch.service.derivatives import Derivatives
from hedgewatch.service.events import (
    Candle,
    CompositeIndex,
    Event,
    FeedStatus,
    Funding,
    Market,
    MarkPrice,
    OpenInterest,
    Quote,
    Trade,
)
from hedgewatch.service.index import Basket
from hedgewatch.service.oracle import DEGRADED, OK, STALE, AssetOracle, SourceTransition, Status, TransitionKind
from hedgewatch.service.rebalance import Rebalancer, next_rebalance
from hedgewatch.service.venue_markets import VenueMarkets

# Full recomputation of the running basket sum off the hot path, to bound floating drift.
RECOMPUTE_EVERY_S = 60.0


class MarketState:
    """Oracle + index + derivatives for one configured index."""

    def __init__(self, config: Config, now: float) -> None:
        self.config = config
        self.name = config.index.name
        ocfg = config.oracle
        self._transitions: list[SourceTransition] = []
        self._markets = frozenset(ocfg.markets)
        self._stable = frozenset(ocfg.stable_quotes)
        self._venue_index = ocfg.use_venue_index
        self._max_age = ocfg.max_age_s
        self._quorum = ocfg.quorum
        src_weights = {s.source_id: s.weight for s in config.sources}
        src_weights.update(ocfg.weights)
        self._src_weights = src_weights
        self._oracles: dict[str, AssetOracle] = {}
        for src in config.sources:
            if not src.enabled:
                continue
            for sym in src.symbols:
                oracle = self._oracles.get(sym)
                if oracle is None:
                    oracle = self._oracles[sym] = AssetOracle(sym, ocfg, self._transitions, src_weights)
                oracle.source(src.source_id)
        for sym in config.index.constituents:
            if sym not in self._oracles:
                self._oracles[sym] = AssetOracle(sym, ocfg, self._transitions, src_weights)
        self._last_quote: dict[tuple[str, str, str], float] = {}
        self.venue_markets = VenueMarkets({s.source_id for s in config.sources if s.market == "spot"},
                                          ocfg.spot_max_age_s, ocfg.spot_return_s, ocfg.max_age_s)
        self._choose: dict[str, Callable[[str, str, float, float], float | None]] = {
            Market.SPOT: self.venue_markets.on_spot, Market.PERP: self.venue_markets.on_perp}
        self._rates: dict[str, tuple[float, bool]] = {}  # quote -> (USD rate, assumed at par)
        self.basket = Basket()
        self.derivatives = Derivatives(config.index)
        self.derivatives.volume_venue.update(volume_venues(config))
        self.rebalancer = Rebalancer(config, self._oracles, now)
        self._members: frozenset[str] = frozenset()
        self._status = STALE
        self._counts = dict.fromkeys((OK, DEGRADED, STALE), 0)
        self._last_recompute = now
        self.tracking: dict[str, float | None] = {"venue_price": None, "tracking_error": None, "ts": None}
        self.feeds: dict[str, str] = {}
        self._handlers: dict[type, Callable[[Any], bool]] = {
            Quote: self._on_quote,
            Trade: self._on_trade,
            MarkPrice: self._on_mark,
            Funding: self._on_funding,
            OpenInterest: self._on_open_interest,
            Candle: self._on_candle,
            CompositeIndex: self._on_composite,
            FeedStatus: self._on_feed_status,
        }
        self._try_build(now)

    # --- events ------------------------------------------------------------------------------------

    def _usd_rate(self, quote: str) -> float:
        """USD per unit of ``quote``: the oracle's own price of a stablecoin when it has a usable one,
        else 1.0, and the quote is flagged as assumed at par."""
        if quote == "USD":
            return 1.0
        if quote in self._stable:
            o = self._oracles.get(quote)
            if o is not None and o.price is not None and o.status != STALE:
                self._rates[quote] = (o.price, False)
                return o.price
            self._rates[quote] = (1.0, True)
        return 1.0

    def _feed(self, asset: str, source: str, price: float, quote: str, now: float) -> bool:
        oracle = self._oracles.get(asset)
        if oracle is None or asset == quote:
            return False
        old, first = oracle.status, oracle.price is None
        if not oracle.update(source, price * self._usd_rate(quote), now):
            return False
        return self._after_oracle(oracle, old, first, now)

    def _after_oracle(self, oracle: AssetOracle, old: Status, first: bool, now: float) -> bool:
        """Propagate an oracle change to the basket; True when the level or the status moved."""
        asset = oracle.asset
        if oracle.price is not None:
            self.basket.set_price(asset, oracle.price)
        if asset not in self._members:
            # Building needs every member priced: worth trying only when an asset gets its first price.
            if first and not self.basket.built:
                return self._try_build(now)
            return False
        new = oracle.status
        if new is not old:
            counts = self._counts
            counts[old] -= 1
            counts[new] += 1
            self._update_status(now, recount=False)
        return True

    def apply(self, event: Event) -> bool:
        """Feed one normalized event; True when the index level or status changed. O(1) per tick."""
        handler = self._handlers.get(type(event))
        return handler(event) if handler is not None else False

    def _on_quote(self, ev: Quote) -> bool:
        market = ev.market
        if market not in self._markets:
            if market == Market.FUTURE:
                self.derivatives.on_dated(ev.exchange, ev.asset, ev.instrument, ev.mid * self._usd_rate(ev.quote),
                                          ev.ts_recv)
            return False
        bid, ask = ev.bid, ev.ask
        if not (0.0 < bid <= ask):
            return False  # one-sided or crossed book: no mid to trust; trades may stand in
        self._last_quote[(ev.asset, ev.exchange, market)] = ev.ts_recv
        return self._venue_price(ev.asset, ev.exchange, market, (bid + ask) * 0.5, ev.quote, ev.ts_recv)

    def _on_trade(self, ev: Trade) -> bool:
        if ev.market not in self._markets:
            return False
        # A source's quotes win over its trades; trades stand in when it sends no (fresh) quotes.
        if self._last_quote.get((ev.asset, ev.exchange, ev.market), -1e18) >= ev.ts_recv - self._max_age:
            return False
        return self._venue_price(ev.asset, ev.exchange, ev.market, ev.price, ev.quote, ev.ts_recv)

    def _venue_price(self, asset: str, exchange: str, market: str, price: float, quote: str,
                     now: float) -> bool:
        """One venue price of one market: spot and perpetual go through the venue's market choice (the
        source keeps the venue's name whichever prices it); any other market is a source of its own."""
        choose = self._choose.get(market)
        if choose is None:
            return self._feed(asset, f"{exchange}:{market}", price, quote, now)
        if asset not in self._oracles or asset == quote:
            return False
        usd = choose(asset, exchange, price * self._usd_rate(quote), now)
        if self.venue_markets.switches:
            self._note_switches(now)
        return usd is not None and self._feed(asset, exchange, usd, "USD", now)

    def _note_switches(self, now: float) -> None:
        """The venues that changed markets, as ``market`` transitions (logged; no event rule watches them)."""
        for sw in self.venue_markets.drain():
            self._transitions.append(SourceTransition(now, TransitionKind.MARKET, sw.asset, sw.source, sw.old, sw.new,
                                                      sw.reason, sw.price))

    def _on_mark(self, ev: MarkPrice) -> bool:
        self.derivatives.on_mark(ev, self._usd_rate(ev.quote))
        if self._venue_index and ev.index is not None:
            return self._feed(ev.asset, f"{ev.exchange}:index", ev.index, ev.quote, ev.ts_recv)
        return False

    def _on_funding(self, ev: Funding) -> bool:
        self.derivatives.on_funding(ev)
        return False

    def _on_open_interest(self, ev: OpenInterest) -> bool:
        self.derivatives.on_open_interest(ev)
        return False

    def _on_candle(self, ev: Candle) -> bool:
        self.derivatives.on_candle(ev, 1.0)
        return False

    def _on_feed_status(self, ev: FeedStatus) -> bool:
        # Staleness is judged per source from its prices; a connection's state is informational here.
        self.feeds[ev.exchange if not ev.channel else f"{ev.exchange}/{ev.channel}"] = ev.state
        return False

    def _on_composite(self, ev: CompositeIndex) -> bool:
        if self.config.index.track is None or ev.symbol != self.config.index.track:
            return False
        changed = self.rebalancer.on_composite(ev, self.basket)
        if changed:
            self._adopt_members()
            self._update_status(ev.ts_recv)
        level = self.basket.level
        self.tracking = {
            "venue_price": ev.price,
            "tracking_error": level / ev.price - 1.0 if level and ev.price > 0 else None,
            "ts": ev.ts_recv,
        }
        return changed

    # --- building, status, rebalancing -------------------------------------------------------------

    def _try_build(self, now: float) -> bool:
        if self.rebalancer.initial(self.basket, now) is None:
            return False
        self._adopt_members()
        self._update_status(now)
        return True

    def restore(self, snapshot: dict[str, Any], now: float) -> bool:
        """Take the basket (units and divisor) of a persisted snapshot, so the level after a restart
        continues where it was instead of being re-based to ``base_level`` at the new prices. Ignored when
        the basket is already built, follows a venue's definition, or the configured constituents or
        weighting changed (the fresh build then applies the new composition). A scheduled rebalance missed
        while the daemon was down becomes due at once. True when restored."""
        consts = snapshot.get("constituents") or {}
        try:
            units = {str(a): float(c["units"]) for a, c in consts.items()}
            divisor = float(snapshot["divisor"])
        except (KeyError, TypeError, ValueError):
            return False
        rb = self.rebalancer
        weighting = snapshot.get("weighting")
        if (self.basket.built or rb.definition is not None or not units or not divisor > 0
                or weighting not in (None, self.config.index.weighting)
                or any(not u > 0 for u in units.values())
                or (self.config.index.selection is None and set(units) != set(rb.members))):
            return False
        self.basket.set_units(units, divisor)
        rb.members = sorted(units)
        rb.targets = {a: float(c["target_weight"]) for a, c in consts.items()
                      if c.get("target_weight") is not None}
        last = (snapshot.get("rebalance") or {}).get("last_ts")
        if isinstance(last, int | float):
            rb.last_ts = float(last)
            missed = next_rebalance(float(last), self.config.index.rebalance)
            if missed is not None and missed < (rb.next_ts or missed + 1):
                rb.next_ts = missed
        self._adopt_members()
        self._update_status(now)
        return True

    def _note_rebalance(self, now: float) -> None:
        last = self.rebalancer.history[-1]
        why = f"added {', '.join(last['added']) or '-'}; removed {', '.join(last['removed']) or '-'}"
        tr = SourceTransition(now, TransitionKind.REBALANCE, self.name, "", "", "done", why, self.level)
        self._transitions.append(tr)

    def _adopt_members(self) -> None:
        """Take the basket's members as the index's, with an oracle for each (a venue-defined composite
        may name assets no source was configured for: they stay unpriced and the index not ready)."""
        self._members = frozenset(self.basket.units)
        for a in self._members:
            if a not in self._oracles:
                self._oracles[a] = AssetOracle(a, self.config.oracle, self._transitions, self._src_weights)

    def _update_status(self, now: float, recount: bool = True) -> bool:
        """Index status from its members': stale when every member is stale, degraded when any member is
        degraded or stale, ok otherwise. ``recount`` recounts member statuses (O(n), off the hot path);
        per tick the counts are adjusted incrementally instead."""
        if recount:
            counts = dict.fromkeys((OK, DEGRADED, STALE), 0)
            for a in self._members:
                counts[self._oracles[a].status] += 1
            self._counts = counts
        n = len(self._members)
        if not self.basket.built or n == 0 or self._counts[STALE] == n:
            status = STALE
        elif self._counts[OK] < n:
            status = DEGRADED
        else:
            status = OK
        if status != self._status:
            tr = SourceTransition(now, TransitionKind.INDEX, self.name, "", self._status, status, self._why(status))
            self._transitions.append(tr)
            self._status = status
            return True
        return False

    def _why(self, status: Status) -> str:
        if status == OK:
            return ""
        if not self.basket.built:
            return "not built yet"
        bad = sorted(a for a in self._members if self._oracles[a].status != OK)
        if status == STALE:
            return "every constituent is stale"
        return "not ok: " + ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")

    def tick(self, now: float) -> bool:
        """Staleness, re-admission and scheduled rebalances at ``now``; True if the index changed."""
        changed = False
        for sw in self.venue_markets.tick(now):  # spot gone quiet: the perpetual's price stands in
            if sw.price is not None and sw.ts is not None:
                changed = self._feed(sw.asset, sw.source, sw.price, "USD", sw.ts) or changed
        self._note_switches(now)
        for oracle in self._oracles.values():
            if oracle.refresh(now):
                if oracle.price is not None:
                    self.basket.set_price(oracle.asset, oracle.price)
                changed = changed or oracle.asset in self._members
        if not self.basket.built:
            changed = self._try_build(now) or changed
        elif self.rebalancer.due(now) and self.rebalancer.run(self.basket, now):
            self._adopt_members()
            self._note_rebalance(now)
            changed = True
        preview = self.rebalancer.announce(now)
        if preview is not None:
            when = datetime.fromtimestamp(preview["effective_ts"], UTC).strftime("%Y-%m-%d %H:%M UTC")
            why = (f"rebalance at {when}: added {', '.join(preview['added']) or '-'}; "
                   f"removed {', '.join(preview['removed']) or '-'}")
            self._transitions.append(
                SourceTransition(now, TransitionKind.REBALANCE_PREVIEW, self.name, "", "", "scheduled", why,
                                 self.level))
        if now - self._last_recompute >= RECOMPUTE_EVERY_S:
            self.basket.recompute()
            self._last_recompute = now
        return self._update_status(now) or changed

    def set_candidates(self, candidates: list[Candidate], now: float) -> bool:
        """New market-cap data from a selection provider (the daemon fetches it at its edge). Builds the
        index if it waited for it; otherwise it shapes the next scheduled (or manual) rebalance."""
        self.rebalancer.set_candidates(candidates)
        return not self.basket.built and self._try_build(now)

    def rebalance_now(self, now: float) -> bool:
        """A manual (on demand) rebalance at ``now``; True when it happened."""
        if not self.basket.built or not self.rebalancer.run(self.basket, now, manual=True):
            return False
        self._adopt_members()
        self._note_rebalance(now)
        self._update_status(now)
        return True

    # --- reading -----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Every constituent has an oracle price from at least ``quorum`` valid sources."""
        if not self.basket.built:
            return False
        q = self._quorum
        for a in self._members:
            o = self._oracles[a]
            if o.price is None or o.n_valid < q:
                return False
        return True

    @property
    def level(self) -> float | None:
        return self.basket.level

    @property
    def status(self) -> Status:
        return self._status

    def oracle(self, asset: str) -> AssetOracle | None:
        return self._oracles.get(asset)

    @property
    def members(self) -> frozenset[str]:
        """The index's constituents now (empty until the basket is built)."""
        return self._members

    @property
    def oracles(self) -> dict[str, AssetOracle]:
        """Every asset's oracle (constituents and the rest: quote currencies, candidates)."""
        return self._oracles

    def drain_transitions(self) -> list[SourceTransition]:
        out = self._transitions[:]
        self._transitions.clear()
        return out

    def derivatives_summary(self, now: float) -> dict[str, Any]:
        """The index-level derivatives block (computed on demand, O(members))."""
        b = self.basket
        underlying = self._oracles.get(self.config.index.futures.underlying or "")
        return self.derivatives.summary(b.units, b.divisor, b.prices, b.level, now,
                                        None if underlying is None else underlying.price)

    def _assets(self, now: float) -> dict[str, Any]:
        d = self.derivatives
        out: dict[str, Any] = {}
        for a in sorted(self._members):
            o = self._oracles[a]
            out[a] = {
                "funding_rate_8h": d.asset_funding(a, now),
                "funding_instruments": d.asset_instrument_funding(a, now),  # "venue:instrument" -> per 8 h
                "open_interest_usd": d.asset_open_interest(a, o.price, now),
                # per venue fresh now: [base units, USD], for changes in contracts over the same venues
                "open_interest_venues": {k.partition("/")[2]: list(v)
                                         for k, v in d.oi_rows({a: o.price}, now).items()},
                "volume_24h": d.asset_volume_24h(a, now),
                "mark_price": d.asset_mark(a, now),
            }
            ts = d.term_structure(a, now)
            if ts is not None:
                out[a]["term_structure"] = ts
        return out

    def snapshot(self, now: float) -> dict[str, Any]:
        """The index snapshot JSON published on ``hedgewatch:index:<INDEX>``."""
        b = self.basket
        current = b.weights()
        targets = self.rebalancer.targets
        constituents = {}
        for a in sorted(b.units):
            o = self._oracles[a]
            constituents[a] = {
                "price": o.price,
                "weight": current.get(a),
                "target_weight": targets.get(a),
                "units": b.units[a],
                "status": o.status,
                "sources": o.n_valid,
                "confidence": o.confidence,
            }
        snap: dict[str, Any] = {
            "index": self.name,
            "ts": now,
            "level": b.level,
            "status": self._status,
            "status_reason": self._why(self._status),
            "divisor": b.divisor,
            "weighting": "venue" if self.config.index.track else self.config.index.weighting,
            "constituents": constituents,
            "derivatives": self.derivatives_summary(now),
            "assets": self._assets(now),
            "rebalance": self.rebalancer.info(now),
            "quote_rates": {q: {"rate": r, "assumed": a} for q, (r, a) in sorted(self._rates.items())},
            "quote_rates_assumed": sorted(q for q, (_, a) in self._rates.items() if a),
        }
        if self.config.index.track is not None:
            snap["tracking"] = self.tracking
        return snap

    def state(self, now: float) -> dict[str, Any]:
        """The fuller ``/state`` JSON: the snapshot plus every asset's oracle with per-source status."""
        return {
            "index": self.snapshot(now),
            "oracle": {a: self._oracle_state(a, o, now) for a, o in sorted(self._oracles.items())},
            "ready": self.ready,
            "feeds": dict(sorted(self.feeds.items())),
            "rebalance_history": list(self.rebalancer.history),
        }

    def _oracle_state(self, asset: str, oracle: AssetOracle, now: float) -> dict[str, Any]:
        """An oracle's ``/state`` with, per source, the market that prices it now (``spot``/``perp``), why,
        and the age of each market's last quote."""
        out = oracle.to_dict(now)
        sources: dict[str, dict[str, object]] = out["sources"]  # type: ignore[assignment]
        for name, src in sources.items():
            info = self.venue_markets.describe(asset, name, now)
            if info is not None:
                src.update(info)
        return out

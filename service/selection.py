"""Constituent selection at the daemon's edge: the provider's market-cap data is fetched at start (retried
while the provider is unreachable), refreshed every ``selection.refresh_s``, and handed to the market state.

The first data builds an index that waited for it (as soon as its members are priced); later data shapes
the next rebalance, where the rank buffer keeps members from churning at the boundary. A failing provider
never stops the daemon: the last data stays in force, retries back off (capped, jittered) and the warnings
are rate-limited. An asset that ranks among the top N but that no configured source quotes is passed over
(the next quotable asset takes its place) and named once in the log; so is a selected asset that no source
has priced ``price_grace_s`` after the other members were (a symbol no venue lists), until it has a price.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from hedgewatch.service.config import Config, SelectionConfig
from hedgewatch.service.constituents import Candidate, unsourced
from hedgewatch.service.errors import FeedError
from hedgewatch.service.market import MarketState
from hedgewatch.service.providers import Provider, provider_for
from hedgewatch.service.retry import Backoff, BurstLog

log = logging.getLogger("hedgewatch.selection")


class SelectionFeed:
    """Polls one provider for one index. ``fetched`` and ``failures`` count the outcomes (tests and
    ``/state`` read them)."""

    def __init__(
        self,
        provider: Provider,
        market: MarketState,
        selection: SelectionConfig,
        *,
        clock: Callable[[], float],
        on_change: Callable[[float], None] | None = None,
        retry_base_s: float = 1.0,
        retry_cap_s: float = 60.0,
        log_interval_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider
        self.market = market
        self.selection = selection
        self.clock = clock
        self.on_change = on_change
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.price_grace_s = 60.0
        self.price_check_s = 1.0
        self.fetched = 0
        self.failures = 0
        self.last_ok_ts: float | None = None
        self.last_error: str | None = None
        self._rng = rng or random.Random()
        self._burst = BurstLog(log, log_interval_s)
        self._warned: set[str] = set()
        self._unpriceable: set[str] = set()
        self._unpriced_since: float | None = None  # loop time since when some, not all, members have prices

    @classmethod
    def for_config(cls, config: Config, market: MarketState, **kw: object) -> SelectionFeed | None:
        """The feed the index's selection config asks for, or None (fixed or venue-defined constituents)."""
        sel = config.index.selection
        provider = provider_for(sel)
        if sel is None or provider is None:
            return None
        return cls(provider, market, sel, **kw)  # type: ignore[arg-type]

    def status(self) -> dict[str, object]:
        """For ``/state``."""
        return {"fetched": self.fetched, "failures": self.failures, "last_ok_ts": self.last_ok_ts,
                "last_error": self.last_error, "passed_over": sorted(self._warned | self._unpriceable)}

    async def run(self) -> None:
        """Fetch, apply, wait ``refresh_s``; forever (until cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            candidates = await self._fetch()
            due = loop.time() + self.selection.refresh_s
            try:
                self.apply(candidates)
                while not self.market.basket.built and loop.time() < due:
                    self._pass_over_unpriced(candidates, loop.time())
                    await asyncio.sleep(min(self.price_check_s, max(0.0, due - loop.time())))
            except Exception:  # a bug here must not take the daemon down: the last data stays in force
                log.exception("index %s: applying the market-cap data failed", self.market.name)
            await asyncio.sleep(max(0.0, due - loop.time()))

    def _pass_over_unpriced(self, candidates: list[Candidate], t: float) -> None:
        """While the index waits for prices: once some selected members are priced and the others stay
        unpriced for ``price_grace_s`` more, pass the others over, so one symbol no venue lists cannot hold
        the whole index back. With no member priced at all (the venues are down) it simply waits."""
        members, _ = self.market.rebalancer.compose()
        unpriced = [a for a in members if (o := self.market.oracle(a)) is None or o.price is None]
        if not unpriced or len(unpriced) == len(members):
            self._unpriced_since = None  # built on the next price or tick; or nothing priced yet
        elif self._unpriced_since is None:
            self._unpriced_since = t
        elif t - self._unpriced_since >= self.price_grace_s:
            log.warning("index %s: %s selected but still unpriced %.0f s after the other members; passed over "
                        "until a source prices it (does a venue list it?)", self.market.name,
                        ", ".join(unpriced), self.price_grace_s)
            self._unpriceable.update(unpriced)
            self._unpriced_since = None
            self.apply(candidates)

    async def _fetch(self) -> list[Candidate]:
        backoff = Backoff(self.retry_base_s, min(self.retry_cap_s, self.selection.refresh_s), self._rng)
        name = self.market.name
        while True:
            try:
                candidates = await self.provider.fetch()
                if not candidates:
                    raise FeedError("the provider listed no assets")
            except Exception as exc:  # a provider's bug must not take the daemon down either
                self.failures += 1
                self.last_error = str(exc)
                delay = backoff.next()
                waiting = "the index waits for it" if not self.market.basket.built else "keeping the last data"
                self._burst.event("fetch", f"index {name}: market-cap data unavailable ({exc}); {waiting}; "
                                           f"retrying (failure {self.failures}, next in {delay:.2f} s)")
                await asyncio.sleep(delay)
                continue
            self._burst.clear("fetch", f"index {name}: market-cap data available again")
            self.fetched += 1
            self.last_ok_ts = self.clock()
            return candidates

    def apply(self, candidates: list[Candidate]) -> bool:
        """Hand ``candidates`` to the market state; True when that built the index."""
        now = self.clock()
        sel, name = self.selection, self.market.name
        if self._unpriceable:
            priced = {a for a in self._unpriceable if (o := self.market.oracle(a)) and o.price is not None}
            self._unpriceable -= priced
            candidates = [c for c in candidates if c.symbol not in self._unpriceable]
        new = [a for a in unsourced(candidates, sel.top_n, self.market.oracles, sel.min_volume_usd, sel.exclude)
               if a not in self._warned]
        if new:
            self._warned.update(new)
            log.warning("index %s: %s ranks in the top %d by market cap but no configured source quotes it; "
                        "passed over in the selection (list it in a source's symbols to include it)",
                        name, ", ".join(new), sel.top_n)
        built = self.market.set_candidates(candidates, now)
        rb = self.market.rebalancer
        if built:
            weights = ", ".join(f"{a} {rb.targets[a]:.2%}" for a in rb.members)
            log.info("index %s built from the selection of %d assets: %s", name, len(candidates), weights)
        elif not self.market.basket.built:
            members, _ = rb.compose()
            log.info("index %s: selection %s from %d assets; waiting for their prices", name,
                     ", ".join(members) or "empty", len(candidates))
        else:
            members, _ = rb.compose()
            log.info("index %s: market-cap data refreshed (%d assets); the next rebalance would hold %s", name,
                     len(candidates), ", ".join(members))
        if self.on_change is not None:
            self.on_change(now)
        return built

"""One venue's view of the shared path: its own noise, spread, funding, open interest and trades.

Pure and deterministic: each venue draws from its own seeded generator, once per step, so adding a venue
never changes another venue's numbers. Price faults (manipulation, absurd prices) are applied here; transport
faults (drops, stalls, garbage) belong to the servers.
"""

from __future__ import annotations

import calendar
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hedgewatch.connectors.simulator.candles import CandleBook, hash_str
from hedgewatch.connectors.simulator.market import HOUR_MS, PricePath
from hedgewatch.connectors.simulator.scenario import VenueSpec

DATED_TYPES = ("CURRENT_QUARTER", "NEXT_QUARTER")


def quarterly_expiries(now_ms: int, n: int = 2) -> list[int]:
    """The next ``n`` quarterly settlements after ``now_ms``: the last Friday of March, June, September and
    December at 08:00 UTC, as Binance and OKX settle their quarterly futures."""
    day = datetime.fromtimestamp(now_ms / 1000, UTC)
    out: list[int] = []
    year, month = day.year, day.month
    while len(out) < n:
        if month % 3 == 0:
            last = calendar.monthrange(year, month)[1]
            d = datetime(year, month, last, 8, tzinfo=UTC)
            d -= timedelta(days=(d.weekday() - calendar.FRIDAY) % 7)
            ms = int(d.timestamp() * 1000)
            if ms > now_ms:
                out.append(ms)
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return out


def dated_price(q: AssetQuote, expiry_ms: int) -> float:
    """A dated future's fair price: the venue's mid carried to expiry at the perpetual's funding rate
    (annualized from its interval), so the basis follows funding: contango while longs pay."""
    days = max(expiry_ms - q.ts_ms, 0) / 86_400_000
    return q.mid * (1.0 + q.funding_rate * 24.0 / max(q.funding_interval_h, 1) * days)


def decimals(step: float) -> int:
    """Number of decimals a price or size step needs (0.1 -> 1, 0.001 -> 3)."""
    return max(0, round(-math.log10(step))) if step < 1 else 0


@dataclass
class BookTop:
    """The top of one order book at one step: best bid and ask, their sizes, the update id."""

    asset: str
    ts_ms: int = 0
    bid: float = 0.0
    ask: float = 0.0
    bid_qty: float = 0.0
    ask_qty: float = 0.0
    update_id: int = 0

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) * 0.5


@dataclass
class AssetQuote(BookTop):
    """Everything a venue publishes about one asset's perpetual at one step: its book and the rest."""

    mark: float = 0.0
    index: float = 0.0
    funding_rate: float = 0.0
    next_funding_ms: int = 0
    funding_interval_h: int = 8
    open_interest: float = 0.0
    trade_id: int = 0
    # Trades printed at this step: (id, price, qty, buyer is maker)
    trades: list[tuple[int, float, float, bool]] = field(default_factory=list)
    open_24h: float = 0.0
    high_24h: float = 0.0
    low_24h: float = 0.0
    volume_24h: float = 0.0
    turnover_24h: float = 0.0
    last: float = 0.0
    last_qty: float = 0.0


@dataclass
class SpotQuote(BookTop):
    """The top of a venue's spot order book for one asset (the ``<A><QUOTE>`` pair) at one step."""


class VenueModel:
    """Quotes of one venue for its assets, recomputed at every step of the shared path."""

    def __init__(self, spec: VenueSpec, path: PricePath) -> None:
        self.spec = spec
        self.path = path
        self.assets = list(path.scenario.venue_assets(spec.name))
        self._rng = random.Random(f"venue:{path.scenario.seed}:{spec.name}")
        self._noise = dict.fromkeys(self.assets, 0.0)
        self._oi_noise = dict.fromkeys(self.assets, 0.0)
        self.candles = CandleBook(path, hash_str(spec.name), spec.oi_share)
        self.quotes = {a: AssetQuote(a) for a in self.assets}
        # the spot pairs: their own generator, so serving spot changes none of the perpetuals' numbers
        self.spot = {a: SpotQuote(a) for a in self.assets}
        self._spot_rng = random.Random(f"spot:{path.scenario.seed}:{spec.name}")
        self._spot_noise = dict.fromkeys(self.assets, 0.0)
        self.manipulation: dict[str, float] = {}  # asset ("" = all) -> price factor
        self.absurd: dict[str, tuple[float, int]] = {}  # asset ("" = all) -> (factor, frames left)
        self.extra_lag_s = 0.0  # a lag fault in force
        for a in self.assets:
            self._init_24h(a)

    def _init_24h(self, asset: str) -> None:
        q = self.quotes[asset]
        closes = self.path.history[asset][-24:]
        q.open_24h = closes[0]
        q.high_24h = max(closes) * 1.002
        q.low_24h = min(closes) * 0.998
        # the 24 hours of history before the start, as the venue's hourly klines give them
        day = self.candles.klines(asset, HOUR_MS, self.path.start_ms - 1, limit=24)
        q.volume_24h = sum(b[5] for b in day)
        q.turnover_24h = sum(b[5] * b[4] for b in day)

    def step(self, trade_prob: float) -> None:
        """Recompute every quote from the path's current step; print a trade with ``trade_prob``."""
        now, prices = self.path.lookback(self.spec.latency_ms / 1000.0 + self.extra_lag_s)
        for a in self.assets:
            self._quote(a, now, prices[a], trade_prob)
            self._spot(a, now, prices[a])

    def _set_book(self, book: BookTop, a: str, mid: float, now: int, rng: random.Random, depth: float) -> None:
        """Quote ``mid`` with the venue's spread on the asset's tick, and sizes of about ``depth`` lots."""
        aspec = self.path.specs[a]
        half = max(mid * self.spec.spread_bps * 0.5e-4, aspec.tick_size * 0.5)
        tick = aspec.tick_size
        book.bid = math.floor((mid - half) / tick + 1e-9) * tick
        book.ask = max(math.ceil((mid + half) / tick - 1e-9) * tick, book.bid + tick)
        step = aspec.qty_step
        book.bid_qty = max(step, round(rng.expovariate(1.0) * depth) * step)
        book.ask_qty = max(step, round(rng.expovariate(1.0) * depth) * step)
        book.ts_ms = now
        book.update_id += 1

    def _spot(self, a: str, now: int, ref: float) -> None:
        """The spot pair: the path price below the perpetual by the asset's basis, with the venue's own
        (independent) noise and spread."""
        spec = self.spec
        rng = self._spot_rng
        s = self.spot[a]
        self._spot_noise[a] = 0.9 * self._spot_noise[a] + 0.4359 * spec.noise_bps * 1e-4 * rng.gauss(0.0, 1.0)
        basis = self.path.assets[a].spot_basis_bps * 1e-4
        mid = ref * (1.0 + spec.bias_bps * 1e-4 + self._spot_noise[a]) / (1.0 + basis) * self.price_factor(a)
        self._set_book(s, a, mid, now, rng, 1000)

    def _quote(self, a: str, now: int, ref: float, trade_prob: float) -> None:
        spec = self.spec
        aspec = self.path.specs[a]
        rng = self._rng
        q = self.quotes[a]
        # AR(1) noise keeps the venue near the path without a random walk of its own.
        self._noise[a] = 0.9 * self._noise[a] + 0.4359 * spec.noise_bps * 1e-4 * rng.gauss(0.0, 1.0)
        mid = ref * (1.0 + spec.bias_bps * 1e-4 + self._noise[a]) * self.price_factor(a)
        self._set_book(q, a, mid, now, rng, 2000)
        step = aspec.qty_step
        q.index = ref * (1.0 + 0.2e-4 * rng.gauss(0.0, 1.0))
        st = self.path.assets[a]
        q.funding_rate = st.funding_rate + spec.funding_offset + 2e-6 * rng.gauss(0.0, 1.0)
        q.mark = q.index * (1.0 + q.funding_rate * 0.5) * self.price_factor(a)
        q.funding_interval_h = aspec.funding_interval_h
        period = aspec.funding_interval_h * HOUR_MS
        q.next_funding_ms = now - now % period + period
        self._oi_noise[a] = 0.99 * self._oi_noise[a] + 0.0005 * rng.gauss(0.0, 1.0)
        q.open_interest = self.path.open_interest(a) * spec.oi_share * (1.0 + self._oi_noise[a])
        q.trades = []
        if rng.random() < trade_prob:
            buyer_maker = rng.random() < 0.5
            price = q.bid if buyer_maker else q.ask
            qty = max(step, round(rng.expovariate(1.0) * self._mean_trade(a, trade_prob) / step) * step)
            q.trade_id += 1
            q.trades.append((q.trade_id, price, qty, buyer_maker))
            q.last, q.last_qty = price, qty
            q.volume_24h += qty
            q.turnover_24h += qty * price
            self.candles.record(a, now, price, qty, 1)
        elif q.last == 0.0:
            q.last, q.last_qty = q.mid, step
        q.high_24h = max(q.high_24h, q.ask)
        q.low_24h = min(q.low_24h, q.bid)
        self.candles.record(a, now, q.mid)

    def _mean_trade(self, asset: str, trade_prob: float) -> float:
        """The mean trade size, so that trades printed with ``trade_prob`` a step add up to the venue's hourly
        volume of the history (``CandleBook.hourly_volume``) times the regime's ``volume_factor``: live and
        history volume on one basis, whatever the tick and the trade channel's rate."""
        trades_per_hour = trade_prob * 3600.0 / self.path.dt_s
        return self.candles.hourly_volume(asset) * self.path.assets[asset].volume_factor / trades_per_hour

    def price_factor(self, asset: str) -> float:
        """The manipulation factor in force for ``asset`` (1.0 when none)."""
        return self.manipulation.get(asset, self.manipulation.get("", 1.0))

    def take_absurd(self, asset: str) -> float | None:
        """Consume one absurd-price frame for ``asset``: the factor to apply, or None."""
        key = asset if asset in self.absurd else "" if "" in self.absurd else None
        if key is None:
            return None
        factor, left = self.absurd[key]
        if left <= 1:
            del self.absurd[key]
        else:
            self.absurd[key] = (factor, left - 1)
        return factor

"""Historical bars as the events the daemon's engine takes, one batch per bar close.

At each bar close ``t`` every asset with a bar closing then gives: a quote at the close (bid = ask) from
each configured source that lists the asset (the data stands for the venues' consensus: the oracle sees
them agree, as live with every venue up); a mark price at the close (the perpetual's price, for the
futures leg); the closed kline when a source subscribes candles (as live); the funding rate last settled
at or before ``t`` (the rate the venue was publishing); and the open interest last sampled at or before
``t`` when the data has it. An asset without a kline of that bar but with CoinGecko prices is quoted at
CoinGecko's latest price when it is recent enough (within two of its samples); otherwise it gets nothing:
its last price stands for that one bar (the data's resolution is the backtest's staleness bound) and then
it is stale, as a silent venue is live. A missing price is never filled in.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from hedgewatch.service.constituents import Candidate
from hedgewatch.service.events import Candle, Event, Funding, MarkPrice, OpenInterest, Quote
from hedgewatch.service.history.files import Bar, History

EXCHANGE = "history"


def candle(asset: str, tf: int, b: Bar) -> Candle:
    close_ts = b.open_ts + tf
    return Candle(EXCHANGE, asset, f"{asset}USDT", tf, b.open_ts, b.open, b.high, b.low, b.close, b.volume,
                  True, close_ts, close_ts)


class Series:
    """Time-sorted (ts, values...) rows with a forward cursor: the latest row at or before a time."""

    def __init__(self, rows: list[tuple[float, ...]]) -> None:
        self.rows = rows
        self.ts = [r[0] for r in rows]
        self.i = -1

    def at(self, t: float) -> tuple[float, ...] | None:
        ts, i = self.ts, self.i
        while i + 1 < len(ts) and ts[i + 1] <= t:
            i += 1
        self.i = i
        return self.rows[i] if i >= 0 else None

    def before(self, t: float) -> tuple[float, ...] | None:
        i = bisect.bisect_right(self.ts, t) - 1
        return self.rows[i] if i >= 0 else None


@dataclass
class Gaps:
    """What the data did not have, for the report."""

    missing_bars: dict[str, int] = field(default_factory=dict)
    no_funding: set[str] = field(default_factory=set)
    funding_before_first: dict[str, int] = field(default_factory=dict)


class Replay:
    """Bar closes from ``start`` (exclusive of bars opening before it) to ``end`` at ``interval_s``."""

    def __init__(self, history: History, venues: dict[str, list[str]], interval_s: int, start: float,
                 end: float, *, candles: bool = True) -> None:
        assets = sorted(venues)
        self.assets = assets
        self.venues = venues
        self.candles = candles  # the klines as live candles, when a source subscribes them
        self.interval = interval_s
        self.start, self.end = start, end
        self.bars: dict[str, dict[float, Bar]] = {
            a: {b.open_ts: b for b in history.klines.get(a, {}).get(interval_s, [])} for a in assets}
        self.funding = {a: Series(list(history.funding[a])) for a in assets if history.funding.get(a)}
        self.oi = {a: Series(list(history.open_interest[a])) for a in assets if history.open_interest.get(a)}
        self.cg = {a: Series(list(history.prices[a])) for a in assets if history.prices.get(a)}
        self.cg_step = {a: _step(history.prices[a]) for a in self.cg}
        self.caps = {a: Series(list(history.market_caps[a])) for a in history.market_caps}
        self.volumes = {a: Series(list(history.volumes[a])) for a in history.volumes}
        self._aggregated: dict[tuple[str, int], list[Bar]] = {}  # warm-up bars, shared by the overlays
        self.gaps = Gaps(no_funding={a for a in assets if a not in self.funding and self.bars[a]})

    def times(self) -> list[float]:
        step = self.interval
        first = (self.start // step) * step + step
        out, t = [], first
        while t <= self.end:
            out.append(t)
            t += step
        return out

    def events(self, t: float) -> list[Event]:
        out: list[Event] = []
        open_ts = t - self.interval
        for a in self.assets:
            b = self.bars[a].get(open_ts)
            inst = f"{a}USDT"
            venues = self.venues[a]
            if b is not None:
                for v in venues:
                    out.append(Quote(v, a, inst, b.close, b.close, t, t))
                out.append(MarkPrice(EXCHANGE, a, inst, b.close, None, t, t))
                if self.candles:
                    out.append(candle(a, self.interval, b))
            else:
                price = self._coingecko(a, t)
                if price is None:
                    self.gaps.missing_bars[a] = self.gaps.missing_bars.get(a, 0) + 1
                    continue
                for v in venues:
                    out.append(Quote(v, a, inst, price, price, t, t, market="spot"))
            f = self.funding.get(a)
            row = f.at(t) if f is not None else None
            if row is None and b is not None:
                if f is not None:
                    self.gaps.funding_before_first[a] = self.gaps.funding_before_first.get(a, 0) + 1
                row = (t, 0.0, 8.0)  # no funding known: zero, and the report says so
            if row is not None:
                out.append(Funding(EXCHANGE, a, inst, row[1], row[2], None, t, t))
            oi = self.oi.get(a)
            sample = oi.at(t) if oi is not None else None
            if sample is not None:
                out.append(OpenInterest(EXCHANGE, a, inst, sample[1], sample[1], sample[2], t, t))
        return out

    def _coingecko(self, asset: str, t: float) -> float | None:
        s = self.cg.get(asset)
        if s is None:
            return None
        row = s.at(t)
        if row is None or t - row[0] > 2 * self.cg_step[asset]:
            return None
        return row[1]

    def candidates(self, t: float) -> list[Candidate] | None:
        """Market caps (and volumes) as of ``t``, for selection and cap weights; None without cap data."""
        if not self.caps:
            return None
        out = []
        for a, s in self.caps.items():
            row = s.before(t)
            if row is None:
                continue
            vol = self.volumes.get(a)
            v = vol.before(t) if vol is not None else None
            out.append(Candidate(a, row[1], v[1] if v else 0.0))
        return sorted(out, key=lambda c: -c.market_cap_usd)

    def warmup(self, needs: dict[str, dict[int, int]], history: History) -> list[Candle]:
        """Closed klines before the start for the indicators, as the daemon fetches from the venues: the
        last ``n`` per asset and timeframe, aggregated from a finer interval where the data has no such
        file."""
        out = []
        for asset, per_tf in needs.items():
            have = history.klines.get(asset, {})
            for tf, n in per_tf.items():
                key = (asset, tf)
                if key not in self._aggregated:
                    self._aggregated[key] = have.get(tf) or _aggregate(have, tf)
                bars = self._aggregated[key]
                closed = [b for b in bars if b.open_ts + tf <= self.start]
                out += [candle(asset, tf, b) for b in closed[-n:]]
        return out


def _aggregate(have: dict[int, list[Bar]], tf: int) -> list[Bar]:
    finer = [f for f in sorted(have) if f < tf and tf % f == 0]
    if not finer:
        return []
    src = have[finer[-1]]
    groups: dict[float, list[Bar]] = {}
    for b in src:
        groups.setdefault(b.open_ts - b.open_ts % tf, []).append(b)
    want = tf // finer[-1]
    return [Bar(t, g[0].open, max(x.high for x in g), min(x.low for x in g), g[-1].close,
                sum(x.volume for x in g)) for t, g in sorted(groups.items()) if len(g) == want]


def _step(rows: list[tuple[float, float]]) -> float:
    if len(rows) < 2:
        return 86400.0
    gaps = sorted(b[0] - a[0] for a, b in itertools.pairwise(rows))
    return gaps[len(gaps) // 2]


def events_iter(replay: Replay) -> Iterator[tuple[float, list[Event]]]:
    for t in replay.times():
        yield t, replay.events(t)

"""Candles consistent with the path: generated history before the start, recorded minute bars after it.

History is the path's hourly closes (``PricePath.history``); bars finer than an hour inside the history are
filled by a deterministic log-linear bridge between the hourly closes with a small hashed wiggle, so the same
request always answers the same numbers. After the start each venue records one-minute bars from the mids
it quotes and the trades it prints; coarser bars aggregate them.
"""

from __future__ import annotations

import functools
import math
import random

from hedgewatch.connectors.simulator.market import HOUR_MS, SECONDS_PER_YEAR, PricePath

MINUTE_MS = 60_000
WEEK_OFFSET_MS = 4 * 86_400_000  # epoch 0 is a Thursday; weekly bars open on Monday 00:00 UTC

INTERVALS_MS = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": 24 * HOUR_MS,
    "3d": 72 * HOUR_MS,
    "1w": 168 * HOUR_MS,
}

HOURLY_VOLUME_RATIO = 0.02  # a venue's mean hourly volume per unit of open interest (times its share)

# A bar: [open_ms, open, high, low, close, volume, trades]
Bar = list[float]


def _mix(x: int) -> int:
    """splitmix64: a fast, well-spread integer hash for deterministic noise."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _uniform(key: int) -> float:
    return (_mix(key) >> 11) / float(1 << 53)


def bar_open(t_ms: int, interval_ms: int) -> int:
    """Open time of the bar of ``interval_ms`` holding ``t_ms`` (weeks open on Monday, as venues do)."""
    if interval_ms == INTERVALS_MS["1w"]:
        return t_ms - (t_ms - WEEK_OFFSET_MS) % interval_ms
    return t_ms - t_ms % interval_ms


class CandleBook:
    """Bars of one venue: the shared history plus this venue's recorded minutes."""

    def __init__(self, path: PricePath, venue_key: int, volume_share: float = 1.0) -> None:
        self.path = path
        self._key = venue_key
        self.volume_share = volume_share
        self._live: dict[str, dict[int, Bar]] = {a: {} for a in path.all_names}
        self._asset_keys = {a: _mix(hash_str(f"{path.scenario.seed}:{a}")) for a in path.all_names}

    def hourly_volume(self, asset: str) -> float:
        """This venue's mean hourly volume of ``asset`` in base units, the basis of history and live alike:
        2% of the asset's open interest an hour, times the venue's share of the market (its ``oi_share``).
        A history hour draws from 0.5x to 1.5x of it; live trades print it on average (``VenueModel``)."""
        return self.path.specs[asset].open_interest * HOURLY_VOLUME_RATIO * self.volume_share

    def record(self, asset: str, t_ms: int, price: float, qty: float = 0.0, trades: int = 0) -> None:
        """Fold a quote (qty 0) or a trade into the minute bar holding ``t_ms``."""
        m = t_ms - t_ms % MINUTE_MS
        bars = self._live[asset]
        bar = bars.get(m)
        if bar is None:
            bars[m] = [m, price, price, price, price, qty, trades]
            return
        bar[2] = max(bar[2], price)
        bar[3] = min(bar[3], price)
        bar[4] = price
        bar[5] += qty
        bar[6] += trades

    def current(self, asset: str, interval_ms: int, now_ms: int) -> Bar:
        """The open bar holding ``now_ms``."""
        start = bar_open(now_ms, interval_ms)
        bar = self._bar(asset, start, interval_ms, now_ms)
        if bar is None:
            p = self.path.price(asset)
            bar = [start, p, p, p, p, 0.0, 0]
        return bar

    def klines(
        self,
        asset: str,
        interval_ms: int,
        now_ms: int,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[Bar]:
        """Up to ``limit`` bars, oldest first: from ``start_ms`` when given, else the latest ones up to
        ``end_ms`` (default now). Bars with no data (before the history, after now) are left out."""
        end = min(end_ms if end_ms is not None else now_ms, now_ms)
        first_hist = self.path.history_end_ms - len(self.path.history[asset]) * HOUR_MS
        if start_ms is not None:
            opens = range(bar_open(max(start_ms, first_hist), interval_ms), end + 1, interval_ms)
            chosen = list(opens)[:limit]
        else:
            last = bar_open(end, interval_ms)
            chosen = [last - i * interval_ms for i in range(limit)]
            chosen = [t for t in reversed(chosen) if t + interval_ms > first_hist]
        bars = []
        for t in chosen:
            bar = self._bar(asset, t, interval_ms, now_ms)
            if bar is not None:
                bars.append(bar)
        return bars

    def _bar(self, asset: str, start: int, interval_ms: int, now_ms: int) -> Bar | None:
        step = HOUR_MS if interval_ms % HOUR_MS == 0 else MINUTE_MS
        parts = []
        t = start
        stop = min(start + interval_ms, now_ms + 1)
        while t < stop:
            part = self._unit(asset, t, step)
            if part is not None:
                parts.append(part)
            t += step
        if not parts:
            return None
        return [
            start,
            parts[0][1],
            max(p[2] for p in parts),
            min(p[3] for p in parts),
            parts[-1][4],
            sum(p[5] for p in parts),
            int(sum(p[6] for p in parts)),
        ]

    def _unit(self, asset: str, t: int, step: int) -> Bar | None:
        path = self.path
        live_from = path.start_ms - path.start_ms % MINUTE_MS
        if step == HOUR_MS and t < live_from < t + HOUR_MS:  # the hour holding the start: minute by minute
            parts = [p for m in range(t, t + HOUR_MS, MINUTE_MS) if (p := self._unit(asset, m, MINUTE_MS))]
            return [
                t,
                parts[0][1],
                max(p[2] for p in parts),
                min(p[3] for p in parts),
                parts[-1][4],
                sum(p[5] for p in parts),
                sum(p[6] for p in parts),
            ]
        if t >= live_from:
            if step == MINUTE_MS:
                return self._live[asset].get(t)
            minutes = [b for m, b in self._live[asset].items() if t <= m < t + HOUR_MS]
            if not minutes:
                return None
            minutes.sort(key=lambda b: b[0])
            return [
                t,
                minutes[0][1],
                max(b[2] for b in minutes),
                min(b[3] for b in minutes),
                minutes[-1][4],
                sum(b[5] for b in minutes),
                sum(b[6] for b in minutes),
            ]
        hour = t - t % HOUR_MS
        close = path.history_close(asset, hour)
        if close is None:
            if hour >= path.history_end_ms:  # the partial hour between the last history close and the start
                close = path.specs[asset].price
            else:
                return None
        prev = path.history_close(asset, hour - HOUR_MS) or close
        if step == HOUR_MS:
            return self._synth(asset, t, prev, close, HOUR_MS)
        return self._synth(
            asset,
            t,
            self._minute_close(asset, hour, prev, close, t - MINUTE_MS),
            self._minute_close(asset, hour, prev, close, t),
            MINUTE_MS,
        )

    def _minute_close(self, asset: str, hour: int, prev: float, close: float, t: int) -> float:
        """Price at the end of the minute opening at ``t``: a Brownian bridge from ``prev`` (the close
        before ``hour``) to ``close``, drawn from a generator seeded by the asset and the hour."""
        if t < hour:
            return prev
        return self._bridge(asset, hour, prev, close)[(t - hour) // MINUTE_MS]

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - bounded, and the book lives as long as the simulator
    def _bridge(self, asset: str, hour: int, prev: float, close: float) -> tuple[float, ...]:
        rng = random.Random(self._asset_keys[asset] ^ hour)
        vol = self.path.specs[asset].volatility
        sd = vol * math.sqrt(MINUTE_MS / 1000.0 / SECONDS_PER_YEAR)
        walk = [0.0]
        for _ in range(60):
            walk.append(walk[-1] + sd * rng.gauss(0.0, 1.0))
        end = walk[-1]
        log_ratio = math.log(close / prev)
        return tuple(prev * math.exp(log_ratio * i / 60 + walk[i] - end * i / 60) for i in range(1, 61))

    def _synth(self, asset: str, t: int, o: float, c: float, span_ms: int) -> Bar:
        key = self._asset_keys[asset] ^ (t * 31)
        vol = self.path.specs[asset].volatility
        wiggle = vol * math.sqrt(span_ms / 1000.0 / SECONDS_PER_YEAR) * 0.5
        hi = max(o, c) * (1.0 + wiggle * _uniform(key))
        lo = min(o, c) * (1.0 - wiggle * _uniform(key + 1))
        base = self.hourly_volume(asset) * span_ms / HOUR_MS
        volume = base * (0.5 + _uniform(key + 2 + self._key))
        return [t, o, hi, lo, c, volume, int(volume * 10) + 1]


def hash_str(s: str) -> int:
    """A stable (process-independent) integer hash of a string."""
    h = 1469598103934665603
    for ch in s.encode():
        h = ((h ^ ch) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h

"""Incremental indicators over candle series and sampled signals. Each one updates in O(1) per closed bar
(or per sample) and reads in O(1), except window extremes and trendline fits, which scan a bounded window.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from hedgewatch.rules.candles import Bar


class SMA:
    """Simple moving average of the last ``n`` closed bars' closes (or volumes)."""

    def __init__(self, n: int, field: str = "close") -> None:
        self.n = n
        self.field = field
        self.values: deque[float] = deque(maxlen=n)
        self.total = 0.0
        self.updates = 0

    def on_bar(self, bar: Bar) -> None:
        v = getattr(bar, self.field)
        if len(self.values) == self.n:
            self.total -= self.values[0]
        self.values.append(v)
        self.total += v
        self.updates += 1
        if self.updates % 1024 == 0:  # bound floating-point drift of the running sum
            self.total = math.fsum(self.values)

    @property
    def value(self) -> float | None:
        return self.total / self.n if len(self.values) == self.n else None


class EMA:
    """Exponential moving average of closes, alpha = 2 / (n + 1), seeded with the SMA of the first ``n``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.alpha = 2.0 / (n + 1)
        self.seed: list[float] = []
        self.ema: float | None = None

    def on_bar(self, bar: Bar) -> None:
        if self.ema is None:
            self.seed.append(bar.close)
            if len(self.seed) == self.n:
                self.ema = sum(self.seed) / self.n
                self.seed = []
            return
        self.ema += self.alpha * (bar.close - self.ema)

    @property
    def value(self) -> float | None:
        return self.ema


class Pivots:
    """Swing pivots: a bar whose high (low) is strictly above (below) the ``strength`` bars on each side.
    A pivot is confirmed ``strength`` bars after it; ``highs``/``lows`` keep the confirmed ones as
    ``(open_ts, price)``, oldest first."""

    def __init__(self, strength: int = 3, keep: int = 64) -> None:
        self.strength = strength
        self.window: deque[Bar] = deque(maxlen=2 * strength + 1)
        self.highs: deque[tuple[float, float]] = deque(maxlen=keep)
        self.lows: deque[tuple[float, float]] = deque(maxlen=keep)

    def on_bar(self, bar: Bar) -> None:
        w = self.window
        w.append(bar)
        if len(w) < w.maxlen:  # type: ignore[operator]
            return
        mid = w[self.strength]
        others = [b for i, b in enumerate(w) if i != self.strength]
        if all(mid.high > b.high for b in others):
            self.highs.append((mid.open_ts, mid.high))
        if all(mid.low < b.low for b in others):
            self.lows.append((mid.open_ts, mid.low))

    @property
    def last_high(self) -> float | None:
        return self.highs[-1][1] if self.highs else None

    @property
    def last_low(self) -> float | None:
        return self.lows[-1][1] if self.lows else None

    def fib(self, ratio: float) -> float | None:
        """Retracement level ``ratio`` of the last swing: after an up swing (low then high) measured down
        from the high, after a down swing measured up from the low."""
        if not self.highs or not self.lows:
            return None
        (th, h), (tl, low) = self.highs[-1], self.lows[-1]
        if th >= tl:
            return h - ratio * (h - low)
        return low + ratio * (h - low)


def line_through(t1: float, p1: float, t2: float, p2: float, t: float) -> float:
    """The value at ``t`` of the straight line through two anchors."""
    if t2 == t1:
        return p2
    return p1 + (p2 - p1) * (t - t1) / (t2 - t1)


def trendline(pivots: Sequence[tuple[float, float]], bars: Sequence[Bar], start: float,
              over: bool = False) -> tuple[float, float, float, float] | None:
    """A support line under the swing lows (``over``: a resistance line over the swing highs) of the pivots
    from ``start`` on, as its two anchors ``(t1, p1, t2, p2)``; None when no line qualifies.

    The line runs through two swing pivots and is never crossed between them: every swing pivot between
    the anchors is on its side (at or above a support, at or below a resistance), and so is every close of
    ``bars`` from the first anchor's bar to the second's. Of the lines that qualify, the one whose second
    anchor is the latest pivot it can be, and for that anchor the longest (its first anchor the earliest):
    the last edge of the pivots' lower (upper) hull. Price after the second anchor may cross it: that is
    the break the rules watch."""
    pts = [p for p in pivots if p[0] >= start]
    sign = -1.0 if over else 1.0  # a support: what lies between must be >= the line; a resistance: <=
    for j in range(len(pts) - 1, 0, -1):
        t2, p2 = pts[j]
        for i in range(j):
            t1, p1 = pts[i]
            if t2 == t1:
                continue
            slope = (p2 - p1) / (t2 - t1)
            tol = 1e-9 * max(abs(p1), abs(p2))

            def clear(t: float, v: float, t1: float = t1, p1: float = p1, slope: float = slope,
                      tol: float = tol) -> bool:
                return sign * (v - (p1 + slope * (t - t1))) >= -tol

            if all(clear(t, v) for t, v in pts[i + 1:j]) and all(
                    clear(b.open_ts, b.close) for b in bars if t1 <= b.open_ts <= t2):
                return t1, p1, t2, p2
    return None


# Candlestick patterns (rules/SIGNALS.md): the thresholds, as fractions of a bar's range or body.
DOJI_BODY_RATIO = 0.1  # doji: body at most 10 % of the range
SHADOW_BODY_MULTIPLE = 2.0  # hammer / shooting star: the long shadow at least twice the body
SHORT_SHADOW_RATIO = 0.1  # ... and the other shadow at most 10 % of the range
PATTERNS = ("bullish_engulfing", "bearish_engulfing", "doji", "hammer", "shooting_star")


def candle_pattern(name: str, bar: Bar, prev: Bar | None) -> bool | None:
    """Whether ``bar`` (after ``prev``, for the two-bar patterns) forms the pattern ``name``; None when a
    two-bar pattern has no previous bar."""
    body = abs(bar.close - bar.open)
    rng = bar.high - bar.low
    upper = bar.high - max(bar.open, bar.close)
    lower = min(bar.open, bar.close) - bar.low
    if name in ("bullish_engulfing", "bearish_engulfing"):
        if prev is None:
            return None
        if name == "bullish_engulfing":  # a bearish bar, then a bullish body that covers its body
            return (prev.close < prev.open and bar.close > bar.open
                    and bar.open <= prev.close and bar.close >= prev.open
                    and bar.close - bar.open > prev.open - prev.close)
        return (prev.close > prev.open and bar.close < bar.open
                and bar.open >= prev.close and bar.close <= prev.open
                and bar.open - bar.close > prev.close - prev.open)
    if rng <= 0:
        return False
    if name == "doji":
        return body <= DOJI_BODY_RATIO * rng
    if name == "hammer":
        return lower >= SHADOW_BODY_MULTIPLE * body and upper <= SHORT_SHADOW_RATIO * rng and lower > 0
    if name == "shooting_star":
        return upper >= SHADOW_BODY_MULTIPLE * body and lower <= SHORT_SHADOW_RATIO * rng and upper > 0
    raise ValueError(f"unknown candlestick pattern '{name}'")


def floor_pivots(bar: Bar) -> dict[str, float]:
    """Classic floor-trader levels from one (daily) bar: P, R1..R3, S1..S3."""
    p = (bar.high + bar.low + bar.close) / 3.0
    rng = bar.high - bar.low
    return {
        "P": p, "R1": 2 * p - bar.low, "S1": 2 * p - bar.high, "R2": p + rng, "S2": p - rng,
        "R3": bar.high + 2 * (p - bar.low), "S3": bar.low - 2 * (bar.high - p),
    }


class History:
    """A signal sampled over time (at most one sample per ``spacing_s``), kept for ``horizon_s``: window
    extremes, averages and changes for funding and open interest."""

    def __init__(self, horizon_s: float, spacing_s: float) -> None:
        self.horizon_s = horizon_s
        self.spacing_s = spacing_s
        self.samples: deque[tuple[float, float]] = deque()

    def widen(self, horizon_s: float) -> None:
        """Keep at least ``horizon_s``; beyond a day samples thin out (at most ~4096 kept) so memory and
        window scans stay bounded; funding moves every few hours, so nothing is lost."""
        if horizon_s > self.horizon_s:
            self.horizon_s = horizon_s
            self.spacing_s = max(self.spacing_s, horizon_s / 4096)

    def add(self, ts: float, value: float) -> None:
        s = self.samples
        if s and ts - s[-1][0] < self.spacing_s:
            # Within one spacing the latest value wins, at the sample's time (the first sample, the base of
            # the oldest window, is kept as it was).
            if len(s) > 1 and ts >= s[-1][0]:
                s[-1] = (s[-1][0], value)
            return
        s.append((ts, value))
        cutoff = ts - self.horizon_s - self.spacing_s
        while len(s) > 2 and s[1][0] <= cutoff:
            s.popleft()

    def window(self, now: float, window_s: float) -> list[float]:
        start = now - window_s
        return [v for t, v in self.samples if t >= start]

    def change(self, now: float, window_s: float) -> float | None:
        """Relative change from the sample at or just before ``now - window_s`` to the latest; None until
        the history covers the window."""
        s = self.samples
        if len(s) < 2 or s[0][0] > now - window_s:
            return None
        start = now - window_s
        base = s[0][1]
        for t, v in s:
            if t > start:
                break
            base = v
        if base == 0:
            return None
        return s[-1][1] / base - 1.0

    def dump(self) -> list[list[float]]:
        return [[t, v] for t, v in self.samples]

    def load(self, rows: list[list[float]]) -> None:
        self.samples = deque((float(t), float(v)) for t, v in rows)


MIN_OI_COVERAGE = 0.5  # an open-interest change over no more of the open interest than this is unavailable


def _nan(v: float | None) -> float:
    return float("nan") if v is None else float(v)


class OpenInterestHistory:
    """Open interest per (asset, venue), sampled on one shared clock, for changes **in contracts** over the
    same venues at both ends of a window.

    A sample holds each venue's open interest in base units and in USD (NaN where the venue was not fresh).
    ``change`` compares, venue by venue, the sample at the window's start with the venues' current figures,
    over only the venues present at both ends, and values the contracts of every asset at its current
    price: ``sum(p_a x (base_now - base_then)) / sum(p_a x base_then)``. So a rally with no new contracts
    reads 0 %, and a venue that stops reporting drops out of both ends instead of reading as a fall. The
    coverage (the open interest of the venues counted over all the venues known at either end, valued
    now) comes with it; at or below ``MIN_OI_COVERAGE`` (half) the change is unavailable."""

    def __init__(self, horizon_s: float = 0.0, spacing_s: float = 60.0, max_samples: int = 2048,
                 usd: bool = True) -> None:
        self.horizon_s = 0.0
        self.spacing_s = self._min_spacing = spacing_s
        self.max_samples = max_samples
        self.track_usd = usd  # keep the USD figures too (for the USD change beside the one in contracts)
        self.times: list[float] = []
        self.base: dict[str, array] = {}
        self.usd: dict[str, array] = {}
        self.widen(horizon_s)

    def widen(self, horizon_s: float) -> None:
        """Keep at least ``horizon_s``; samples thin out beyond ``max_samples`` per venue so memory (and a
        persisted copy) stays bounded."""
        if horizon_s > self.horizon_s:
            self.horizon_s = horizon_s
            self.spacing_s = max(self._min_spacing, horizon_s / self.max_samples)

    def add(self, ts: float, rows: Mapping[str, tuple[float, float | None]]) -> None:
        """Sample ``rows`` (``"ASSET/venue"`` -> (base units, USD or None)) of the venues fresh at ``ts``,
        at most once per spacing."""
        if self.horizon_s <= 0 or (self.times and ts - self.times[-1] < self.spacing_s):
            return
        n = len(self.times)
        self.times.append(ts)
        for key in rows.keys() - self.base.keys():
            self.base[key] = array("d", [math.nan] * n)
            if self.track_usd:
                self.usd[key] = array("d", [math.nan] * n)
        for key, col in self.base.items():
            b, u = rows.get(key, (None, None))
            col.append(_nan(b))
            if self.track_usd:
                self.usd[key].append(_nan(u))
        cutoff = ts - self.horizon_s - self.spacing_s
        drop = bisect.bisect_right(self.times, cutoff) - 1
        if drop > 0 and len(self.times) - drop >= 2:
            del self.times[:drop]
            for key in list(self.base):
                del self.base[key][:drop]
                if self.track_usd:
                    del self.usd[key][:drop]
                if all(math.isnan(x) for x in self.base[key]) and key not in rows:
                    del self.base[key]
                    self.usd.pop(key, None)

    def change(self, now: float, window_s: float, rows: Mapping[str, tuple[float, float | None]],
               prices: Mapping[str, float]) -> dict[str, float] | None:
        """``{"contracts": relative change in contracts, "usd": relative change of the USD open interest
        over the same venues, "coverage": share of the open interest counted}``, or None until the history
        covers the window (its first sample at most a quarter window before the start) or when the venues
        at both ends carry no more than ``MIN_OI_COVERAGE`` of it."""
        start = now - window_s
        i = bisect.bisect_right(self.times, start) - 1
        if i < 0 or self.times[i] < start - max(2 * self.spacing_s, 0.25 * window_s):
            return None
        num = den = covered = total = usd_now = usd_then = 0.0
        for key in rows.keys() | self.base.keys():
            p = prices.get(key.partition("/")[0])
            if p is None:
                continue
            then = self.base[key][i] if key in self.base else math.nan
            cur = rows.get(key)
            if cur is not None and not math.isnan(then):
                num += p * (cur[0] - then)
                den += p * then
                covered += p * cur[0]
                usd_now += cur[1] if cur[1] is not None else p * cur[0]
                u = self.usd[key][i] if self.track_usd else math.nan
                usd_then += u if not math.isnan(u) else p * then
            total += p * (cur[0] if cur is not None else then if not math.isnan(then) else 0.0)
        if den <= 0 or total <= 0 or covered / total <= MIN_OI_COVERAGE:
            return None
        usd = usd_now / usd_then - 1.0 if usd_then > 0 and self.track_usd else math.nan
        return {"contracts": num / den, "usd": usd,
                "coverage": covered / total}

    def dump(self) -> dict[str, Any]:
        def col(a: array) -> list[float | None]:  # 9 significant digits: changes of 1e-9 do not matter
            return [None if math.isnan(x) else float(f"{x:.9g}") for x in a]

        return {"t": list(self.times),
                "v": {k: [col(self.base[k]), col(self.usd[k]) if self.track_usd else []] for k in self.base}}

    def load(self, state: Mapping[str, Any]) -> None:
        times = [float(t) for t in state.get("t") or []]
        cols = state.get("v") or {}
        if not isinstance(cols, Mapping) or any(
                not (isinstance(v, list) and len(v) == 2 and len(v[0]) == len(times))
                for v in cols.values()):
            return
        self.times = times
        self.base = {str(k): array("d", map(_nan, v[0])) for k, v in cols.items()}
        self.usd = {str(k): array("d", map(_nan, v[1]) if len(v[1]) == len(times) else [math.nan] * len(times))
                    for k, v in cols.items()} if self.track_usd else {}

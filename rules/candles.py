"""Candles at one timeframe, built incrementally from ticks and from finer (or equal) venue klines.

A series keeps the bar being formed and a bounded deque of closed bars. Klines and ticks may be mixed:
a closed kline of exactly the series' timeframe replaces whatever was aggregated for its bucket, finer
klines are merged into the bucket, and anything older than the last closed bar is ignored (history only
moves forward). Klines between the last closed bar and the bar being formed are history arriving after
live ticks started the current bar (the daemon evaluates before its kline bootstrap returns): they fill
that gap, in order, as if they had come first. Listeners are called with each bar as it closes, so
indicators update in O(1).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class Bar:
    open_ts: float
    open: float
    high: float
    low: float
    close: float
    volume: float


WEEK_S = 604_800
WEEK_OFFSET_S = 345_600  # the epoch fell on a Thursday; the venues' weeks start on Monday 00:00 UTC


def bar_open(ts: float, timeframe_s: float) -> float:
    """The start of the bar of ``timeframe_s`` holding ``ts``: UTC-aligned, weeks from Monday 00:00 UTC as the
    venues open them (Binance ``1w``, Bybit ``W``, OKX ``1Wutc``)."""
    if timeframe_s % WEEK_S == 0:
        return ts - (ts - WEEK_OFFSET_S) % timeframe_s
    return ts - ts % timeframe_s


class CandleSeries:
    """Bars of ``timeframe_s`` seconds; keeps ``maxlen`` closed bars."""

    def __init__(self, timeframe_s: int, maxlen: int = 64) -> None:
        self.timeframe_s = timeframe_s
        self.closed: deque[Bar] = deque(maxlen=max(maxlen, 2))
        self.forming: Bar | None = None
        self.backfill: Bar | None = None  # an older bucket's bar being filled by late history klines
        self.listeners: list[Callable[[Bar], None]] = []

    def ensure_capacity(self, n: int) -> None:
        """Keep at least ``n`` closed bars from now on."""
        if n > (self.closed.maxlen or 0):
            self.closed = deque(self.closed, maxlen=n)

    def bucket(self, ts: float) -> float:
        return bar_open(ts, self.timeframe_s)

    def _close_forming(self) -> None:
        bar = self.forming
        if bar is None:
            return
        self.forming = None
        if self.backfill is not None:  # history that ended mid-bucket is as complete as it will get
            back, self.backfill = self.backfill, None
            self._append(back)
        self._append(bar)

    def _append(self, bar: Bar) -> None:
        self.closed.append(bar)
        for listener in self.listeners:
            listener(bar)

    def _advance(self, bucket: float) -> bool:
        """Make ``bucket`` the forming bar's bucket; False when it is in the past."""
        if self.closed and bucket <= self.closed[-1].open_ts:
            return False
        if self.forming is not None:
            if bucket < self.forming.open_ts:
                return False
            if bucket > self.forming.open_ts:
                self._close_forming()
        return True

    def roll(self, ts: float) -> None:
        """Close the forming bar if ``ts`` is past its end (time moves on without ticks)."""
        if self.forming is not None and ts >= self.forming.open_ts + self.timeframe_s:
            self._close_forming()

    def tick(self, ts: float, price: float, volume: float = 0.0) -> None:
        b = self.bucket(ts)
        if not self._advance(b):
            return
        bar = self.forming
        if bar is None:
            self.forming = Bar(b, price, price, price, price, volume)
            return
        if price > bar.high:
            bar.high = price
        if price < bar.low:
            bar.low = price
        bar.close = price
        bar.volume += volume

    def add(self, open_ts: float, timeframe_s: int, o: float, h: float, low: float, c: float, v: float,
            closed: bool) -> bool:
        """Merge one kline; returns False when it does not fit this series (coarser, misaligned, old)."""
        tf = self.timeframe_s
        if timeframe_s > tf or tf % timeframe_s:
            return False
        b = self.bucket(open_ts)
        live = self.forming
        if live is not None and b < live.open_ts and not (self.closed and b <= self.closed[-1].open_ts):
            # history behind the live bar: fill the gap with the live bar set aside meanwhile
            self.forming, self.backfill = self.backfill, None
            try:
                return self._merge(b, open_ts, timeframe_s, o, h, low, c, v, closed)
            finally:
                self.backfill, self.forming = self.forming, live
        return self._merge(b, open_ts, timeframe_s, o, h, low, c, v, closed)

    def _merge(self, b: float, open_ts: float, timeframe_s: int, o: float, h: float, low: float, c: float,
               v: float, closed: bool) -> bool:
        tf = self.timeframe_s
        if not self._advance(b):
            return False
        if timeframe_s == tf:
            self.forming = Bar(b, o, h, low, c, v)
            if closed:
                self._close_forming()
            return True
        bar = self.forming
        if bar is None:
            self.forming = Bar(b, o, h, low, c, v if closed else 0.0)
        else:
            bar.high = max(bar.high, h)
            bar.low = min(bar.low, low)
            bar.close = c
            # An unclosed finer kline is revised later; count its volume only once it closes.
            if closed:
                bar.volume += v
        if closed and open_ts + timeframe_s >= b + tf:
            self._close_forming()
        return True

    def credit_volume(self, open_ts: float, timeframe_s: int, amount: float) -> None:
        """Add ``amount`` to the volume of the bar (forming, or one of the last few closed) that contains
        the finer kline starting at ``open_ts``: klines close after their bucket, often when the bar here
        has just closed."""
        if timeframe_s > self.timeframe_s or self.timeframe_s % timeframe_s:
            return
        b = self.bucket(open_ts)
        if self.forming is not None and self.forming.open_ts == b:
            self.forming.volume += amount
            return
        for k in range(1, min(3, len(self.closed)) + 1):
            if self.closed[-k].open_ts == b:
                self.closed[-k].volume += amount
                return

    def last(self, ago: int) -> Bar | None:
        """``ago`` = 0: the forming bar (else the last closed); 1: the last closed bar; 2: the one before."""
        if ago == 0:
            return self.forming if self.forming is not None else (self.closed[-1] if self.closed else None)
        if ago <= len(self.closed):
            return self.closed[-ago]
        return None

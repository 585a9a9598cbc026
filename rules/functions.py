"""The indicator functions rules can call (``sma(50, "1d")``, ``level("R1")``, ...): each call with literal
arguments registers its indicator once and returns its env key and a getter. Mixed into ``SignalBook``,
which owns the series, histories and snapshot these read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hedgewatch.rules.candles import CandleSeries
from hedgewatch.rules.durations import format_timeframe, parse_duration, parse_timeframe
from hedgewatch.rules.indicators import (
    EMA,
    PATTERNS,
    SMA,
    History,
    OpenInterestHistory,
    Pivots,
    candle_pattern,
    floor_pivots,
    line_through,
    trendline,
)

Getter = Callable[[], Any]

FUNCTIONS = ("sma", "ema", "open", "high", "low", "close", "volume", "volume_sma", "highest", "lowest",
             "swing_high", "swing_low", "fib", "level", "trendline", "funding_max", "funding_min",
             "funding_avg", "oi_change", "asset_price", "asset_funding", "asset_oi", "asset_volume_24h",
             "asset_sma", *PATTERNS)
CONDITIONS = frozenset(PATTERNS)  # the functions that are conditions (booleans), not numbers
FLOOR_LEVELS = ("P", "R1", "R2", "R3", "S1", "S2", "S3")
DEFAULT_TRENDLINES: dict[str, dict[str, Any]] = {
    # A support line under the daily swing lows of the last 180 days: the "long-term trendline" of the matrix.
    "long_term": {"fit": "lows", "timeframe": "1d", "window": "180d"},
}


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _epoch(t: Any) -> float:
    if isinstance(t, str):
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    return float(t)


def _int(v: Any, what: str, lo: int = 1, hi: int = 100_000) -> int:
    if isinstance(v, str) or int(v) != v or not lo <= v <= hi:
        raise ValueError(f"{what} must be a whole number between {lo} and {hi}, got {v!r}")
    return int(v)


def _str(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{what} must be a string, got {v!r}")
    return v


def _arity(args: tuple[Any, ...], lo: int, hi: int, name: str) -> None:
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise ValueError(f"takes {want} arguments, got {len(args)}")


class IndicatorFunctions:
    """``_f_<name>(args) -> (key, getter)`` for every function in FUNCTIONS."""

    index: str
    levels: dict[str, float]
    trendlines: dict[str, dict[str, Any]]
    pivot_strength: int
    assets: tuple[str, ...]
    series: dict[tuple[str, int], CandleSeries]
    pivots: dict[tuple[str, int], Pivots]
    funding: History
    oi: OpenInterestHistory
    oi_now: dict[str, tuple[float, float | None]]
    prices: dict[str, float]
    snap: dict[str, Any]
    deriv: dict[str, Any]
    now: float
    needs: dict[tuple[str, int], int]

    def _series(self, asset: str, tf: int, keep: int = 2, history: int = 0) -> CandleSeries:
        """The series of ``asset`` ("" for the index) at ``tf``, keeping ``keep`` closed bars; ``history`` is
        how many bars of klines the indicator wants at start (see ``SignalBook.history_needed``)."""
        s = self.series.get((asset, tf))
        if s is None:
            s = self.series[(asset, tf)] = CandleSeries(tf, keep)
        s.ensure_capacity(keep)
        self.needs[(asset, tf)] = max(self.needs.get((asset, tf), 0), keep, history)
        return s

    def _asset(self, v: Any) -> str:
        """An asset the config knows (``assets``; anything when it lists none), upper case."""
        asset = _str(v, "the asset").upper()
        if self.assets and asset not in self.assets:
            raise ValueError(f"unknown asset '{asset}' (the config's assets: {', '.join(self.assets)})")
        return asset

    def _tf(self, v: Any) -> int:
        return parse_timeframe(_str(v, "the timeframe"))

    def _asset_field(self, section: str, field: str, args: tuple[Any, ...], prefix: str
                     ) -> tuple[str, Getter]:
        _arity(args, 1, 1, prefix)
        asset = self._asset(args[0])
        return f"{prefix}_{asset}", lambda: ((self.snap.get(section) or {}).get(asset) or {}).get(field)

    # --- indicator functions ----------------------------------------------------------------------------

    def _ma(self, cls: type, args: tuple[Any, ...], name: str, asset: str = "", field: str = "close"
            ) -> tuple[str, Getter]:
        _arity(args, 1, 2, name)
        n = _int(args[0], "the length")
        tf = self._tf(args[1]) if len(args) > 1 else 86400
        ind = SMA(n, field) if cls is SMA else EMA(n)
        # an EMA forgets its seed after a few lengths: ask for three
        self._series(asset, tf, history=n if cls is SMA else 3 * n).listeners.append(ind.on_bar)
        prefix = f"{name}_{asset}" if asset else name
        return f"{prefix}_{n}_{format_timeframe(tf)}", lambda: ind.value

    def _f_sma(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._ma(SMA, args, "sma")

    def _f_ema(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._ma(EMA, args, "ema")

    def _f_volume_sma(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        # Read from the closed bars rather than kept incrementally: constituent klines credit their volume
        # to a bar that may have just closed (see on_candle).
        _arity(args, 1, 2, "volume_sma")
        n = _int(args[0], "the length")
        tf = self._tf(args[1]) if len(args) > 1 else 86400
        s = self._series("", tf, n)

        def get() -> float | None:
            if len(s.closed) < n:
                return None
            return sum(s.closed[-k].volume for k in range(1, n + 1)) / n

        return f"volume_sma_{n}_{format_timeframe(tf)}", get

    def _f_asset_sma(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        _arity(args, 2, 3, "asset_sma")
        asset = self._asset(args[0])
        return self._ma(SMA, args[1:], "asset_sma", asset=asset)

    def _bar_field(self, field: str, args: tuple[Any, ...], default_ago: int) -> tuple[str, Getter]:
        _arity(args, 0, 2, field)
        tf = self._tf(args[0]) if args else 86400
        ago = _int(args[1], "'ago'", 0, 10_000) if len(args) > 1 else default_ago
        s = self._series("", tf, ago + 1)

        def get() -> float | None:
            bar = s.last(ago)
            return None if bar is None else getattr(bar, field)

        return f"{field}_{format_timeframe(tf)}_{ago}", get

    def _f_open(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._bar_field("open", args, 0)

    def _f_high(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._bar_field("high", args, 1)

    def _f_low(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._bar_field("low", args, 1)

    def _f_close(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._bar_field("close", args, 1)

    def _f_volume(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._bar_field("volume", args, 0)

    def _pattern(self, name: str, args: tuple[Any, ...]) -> tuple[str, Getter]:
        """A candlestick pattern on the bar ``ago`` (default 1, the last closed) of the index's ``tf`` bars."""
        _arity(args, 0, 2, name)
        tf = self._tf(args[0]) if args else 86400
        ago = _int(args[1], "'ago'", 0, 10_000) if len(args) > 1 else 1
        s = self._series("", tf, ago + 2)

        def get() -> bool | None:
            bar = s.last(ago)
            if bar is None:
                return None
            # the bar before it (``last(0)`` is the last closed bar while none is forming)
            before = 1 if ago == 0 and s.forming is not None else max(ago, 1) + 1
            return candle_pattern(name, bar, s.last(before))

        return f"{name}_{format_timeframe(tf)}_{ago}", get

    def _f_bullish_engulfing(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._pattern("bullish_engulfing", args)

    def _f_bearish_engulfing(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._pattern("bearish_engulfing", args)

    def _f_doji(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._pattern("doji", args)

    def _f_hammer(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._pattern("hammer", args)

    def _f_shooting_star(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._pattern("shooting_star", args)

    def _extreme(self, args: tuple[Any, ...], name: str) -> tuple[str, Getter]:
        _arity(args, 1, 2, name)
        n = _int(args[0], "the length")
        tf = self._tf(args[1]) if len(args) > 1 else 86400
        s = self._series("", tf, n)
        hi = name == "highest"

        def get() -> float | None:
            if len(s.closed) < n:
                return None
            bars = list(s.closed)[-n:]
            return max(b.high for b in bars) if hi else min(b.low for b in bars)

        return f"{name}_{n}_{format_timeframe(tf)}", get

    def _f_highest(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._extreme(args, "highest")

    def _f_lowest(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._extreme(args, "lowest")

    def _pivots(self, tf: int) -> Pivots:
        p = self.pivots.get(("", tf))
        if p is None:
            p = self.pivots[("", tf)] = Pivots(self.pivot_strength)
            self._series("", tf, history=2 * self.pivot_strength + 30).listeners.append(p.on_bar)
        return p

    def _f_swing_high(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        _arity(args, 0, 1, "swing_high")
        tf = self._tf(args[0]) if args else 86400
        p = self._pivots(tf)
        return f"swing_high_{format_timeframe(tf)}", lambda: p.last_high

    def _f_swing_low(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        _arity(args, 0, 1, "swing_low")
        tf = self._tf(args[0]) if args else 86400
        p = self._pivots(tf)
        return f"swing_low_{format_timeframe(tf)}", lambda: p.last_low

    def _f_fib(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        _arity(args, 1, 2, "fib")
        if isinstance(args[0], str) or not 0 <= args[0] <= 2:
            raise ValueError(f"the ratio must be a number between 0 and 2, got {args[0]!r}")
        ratio = float(args[0])
        tf = self._tf(args[1]) if len(args) > 1 else 86400
        p = self._pivots(tf)
        return f"fib_{_fmt(ratio)}_{format_timeframe(tf)}", lambda: p.fib(ratio)

    def _f_level(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        _arity(args, 1, 1, "level")
        name = _str(args[0], "the level name")
        if name in self.levels:
            value = self.levels[name]
            return f"level_{name}", lambda: value
        if name in FLOOR_LEVELS:
            daily = self._series("", 86400)

            def get() -> float | None:
                bar = daily.last(1)
                return None if bar is None else floor_pivots(bar)[name]

            return f"level_{name}", get
        known = ", ".join([*self.levels, *FLOOR_LEVELS])
        raise ValueError(f"unknown level '{name}' (known: {known}; name levels under rules.levels)")

    def _f_trendline(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        _arity(args, 1, 1, "trendline")
        name = _str(args[0], "the trendline name")
        spec = self.trendlines.get(name)
        if spec is None:
            raise ValueError(f"unknown trendline '{name}' (known: {', '.join(self.trendlines)})")
        if spec.get("anchors"):
            (t1, p1), (t2, p2) = ((_epoch(t), float(p)) for t, p in spec["anchors"])
            return f"trendline_{name}", lambda: line_through(t1, p1, t2, p2, self.now)
        tf = parse_timeframe(spec.get("timeframe", "1d"))
        window = parse_duration(spec.get("window", "180d"))
        p = self._pivots(tf)
        bars = self._series("", tf, keep=int(window // tf) + self.pivot_strength)
        over = spec.get("fit", "lows") == "highs"
        points = p.highs if over else p.lows
        cache: dict[str, Any] = {"key": None, "line": None}

        def get() -> float | None:
            # refitted only when a bar closed (new pivots, closes, or the window moved on by a bar)
            key = bars.closed[-1].open_ts if bars.closed else None
            if key != cache["key"]:
                cache["key"] = key
                cache["line"] = trendline(points, bars.closed, self.now - window, over)
            line = cache["line"]
            if line is None:
                return None
            t1, p1, t2, p2 = line
            return line_through(t1, p1, t2, p2, self.now)

        return f"trendline_{name}", get

    def _window(self, args: tuple[Any, ...], name: str, hist: History | OpenInterestHistory
                ) -> tuple[str, float]:
        _arity(args, 1, 1, name)
        text = _str(args[0], "the window")
        w = parse_duration(text)
        if not 60 <= w <= 90 * 86400:
            raise ValueError(f"the window must be between 1m and 90d, got '{text}'")
        hist.widen(w)
        return text, w

    def _funding_window(self, args: tuple[Any, ...], name: str, agg: Callable[[list[float]], float]
                        ) -> tuple[str, Getter]:
        text, w = self._window(args, name, self.funding)

        def get() -> float | None:
            vals = self.funding.window(self.now, w)
            return agg(vals) if vals else None

        return f"{name}_{text}", get

    def _f_funding_max(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._funding_window(args, "funding_max", max)

    def _f_funding_min(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._funding_window(args, "funding_min", min)

    def _f_funding_avg(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._funding_window(args, "funding_avg", lambda v: sum(v) / len(v))

    def _f_oi_change(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        text, w = self._window(args, "oi_change", self.oi)

        def get() -> float | None:
            published = (self.deriv.get("open_interest_change") or {}).get(text)
            if published is not None:
                return float(published)
            ch = self.oi.change(self.now, w, self.oi_now, self.prices)
            return None if ch is None else ch["contracts"]

        return f"oi_change_{text}", get

    def _f_asset_price(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._asset_field("constituents", "price", args, "asset_price")

    def _f_asset_funding(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._asset_field("assets", "funding_rate_8h", args, "asset_funding")

    def _f_asset_oi(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._asset_field("assets", "open_interest_usd", args, "asset_oi")

    def _f_asset_volume_24h(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._asset_field("assets", "volume_24h", args, "asset_volume_24h")

"""The signals rules can read (documented in ``rules/SIGNALS.md``) and the book that computes them.

``SignalBook`` is the expression compiler's resolver: a plain name maps to a snapshot field, and a call
with literal arguments (``sma(50, "1d")``) registers the indicator it needs, once, under a stable key
(``sma_50_1d``). Per evaluation, ``update`` feeds the snapshot to the candle series and histories and
returns the env: every registered key with its value, or None when the signal is not available yet.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rules.candles import CandleSeries
from rules.durations import format_timeframe, parse_duration, parse_timeframe
from rules.expr import BOOL, NUM
from rules.indicators import EMA, SMA, History, Pivots, fit_line, floor_pivots, line_through
from service.events import Candle

Getter = Callable[[], Any]
SYNTHETIC = "synthetic"  # the exchange name of index bars back-cast from constituent klines

_DERIV_NUM = ("futures_price", "basis", "basis_ratio", "basis_annualized", "funding_rate_8h",
              "funding_annualized", "open_interest_usd", "roll_cost_annualized")
_ALIASES = {"funding": "funding_rate_8h", "oi": "open_interest_usd"}
PLAIN: dict[str, str] = {
    "price": NUM, "ath": NUM, "atl": NUM, "volume_24h": NUM, "confidence": NUM, "sources_min": NUM,
    "index_ok": BOOL, "index_degraded": BOOL, "index_stale": BOOL,
    "contango": BOOL, "backwardation": BOOL, "flat": BOOL,
    **dict.fromkeys(_DERIV_NUM, NUM), **dict.fromkeys(_ALIASES, NUM),
}
FUNCTIONS = ("sma", "ema", "open", "high", "low", "close", "volume", "volume_sma", "highest", "lowest",
             "swing_high", "swing_low", "fib", "level", "trendline", "funding_max", "funding_min",
             "funding_avg", "oi_change", "asset_price", "asset_funding", "asset_oi", "asset_volume_24h",
             "asset_sma")
FLOOR_LEVELS = ("P", "R1", "R2", "R3", "S1", "S2", "S3")
DEFAULT_TRENDLINES: dict[str, dict[str, Any]] = {
    # Fitted through the daily swing lows of the last 180 days: the "long-term trendline" of the matrix.
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


class SignalBook:
    """Registry and calculator of every signal the loaded rules use, for one index."""

    def __init__(self, index: str, levels: dict[str, float] | None = None,
                 trendlines: dict[str, dict[str, Any]] | None = None, pivot_strength: int = 3,
                 assets: tuple[str, ...] = ()) -> None:
        self.index = index
        self.levels = dict(levels or {})
        self.trendlines = {**DEFAULT_TRENDLINES, **(trendlines or {})}
        self.pivot_strength = pivot_strength
        self.assets = tuple(assets)
        self.getters: dict[str, Getter] = {}
        self.series: dict[tuple[str, int], CandleSeries] = {}
        self.pivots: dict[tuple[str, int], Pivots] = {}
        self.funding = History(86400.0, 60.0)
        self.oi = History(86400.0, 60.0)
        self.snap: dict[str, Any] = {}
        self.deriv: dict[str, Any] = {}
        self.index_klines = False
        self.ath: float | None = None
        self.atl: float | None = None
        self.now = 0.0

    # --- resolver ---------------------------------------------------------------------------------------

    def name(self, name: str) -> tuple[str, str] | None:
        typ = PLAIN.get(name)
        if typ is None:
            return None
        key = _ALIASES.get(name, name)
        if key not in self.getters:
            self.getters[key] = self._plain_getter(key)
        return key, typ

    def suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, [*PLAIN, *FUNCTIONS], n=1)
        return f" (did you mean '{close[0]}'?)" if close else ""

    def is_function(self, name: str) -> bool:
        return name in FUNCTIONS

    def call(self, name: str, args: tuple[Any, ...]) -> tuple[str, str] | None:
        method = getattr(self, "_f_" + name, None)
        if name not in FUNCTIONS or method is None:
            return None
        key, getter = method(args)
        self.getters.setdefault(key, getter)
        return key, NUM

    # --- data in ----------------------------------------------------------------------------------------

    def on_candle(self, c: Candle) -> None:
        """A venue kline: into the series of its asset (the index's own, or a constituent's). While no
        kline of the index itself has been seen, a constituent's closed kline also credits its USD volume
        to the index bars it falls in (the index's price bars come from the snapshots)."""
        asset = "" if c.asset == self.index else c.asset
        if asset == "" and c.exchange != SYNTHETIC:
            self.index_klines = True
        for (a, _tf), s in self.series.items():
            if a == asset:
                s.add(c.open_ts, c.timeframe_s, c.open, c.high, c.low, c.close, c.volume, c.closed)
            elif a == "" and c.closed and not self.index_klines and asset in self.assets:
                s.credit_volume(c.open_ts, c.timeframe_s, c.volume * c.close)
        if asset == "" and c.closed:
            self._extremes(c.high, c.low)

    def update(self, snapshot: dict[str, Any], now: float) -> dict[str, Any]:
        """Take one index snapshot and return the env (key -> value or None) for the rules."""
        self.snap = snapshot
        self.deriv = snapshot.get("derivatives") or {}
        self.now = now
        ts = snapshot.get("ts") or now
        level = snapshot.get("level")
        consts = snapshot.get("constituents") or {}
        for (asset, _tf), s in self.series.items():
            price = level if asset == "" else (consts.get(asset) or {}).get("price")
            if price is not None:
                s.tick(ts, float(price))
            else:
                s.roll(ts)
        fr = self.deriv.get("funding_rate_8h")
        if fr is not None:
            self.funding.add(ts, float(fr))
        oi = self.deriv.get("open_interest_usd")
        if oi is not None:
            self.oi.add(ts, float(oi))
        return {k: g() for k, g in self.getters.items()}

    def commit(self) -> None:
        """After the rules saw this evaluation: the price joins the all-time extremes (so ``price > ath``
        means a new high in this evaluation)."""
        level = self.snap.get("level")
        if level is not None:
            self._extremes(float(level), float(level))

    def _extremes(self, high: float, low: float) -> None:
        self.ath = high if self.ath is None or high > self.ath else self.ath
        self.atl = low if self.atl is None or low < self.atl else self.atl

    # --- state ------------------------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {"ath": self.ath, "atl": self.atl, "funding": self.funding.dump(), "oi": self.oi.dump()}

    def load(self, state: dict[str, Any]) -> None:
        for name in ("ath", "atl"):
            v = state.get(name)
            if v is not None:
                self._extremes(v, v)
        self.funding.load(state.get("funding") or [])
        self.oi.load(state.get("oi") or [])

    # --- plumbing ---------------------------------------------------------------------------------------

    def _series(self, asset: str, tf: int, keep: int = 2) -> CandleSeries:
        s = self.series.get((asset, tf))
        if s is None:
            s = self.series[(asset, tf)] = CandleSeries(tf, keep)
        s.ensure_capacity(keep)
        return s

    def _tf(self, v: Any) -> int:
        return parse_timeframe(_str(v, "the timeframe"))

    def _plain_getter(self, key: str) -> Getter:
        if key == "price":
            return lambda: self.snap.get("level")
        if key == "ath":
            return lambda: self.ath
        if key == "atl":
            return lambda: self.atl
        if key in _DERIV_NUM:
            return lambda: self.deriv.get(key)
        if key in ("contango", "backwardation", "flat"):
            return lambda: None if self.deriv.get("state") is None else self.deriv.get("state") == key
        if key.startswith("index_"):
            want = key[6:]
            return lambda: None if self.snap.get("status") is None else self.snap.get("status") == want
        if key == "volume_24h":
            return self._volume_24h
        if key == "confidence":
            return lambda: max((c.get("confidence") or 0.0 for c in self._consts()), default=None)
        if key == "sources_min":
            return lambda: min((c.get("sources") or 0 for c in self._consts()), default=None)
        raise AssertionError(key)

    def _consts(self) -> list[dict[str, Any]]:
        return [c for c in (self.snap.get("constituents") or {}).values() if c]

    def _volume_24h(self) -> float | None:
        raw = [(a or {}).get("volume_24h") for a in (self.snap.get("assets") or {}).values()]
        vols = [float(v) for v in raw if v is not None]
        return sum(vols) if vols else None

    def _asset_field(self, section: str, field: str, args: tuple[Any, ...], prefix: str
                     ) -> tuple[str, Getter]:
        _arity(args, 1, 1, prefix)
        asset = _str(args[0], "the asset").upper()
        if self.assets and asset not in self.assets:
            raise ValueError(f"unknown asset '{asset}' (index constituents: {', '.join(self.assets)})")
        return f"{prefix}_{asset}", lambda: ((self.snap.get(section) or {}).get(asset) or {}).get(field)

    # --- indicator functions ----------------------------------------------------------------------------

    def _ma(self, cls: type, args: tuple[Any, ...], name: str, asset: str = "", field: str = "close"
            ) -> tuple[str, Getter]:
        _arity(args, 1, 2, name)
        n = _int(args[0], "the length")
        tf = self._tf(args[1]) if len(args) > 1 else 86400
        ind = SMA(n, field) if cls is SMA else EMA(n)
        self._series(asset, tf).listeners.append(ind.on_bar)
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
        asset = _str(args[0], "the asset").upper()
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
            self._series("", tf).listeners.append(p.on_bar)
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
        points = p.lows if spec.get("fit", "lows") == "lows" else p.highs

        def get() -> float | None:
            start = self.now - window
            return fit_line([pt for pt in points if pt[0] >= start], self.now)

        return f"trendline_{name}", get

    def _window(self, args: tuple[Any, ...], name: str, hist: History) -> tuple[str, float]:
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
            return published if published is not None else self.oi.change(self.now, w)

        return f"oi_change_{text}", get

    def _f_asset_price(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._asset_field("constituents", "price", args, "asset_price")

    def _f_asset_funding(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._asset_field("assets", "funding_rate_8h", args, "asset_funding")

    def _f_asset_oi(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._asset_field("assets", "open_interest_usd", args, "asset_oi")

    def _f_asset_volume_24h(self, args: tuple[Any, ...]) -> tuple[str, Getter]:
        return self._asset_field("assets", "volume_24h", args, "asset_volume_24h")

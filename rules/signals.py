"""The signals rules can read (documented in ``rules/SIGNALS.md``) and the book that computes them.

``SignalBook`` is the expression compiler's resolver: a plain name maps to a snapshot field, and a call
with literal arguments (``sma(50, "1d")``) registers the indicator it needs, once, under a stable key
(``sma_50_1d``). Per evaluation, ``update`` feeds the snapshot to the candle series and histories and
returns the env: every registered key with its value, or None when the signal is not available yet.
"""

from __future__ import annotations

import difflib
from typing import Any

from hedgewatch.rules.candles import CandleSeries
from hedgewatch.rules.expr import BOOL, NUM
from hedgewatch.rules.functions import CONDITIONS, DEFAULT_TRENDLINES, FUNCTIONS, Getter, IndicatorFunctions
from hedgewatch.rules.indicators import History, OpenInterestHistory, Pivots
from hedgewatch.service.events import Candle

SYNTHETIC = "synthetic"  # the exchange name of index bars back-cast from constituent klines
# Daily bars asked for when a rule reads the all-time high or low: more than any venue serves (about 13.7
# years; the venues' perpetuals were listed from 2019 on), so the fetch pages back to the listing.
FULL_HISTORY_DAYS = 5000

_DERIV_NUM = ("futures_price", "basis", "basis_ratio", "basis_annualized", "funding_rate_8h",
              "funding_annualized", "open_interest_usd", "roll_cost_annualized")
_ALIASES = {"funding": "funding_rate_8h", "oi": "open_interest_usd"}
PLAIN: dict[str, str] = {
    "price": NUM, "ath": NUM, "atl": NUM, "volume_24h": NUM, "confidence": NUM, "sources_min": NUM,
    "index_ok": BOOL, "index_degraded": BOOL, "index_stale": BOOL,
    "contango": BOOL, "backwardation": BOOL, "flat": BOOL,
    **dict.fromkeys(_DERIV_NUM, NUM), **dict.fromkeys(_ALIASES, NUM),
}


class SignalBook(IndicatorFunctions):
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
        # in contracts only, at most 360 samples a venue (4 min apart over a day): it is persisted with the
        # rule state
        self.oi = OpenInterestHistory(max_samples=360, usd=False)
        self.oi_now: dict[str, tuple[float, float | None]] = {}  # venues' open interest now
        self.prices: dict[str, float] = {}  # constituents' prices now
        self.snap: dict[str, Any] = {}
        self.deriv: dict[str, Any] = {}
        self.index_klines = False
        # per constituent, the venue whose volume is the index's (``rules.synth.volume_venues``)
        self.volume_venue: dict[str, str] = {}
        self.needs: dict[tuple[str, int], int] = {}
        self.ath: float | None = None
        self.atl: float | None = None
        self.now = 0.0

    # --- resolver ---------------------------------------------------------------------------------------

    def name(self, name: str) -> tuple[str, str] | None:
        typ = PLAIN.get(name)
        if typ is None:
            return None
        key = _ALIASES.get(name, name)
        if key in ("ath", "atl"):  # the whole daily history the venues serve
            self.needs[("", 86400)] = max(self.needs.get(("", 86400), 0), FULL_HISTORY_DAYS)
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
        return key, BOOL if name in CONDITIONS else NUM

    def history_needed(self) -> dict[str, dict[int, int]]:
        """Bars of klines to bootstrap, per asset ("" is the index: its own klines, or every constituent's
        for the back-cast) and timeframe in seconds."""
        out: dict[str, dict[int, int]] = {}
        for (asset, tf), n in sorted(self.needs.items()):
            out.setdefault(asset, {})[tf] = n
        return out

    # --- data in ----------------------------------------------------------------------------------------

    def on_candle(self, c: Candle) -> None:
        """A venue kline: into the series of its asset (the index's own, or a constituent's). While no
        kline of the index itself has been seen, a constituent's closed kline from its volume venue also
        credits its USD volume to the index bars it falls in (the index's price bars come from the
        snapshots)."""
        asset = "" if c.asset == self.index else c.asset
        if asset == "" and c.exchange != SYNTHETIC:
            self.index_klines = True
        for (a, _tf), s in self.series.items():
            if a == asset:
                s.add(c.open_ts, c.timeframe_s, c.open, c.high, c.low, c.close, c.volume, c.closed)
            elif (a == "" and c.closed and not self.index_klines and asset in self.assets
                  and self.volume_venue.get(asset, c.exchange) == c.exchange):
                s.credit_volume(c.open_ts, c.timeframe_s, c.volume * c.close)
        if asset == "" and c.closed:
            # on the index's level basis: a back-cast bar's close is the index level at that moment (its high
            # and low only bound levels the basket may never have reached together); the index's own klines
            # are its levels
            if c.exchange == SYNTHETIC:
                self._extremes(c.close, c.close)
            else:
                self._extremes(c.high, c.low)

    def update(self, snapshot: dict[str, Any], now: float) -> dict[str, Any]:
        """Take one index snapshot and return the env (key -> value or None) for the rules."""
        self.snap = snapshot
        self.deriv = snapshot.get("derivatives") or {}
        self.now = now
        ts = now if snapshot.get("ts") is None else snapshot["ts"]
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
        if self.oi.horizon_s > 0:
            self.prices = {a: float(c["price"]) for a, c in consts.items() if c and c.get("price") is not None}
            self.oi_now = {
                f"{a}/{venue}": (float(row[0]), None if row[1] is None else float(row[1]))
                for a, info in (snapshot.get("assets") or {}).items()
                for venue, row in ((info or {}).get("open_interest_venues") or {}).items()}
            self.oi.add(ts, self.oi_now)
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
        oi = state.get("oi")
        if isinstance(oi, dict):  # (an older state kept USD totals, not comparable: left out)
            self.oi.load(oi)

    # --- plumbing ---------------------------------------------------------------------------------------

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


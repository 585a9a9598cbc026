"""Derivatives signals for the index: the futures leg, basis, funding, open interest, term structure.

Pure bookkeeping fed by normalized events, summarized on demand (at publish time, ~1/s) rather than per
tick, because nothing here has to move with every quote:

- Futures leg: the synthetic basket perpetual, ``sum(mark_i * units_i) / divisor`` with the index's own
  units and divisor (so it is in index points), or a configured real contract's mark price.
- Basis ``F - S``, basis ratio ``F / S - 1``, annualized ``ratio * 365 / days_to_expiry`` for a dated
  contract; for a perpetual the annualized carry comes from funding (DESIGN "Futures leg").
- Index funding: the notional-weighted mean of the members' funding rates, each normalized to 8 h (a
  member's rate is the mean over its venues); annualized cost ``rate_8h * 3 * 365``.
- Open interest summed in USD (the venue's USD figure, else base units at the oracle price), and its change
  over configured windows **in contracts** (base units), venue by venue over the venues fresh at both ends
  of the window and valued at today's prices, with the USD change over the same venues beside it and the
  share of the open interest it covers (``rules.indicators.OpenInterestHistory``).
- Term structure of dated futures per asset, and the roll cost ``(F_next / F_front - 1) * 365 / days``.
"""

from __future__ import annotations

import calendar
import re
import statistics
from collections.abc import Mapping
from datetime import UTC, datetime

from hedgewatch.rules.indicators import OpenInterestHistory
from hedgewatch.service.config import IndexConfig
from hedgewatch.service.events import Candle, Funding, Market, MarkPrice, OpenInterest

DAY_S = 86400.0
HOUR_S = 3600
FUNDINGS_PER_YEAR_8H = 3 * 365
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_YYMMDD = re.compile(r"[-_](\d{2})(\d{2})(\d{2})$")
_DDMONYY = re.compile(r"-(\d{1,2})([A-Za-z]{3})(\d{2})$")
SETTLEMENT_HOUR_UTC = 8  # Binance, OKX, Bybit and Deribit settle dated futures at 08:00 UTC
OI_SAMPLE_S = 10.0


def expiry_from_instrument(instrument: str) -> float | None:
    """The settlement time of a dated future from its venue id (``BTCUSDT_250328``, ``BTC-USD-250328``,
    ``BTC-28MAR25``); None for perpetuals and unknown shapes."""
    m = _YYMMDD.search(instrument)
    if m:
        y, mo, d = (int(g) for g in m.groups())
    else:
        m = _DDMONYY.search(instrument)
        if not m or m.group(2).upper() not in _MONTHS:
            return None
        d, mo, y = int(m.group(1)), _MONTHS[m.group(2).upper()], int(m.group(3))
    try:
        return datetime(2000 + y, mo, d, SETTLEMENT_HOUR_UTC, tzinfo=UTC).timestamp()
    except ValueError:
        return None


def parse_expiry(text: str | None) -> float | None:
    """An ISO date/time (UTC when naive) as epoch seconds."""
    if not text:
        return None
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(hour=dt.hour or SETTLEMENT_HOUR_UTC, tzinfo=UTC)
    return dt.timestamp()


def roll_cost(f_front: float, f_next: float, days: float) -> float:
    """Annualized cost of rolling from the front to the next contract."""
    return (f_next / f_front - 1.0) * 365.0 / days


def _fresh_mean(values: Mapping[str, tuple[float, float]], limit: float) -> float | None:
    xs = [v for v, ts in values.values() if ts >= limit]
    return sum(xs) / len(xs) if xs else None


def _fresh_median(values: Mapping[str, tuple[float, float]], limit: float) -> float | None:
    xs = sorted(v for v, ts in values.values() if ts >= limit)
    if not xs:
        return None
    h = len(xs) // 2
    return xs[h] if len(xs) % 2 else (xs[h - 1] + xs[h]) / 2


class Derivatives:
    """Latest derivatives data per asset and venue, and the index-level signals computed from it."""

    def __init__(self, config: IndexConfig) -> None:
        self._cfg = config
        self._max_age = config.derivatives_max_age_s
        self.marks: dict[str, dict[str, tuple[float, float]]] = {}
        self.funding: dict[str, dict[str, tuple[float, float]]] = {}
        self.funding_unknown_interval: dict[str, dict[str, tuple[float, float]]] = {}
        self.oi: dict[str, dict[str, tuple[float, float | None, float]]] = {}
        self.dated: dict[str, dict[str, tuple[float, float, float, str]]] = {}
        # USD volume per asset, venue and hour: a closed hourly kline's, else the sum of closed finer klines
        self._hourly: dict[tuple[str, str], dict[float, float]] = {}
        self._minutes: dict[tuple[str, str], dict[float, float]] = {}
        # the one venue per asset whose volume counts (the index's volume basis, ``volume_venues``)
        self.volume_venue: dict[str, str] = {}
        self.contract: tuple[float, float] | None = None
        self._contract_expiry = parse_expiry(config.futures.expiry)
        self._oi_history = OpenInterestHistory(max(config.oi_windows_s.values(), default=0.0), OI_SAMPLE_S)

    # --- feeding -----------------------------------------------------------------------------------

    def on_mark(self, ev: MarkPrice, usd_rate: float) -> None:
        fut = self._cfg.futures
        if fut.mode == "contract" and ev.instrument == fut.symbol and fut.exchange in (None, ev.exchange):
            self.contract = (ev.mark, ev.ts_recv)
        if ev.market == Market.PERP:
            self.marks.setdefault(ev.asset, {})[ev.exchange] = (ev.mark * usd_rate, ev.ts_recv)
        elif ev.market == Market.FUTURE:
            self.on_dated(ev.exchange, ev.asset, ev.instrument, ev.mark * usd_rate, ev.ts_recv)

    def on_dated(self, exchange: str, asset: str, instrument: str, price: float, ts: float) -> None:
        expiry = expiry_from_instrument(instrument)
        if expiry is not None:
            self.dated.setdefault(asset, {})[f"{exchange}:{instrument}"] = (expiry, price, ts, exchange)

    def on_funding(self, ev: Funding) -> None:
        """A venue's rate, normalized to 8 h by its own interval. A rate whose interval is unknown
        (``interval_h`` 0: a ccxt venue that states none) cannot be normalized and is left out of the 8 h
        figures; guessing 8 h would read a 1 h rate as an eighth of what it is."""
        if not ev.interval_h > 0:
            self.funding_unknown_interval.setdefault(ev.asset, {})[ev.exchange] = (ev.rate, ev.ts_recv)
            self.funding.get(ev.asset, {}).pop(ev.exchange, None)
            return
        self.funding_unknown_interval.get(ev.asset, {}).pop(ev.exchange, None)
        self.funding.setdefault(ev.asset, {})[ev.exchange] = (ev.rate * 8.0 / ev.interval_h, ev.ts_recv)

    def on_open_interest(self, ev: OpenInterest) -> None:
        self.oi.setdefault(ev.asset, {})[ev.exchange] = (ev.base, ev.usd, ev.ts_recv)

    def on_candle(self, ev: Candle, usd_rate: float) -> None:
        """Keep the venues' USD volume per hour for the last 24 h, from closed klines of an hour or finer
        (history gives hours, the live stream minutes; an hour's own kline wins over its minutes)."""
        tf = ev.timeframe_s
        if not ev.closed or tf > HOUR_S or HOUR_S % tf:
            return
        key = (ev.asset, ev.exchange)
        hour = ev.open_ts - ev.open_ts % HOUR_S
        usd = ev.volume * ev.close * usd_rate
        if tf == HOUR_S:
            bars = self._hourly.setdefault(key, {})
            bars[hour] = usd
        else:
            bars = self._minutes.setdefault(key, {})
            bars[hour] = bars.get(hour, 0.0) + usd
        if len(bars) > 26:
            for t in sorted(bars)[: len(bars) - 26]:
                del bars[t]

    # --- per-asset summaries -----------------------------------------------------------------------

    def asset_funding(self, asset: str, now: float) -> float | None:
        return _fresh_mean(self.funding.get(asset, {}), now - self._max_age)

    def asset_mark(self, asset: str, now: float) -> float | None:
        return _fresh_median(self.marks.get(asset, {}), now - self._max_age)

    def asset_open_interest(self, asset: str, price: float | None, now: float) -> float | None:
        limit = now - self._max_age
        total, seen = 0.0, False
        for base, usd, ts in self.oi.get(asset, {}).values():
            if ts < limit:
                continue
            if usd is not None:
                total, seen = total + usd, True
            elif price is not None:
                total, seen = total + base * price, True
        return total if seen else None

    def asset_volume_24h(self, asset: str, now: float) -> float | None:
        """USD volume of the last 24 h (the hours that started within it) on the asset's volume venue;
        None until that venue has reported any."""
        venue = self.volume_venue.get(asset)
        key = (asset, venue or "")
        hourly, minutes = self._hourly.get(key, {}), self._minutes.get(key, {})
        if venue is None or not (hourly or minutes):
            return None
        start = now - DAY_S
        return sum(hourly.get(h, minutes.get(h, 0.0)) for h in hourly.keys() | minutes.keys() if h >= start)

    def term_structure(self, asset: str, now: float) -> dict[str, object] | None:
        rows = sorted(
            (exp, price, key) for key, (exp, price, ts, _) in self.dated.get(asset, {}).items()
            if exp > now and ts >= now - self._max_age
        )
        if not rows:
            return None
        curve = [{"contract": k, "expiry_ts": e, "days": (e - now) / DAY_S, "price": p} for e, p, k in rows]
        out: dict[str, object] = {"curve": curve}
        # front and next expiry (several venues may list the same one): each at its venues' median price
        expiries = sorted({e for e, _, _ in rows})
        if len(expiries) >= 2:
            front, nxt = ([p for e, p, _ in rows if e == x] for x in expiries[:2])
            out["roll_cost_annualized"] = roll_cost(statistics.median(front), statistics.median(nxt),
                                                    (expiries[1] - expiries[0]) / DAY_S)
        return out

    # --- index level -------------------------------------------------------------------------------

    def oi_rows(self, assets: Mapping[str, float | None], now: float
                ) -> dict[str, tuple[float, float | None]]:
        """``"ASSET/venue"`` -> (open interest in base units, in USD) of the venues fresh now, for
        ``assets`` (asset -> oracle price, which values a venue's base units when it states no USD)."""
        limit = now - self._max_age
        out: dict[str, tuple[float, float | None]] = {}
        for a, price in assets.items():
            for ex, (base, usd, ts) in self.oi.get(a, {}).items():
                if ts >= limit:
                    out[f"{a}/{ex}"] = (base, usd if usd is not None else
                                        None if price is None else base * price)
        return out

    def _oi_change(self, prices: Mapping[str, float], now: float
                   ) -> tuple[dict[str, float | None], dict[str, float | None], dict[str, float | None]]:
        rows = self.oi_rows(prices, now)
        self._oi_history.add(now, rows)
        contracts: dict[str, float | None] = {}
        usd: dict[str, float | None] = {}
        coverage: dict[str, float | None] = {}
        for name, window in self._cfg.oi_windows_s.items():
            ch = self._oi_history.change(now, window, rows, prices)
            contracts[name] = None if ch is None else ch["contracts"]
            usd[name] = None if ch is None else ch["usd"]
            coverage[name] = None if ch is None else ch["coverage"]
        return contracts, usd, coverage

    def summary(
        self, units: Mapping[str, float], divisor: float, prices: Mapping[str, float], level: float | None,
        now: float,
    ) -> dict[str, object]:
        """The index-level derivatives block of the snapshot."""
        value = sum(u * prices.get(a, 0.0) for a, u in units.items())
        fut_sum, covered, funding_num, funding_den, oi_total, oi_seen = 0.0, 0.0, 0.0, 0.0, 0.0, False
        for a, u in units.items():
            p = prices.get(a)
            if p is None:
                continue
            notional = u * p
            mark = self.asset_mark(a, now)
            if mark is None:
                fut_sum += notional
            else:
                fut_sum += u * mark
                covered += notional
            f = self.asset_funding(a, now)
            if f is not None:
                funding_num += notional * f
                funding_den += notional
            oi = self.asset_open_interest(a, p, now)
            if oi is not None:
                oi_total, oi_seen = oi_total + oi, True
        funding = funding_num / funding_den if funding_den > 0 else None
        futures, expiry = None, None
        if self._cfg.futures.mode == "contract":
            if self.contract is not None and self.contract[1] >= now - self._max_age:
                futures, expiry = self.contract[0], self._contract_expiry
        elif covered > 0 and divisor:
            futures = fut_sum / divisor
        out: dict[str, object] = {
            "mode": self._cfg.futures.mode,
            "futures_price": futures,
            "futures_coverage": covered / value if value else None,
            "funding_rate_8h": funding,
            "funding_annualized": None if funding is None else funding * FUNDINGS_PER_YEAR_8H,
            "open_interest_usd": oi_total if oi_seen else None,
            "open_interest_change": {},
            "open_interest_change_usd": {},
            "open_interest_change_coverage": {},
            "basis": None,
            "basis_ratio": None,
            "basis_annualized": None,
            "state": None,
        }
        if oi_seen:
            member_prices = {a: p for a in units if (p := prices.get(a)) is not None}
            (out["open_interest_change"], out["open_interest_change_usd"],
             out["open_interest_change_coverage"]) = self._oi_change(member_prices, now)
        if futures is not None and level:
            ratio = futures / level - 1.0
            band = self._cfg.flat_band_ratio
            out["basis"] = futures - level
            out["basis_ratio"] = ratio
            if expiry is not None and expiry > now:
                out["basis_annualized"] = ratio * 365.0 * DAY_S / (expiry - now)
                out["days_to_expiry"] = (expiry - now) / DAY_S
            else:
                out["basis_annualized"] = out["funding_annualized"]
            out["state"] = "contango" if ratio > band else "backwardation" if ratio < -band else "flat"
        return out

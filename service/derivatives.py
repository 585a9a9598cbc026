"""Derivatives signals for the index: the futures leg, basis, funding, open interest, term structure.

Pure bookkeeping fed by normalized events, summarized on demand (at publish time, ~1/s) rather than per
tick, because nothing here has to move with every quote:

- Futures leg: the synthetic basket perpetual, ``sum(mark_i * units_i) / divisor`` with the index's own
  units and divisor (so it is in index points), or a configured real contract read in index points through
  its multiplier (``service.futures_leg``).
- Basis ``F - S``, basis ratio ``F / S - 1``, annualized ``ratio * 365 / days_to_expiry`` for a dated
  contract; for a perpetual the annualized carry comes from funding (the contract's own rate in contract
  mode, else the index's).
- Index funding: the notional-weighted mean of the members' funding rates, each normalized to 8 h (a
  member's rate is the mean over its venues); annualized cost ``rate_8h * 3 * 365``.
- Open interest summed in USD (the venue's USD figure, else base units at the oracle price), and its change
  over configured windows **in contracts** (base units), venue by venue over the venues fresh at both ends
  of the window and valued at today's prices, with the USD change over the same venues beside it and the
  share of the open interest it covers (``rules.indicators.OpenInterestHistory``).
- Term structure of dated futures per asset, and the roll cost ``(F_next / F_front - 1) * 365 / days``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from hedgewatch.rules.indicators import OpenInterestHistory
from hedgewatch.service.config import IndexConfig
from hedgewatch.service.events import Candle, Funding, Market, MarkPrice, OpenInterest
from hedgewatch.service.expiry import expiry_from_instrument, parse_expiry
from hedgewatch.service.futures_leg import ContractLeg

__all__ = ["Derivatives", "expiry_from_instrument", "parse_expiry", "roll_cost"]

DAY_S = 86400.0
HOUR_S = 3600
FUNDINGS_PER_YEAR_8H = 3 * 365
OI_SAMPLE_S = 10.0


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
        # asset -> "exchange:instrument" -> (rate per 8 h, time): each perpetual's own rate
        self.instrument_funding: dict[str, dict[str, tuple[float, float]]] = {}
        self.oi: dict[str, dict[str, tuple[float, float | None, float]]] = {}
        self.dated: dict[str, dict[str, tuple[float, float, float, str]]] = {}
        # USD volume per asset, venue and hour: a closed hourly kline's, else the sum of closed finer klines
        self._hourly: dict[tuple[str, str], dict[float, float]] = {}
        self._minutes: dict[tuple[str, str], dict[float, float]] = {}
        # the one venue per asset whose volume counts (the index's volume basis, ``volume_venues``)
        self.volume_venue: dict[str, str] = {}
        self.leg = ContractLeg(config.futures, config.name) if config.futures.mode == "contract" else None
        self._oi_history = OpenInterestHistory(max(config.oi_windows_s.values(), default=0.0), OI_SAMPLE_S)

    # --- feeding -----------------------------------------------------------------------------------

    def on_mark(self, ev: MarkPrice, usd_rate: float) -> None:
        if self.leg is not None:
            self.leg.on_mark(ev.exchange, ev.asset, ev.instrument, ev.mark * usd_rate, ev.ts_recv)
        if ev.market == Market.PERP:
            self.marks.setdefault(ev.asset, {})[ev.exchange] = (ev.mark * usd_rate, ev.ts_recv)
        elif ev.market == Market.FUTURE:
            self.on_dated(ev.exchange, ev.asset, ev.instrument, ev.mark * usd_rate, ev.ts_recv)

    def on_dated(self, exchange: str, asset: str, instrument: str, price: float, ts: float) -> None:
        """A dated future's price in USD (a quote's mid or a mark)."""
        if self.leg is not None:
            self.leg.on_quote(exchange, asset, instrument, price, ts)
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
        rate = ev.rate * 8.0 / ev.interval_h
        self.funding.setdefault(ev.asset, {})[ev.exchange] = (rate, ev.ts_recv)
        self.instrument_funding.setdefault(ev.asset, {})[f"{ev.exchange}:{ev.instrument}"] = (rate, ev.ts_recv)
        if self.leg is not None:
            self.leg.on_funding(ev.exchange, ev.instrument, rate, ev.ts_recv)

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

    def asset_instrument_funding(self, asset: str, now: float) -> dict[str, float]:
        """``"exchange:instrument"`` -> the fresh rate per 8 h of each of the asset's perpetuals."""
        limit = now - self._max_age
        return {k: r for k, (r, ts) in sorted(self.instrument_funding.get(asset, {}).items()) if ts >= limit}

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
        now: float, underlying_price: float | None = None,
    ) -> dict[str, object]:
        """The index-level derivatives block of the snapshot; ``underlying_price`` is the oracle price of
        the contract-mode leg's underlying."""
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
        futures, contract = None, None
        if self.leg is not None:
            futures, contract = self._contract_leg(level, underlying_price, now)
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
        if contract is not None:  # with the roll this contract faces (a dated one's)
            out.update(contract=contract, roll_cost_annualized=contract.get("roll_cost_annualized"))
        if oi_seen:
            member_prices = {a: p for a in units if (p := prices.get(a)) is not None}
            (out["open_interest_change"], out["open_interest_change_usd"],
             out["open_interest_change_coverage"]) = self._oi_change(member_prices, now)
        if futures is not None and level:
            out.update(self._basis(futures, level, contract, out["funding_annualized"], now))
        return out

    def _contract_leg(self, level: float | None, underlying_price: float | None, now: float
                      ) -> tuple[float | None, dict[str, Any]]:
        """The contract-mode leg in index points and its block, with the term structure of the asset it
        tracks in the same units and, for a dated contract, that asset's roll cost."""
        assert self.leg is not None
        tracked = self.leg.tracked_asset
        ts = self.term_structure(tracked, now) if tracked else None
        futures, contract = self.leg.summary(level, underlying_price, now, self._max_age, ts)
        if not self.leg.perpetual and ts is not None:
            contract["roll_cost_annualized"] = ts.get("roll_cost_annualized")
        return futures, contract

    def _basis(self, futures: float, level: float, contract: dict[str, Any] | None, index_carry: object,
               now: float) -> dict[str, object]:
        """Basis, its ratio and state, annualized to a dated contract's expiry, else the perpetual's carry:
        a contract's own funding, else the index's."""
        expiry = None if contract is None else contract["expiry_ts"]
        carry = index_carry
        if contract is not None and contract["funding_rate_8h"] is not None:
            carry = contract["funding_rate_8h"] * FUNDINGS_PER_YEAR_8H
        ratio = futures / level - 1.0
        band = self._cfg.flat_band_ratio
        out: dict[str, object] = {"basis": futures - level, "basis_ratio": ratio}
        if expiry is not None and expiry > now:
            out["basis_annualized"] = ratio * 365.0 * DAY_S / (expiry - now)
            out["days_to_expiry"] = (expiry - now) / DAY_S
        else:
            out["basis_annualized"] = carry
        out["state"] = "contango" if ratio > band else "backwardation" if ratio < -band else "flat"
        return out

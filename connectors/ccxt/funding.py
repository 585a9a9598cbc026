"""Funding intervals of ccxt markets, from the venue's own data, never assumed.

A funding rate means nothing without its interval: 0.01% per 1 h is eight times 0.01% per 8 h. ccxt fills
``interval`` in its funding-rate structure only for some venues, so the interval of a market comes from the
first of these that knows it:

1. the funding-rate structure's ``interval`` (``"1h"``, ``"4h"``, ``"8h"``; OKX from its two funding times,
   Binance from ``fundingIntervalHours``, Bybit from ``fundingIntervalHour``);
2. the market's own listing (``info.fundingInterval`` in minutes, Bybit's instruments-info;
   ``info.fundingIntervalHours``);
3. the spacing of the last settlements in ``fetch_funding_rate_history`` (the commonest gap), re-read every
   ``HISTORY_REFRESH_S`` since venues change intervals of volatile contracts.

When none knows it the interval stays unknown (``None``; the ``Funding`` event carries ``0``) and the rate
is not normalized: downstream leaves it out of the 8 h figures rather than mistake a 1 h rate for 8 h.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

log = logging.getLogger("hedgewatch.connectors.ccxt")

HISTORY_REFRESH_S = 3600.0
HISTORY_ROWS = 6
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhd])\s*$", re.IGNORECASE)
_UNIT_H = {"m": 1 / 60, "h": 1.0, "d": 24.0}


def parse_interval(text: Any) -> float | None:
    """``"4h"`` -> 4.0, ``"30m"`` -> 0.5, ``"1d"`` -> 24.0; None for anything else."""
    if not isinstance(text, str):
        return None
    m = _INTERVAL.match(text)
    if not m:
        return None
    hours = float(m.group(1)) * _UNIT_H[m.group(2).lower()]
    return hours if hours > 0 else None


def from_market(market: dict[str, Any] | None) -> float | None:
    """The interval a market's listing states (Bybit ``fundingInterval`` minutes, ``fundingIntervalHours``)."""
    info = (market or {}).get("info") or {}
    for key, per_hour in (("fundingIntervalHours", 1.0), ("fundingIntervalHour", 1.0),
                          ("fundingInterval", 60.0)):
        try:
            value = float(info[key]) / per_hour
        except (KeyError, TypeError, ValueError):
            continue
        if value > 0:
            return value
    return None


def from_history(rows: Any) -> float | None:
    """The most common gap between consecutive settlements of a funding history, in hours (the smaller on a
    tie, so a missed settlement does not double it); None under two settlements."""
    try:
        stamps = sorted({int(r["timestamp"]) for r in rows if r.get("timestamp") is not None})
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    gaps = [b - a for a, b in itertools.pairwise(stamps) if b > a]
    if not gaps:
        return None
    counts = Counter(gaps)
    gap = min(counts, key=lambda g: (-counts[g], g))
    return round(gap / 3_600_000.0, 4)


class FundingIntervals:
    """The interval of each market, resolved as the module docstring says; ``exchange`` returns the ccxt
    exchange object of the connector (created when it runs)."""

    def __init__(self, exchange: Callable[[], Any], name: str) -> None:
        self.exchange = exchange
        self.name = name
        self.markets: dict[str, Any] = {}
        self._history: dict[str, tuple[float | None, float]] = {}

    async def hours(self, symbol: str, funding: dict[str, Any], now: float) -> float | None:
        hours = parse_interval(funding.get("interval"))
        if hours is not None:
            return hours
        hours = from_market(self.markets.get(symbol))
        if hours is not None:
            return hours
        cached = self._history.get(symbol)
        if cached is not None and now - cached[1] < HISTORY_REFRESH_S:
            return cached[0]
        hours = await self._read_history(symbol)
        self._history[symbol] = (hours, now)
        return hours

    async def _read_history(self, symbol: str) -> float | None:
        ex = self.exchange()
        if not ex.has.get("fetchFundingRateHistory"):
            log.warning("%s: %s states no funding interval and has no funding history; its interval is "
                        "unknown", self.name, symbol)
            return None
        try:
            rows = await ex.fetch_funding_rate_history(symbol, limit=HISTORY_ROWS)
        except Exception as exc:  # a venue error or a library bug: the interval stays unknown, retried later
            log.warning("%s: funding history of %s unavailable (%s: %s); its interval is unknown for now",
                        self.name, symbol, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            return None
        hours = from_history(rows)
        if hours is None:
            log.warning("%s: funding history of %s too short to tell its interval", self.name, symbol)
        return hours

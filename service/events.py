"""Normalized market-data events: the only thing that travels past a connector.

Connectors decode venue frames at the edge into these types; everything downstream (bus, oracle, index,
rules, outputs) sees nothing else. They are on the hot path, built once per frame, so they are msgspec
Structs with positional construction and no GC tracking (they hold only numbers, strings and tuples of
them, so they cannot form cycles). ``tests/bench/bench_events.py`` measured, per event: Struct 61 ns to
build, slotted dataclass 146 ns, NamedTuple 224 ns, dict 269 ns, pydantic model 1,650 ns; reading a field
costs the same as a slotted dataclass.

Conventions shared by every event:
- ``exchange`` is the venue name as ccxt spells it (``binanceusdm``, ``bybit``, ``okx``, ...).
- ``asset`` is the base asset (``BTC``); ``instrument`` is the venue's own id (``BTCUSDT``, ``BTC-USDT-SWAP``).
- ``quote`` is the quote currency of the instrument (``USDT``, ``USDC``, ``USD``); conversion to USD is the
  oracle's job, so the event keeps the venue's number untouched.
- ``market`` is ``perp``, ``future``, ``spot`` or ``index``.
- ``ts_exchange`` is the venue's event time and ``ts_recv`` our receive time, both in epoch seconds.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Market(StrEnum):
    PERP = "perp"
    FUTURE = "future"
    SPOT = "spot"
    INDEX = "index"


class Quote(msgspec.Struct, gc=False):
    """Best bid and ask of one instrument."""

    exchange: str
    asset: str
    instrument: str
    bid: float
    ask: float
    ts_exchange: float
    ts_recv: float
    quote: str = "USDT"
    market: str = Market.PERP

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) * 0.5


class Trade(msgspec.Struct, gc=False):
    """One (aggregated) trade."""

    exchange: str
    asset: str
    instrument: str
    price: float
    qty: float
    ts_exchange: float
    ts_recv: float
    quote: str = "USDT"
    market: str = Market.PERP


class MarkPrice(msgspec.Struct, gc=False):
    """A derivative's mark price and, where the venue publishes it, the venue's own spot index price."""

    exchange: str
    asset: str
    instrument: str
    mark: float
    index: float | None
    ts_exchange: float
    ts_recv: float
    quote: str = "USDT"
    market: str = Market.PERP


class Funding(msgspec.Struct, gc=False):
    """Current (predicted) funding rate of a perpetual, per funding interval, as the venue states it."""

    exchange: str
    asset: str
    instrument: str
    rate: float
    interval_h: float
    next_funding_ts: float | None
    ts_exchange: float
    ts_recv: float


class OpenInterest(msgspec.Struct, gc=False):
    """Open interest of a derivative. ``contracts`` as the venue counts them, ``base`` in base-asset units,
    ``usd`` in USD when the venue states it (else None: the consumer values ``base`` at its own price)."""

    exchange: str
    asset: str
    instrument: str
    contracts: float
    base: float
    usd: float | None
    ts_exchange: float
    ts_recv: float


class Candle(msgspec.Struct, gc=False):
    """One OHLCV bar; ``open_ts`` is the bar's start, ``timeframe_s`` its length; ``closed`` is False while
    the bar is still forming. ``volume`` is in base units."""

    exchange: str
    asset: str
    instrument: str
    timeframe_s: int
    open_ts: float
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool
    ts_exchange: float
    ts_recv: float
    market: str = Market.PERP


class CompositeIndex(msgspec.Struct, gc=False):
    """A venue's published composite index (e.g. Binance ``DEFIUSDT@compositeIndex``): its value and its
    constituents as ``(asset, weight_in_quantity, weight_in_percentage)``."""

    exchange: str
    symbol: str
    price: float
    components: tuple[tuple[str, float, float], ...]
    ts_exchange: float
    ts_recv: float


class FeedState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    SUBSCRIBED = "subscribed"
    SILENT = "silent"
    QUIET = "quiet"   # a channel past its silence bound while its connection delivers: a thin market
    DISCONNECTED = "disconnected"


class FeedStatus(msgspec.Struct, gc=False):
    """A change in a connection's or channel's life: connectors emit one on every transition so the
    oracle and the operator know which sources are live. ``channel`` is empty for the whole connection."""

    exchange: str
    channel: str
    state: str
    detail: str
    ts_recv: float


MarketEvent = Quote | Trade | MarkPrice | Funding | OpenInterest | Candle | CompositeIndex
Event = MarketEvent | FeedStatus

"""Normalized market-data events: the only thing that travels past a connector.

Connectors decode venue frames at the edge into these types; everything downstream (bus, oracle, index,
rules, outputs) sees nothing else. They are on the hot path, so they are slotted dataclasses with
positional construction (measured in ``tests/bench/bench_events.py``: about as cheap to build as a
``NamedTuple`` and cheaper to read than a dict), not pydantic models.

Conventions shared by every event:
- ``exchange`` is the venue name as ccxt spells it (``binanceusdm``, ``bybit``, ``okx``, ...).
- ``asset`` is the base asset (``BTC``); ``instrument`` is the venue's own id (``BTCUSDT``, ``BTC-USDT-SWAP``).
- ``quote`` is the quote currency of the instrument (``USDT``, ``USDC``, ``USD``); conversion to USD is the
  oracle's job, so the event keeps the venue's number untouched.
- ``market`` is ``perp``, ``future``, ``spot`` or ``index``.
- ``ts_exchange`` is the venue's event time and ``ts_recv`` our receive time, both in epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Market(StrEnum):
    PERP = "perp"
    FUTURE = "future"
    SPOT = "spot"
    INDEX = "index"


@dataclass(slots=True)
class Quote:
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


@dataclass(slots=True)
class Trade:
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


@dataclass(slots=True)
class MarkPrice:
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


@dataclass(slots=True)
class Funding:
    """Current (predicted) funding rate of a perpetual, per funding interval, as the venue states it."""

    exchange: str
    asset: str
    instrument: str
    rate: float
    interval_h: float
    next_funding_ts: float | None
    ts_exchange: float
    ts_recv: float


@dataclass(slots=True)
class OpenInterest:
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


@dataclass(slots=True)
class Candle:
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


@dataclass(slots=True)
class CompositeIndex:
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
    DISCONNECTED = "disconnected"


@dataclass(slots=True)
class FeedStatus:
    """A change in a connection's or channel's life: connectors emit one on every transition so the
    oracle and the operator know which sources are live. ``channel`` is empty for the whole connection."""

    exchange: str
    channel: str
    state: str
    detail: str
    ts_recv: float


MarketEvent = Quote | Trade | MarkPrice | Funding | OpenInterest | Candle | CompositeIndex
Event = MarketEvent | FeedStatus

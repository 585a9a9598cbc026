"""Bybit v5 wire schemas and the checks that need no connection state: the topic kinds of the routes, the
merged ``tickers`` state of a symbol, the typed ``tickers`` frame of the hot path (and the generic path's
dict as the same ``Tick``), the mark/index and derivatives checks, one side of an ``orderbook.1`` frame."""

from __future__ import annotations

from typing import Any

import msgspec

from hedgewatch.connectors.sanity import MAX_JUMP_FACTOR, MAX_PRICE, positive
from hedgewatch.service.errors import RejectedMessage

TICKERS, TRADES, KLINE, BOOK = range(4)
KLINE_S = {"1": 60, "3": 180, "5": 300, "15": 900, "30": 1800, "60": 3600, "240": 14400, "D": 86400}


QUOTE_CONFIRM_S = 1.0


class TickerState:
    """Merged ``tickers`` state of one symbol: the last accepted value of every field we use."""

    __slots__ = ("ask", "bid", "cs", "index", "interval_h", "mark", "next_ts", "oi", "oi_value", "quoted_at",
                 "rate")

    def __init__(self) -> None:
        self.bid = self.ask = self.mark = self.index = self.rate = self.oi = 0.0
        self.quoted_at = 0.0  # venue time of the last Quote emitted
        self.oi_value: float | None = None
        self.interval_h = 0.0
        self.next_ts: float | None = None
        self.cs = -1


def field_float(d: dict[str, Any], key: str) -> float | None:
    """The field as a float, None when absent or empty (Bybit sends "" for an empty side)."""
    v = d.get(key)
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise RejectedMessage("non_numeric", key) from None


class Tick(msgspec.Struct):
    """The ``tickers`` fields we use; absent ones (a delta carries only what changed) stay None."""

    bid1Price: float | None = None
    ask1Price: float | None = None
    markPrice: float | None = None
    indexPrice: float | None = None
    fundingRate: float | None = None
    fundingIntervalHour: float | None = None
    nextFundingTime: float | None = None
    openInterest: float | None = None
    openInterestValue: float | None = None


TICK_FIELDS = tuple(Tick.__struct_fields__)


def tick_from_dict(d: dict[str, Any]) -> Tick:
    """The generic path's dict (strings, "" for an empty side) as a ``Tick``."""
    return Tick(*(field_float(d, k) for k in TICK_FIELDS))


class _Frame(msgspec.Struct):
    topic: str
    type: str
    ts: int
    data: Tick | list[dict[str, Any]]
    cs: int | None = None


# The typed decoder of the hot path: numeric strings straight to floats (strict=False).
TICKERS_DECODER = msgspec.json.Decoder(_Frame, strict=False)


def check_mark(st: TickerState, mark: float | None, index: float | None) -> tuple[float, float]:
    """The merged (mark, index) after checking the new values."""
    if mark is None:
        mark = st.mark
    elif not 0.0 < mark < MAX_PRICE:
        positive(mark, "mark")
    if index is None:
        index = st.index
    elif not 0.0 < index < MAX_PRICE:
        positive(index, "index")
    if mark and index and not index / MAX_JUMP_FACTOR < mark < index * MAX_JUMP_FACTOR:
        raise RejectedMessage("absurd", "mark")
    return mark, index


def check_derivatives(t: Tick) -> None:
    if t.fundingRate is not None and not -1.0 < t.fundingRate < 1.0:
        raise RejectedMessage("absurd", "funding")
    if t.fundingIntervalHour is not None:
        positive(t.fundingIntervalHour, "interval")
    if t.openInterest is not None and not 0.0 <= t.openInterest < 1e15:
        raise RejectedMessage("non_positive" if t.openInterest < 0 else "absurd", "openInterest")
    if t.openInterestValue is not None and not 0.0 <= t.openInterestValue < 1e15:
        raise RejectedMessage("non_positive" if t.openInterestValue < 0 else "absurd", "openInterestValue")


def book_top(rows: Any, old: float, snapshot: bool) -> float:
    """The best price of one side of an ``orderbook.1`` frame: its first level (0.0 when a size of 0
    removes it); an empty side is empty in a snapshot and unchanged in a delta."""
    if not isinstance(rows, list):
        raise RejectedMessage("malformed", "book side")
    if not rows:
        return 0.0 if snapshot else old
    try:
        price, size = float(rows[0][0]), float(rows[0][1])
    except (TypeError, ValueError, IndexError):
        raise RejectedMessage("non_numeric", "book level") from None
    if size == 0.0:
        return 0.0
    return positive(price, "price")

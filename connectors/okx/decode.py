"""OKX v5 wire schemas and the decoders that need no connection state: the channel kinds of the routes,
the typed ``tickers`` frame of the hot path, the ``open-interest`` row (websocket or REST)."""

from __future__ import annotations

from typing import Any

import msgspec

from hedgewatch.connectors.base import Route, ms_of, num
from hedgewatch.service.errors import RejectedMessage
from hedgewatch.service.events import OpenInterest

TICKERS, MARK, INDEX, FUNDING, OI, TRADES, CANDLE = range(7)


class _Arg(msgspec.Struct):
    channel: str
    instId: str


class _TickerRow(msgspec.Struct):
    bidPx: float
    askPx: float
    ts: int


class _Frame(msgspec.Struct):
    arg: _Arg
    data: list[_TickerRow]


# The typed decoder of the tickers hot path: numeric strings straight to numbers (strict=False).
TICKERS_DECODER = msgspec.json.Decoder(_Frame, strict=False)


def decode_open_interest(ex: str, r: Route, d: dict[str, Any], now: float) -> OpenInterest:
    """One ``open-interest`` row (websocket channel or REST ``/api/v5/public/open-interest``)."""
    contracts = num(d, "oi")
    base = num(d, "oiCcy") if d.get("oiCcy") not in (None, "") else contracts * r.scale
    usd = num(d, "oiUsd") if d.get("oiUsd") not in (None, "") else None
    for v in (contracts, base, usd if usd is not None else 0.0):
        if not 0.0 <= v < 1e15:
            raise RejectedMessage("non_positive" if v < 0 else "absurd", "open interest")
    return OpenInterest(ex, r.asset, r.instrument, contracts, base, usd, ms_of(d, "ts"), now)

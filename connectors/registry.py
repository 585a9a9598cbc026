"""The one table of venues: each exchange id a native venue protocol serves, mapped to its descriptor (the
connector and the REST kline history, ``connectors.venue.Venue``); any other id is ccxt's. Adding a venue is
its own folder (``decode``, ``instruments``, ``history``, ``connector``, a ``VENUE`` in its ``__init__``)
and one entry in ``NATIVE``."""

from __future__ import annotations

from hedgewatch.connectors import binance, bybit, ccxt, okx
from hedgewatch.connectors.history import KlineHistory
from hedgewatch.connectors.venue import Venue

NATIVE: tuple[Venue, ...] = (binance.VENUE, bybit.VENUE, okx.VENUE)
FALLBACK: Venue = ccxt.VENUE  # every other ccxt exchange id

VENUES: dict[str, Venue] = {ex: v for v in NATIVE for ex in v.connectors}


def venue(exchange: str) -> Venue:
    """The descriptor serving ``exchange``: its native venue, else ccxt."""
    return VENUES.get(exchange, FALLBACK)


def kline_history(exchange: str) -> KlineHistory | None:
    """The native REST kline history of ``exchange``; None for one served through ccxt."""
    return venue(exchange).history.get(exchange)

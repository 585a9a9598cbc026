"""Bybit v5: linear and inverse perpetuals and spot (``bybit``).

``decode`` holds the wire schemas, ``instruments`` the instrument lists, ``history`` the REST kline history,
``connector`` the websocket protocols and the connector; ``VENUE`` registers them (``connectors.registry``)."""

from __future__ import annotations

from hedgewatch.connectors.bybit.connector import BybitConnector
from hedgewatch.connectors.bybit.history import BybitHistory
from hedgewatch.connectors.venue import Venue

VENUE = Venue("bybit", connectors={"bybit": BybitConnector}, history={"bybit": BybitHistory()})

"""OKX v5: linear and coin-margined swaps, dated futures and spot (``okx``).

``decode`` holds the wire schemas, ``instruments`` the instrument lists, ``history`` the REST kline history,
``connector`` the websocket protocol and the connector; ``VENUE`` registers them (``connectors.registry``)."""

from __future__ import annotations

from hedgewatch.connectors.okx.connector import OkxConnector
from hedgewatch.connectors.okx.history import OkxHistory
from hedgewatch.connectors.venue import Venue

VENUE = Venue("okx", connectors={"okx": OkxConnector}, history={"okx": OkxHistory()})

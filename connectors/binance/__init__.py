"""Binance futures: USDⓈ-M (``binanceusdm``) and COIN-M (``binancecoinm``) perpetuals, dated futures and
spot.

``decode`` holds the wire schemas and one decoder per message kind, ``instruments`` the instrument lists,
``history`` the REST kline history, ``connector`` the websocket protocol and the connectors; ``VENUE``
registers them (``connectors.registry``)."""

from __future__ import annotations

from hedgewatch.connectors.binance.connector import BinanceCoinmConnector, BinanceUsdmConnector
from hedgewatch.connectors.binance.history import CoinmHistory, UsdmHistory
from hedgewatch.connectors.venue import Venue

VENUE = Venue("binance", connectors={"binanceusdm": BinanceUsdmConnector, "binancecoinm": BinanceCoinmConnector},
              history={"binanceusdm": UsdmHistory(), "binancecoinm": CoinmHistory()})

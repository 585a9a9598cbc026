"""The simulated Binance futures venues: ``stream`` (the combined-stream websocket server of USDⓈ-M and
COIN-M, and spot), ``rest`` (the ``/fapi``/``/dapi``/``/api/v3`` endpoints), ``account`` (the signed account
endpoints the balances poller reads)."""

from hedgewatch.connectors.simulator.binance.stream import BinanceCoinmServer, BinanceServer

__all__ = ["BinanceCoinmServer", "BinanceServer"]

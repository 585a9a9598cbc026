"""The simulated Bybit v5 venue: ``stream`` (the public websocket server: linear, inverse and spot) and
``rest`` (the ``/v5/market`` endpoints)."""

from hedgewatch.connectors.simulator.bybit.stream import BybitServer

__all__ = ["BybitServer"]

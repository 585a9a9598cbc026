"""The simulated OKX v5 venue: ``stream`` (the ``/ws/v5/public`` and ``/ws/v5/business`` websocket server)
and ``rest`` (the ``/api/v5`` endpoints)."""

from hedgewatch.connectors.simulator.okx.stream import OkxServer

__all__ = ["OkxServer"]

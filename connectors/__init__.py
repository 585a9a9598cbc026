"""Exchange connectors: one per venue protocol, plus a ccxt-based generic one for every other exchange.

``build_connector`` is the only entry the daemon uses. A connector's ``run`` connects, subscribes and
reconnects forever (it returns only when cancelled); it hands every decoded message to ``sink`` as one
normalized event from ``service.events`` and reports its state through ``status``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from hedgewatch.service.config import SourceConfig
from hedgewatch.service.events import Event
from hedgewatch.service.metrics import Metrics


class Connector(Protocol):
    """What the daemon runs for one configured source."""

    name: str

    async def run(self) -> None:
        """Connect, subscribe and reconnect forever; returns only when cancelled."""
        ...

    def status(self) -> dict[str, Any]:
        """JSON-able state per connection and per channel: state, last message age, reconnects."""
        ...


def build_connector(source: SourceConfig, sink: Callable[[Event], None], metrics: Metrics, *,
                    clock: Callable[[], float] = time.time, **kw: Any) -> Connector:
    """The connector for ``source.exchange`` (a ccxt id) from the venue table (``connectors.registry``):
    native for ``binanceusdm``, ``binancecoinm``, ``bybit`` and ``okx``, the generic ccxt connector for any
    other id. Extra keywords (``tuning``) go to the connector."""
    from hedgewatch.connectors.registry import venue

    connector: Connector = venue(source.exchange).connector(source.exchange)(source, sink, metrics, clock=clock, **kw)
    return connector

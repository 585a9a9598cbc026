"""Any other exchange through ccxt: ``connector`` (websocket where ccxt has it, REST polling where not),
``history`` (``fetch_ohlcv``), ``funding`` (funding intervals from the exchange's own data). ``VENUE`` is
the registry's fallback for every exchange id without a native venue (``connectors.registry``); ccxt itself
is imported only when such a source is built."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hedgewatch.connectors.venue import Venue
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.events import Candle


def _connector(*args: Any, **kw: Any) -> Any:
    from hedgewatch.connectors.ccxt.connector import CcxtConnector

    return CcxtConnector(*args, **kw)


async def _history(source: SourceConfig, needs: dict[str, dict[int, int]],
                   clock: Callable[[], float]) -> list[Candle]:
    from hedgewatch.connectors.ccxt import history

    return await history.fetch_history(source, needs, clock)


def known(exchange: str) -> bool:
    """Whether ccxt has the exchange id."""
    from hedgewatch.connectors.ccxt.connector import _known

    return _known(exchange)


VENUE = Venue("ccxt", connectors={"*": _connector}, fetch_history=_history)

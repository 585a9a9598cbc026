"""What one venue's REST kline history is, for the shared driver in ``connectors.klines``: its default REST
base, its interval names, its page limits, the request of one page and the parser of its rows. Each native
venue's ``history.py`` subclasses ``KlineHistory``; the parsers are pure (a decoded REST body in,
``Candle``s out, oldest first)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from hedgewatch.connectors.instruments import Instrument
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.errors import RejectedMessage
from hedgewatch.service.events import Candle


class KlineHistory:
    """One exchange id's kline history over REST. ``page`` gives the path and parameters of the page of
    ``limit`` bars before ``before_ms`` (the newest when None); ``rows`` parses one page, oldest first.
    ``older`` is the (path, page limit) of an endpoint serving the bars past what the recent one serves
    (OKX's ``history-candles``), None when one endpoint serves them all."""

    rest: ClassVar[str] = ""
    intervals: ClassVar[dict[int, str]] = {}
    page_limit: ClassVar[int] = 1000
    max_span_s: ClassVar[int | None] = None  # the longest time one request may span
    older: ClassVar[tuple[str, int] | None] = None

    def limit(self, tf: int) -> int:
        """Bars a page may hold: the venue's limit, within the span one request may cover."""
        span = self.max_span_s
        return self.page_limit if span is None else max(1, min(self.page_limit, span // tf))

    async def instruments(self, http: httpx.AsyncClient, source: SourceConfig) -> list[Instrument]:
        raise NotImplementedError

    def page(self, inst: Instrument, tf: int, limit: int, before_ms: int | None) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def rows(self, source_id: str, inst: Instrument, tf: int, body: Any, now: float) -> list[Candle]:
        raise NotImplementedError


def candle(source_id: str, inst: Instrument, tf: int, row: list[Any], volume: float, closed: bool,
           now: float) -> Candle:
    """One REST kline row ``[open ms, o, h, l, c, ...]`` with its volume; an impossible one is rejected."""
    o, h, low, c = (float(row[i]) for i in (1, 2, 3, 4))
    if not (0 < low <= min(o, c) and max(o, c) <= h) or volume < 0:
        raise RejectedMessage("absurd", f"kline {inst.instrument} {row[0]}")
    open_ts = int(row[0]) / 1000.0
    return Candle(source_id, inst.asset, inst.instrument, tf, open_ts, o, h, low, c, volume, closed,
                  open_ts + tf, now)

"""OKX v5 kline history: ``GET /api/v5/market/candles`` (``data`` rows ``[ts, o, h, l, c, vol, volCcy,
volCcyQuote, confirm]``, newest first, up to 300, paged back with ``after``). It serves only the latest 1,440
bars, so older pages come from ``GET /api/v5/market/history-candles`` (same rows, up to 100 a page);
``volCcy`` is in base units for swaps."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from hedgewatch.connectors.history import KlineHistory, candle
from hedgewatch.connectors.instruments import Instrument, get_json
from hedgewatch.connectors.okx.instruments import okx_swaps
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.events import Candle

REST = "https://www.okx.com"
INTERVALS = {60: "1m", 180: "3m", 300: "5m", 900: "15m", 1800: "30m", 3600: "1H", 7200: "2H", 14400: "4H",
             21600: "6Hutc", 43200: "12Hutc", 86400: "1Dutc", 604800: "1Wutc"}


class OkxHistory(KlineHistory):
    rest = REST
    intervals: ClassVar[dict[int, str]] = INTERVALS
    page_limit = 300
    older = ("/api/v5/market/history-candles", 100)

    async def instruments(self, http: httpx.AsyncClient, source: SourceConfig) -> list[Instrument]:
        body = await get_json(http, "/api/v5/public/instruments", {"instType": "SWAP"})
        return okx_swaps(body, source.symbols, source.quote)

    def page(self, inst: Instrument, tf: int, limit: int, before_ms: int | None) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"instId": inst.instrument, "bar": INTERVALS[tf], "limit": limit}
        if before_ms is not None:
            params["after"] = before_ms
        return "/api/v5/market/candles", params

    def rows(self, source_id: str, inst: Instrument, tf: int, body: Any, now: float) -> list[Candle]:
        return [candle(source_id, inst, tf, r, float(r[6]), str(r[8]) == "1", now)
                for r in reversed(body["data"])]

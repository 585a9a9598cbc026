"""Bybit v5 kline history: ``GET /v5/market/kline?category=linear`` (``result.list`` rows ``[start, o, h, l,
c, volume, turnover]``, newest first, up to 1000, paged back with ``end``); ``category=inverse`` for quote
USD, whose ``volume`` is USD contracts and ``turnover`` the base volume (used)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from hedgewatch.connectors.bybit.instruments import bybit_category, bybit_perpetuals
from hedgewatch.connectors.history import KlineHistory, candle
from hedgewatch.connectors.instruments import Instrument, get_json
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.events import Candle

REST = "https://api.bybit.com"
INTERVALS = {60: "1", 180: "3", 300: "5", 900: "15", 1800: "30", 3600: "60", 7200: "120", 14400: "240",
             21600: "360", 43200: "720", 86400: "D", 604800: "W"}


class BybitHistory(KlineHistory):
    rest = REST
    intervals: ClassVar[dict[int, str]] = INTERVALS
    page_limit = 1000

    async def instruments(self, http: httpx.AsyncClient, source: SourceConfig) -> list[Instrument]:
        params = {"category": bybit_category(source.quote), "limit": 1000}
        body = await get_json(http, "/v5/market/instruments-info", params)
        return bybit_perpetuals(body, source.symbols, source.quote)

    def page(self, inst: Instrument, tf: int, limit: int, before_ms: int | None) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"category": bybit_category(inst.quote), "symbol": inst.instrument,
                                  "interval": INTERVALS[tf], "limit": limit}
        if before_ms is not None:
            params["end"] = before_ms - 1
        return "/v5/market/kline", params

    def rows(self, source_id: str, inst: Instrument, tf: int, body: Any, now: float) -> list[Candle]:
        vol = 6 if inst.inverse else 5  # inverse: volume is USD contracts, turnover the base volume
        return [candle(source_id, inst, tf, r, float(r[vol]), (int(r[0]) / 1000 + tf) <= now, now)
                for r in reversed(body["result"]["list"])]

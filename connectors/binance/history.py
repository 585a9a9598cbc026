"""Binance kline history: USDⓈ-M ``GET /fapi/v1/klines`` (rows ``[openTime, o, h, l, c, volume, closeTime,
...]``, oldest first, up to 1500 per page, paged back with ``endTime``); COIN-M ``GET /dapi/v1/klines``, the
same rows with ``volume`` in contracts and the base volume in column 7 (used), a request spanning at most
200 days, so a page holds at most 200 days of bars."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from hedgewatch.connectors.binance.instruments import binance_coinm, binance_usdm
from hedgewatch.connectors.history import KlineHistory, candle
from hedgewatch.connectors.instruments import Instrument, get_json
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.events import Candle

USDM_REST = "https://fapi.binance.com"
COINM_REST = "https://dapi.binance.com"
INTERVALS = {60: "1m", 180: "3m", 300: "5m", 900: "15m", 1800: "30m", 3600: "1h", 7200: "2h", 14400: "4h",
             21600: "6h", 28800: "8h", 43200: "12h", 86400: "1d", 259200: "3d", 604800: "1w"}


class UsdmHistory(KlineHistory):
    rest = USDM_REST
    intervals: ClassVar[dict[int, str]] = INTERVALS
    page_limit = 1500
    api = "/fapi/v1"
    volume_column = 5

    async def instruments(self, http: httpx.AsyncClient, source: SourceConfig) -> list[Instrument]:
        return binance_usdm(await get_json(http, f"{self.api}/exchangeInfo"), source.symbols, source.quote)

    def page(self, inst: Instrument, tf: int, limit: int, before_ms: int | None) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {"symbol": inst.instrument, "interval": INTERVALS[tf], "limit": limit}
        if before_ms is not None:
            params["endTime"] = before_ms - 1
        return f"{self.api}/klines", params

    def rows(self, source_id: str, inst: Instrument, tf: int, body: Any, now: float) -> list[Candle]:
        vol = self.volume_column
        return [candle(source_id, inst, tf, r, float(r[vol]), int(r[6]) < now * 1000, now) for r in body]


class CoinmHistory(UsdmHistory):
    rest = COINM_REST
    max_span_s = 200 * 86400
    api = "/dapi/v1"
    volume_column = 7  # column 5 is contracts, 7 the base volume

    async def instruments(self, http: httpx.AsyncClient, source: SourceConfig) -> list[Instrument]:
        return binance_coinm(await get_json(http, f"{self.api}/exchangeInfo"), source.symbols)

"""Kline history from the venues' REST APIs, to bootstrap indicators at start (a 50-day moving average is
right from the first minute, not after 50 days of uptime).

The parsers are pure (a decoded REST body in, ``Candle``s out, oldest first); ``fetch_history`` does the
I/O: instrument list, then pages of klines per asset and timeframe, within each venue's page limit.

- Binance USDⓈ-M ``GET /fapi/v1/klines`` (rows ``[openTime, o, h, l, c, volume, closeTime, ...]``, oldest
  first, up to 1500 per page, paged back with ``endTime``);
- Binance COIN-M ``GET /dapi/v1/klines``: the same rows with ``volume`` in contracts and the base volume in
  column 7 (used); a request spans at most 200 days, so a page holds at most 200 days of bars;
- Bybit v5 ``GET /v5/market/kline?category=linear`` (``result.list`` rows ``[start, o, h, l, c, volume,
  turnover]``, newest first, up to 1000, paged back with ``end``); ``category=inverse`` for quote USD, whose
  ``volume`` is USD contracts and ``turnover`` the base volume (used);
- OKX v5 ``GET /api/v5/market/candles`` (``data`` rows ``[ts, o, h, l, c, vol, volCcy, volCcyQuote,
  confirm]``, newest first, up to 300, paged back with ``after``; it serves only the latest 1,440 bars, so
  older pages come from ``GET /api/v5/market/history-candles``, same rows, up to 100 a page); ``volCcy`` is
  in base units for swaps.

Paging goes back until the bars wanted are there or the venue has no older ones (the listing): the
all-time high asks for more daily bars than any venue serves, so it gets the whole history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from hedgewatch.connectors.instruments import (
    Instrument,
    binance_coinm,
    binance_usdm,
    bybit_category,
    bybit_perpetuals,
    get_json,
    okx_swaps,
)
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.errors import FeedError, RejectedMessage
from hedgewatch.service.events import Candle

log = logging.getLogger("hedgewatch.history")

DEFAULT_REST = {
    "binanceusdm": "https://fapi.binance.com",
    "binancecoinm": "https://dapi.binance.com",
    "bybit": "https://api.bybit.com",
    "okx": "https://www.okx.com",
}
PAGE_LIMIT = {"binanceusdm": 1500, "binancecoinm": 1500, "bybit": 1000, "okx": 300}
MAX_SPAN_S = {"binancecoinm": 200 * 86400}  # the longest time one request may span
OKX_HISTORY_PATH = "/api/v5/market/history-candles"
OKX_HISTORY_LIMIT = 100
INTERVALS = {
    "binanceusdm": {60: "1m", 180: "3m", 300: "5m", 900: "15m", 1800: "30m", 3600: "1h", 7200: "2h",
                    14400: "4h", 21600: "6h", 28800: "8h", 43200: "12h", 86400: "1d", 259200: "3d",
                    604800: "1w"},
    "bybit": {60: "1", 180: "3", 300: "5", 900: "15", 1800: "30", 3600: "60", 7200: "120", 14400: "240",
              21600: "360", 43200: "720", 86400: "D", 604800: "W"},
    "okx": {60: "1m", 180: "3m", 300: "5m", 900: "15m", 1800: "30m", 3600: "1H", 7200: "2H", 14400: "4H",
            21600: "6Hutc", 43200: "12Hutc", 86400: "1Dutc", 604800: "1Wutc"},
}
INTERVALS["binancecoinm"] = INTERVALS["binanceusdm"]
MAX_PAGES = 100  # per asset and timeframe: 5,000 daily bars are 4 pages at Binance, ~41 at OKX, 25 at COIN-M


def page_limit(exchange: str, tf: int) -> int:
    """Bars a page may hold: the venue's limit, within the span one request may cover."""
    span = MAX_SPAN_S.get(exchange)
    return PAGE_LIMIT[exchange] if span is None else max(1, min(PAGE_LIMIT[exchange], span // tf))


def supports(exchange: str) -> bool:
    """Native kline history for the three native venues, ``fetch_ohlcv`` for any other ccxt exchange."""
    if exchange in INTERVALS:
        return True
    from hedgewatch.connectors.ccxt_generic import _known

    return _known(exchange)


def _candle(source_id: str, inst: Instrument, tf: int, row: list[Any], volume: float, closed: bool,
            now: float) -> Candle:
    o, h, low, c = (float(row[i]) for i in (1, 2, 3, 4))
    if not (0 < low <= min(o, c) and max(o, c) <= h) or volume < 0:
        raise RejectedMessage("absurd", f"kline {inst.instrument} {row[0]}")
    open_ts = int(row[0]) / 1000.0
    return Candle(source_id, inst.asset, inst.instrument, tf, open_ts, o, h, low, c, volume, closed,
                  open_ts + tf, now)


def parse_rows(exchange: str, source_id: str, inst: Instrument, tf: int, body: Any, now: float) -> list[Candle]:
    """One page of klines, oldest first. Malformed rows raise ``RejectedMessage``."""
    try:
        if exchange in ("binanceusdm", "binancecoinm"):
            vol = 7 if exchange == "binancecoinm" else 5  # COIN-M: column 5 is contracts, 7 the base volume
            rows = body
            out = [_candle(source_id, inst, tf, r, float(r[vol]), int(r[6]) < now * 1000, now) for r in rows]
        elif exchange == "bybit":
            rows = body["result"]["list"]
            vol = 6 if inst.inverse else 5  # inverse: volume is USD contracts, turnover the base volume
            out = [_candle(source_id, inst, tf, r, float(r[vol]), (int(r[0]) / 1000 + tf) <= now, now)
                   for r in reversed(rows)]
        elif exchange == "okx":
            rows = body["data"]
            out = [_candle(source_id, inst, tf, r, float(r[6]), str(r[8]) == "1", now) for r in reversed(rows)]
        else:
            raise FeedError(f"no kline history for {exchange}")
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RejectedMessage("malformed", f"klines of {inst.instrument}: {exc}") from exc
    return out


def _page_params(
    exchange: str, inst: Instrument, tf: int, limit: int, before_ms: int | None
) -> tuple[str, dict[str, Any]]:
    interval = INTERVALS[exchange][tf]
    if exchange in ("binanceusdm", "binancecoinm"):
        params: dict[str, Any] = {"symbol": inst.instrument, "interval": interval, "limit": limit}
        if before_ms is not None:
            params["endTime"] = before_ms - 1
        return ("/dapi/v1/klines" if exchange == "binancecoinm" else "/fapi/v1/klines"), params
    if exchange == "bybit":
        params = {"category": bybit_category(inst.quote), "symbol": inst.instrument, "interval": interval,
                  "limit": limit}
        if before_ms is not None:
            params["end"] = before_ms - 1
        return "/v5/market/kline", params
    params = {"instId": inst.instrument, "bar": interval, "limit": limit}
    if before_ms is not None:
        params["after"] = before_ms
    return "/api/v5/market/candles", params


async def fetch_klines(http: httpx.AsyncClient, exchange: str, source_id: str, inst: Instrument, tf: int,
                       bars: int, now: float) -> list[Candle]:
    """The last ``bars`` klines of ``inst`` at timeframe ``tf`` seconds, oldest first, paging back as the
    venue's page limit requires."""
    if tf not in INTERVALS[exchange]:
        raise FeedError(f"{exchange} has no {tf} s klines")
    out: list[Candle] = []
    before: int | None = None
    older = False  # OKX: past the latest 1,440 bars, from the history endpoint
    for _ in range(MAX_PAGES):
        limit = min(OKX_HISTORY_LIMIT if older else page_limit(exchange, tf), bars - len(out))
        path, params = _page_params(exchange, inst, tf, limit, before)
        if older:
            path = OKX_HISTORY_PATH
        page = parse_rows(exchange, source_id, inst, tf, await get_json(http, path, params), now)
        if page:
            out = page + out
            before = int(page[0].open_ts * 1000)
        if len(out) >= bars:
            break
        if len(page) < limit:
            if exchange != "okx" or older or before is None:
                break  # the venue has nothing older: its listing
            older = True
    return out[-bars:]


async def _instruments(http: httpx.AsyncClient, source: SourceConfig) -> list[Instrument]:
    if source.exchange == "binanceusdm":
        return binance_usdm(await get_json(http, "/fapi/v1/exchangeInfo"), source.symbols, source.quote)
    if source.exchange == "binancecoinm":
        return binance_coinm(await get_json(http, "/dapi/v1/exchangeInfo"), source.symbols)
    if source.exchange == "bybit":
        params = {"category": bybit_category(source.quote), "limit": 1000}
        body = await get_json(http, "/v5/market/instruments-info", params)
        return bybit_perpetuals(body, source.symbols, source.quote)
    body = await get_json(http, "/api/v5/public/instruments", {"instType": "SWAP"})
    return okx_swaps(body, source.symbols, source.quote)


async def fetch_history(source: SourceConfig, needs: dict[str, dict[int, int]], *,
                        clock: Callable[[], float] = time.time, timeout_s: float = 10.0) -> list[Candle]:
    """Klines of ``source`` for ``needs`` (asset -> timeframe seconds -> bars). Assets the venue does not
    list, and timeframes it has no klines for, are skipped with a log line; transport failures raise
    ``FeedError``. Exchanges without a native protocol go through ccxt's ``fetch_ohlcv``."""
    if source.exchange not in INTERVALS:
        from hedgewatch.connectors import ccxt_history

        return await ccxt_history.fetch_history(source, needs, clock)
    base = (source.rest_url or DEFAULT_REST[source.exchange]).rstrip("/")
    out: list[Candle] = []
    async with httpx.AsyncClient(base_url=base, timeout=timeout_s) as http:
        instruments = {i.asset: i for i in await _instruments(http, source)}
        for asset, per_tf in needs.items():
            inst = instruments.get(asset)
            if inst is None:
                log.warning("%s lists no instrument for %s; no kline history for it", source.source_id, asset)
                continue
            for tf, bars in sorted(per_tf.items()):
                if tf not in INTERVALS[source.exchange]:
                    log.warning("%s has no %d s klines; %s history at that timeframe is built live",
                                source.source_id, tf, asset)
                    continue
                out += await fetch_klines(http, source.exchange, source.source_id, inst, tf, bars, clock())
    return out


def plan(needs: dict[str, dict[int, int]], constituents: Iterable[str]) -> dict[str, dict[int, int]]:
    """Per-asset klines to fetch for ``needs`` (closed bars per asset and timeframe), with the index's own
    (``""``) spread over its constituents: no venue has klines of our index, so its history is rebuilt from
    theirs. One more bar than needed each: the last kline a venue returns is the one still forming, so
    ``n`` closed bars (a 50-day average right from the start) take ``n + 1``."""
    out: dict[str, dict[int, int]] = {}
    for asset, per_tf in needs.items():
        targets = list(constituents) if asset == "" else [asset]
        for a in targets:
            for tf, n in per_tf.items():
                out.setdefault(a, {})[tf] = max(n + 1, out.get(a, {}).get(tf, 0))
    return out

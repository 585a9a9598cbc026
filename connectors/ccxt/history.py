"""Kline history of any ccxt exchange through its unified ``fetch_ohlcv``, paged forward from the start of
the window (ccxt's rows are ``[timestamp ms, open, high, low, close, base volume]``, oldest first; a page
holds what the venue allows, so paging goes on from the last row until the window is covered).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import ccxt

from hedgewatch.service.config import SourceConfig
from hedgewatch.service.errors import FeedError, RejectedMessage
from hedgewatch.service.events import Candle

log = logging.getLogger("hedgewatch.history")

TIMEFRAMES = {60: "1m", 180: "3m", 300: "5m", 900: "15m", 1800: "30m", 3600: "1h", 7200: "2h",
              14400: "4h", 21600: "6h", 28800: "8h", 43200: "12h", 86400: "1d", 259200: "3d",
              604800: "1w"}
PAGE_LIMIT = 1000
MAX_PAGES = 50


def parse_ohlcv(source_id: str, asset: str, instrument: str, tf: int, rows: Any, now: float) -> list[Candle]:
    """ccxt OHLCV rows as candles, oldest first; a malformed or impossible row raises ``RejectedMessage``."""
    out = []
    try:
        for row in rows:
            ts, o, h, low, c, v = (row[0], *(float(x) for x in row[1:6]))
            if not (0 < low <= min(o, c) and max(o, c) <= h) or v < 0:
                raise RejectedMessage("absurd", f"kline {instrument} {ts}")
            open_ts = int(ts) / 1000.0
            out.append(Candle(source_id, asset, instrument, tf, open_ts, o, h, low, c, v,
                              open_ts + tf <= now, open_ts + tf, now))
    except (IndexError, TypeError, ValueError) as exc:
        raise RejectedMessage("malformed", f"klines of {instrument}: {exc}") from exc
    return sorted(out, key=lambda k: k.open_ts)


async def fetch_ohlcv_paged(ex: Any, source_id: str, market: dict[str, Any], asset: str, tf: int, bars: int,
                            now: float) -> list[Candle]:
    """The last ``bars`` klines of ``market`` at ``tf`` seconds: forward from ``now - bars x tf``."""
    symbol, instrument = str(market["symbol"]), str(market.get("id"))
    since = int((now // tf - bars + 1) * tf * 1000)
    out: dict[float, Candle] = {}
    for _ in range(MAX_PAGES):
        try:
            rows = await ex.fetch_ohlcv(symbol, TIMEFRAMES[tf], since=since, limit=min(PAGE_LIMIT, bars))
        except ccxt.BaseError as exc:
            raise FeedError(f"{source_id}: fetch_ohlcv {symbol} {TIMEFRAMES[tf]}: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc
        page = parse_ohlcv(source_id, asset, instrument, tf, rows, now)
        fresh = [c for c in page if c.open_ts not in out]
        for c in fresh:
            out[c.open_ts] = c
        if not fresh or len(out) >= bars or fresh[-1].open_ts + tf > now:
            break
        since = int((fresh[-1].open_ts + tf) * 1000)
    return sorted(out.values(), key=lambda k: k.open_ts)[-bars:]


async def fetch_history(source: SourceConfig, needs: dict[str, dict[int, int]], clock: Callable[[], float],
                        factory: Callable[[SourceConfig], Any] | None = None) -> list[Candle]:
    """Klines of a ccxt ``source`` for ``needs`` (asset -> timeframe seconds -> bars); an asset without a
    market and a timeframe the exchange lacks are skipped with a log line."""
    from hedgewatch.connectors.ccxt.connector import default_factory, pick_market

    ex = (factory or default_factory)(source)
    try:
        if not ex.has.get("fetchOHLCV"):
            log.warning("%s has no kline history in ccxt; indicators are built live", source.source_id)
            return []
        try:
            markets = await ex.load_markets()
        except ccxt.BaseError as exc:
            raise FeedError(f"{source.source_id}: cannot load markets: {type(exc).__name__}") from exc
        out: list[Candle] = []
        for asset, per_tf in needs.items():
            m = pick_market(markets, asset, source.quote)
            if m is None:
                log.warning("%s lists no %s market for %s; no kline history for it", source.source_id,
                            source.quote, asset)
                continue
            for tf, bars in sorted(per_tf.items()):
                name = TIMEFRAMES.get(tf)
                if name is None or (ex.timeframes and name not in ex.timeframes):
                    log.warning("%s has no %d s klines; %s history at that timeframe is built live",
                                source.source_id, tf, asset)
                    continue
                out += await fetch_ohlcv_paged(ex, source.source_id, m, asset, tf, bars, clock())
        return out
    finally:
        await ex.close()

"""Kline history from the venues' REST APIs, to bootstrap indicators at start (a 50-day moving average is
right from the first minute, not after 50 days of uptime).

What each venue serves (REST base, interval names, page limits, one page's request and rows) is its
``history.py`` (a ``connectors.history.KlineHistory`` in the venue table, ``connectors.registry``); this
module is the driver: instrument list, then pages of klines per asset and timeframe, paged back within the
venue's page limit until the bars wanted are there or the venue has no older ones (the listing): the
all-time high asks for more daily bars than any venue serves, so it gets the whole history. Exchanges
without a native venue go through ccxt's ``fetch_ohlcv`` (``connectors.ccxt.history``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from hedgewatch.connectors import ccxt, registry
from hedgewatch.connectors.history import KlineHistory
from hedgewatch.connectors.instruments import Instrument, get_json
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.errors import FeedError, RejectedMessage
from hedgewatch.service.events import Candle

log = logging.getLogger("hedgewatch.history")

MAX_PAGES = 100  # per asset and timeframe: 5,000 daily bars are 4 pages at Binance, ~41 at OKX, 25 at COIN-M


def _native(exchange: str) -> KlineHistory:
    h = registry.kline_history(exchange)
    if h is None:
        raise FeedError(f"no kline history for {exchange}")
    return h


def page_limit(exchange: str, tf: int) -> int:
    """Bars a page of ``exchange`` may hold: the venue's limit, within the span one request may cover."""
    return _native(exchange).limit(tf)


def supports(exchange: str) -> bool:
    """Native kline history for the native venues, ``fetch_ohlcv`` for any other ccxt exchange."""
    return registry.kline_history(exchange) is not None or ccxt.known(exchange)


def parse_rows(exchange: str, source_id: str, inst: Instrument, tf: int, body: Any, now: float) -> list[Candle]:
    """One page of klines, oldest first. Malformed rows raise ``RejectedMessage``."""
    history = _native(exchange)
    try:
        return history.rows(source_id, inst, tf, body, now)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RejectedMessage("malformed", f"klines of {inst.instrument}: {exc}") from exc


async def fetch_klines(http: httpx.AsyncClient, exchange: str, source_id: str, inst: Instrument, tf: int,
                       bars: int, now: float) -> list[Candle]:
    """The last ``bars`` klines of ``inst`` at timeframe ``tf`` seconds, oldest first, paging back as the
    venue's page limit requires."""
    history = _native(exchange)
    if tf not in history.intervals:
        raise FeedError(f"{exchange} has no {tf} s klines")
    out: list[Candle] = []
    before: int | None = None
    older = False  # past what the recent endpoint serves, from ``history.older``
    for _ in range(MAX_PAGES):
        limit = min(history.older[1] if older and history.older else history.limit(tf), bars - len(out))
        path, params = history.page(inst, tf, limit, before)
        if older and history.older:
            path = history.older[0]
        page = parse_rows(exchange, source_id, inst, tf, await get_json(http, path, params), now)
        if page:
            out = page + out
            before = int(page[0].open_ts * 1000)
        if len(out) >= bars:
            break
        if len(page) < limit:
            if history.older is None or older or before is None:
                break  # the venue has nothing older: its listing
            older = True
    return out[-bars:]


async def fetch_history(source: SourceConfig, needs: dict[str, dict[int, int]], *,
                        clock: Callable[[], float] = time.time, timeout_s: float = 10.0) -> list[Candle]:
    """Klines of ``source`` for ``needs`` (asset -> timeframe seconds -> bars). Assets the venue does not
    list, and timeframes it has no klines for, are skipped with a log line; transport failures raise
    ``FeedError``. Exchanges without a native protocol go through ccxt's ``fetch_ohlcv``."""
    history = registry.kline_history(source.exchange)
    if history is None:
        fallback = registry.venue(source.exchange).fetch_history
        if fallback is None:
            raise FeedError(f"no kline history for {source.exchange}")
        return await fallback(source, needs, clock)
    base = (source.rest_url or history.rest).rstrip("/")
    out: list[Candle] = []
    async with httpx.AsyncClient(base_url=base, timeout=timeout_s) as http:
        instruments = {i.asset: i for i in await history.instruments(http, source)}
        for asset, per_tf in needs.items():
            inst = instruments.get(asset)
            if inst is None:
                log.warning("%s lists no instrument for %s; no kline history for it", source.source_id, asset)
                continue
            for tf, bars in sorted(per_tf.items()):
                if tf not in history.intervals:
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

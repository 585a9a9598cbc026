"""Index history back-cast from constituent klines, for venues that publish no kline of our index.

At start the daemon has the venues' klines per asset, not of our basket. Once the first snapshot gives the
units and the level, each bucket where every constituent has a kline becomes an index bar:
``level = sum(price_i x units_i) / divisor`` with ``divisor = sum(price_i x units_i) / level`` now, i.e. the
current basket carried back (the usual back-cast of a new index). Opens and closes are exact for that
basket; highs and lows are bounds (constituents do not peak together), so the all-time high and low are
taken from the closes (``SignalBook.on_candle``); volume is the USD volume
``sum(volume_i x close_i)`` of the klines supplied, as live constituent klines credit it.

Volume has one basis, history and live alike: per asset, one venue (``volume_venues``): the first enabled
source in the config that lists it, the one the daemon asks for its kline history first; when that history
came from another (the first failed), that one. Summing every venue's live klines over one venue's history
would read every hour as a volume spike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from hedgewatch.rules.signals import SYNTHETIC
from hedgewatch.service.config import Config
from hedgewatch.service.events import Candle


def volume_venues(config: Config) -> dict[str, str]:
    """Per asset, the venue (source id) whose volume counts: the first enabled source listing it."""
    out: dict[str, str] = {}
    for src in config.sources:
        if src.enabled:
            for a in src.symbols:
                out.setdefault(a, src.source_id)
    return out


def divisor_from(snapshot: dict[str, Any]) -> float | None:
    """The divisor implied by a snapshot's constituents (price x units) and level."""
    if snapshot.get("divisor"):
        return float(snapshot["divisor"])
    level = snapshot.get("level")
    consts = snapshot.get("constituents") or {}
    total = 0.0
    for c in consts.values():
        if not c or c.get("price") is None or c.get("units") is None:
            return None
        total += float(c["price"]) * float(c["units"])
    if not level or total <= 0:
        return None
    return total / float(level)


def index_candles(candles: Iterable[Candle], units: dict[str, float], divisor: float,
                  index: str) -> list[Candle]:
    """Index bars for every (timeframe, open time) where all of ``units``' assets have a kline."""
    buckets: dict[tuple[int, float], dict[str, list[Candle]]] = defaultdict(lambda: defaultdict(list))
    for c in candles:
        if c.asset in units:
            buckets[(c.timeframe_s, c.open_ts)][c.asset].append(c)
    out = []
    for (tf, ts), per_asset in sorted(buckets.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if len(per_asset) != len(units):
            continue

        def level(field: str, per_asset: dict[str, list[Candle]] = per_asset) -> float:
            # several venues' klines of one asset: their mean price
            return sum(sum(getattr(b, field) for b in bars) / len(bars) * units[a]
                       for a, bars in per_asset.items()) / divisor

        every = [b for bars in per_asset.values() for b in bars]
        volume = sum(b.volume * b.close for b in every)  # summed over venues, like the live credit
        closed = all(b.closed for b in every)
        last = max(b.ts_exchange for b in every)
        out.append(Candle(SYNTHETIC, index, index, tf, ts, level("open"), level("high"), level("low"),
                          level("close"), volume, closed, last, last, "index"))
    return out

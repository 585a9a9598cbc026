"""Volume on one basis, history and live: the bundled "new all-time high on high volume" rule fires in the
default config (service/defaults/live.yaml, klines on) when the index makes a new high on heavy volume,
through the engine the daemon runs, fed the klines and quotes its connectors emit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hedgewatch.service.config import load_config
from hedgewatch.service.engine import Engine
from hedgewatch.service.events import Candle, Quote

H, DAY = 3600, 86400
T0 = datetime(2026, 6, 1, 10, tzinfo=UTC).timestamp()  # 10:00 UTC: the hour the high is made in
PRICES = {"BTC": 100_000.0, "ETH": 3_000.0, "SOL": 150.0, "XRP": 2.0, "BNB": 600.0}
VENUES = ("binanceusdm", "bybit", "okx")
HOURLY_BASE = {"BTC": 1_000.0, "ETH": 20_000.0, "SOL": 300_000.0, "XRP": 20_000_000.0, "BNB": 50_000.0}


def kline(venue: str, asset: str, tf: int, ts: float, price: float, volume: float) -> Candle:
    return Candle(venue, asset, f"{asset}USDT", tf, ts, price, price * 1.002, price * 0.998, price, volume, True,
                  ts + tf, ts + tf)


def history(venue: str) -> list[Candle]:
    """What the bootstrap fetches from ``venue``: 400 days of daily klines under today's prices (the old
    high 3 % under them) and 48 hours of hourly ones with steady volume."""
    out = []
    day0 = T0 - T0 % DAY
    for a, p in PRICES.items():
        for d in range(1, 401):
            out.append(kline(venue, a, DAY, day0 - d * DAY, p * (0.97 - 0.0005 * d), HOURLY_BASE[a] * 24))
        for h in range(1, 49):
            out.append(kline(venue, a, H, T0 - h * H, p * 0.96, HOURLY_BASE[a]))
    return out


def quotes(scale: float, t: float) -> list[Quote]:
    return [Quote(v, a, f"{a}USDT", p * scale, p * scale * 1.0001, t, t) for a, p in PRICES.items() for v in VENUES]


def minutes(venue: str, start: float, n: int, multiple: float, scale: float) -> list[Candle]:
    """``n`` closed 1-minute klines of every asset from ``start``, ``multiple`` x the hourly pace."""
    return [kline(venue, a, 60, start + m * 60, p * scale, HOURLY_BASE[a] / 60 * multiple)
            for a, p in PRICES.items() for m in range(n)]


def run(live_klines: list[Candle]) -> tuple[list[str], Engine]:
    cfg = load_config(None, env={})
    e = Engine(cfg, T0 - 60)
    e.bootstrap(history("binanceusdm"))
    fired: list[str] = []
    t = T0 + 60
    e.apply_batch(quotes(1.0, t))  # already above the old high, on no volume yet: nothing
    e.tick(t)
    fired += [a.rule for a in e.evaluate(t)[0].alerts if a.status == "firing"]
    t = T0 + 31 * 60
    e.apply_batch([*live_klines, *quotes(1.01, t)])  # half an hour on, higher still
    e.tick(t)
    fired += [a.rule for a in e.evaluate(t)[0].alerts if a.status == "firing"]
    return fired, e


def test_the_default_config_streams_klines() -> None:
    cfg = load_config(None, env={})
    assert all("candles" in (s.channels or ()) for s in cfg.sources)


def test_a_new_high_on_heavy_volume_fires_the_bundled_rule_in_the_default_config() -> None:
    # 30 minutes at 4x the usual hourly pace on Binance (the volume venue): twice an hour's volume
    fired, e = run(minutes("binanceusdm", T0, 30, 4.0, 1.01))
    assert fired == ["NewAllTimeHighOnVolume"]
    env = e.rules.env
    assert env["volume_1h_0"] > 1.5 * env["volume_sma_24_1h"]
    # the 24 h volume is known, on the same venue: 24 history hours and this hour's minutes, in USD
    snap = e.market.snapshot(T0 + 31 * 60)
    btc = snap["assets"]["BTC"]["volume_24h"]
    assert btc == pytest.approx(23 * HOURLY_BASE["BTC"] * PRICES["BTC"] * 0.96
                                + 30 * HOURLY_BASE["BTC"] / 60 * 4 * PRICES["BTC"] * 1.01)


def test_volume_from_other_venues_is_not_added_to_the_volume_venue_s() -> None:
    """The same minutes at the usual pace on the volume venue and on the two others: summed over the three
    venues it would read as three times the hourly volume of the history (one venue's) and fire."""
    live = [k for v in VENUES for k in minutes(v, T0, 30, 2.0, 1.01)]
    fired, e = run(live)
    assert fired == []
    assert e.rules.env["volume_1h_0"] == pytest.approx(e.rules.env["volume_sma_24_1h"] * 1.01 / 0.96, rel=1e-6)

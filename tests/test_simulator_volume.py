"""Simulated volume on one basis: a venue's live trades add up, hour for hour, to the volume of the history
hours it serves (its share of the market), whatever the tick and the trade channel's rate; a regime's
``volume_factor`` multiplies the live volume from its time on."""

from __future__ import annotations

import pytest

from hedgewatch.connectors.simulator.market import HOUR_MS, PricePath
from hedgewatch.connectors.simulator.scenario import parse_scenario
from hedgewatch.connectors.simulator.server import TRADE_CHANNEL
from hedgewatch.connectors.simulator.venue import VenueModel

SCENARIO = """
seed: 5
start_time_ms: 1767225600000
tick_interval_s: {tick}
history_days: 3
assets:
  BTC: {{price: 60000, open_interest: 90000, qty_step: 0.001}}
  SOL: {{price: 150, open_interest: 30000000, qty_step: 0.01}}
venues:
  - {{name: binanceusdm, protocol: binanceusdm, oi_share: 0.5}}
  - {{name: bybit, protocol: bybit, oi_share: 0.2, rates: {{publicTrade: 2.0}}}}
regimes:
  - {{at_s: 0, volume_factor: 1}}
  - {{at_s: 3600, volume_factor: 4}}
"""


def two_hours(tick: float) -> tuple[PricePath, list[VenueModel]]:
    path = PricePath(parse_scenario(SCENARIO.format(tick=tick)), 1767225600000)
    models = [VenueModel(v, path) for v in path.scenario.venues]
    for _ in range(round(2 * 3600 / tick)):
        path.step()
        for m in models:
            m.step(min(1.0, m.spec.rate(TRADE_CHANNEL[m.spec.protocol]) * tick))
    return path, models


@pytest.mark.parametrize("tick", [1.0, 0.25])
def test_live_hours_trade_the_history_s_hourly_volume_times_the_regime_s_factor(tick: float) -> None:
    path, models = two_hours(tick)
    start = path.start_ms
    for m in models:
        for a in ("BTC", "SOL"):
            base = path.specs[a].open_interest * 0.02 * m.spec.oi_share
            assert m.candles.hourly_volume(a) == pytest.approx(base)
            history = m.candles.klines(a, HOUR_MS, start - 1, limit=48)
            assert len(history) == 48
            assert sum(b[5] for b in history) / 48 == pytest.approx(base, rel=0.15)
            assert all(0.5 * base <= b[5] <= 1.5 * base for b in history)
            live = m.candles.klines(a, HOUR_MS, path.now_ms, start_ms=start)  # the last step opens hour 3
            calm, heavy = live[:2]
            assert calm[5] == pytest.approx(base, rel=0.1), (m.spec.name, a)
            assert heavy[5] == pytest.approx(4 * base, rel=0.1), (m.spec.name, a)
            # the ticker's 24 h volume: the last 24 history hours, then every live trade
            assert m.quotes[a].volume_24h == pytest.approx(sum(b[5] for b in history[-24:]) + sum(b[5] for b in live))

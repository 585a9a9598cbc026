"""The price-level signals the rules watch reach Prometheus; rates, volumes and flags do not."""

from __future__ import annotations

from hedgewatch.rules.stage import RuleStage, is_price_level
from hedgewatch.service.config import parse_config
from hedgewatch.service.metrics import Metrics
from tests.test_config import GOOD


def test_price_levels_are_told_apart() -> None:
    for name in ("sma_50_1d", "ema_20_1h", "level_R1", "trendline_long_term", "ath", "atl", "fib_0.618_1d",
                 "swing_low_1d", "highest_20_1d"):
        assert is_price_level(name), name
    for name in ("funding_rate_8h", "volume_sma_24_1h", "oi_change_24h", "index_ok", "price", "basis_ratio",
                 "asset_sma_BTC_50_1d"):
        assert not is_price_level(name), name


def test_export_sets_indicator_gauges_from_the_evaluated_signals() -> None:
    stage = RuleStage(parse_config(GOOD, env={}), 0.0)
    stage.env = {"sma_50_1d": 990.0, "ath": 1100.0, "funding_rate_8h": 0.0001, "index_ok": True,
                 "level_R1": None}
    m = Metrics()
    stage.export(m)
    value = m.registry.get_sample_value
    assert value("hedgewatch_index_indicator", {"index": "HW", "indicator": "sma_50_1d"}) == 990.0
    assert value("hedgewatch_index_indicator", {"index": "HW", "indicator": "ath"}) == 1100.0
    assert value("hedgewatch_index_indicator", {"index": "HW", "indicator": "funding_rate_8h"}) is None
    assert value("hedgewatch_index_indicator", {"index": "HW", "indicator": "level_R1"}) is None

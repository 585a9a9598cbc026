"""Funding intervals of ccxt markets from the venue's own data."""

from __future__ import annotations

from hedgewatch.connectors.ccxt.funding import from_history, from_market, parse_interval

H = 3_600_000


def test_interval_strings() -> None:
    assert [parse_interval(t) for t in ("1h", "4h", "8h", "30m", "1d", " 2H ")] == [1, 4, 8, 0.5, 24, 2]
    assert [parse_interval(t) for t in (None, "", "8", "h", "0h", 8, "-1h")] == [None] * 7


def test_interval_from_the_market_listing() -> None:
    assert from_market({"info": {"fundingInterval": "240"}}) == 4.0  # Bybit: minutes
    assert from_market({"info": {"fundingIntervalHours": 1}}) == 1.0
    assert from_market({"info": {"fundingInterval": "0"}}) is None
    assert from_market({"info": {}}) is None and from_market(None) is None


def test_interval_from_settlement_spacing() -> None:
    rows = [{"timestamp": t * H} for t in (0, 1, 2, 3, 4)]
    assert from_history(rows) == 1.0
    assert from_history([{"timestamp": t * H} for t in (0, 4, 8, 16)]) == 4.0  # one missed settlement
    assert from_history([{"timestamp": 8 * H}]) is None
    assert from_history([{"timestamp": None}, {"timestamp": "x"}]) is None
    assert from_history("nonsense") is None

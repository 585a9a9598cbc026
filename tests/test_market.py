"""MarketState end to end: events in, level/snapshot/state/metrics/transitions out."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgewatch.service.events import FeedStatus, Funding, MarkPrice, OpenInterest, Quote, Trade
from hedgewatch.service.market import MarketState
from hedgewatch.service.market_metrics import GaugeExporter
from hedgewatch.service.metrics import Metrics
from tests.market_support import VENUES, config, quote

PRICES = {"BTC": 100_000.0, "ETH": 3_000.0}


def feed_all(m: MarketState, ts: float, prices: dict[str, float] = PRICES, venues=VENUES[:3]) -> None:
    for a, p in prices.items():
        for v in venues:
            m.apply(quote(v, a, p, ts))


def test_level_starts_at_base_and_follows_prices() -> None:
    m = MarketState(config(), now=0.0)
    assert m.level is None and not m.ready
    feed_all(m, 1.0)
    assert m.level == pytest.approx(1000.0)
    assert m.ready and m.status == "ok"
    # BTC +4% on every venue (inside the exclusion band), equal weights: +2%.
    changed = [m.apply(quote(v, "BTC", 104_000.0, 2.0)) for v in VENUES[:3]]
    assert any(changed)
    assert m.level == pytest.approx(1020.0)


def test_cap_weighting_uses_market_caps() -> None:
    m = MarketState(config(index="weighting: cap\nmarket_caps: {BTC: 3, ETH: 1}"), now=0.0)
    feed_all(m, 1.0)
    feed_all(m, 2.0, {"BTC": 104_000.0, "ETH": 3_000.0})
    assert m.level == pytest.approx(1030.0)


def test_one_venue_at_plus_50_percent_is_excluded_and_barely_moves_the_index() -> None:
    m = MarketState(config(assets=("BTC",), venues=VENUES), now=0.0)
    feed_all(m, 1.0, {"BTC": 100_000.0}, VENUES)
    before = m.level
    m.drain_transitions()
    m.apply(quote("okx", "BTC", 150_000.0, 1.5))
    assert abs(m.level / before - 1) < 0.001
    snap = m.state(1.5)["oracle"]["BTC"]["sources"]["okx"]
    assert snap["excluded"] and snap["status"] in ("excluded", "rejected")
    kinds = [(t.source, t.new) for t in m.drain_transitions() if t.kind == "source"]
    assert ("okx", snap["status"]) in kinds


def test_trades_stand_in_only_without_fresh_quotes() -> None:
    m = MarketState(config(assets=("BTC",), venues=("binanceusdm",)), now=0.0)
    m.apply(Trade("binanceusdm", "BTC", "BTCUSD", 100.0, 1.0, 1.0, 1.0, "USD"))
    assert m.oracle("BTC").price == 100.0
    m.apply(quote("binanceusdm", "BTC", 101.0, 2.0))
    m.apply(Trade("binanceusdm", "BTC", "BTCUSD", 102.0, 1.0, 3.0, 3.0, "USD"))
    assert m.oracle("BTC").price == 101.0
    m.apply(Trade("binanceusdm", "BTC", "BTCUSD", 102.0, 1.0, 30.0, 30.0, "USD"))
    assert m.oracle("BTC").price == 102.0


def test_usdt_quotes_converted_through_the_oracles_usdt_price() -> None:
    cfg = config(assets=("BTC", "USDT"), venues=("kraken",), constituents=("BTC",))
    m = MarketState(cfg, now=0.0)
    m.apply(quote("kraken", "BTC", 100_000.0, 1.0, "USDT"))
    assert m.oracle("BTC").price == 100_000.0
    assert m.snapshot(1.0)["quote_rates_assumed"] == ["USDT"]
    m.apply(quote("kraken", "USDT", 0.99, 2.0, "USD"))
    m.apply(quote("kraken", "BTC", 100_000.0, 3.0, "USDT"))
    assert m.oracle("BTC").price == pytest.approx(99_000.0)
    snap = m.snapshot(3.0)
    assert snap["quote_rates_assumed"] == []
    assert snap["quote_rates"]["USDT"] == {"rate": 0.99, "assumed": False}


def test_staleness_on_tick_makes_the_index_stale_and_holds_the_level() -> None:
    m = MarketState(config(), now=0.0)
    feed_all(m, 1.0)
    level = m.level
    assert not m.tick(5.0)
    assert m.tick(12.0)
    assert m.status == "stale" and m.level == level and not m.ready
    kinds = {(t.kind, t.new) for t in m.drain_transitions()}
    assert ("source", "stale") in kinds and ("oracle", "stale") in kinds and ("index", "stale") in kinds


def test_snapshot_state_and_metrics_shapes() -> None:
    m = MarketState(config(), now=0.0)
    feed_all(m, 1.0)
    for a, p in PRICES.items():
        for v in VENUES[:3]:
            m.apply(MarkPrice(v, a, f"{a}USDT", p * 1.001, p, 1.0, 1.0, "USD"))
            m.apply(Funding(v, a, f"{a}USDT", 0.0001, 8.0, None, 1.0, 1.0))
            m.apply(OpenInterest(v, a, f"{a}USDT", 10.0, 10.0, None, 1.0, 1.0))
    m.apply(FeedStatus("okx", "", "connected", "", 1.0))
    snap = m.snapshot(2.0)
    json.dumps(snap)
    assert set(snap) >= {"index", "ts", "level", "status", "constituents", "derivatives", "assets"}
    btc = snap["constituents"]["BTC"]
    assert set(btc) >= {"price", "weight", "units", "status", "sources", "confidence"}
    d = snap["derivatives"]
    assert d["futures_price"] == pytest.approx(1001.0)
    assert d["basis_ratio"] == pytest.approx(0.001)
    assert d["funding_rate_8h"] == pytest.approx(0.0001)
    assert d["funding_annualized"] == pytest.approx(0.1095)
    assert d["open_interest_usd"] == pytest.approx(30 * 100_000 + 30 * 3_000)
    assert d["state"] == "contango"
    assert snap["assets"]["BTC"]["funding_rate_8h"] == pytest.approx(0.0001)
    st = m.state(2.0)
    json.dumps(st)
    assert st["oracle"]["BTC"]["sources"]["okx"]["age_s"] == pytest.approx(1.0)
    metrics = Metrics()
    exporter = GaugeExporter()
    exporter.export(m, metrics, 2.0)
    text = metrics.render().decode()
    for name in (
        'hedgewatch_index_price{index="HW"} 1000.0',
        'hedgewatch_asset_price{asset="BTC"} 100000.0',
        'hedgewatch_source_age_seconds{asset="BTC",exchange="okx"} 1.0',
        'hedgewatch_source_excluded{asset="BTC",exchange="okx"} 0.0',
        'hedgewatch_oracle_sources{asset="ETH"} 3.0',
        "hedgewatch_index_funding_rate",
        "hedgewatch_index_open_interest_usd",
        "hedgewatch_index_basis_ratio",
        "hedgewatch_ready 1.0",
    ):
        assert name in text
    assert isinstance(m.apply(Quote("okx", "DOGE", "DOGEUSDT", 1, 1, 1, 1)), bool)


@settings(max_examples=100, deadline=None)
@given(
    n_venues=st.integers(3, 5),
    factor=st.one_of(st.floats(0.01, 0.9), st.floats(1.1, 100.0)),
    noise=st.lists(st.floats(-0.0002, 0.0002), min_size=5, max_size=5),
    bad=st.integers(0, 4),
)
def test_any_single_manipulated_venue_moves_the_index_by_less_than_0_1_percent(
    n_venues, factor, noise, bad
) -> None:
    venues = VENUES[:n_venues]
    m = MarketState(config(venues=venues), now=0.0)
    feed_all(m, 1.0, venues=venues)
    before = m.level
    for i, v in enumerate(venues):
        m.apply(quote(v, "BTC", 100_000.0 * (1 + noise[i]), 2.0))
    m.apply(quote(venues[bad % n_venues], "ETH", 3_000.0 * factor, 2.0))
    assert abs(m.level / before - 1) < 0.001
    src = m.state(2.0)["oracle"]["ETH"]["sources"][venues[bad % n_venues]]
    # out of the price: excluded, or (one absurd tick) dropped while the venue keeps its last honest price
    assert src["excluded"] or src["price"] == pytest.approx(3_000.0, rel=0.01)


def test_venue_index_price_as_an_extra_source_when_configured() -> None:
    m = MarketState(config(assets=("BTC",), venues=("okx",), oracle="use_venue_index: true"), now=0.0)
    m.apply(quote("okx", "BTC", 100_000.0, 1.0))
    m.apply(MarkPrice("okx", "BTC", "BTC-USDT-SWAP", 100_050.0, 100_010.0, 1.0, 1.0, "USD"))
    o = m.state(1.0)["oracle"]["BTC"]
    assert set(o["sources"]) == {"okx", "okx:index"} and o["price"] == pytest.approx(100_005.0)
    plain = MarketState(config(assets=("BTC",), venues=("okx",)), now=0.0)
    plain.apply(MarkPrice("okx", "BTC", "BTC-USDT-SWAP", 100_050.0, 100_010.0, 1.0, 1.0, "USD"))
    assert plain.oracle("BTC").price is None


def test_one_sided_quotes_are_ignored_and_feed_states_reported() -> None:
    m = MarketState(config(assets=("BTC",), venues=("okx",)), now=0.0)
    assert not m.apply(Quote("okx", "BTC", "BTCUSD", 0.0, 100.0, 1.0, 1.0, "USD"))
    assert not m.apply(Quote("okx", "BTC", "BTCUSD", 101.0, 100.0, 1.0, 1.0, "USD"))
    assert m.oracle("BTC").price is None
    m.apply(FeedStatus("okx", "tickers", "silent", "no message for 3 s", 2.0))
    assert m.state(2.0)["feeds"] == {"okx/tickers": "silent"}


def test_a_stale_source_has_no_price_sample_and_says_it_is_stale() -> None:
    m = MarketState(config(), now=0.0)
    feed_all(m, 1.0)
    metrics = Metrics()
    exporter = GaugeExporter()
    exporter.export(m, metrics, 2.0)

    def sample(name: str, venue: str = "okx") -> float | None:
        return metrics.registry.get_sample_value(name, {"asset": "BTC", "exchange": venue})

    assert sample("hedgewatch_source_price") == 100_000.0
    assert sample("hedgewatch_source_stale") == 0.0
    feed_all(m, 11.5, venues=[v for v in VENUES[:3] if v != "okx"])  # okx goes quiet, the others not
    m.tick(12.0)
    exporter.export(m, metrics, 12.0)
    assert sample("hedgewatch_source_price") is None  # not exported as if current
    assert sample("hedgewatch_source_stale") == 1.0
    assert sample("hedgewatch_source_age_seconds") == pytest.approx(11.0)
    assert sample("hedgewatch_source_excluded") == 1.0
    other = next(v for v in VENUES[:3] if v != "okx")
    assert sample("hedgewatch_source_price", other) == 100_000.0
    feed_all(m, 13.0)  # fresh again: the series comes back
    exporter.export(m, metrics, 13.0)
    assert sample("hedgewatch_source_price") == 100_000.0 and sample("hedgewatch_source_stale") == 0.0

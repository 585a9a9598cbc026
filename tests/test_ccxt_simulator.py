"""A real ccxt exchange class (``ccxt.pro.binanceusdm``) against the bundled simulator on loopback, which
speaks Binance USDⓈ-M's REST and websocket: quotes, mark and index, funding with its interval, open interest
and kline history through ccxt's unified calls, next to the native connector on the same venue."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hedgewatch.connectors import klines
from hedgewatch.connectors.binance.connector import BinanceUsdmConnector
from hedgewatch.connectors.ccxt import connector as ccxt_generic
from hedgewatch.connectors.ccxt import history as ccxt_history
from hedgewatch.connectors.ccxt.connector import CcxtConnector
from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.config import IndexConfig, SourceConfig
from hedgewatch.service.derivatives import Derivatives
from hedgewatch.service.events import Funding, MarkPrice, OpenInterest, Quote
from hedgewatch.service.metrics import Metrics
from tests.connector_fakes import FAST, of
from tests.support import wait_for

INTERVALS_H = {"BTC": 1, "ETH": 4, "SOL": 8}
ASSETS = tuple(INTERVALS_H)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    sc = load_scenario("default.yaml")
    assets = {a: s.model_copy(update={"funding_interval_h": INTERVALS_H[a]}) for a, s in sc.assets.items()}
    venues = [v for v in sc.venues if v.protocol == "binanceusdm"]
    async with Simulator(sc.model_copy(update={"assets": assets, "venues": venues})) as s:
        yield s


def source(sim: Simulator, **kw: Any) -> SourceConfig:
    ep = next(e for e in sim.endpoints if e.exchange == "binanceusdm")
    base: dict[str, Any] = {"exchange": "binanceusdm", "symbols": ASSETS, "rest_url": ep.rest_url,
                            "ws_url": ep.ws_url, "open_interest_poll_s": 0.5,
                            "channels": ["quotes", "mark", "funding", "open_interest"]}
    return SourceConfig.model_validate({**base, **kw})


def complete(events: list[Any]) -> bool:
    return all(any(e.asset == a for e in of(events, cls)) for a in ASSETS
               for cls in (Quote, MarkPrice, Funding, OpenInterest))


async def test_a_ccxt_venue_gives_quotes_mark_funding_with_interval_and_open_interest(
        sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ccxt_generic, "FUNDING_POLL_S", 0.5)
    ccxt_events: list[Any] = []
    native_events: list[Any] = []
    conn = CcxtConnector(source(sim, name="via-ccxt"), ccxt_events.append, Metrics(), tuning=FAST)
    native = BinanceUsdmConnector(source(sim), native_events.append, Metrics(), tuning=FAST)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(conn.run(), name="ccxt"), tg.create_task(native.run(), name="native")]
        await wait_for(lambda: complete(ccxt_events) and complete(native_events), 20,
                       "every kind of event of every asset from both connectors")
        status = conn.status()
        for t in tasks:
            t.cancel()
    modes = {k.split(":")[0]: v["mode"] for k, v in status["channels"].items()}
    # quotes on the bookTicker stream, marks on the markPrice stream, funding and open interest by REST
    assert modes == {"bidask": "watch", "mark": "watch", "funding": "poll", "open_interest": "poll"}
    assert status["state"] == "running" and not status["rejected"]
    for a in ASSETS:
        q = next(e for e in ccxt_events if isinstance(e, Quote) and e.asset == a)
        nq = next(e for e in native_events if isinstance(e, Quote) and e.asset == a)
        assert (q.instrument, q.quote) == (nq.instrument, nq.quote) == (f"{a}USDT", "USDT")
        assert 0 < q.bid < q.ask and abs(q.mid / nq.mid - 1) < 0.01
        m = next(e for e in ccxt_events if isinstance(e, MarkPrice) and e.asset == a)
        assert m.index is not None and abs(m.mark / q.mid - 1) < 0.01
        oi = next(e for e in ccxt_events if isinstance(e, OpenInterest) and e.asset == a)
        assert oi.base > 0
    # 1 h, 4 h and 8 h funding: ccxt states no interval for Binance, its funding history tells it
    ccxt_f = {e.asset: e for e in of(ccxt_events, Funding)}
    native_f = {e.asset: e for e in of(native_events, Funding)}
    assert {a: f.interval_h for a, f in ccxt_f.items()} == {a: float(h) for a, h in INTERVALS_H.items()}
    assert {a: f.interval_h for a, f in native_f.items()} == {a: float(h) for a, h in INTERVALS_H.items()}
    # ... and both normalize to the same 8 h rate
    for a in ASSETS:
        cfg = IndexConfig(constituents=ASSETS)
        via_ccxt, via_native = Derivatives(cfg), Derivatives(cfg)
        via_ccxt.on_funding(ccxt_f[a])
        via_native.on_funding(native_f[a])
        now = max(ccxt_f[a].ts_recv, native_f[a].ts_recv)
        expected = ccxt_f[a].rate * 8.0 / INTERVALS_H[a]
        assert via_ccxt.asset_funding(a, now) == pytest.approx(expected)
        assert via_native.asset_funding(a, now) == pytest.approx(expected, rel=0.2)


async def test_kline_history_through_fetch_ohlcv_is_paged_and_matches_the_native_one(
        sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ccxt_history, "PAGE_LIMIT", 7)  # 30 hourly bars in five pages
    calls = 0
    real = ccxt_generic.default_factory

    def counting(src: SourceConfig) -> Any:
        ex = real(src)
        fetch = ex.fetch_ohlcv

        async def fetch_ohlcv(*a: Any, **kw: Any) -> Any:
            nonlocal calls
            calls += 1
            return await fetch(*a, **kw)

        ex.fetch_ohlcv = fetch_ohlcv
        return ex

    src = source(sim)
    needs = {"BTC": {3600: 30}, "ETH": {86400: 10}}
    got = await ccxt_history.fetch_history(src, needs, time.time, factory=counting)
    native = await klines.fetch_history(src, needs)
    assert calls >= 5 + 2
    for asset, tf, n in (("BTC", 3600, 30), ("ETH", 86400, 10)):
        bars = [c for c in got if c.asset == asset and c.timeframe_s == tf]
        assert len(bars) == n
        assert all(b.open_ts - a.open_ts == tf for a, b in itertools.pairwise(bars))
        assert [b.closed for b in bars] == [True] * (n - 1) + [False]  # the last one still forming
        ref = {c.open_ts: c for c in native if c.asset == asset and c.timeframe_s == tf}
        for b in bars[:-1]:
            r = ref[b.open_ts]
            assert (b.open, b.high, b.low, b.close, b.volume) == (r.open, r.high, r.low, r.close, r.volume)


async def test_watch_ticker_streams_the_mini_ticker_which_has_no_bid_or_ask(sim: Simulator) -> None:
    """Why ccxt's ``watch_ticker`` gave no quotes on Binance: it subscribes ``<symbol>@miniTicker`` (the
    simulator did not serve it, and ccxt ignores the error reply), and a mini ticker carries no bid or ask;
    quotes come from ``watch_bids_asks`` (``bookTicker``)."""
    ex = ccxt_generic.default_factory(source(sim))
    try:
        t = await asyncio.wait_for(ex.watch_ticker("BTC/USDT:USDT"), 10)
        assert t["last"] > 0 and t["bid"] is None and t["ask"] is None
        b = (await asyncio.wait_for(ex.watch_bids_asks(["BTC/USDT:USDT"]), 10))["BTC/USDT:USDT"]
        assert 0 < b["bid"] < b["ask"]
    finally:
        await ex.close()


def test_unknown_funding_interval_stays_unknown() -> None:
    d = Derivatives(IndexConfig(constituents=ASSETS))
    d.on_funding(Funding("x", "BTC", "BTCUSDT", 0.0001, 8.0, None, 1.0, 1.0))
    assert d.asset_funding("BTC", 1.0) == pytest.approx(0.0001)
    # the same venue now states no interval: its rate cannot be normalized, so it is left out, not 8 h
    d.on_funding(Funding("x", "BTC", "BTCUSDT", 0.0001, 0.0, None, 2.0, 2.0))
    assert d.asset_funding("BTC", 2.0) is None
    assert d.funding_unknown_interval["BTC"]["x"] == (0.0001, 2.0)
    d.on_funding(Funding("y", "BTC", "BTC-USDT-SWAP", 0.0001, 1.0, None, 3.0, 3.0))
    assert d.asset_funding("BTC", 3.0) == pytest.approx(0.0008)  # 1 h rate x 8

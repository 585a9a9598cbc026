"""Indicators: candles from ticks and klines, moving averages, pivots, levels, trendlines, extremes,
funding and open-interest windows."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgewatch.rules.candles import CandleSeries
from hedgewatch.rules.expr import compile_expr
from hedgewatch.rules.indicators import EMA, SMA, History, Pivots, floor_pivots, line_through, trendline
from hedgewatch.rules.signals import SignalBook
from hedgewatch.service.events import Candle

DAY = 86400


def kline(ts: float, close: float, tf: int = DAY, asset: str = "HW", high: float | None = None,
          low: float | None = None, volume: float = 1.0, closed: bool = True) -> Candle:
    return Candle("binanceusdm", asset, asset, tf, ts, close, high if high is not None else close,
                  low if low is not None else close, close, volume, closed, ts, ts)


def book_with(*exprs: str, **kw) -> SignalBook:
    b = SignalBook("HW", **kw)
    for e in exprs:
        compile_expr(e, b)
    return b


def test_series_from_ticks_closes_bars_on_time() -> None:
    s = CandleSeries(60)
    closed = []
    s.listeners.append(closed.append)
    for ts, p in [(0, 10), (20, 12), (59, 11), (60, 13), (130, 9)]:
        s.tick(ts, p, 1.0)
    assert [(b.open_ts, b.open, b.high, b.low, b.close, b.volume) for b in closed] == [
        (0, 10, 12, 10, 11, 3.0), (60, 13, 13, 13, 13, 1.0)]
    assert s.forming is not None and s.forming.open_ts == 120
    s.tick(10, 99)  # the past is ignored
    assert s.forming.close == 9


def test_finer_klines_aggregate_and_an_exact_kline_replaces_them() -> None:
    s = CandleSeries(3600)
    for i in range(60):
        s.add(i * 60, 60, 100 + i, 101 + i, 99 + i, 100.5 + i, 2.0, True)
    bar = s.closed[-1]
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (100, 160, 99, 159.5, 120.0)
    s.add(3600, 60, 1, 2, 0.5, 1.5, 1.0, True)
    s.add(3600, 3600, 5, 6, 4, 5.5, 42.0, True)
    assert (s.closed[-1].open, s.closed[-1].volume) == (5, 42.0)


def test_history_arriving_after_live_ticks_fills_the_gap_behind_the_live_bar() -> None:
    s = CandleSeries(DAY)
    sma = SMA(3)
    s.listeners.append(sma.on_bar)
    now = 10 * DAY + 3600
    s.tick(now, 120.0)  # live ticks started today's bar before the kline history came back
    for d in range(7, 10):
        s.add(d * DAY, DAY, 100 + d, 101 + d, 99 + d, 100 + d, 1.0, True)
    s.add(10 * DAY, DAY, 110, 121, 109, 119, 0.0, False)  # the venue's forming kline of today
    assert [b.open_ts for b in s.closed] == [7 * DAY, 8 * DAY, 9 * DAY]
    assert sma.value == pytest.approx(108.0)
    assert s.forming is not None and (s.forming.open_ts, s.forming.high) == (10 * DAY, 121)
    s.add(8 * DAY, DAY, 1, 1, 1, 1, 1.0, True)  # behind the last closed bar: ignored
    assert s.closed[-1].close == 109
    # finer history klines behind the live bar aggregate into their own bucket and close it in order
    h = CandleSeries(DAY)
    h.tick(now, 5.0)
    for i in range(24):
        h.add(9 * DAY + i * 3600, 3600, 50 + i, 51 + i, 49 + i, 50.5 + i, 1.0, True)
    assert [(b.open_ts, b.open, b.high, b.low, b.close, b.volume) for b in h.closed] == [
        (9 * DAY, 50, 74, 49, 73.5, 24.0)]
    h.add(8 * DAY + 3600, 3600, 1, 1, 1, 1, 1.0, True)
    assert h.forming is not None and h.forming.open_ts == 10 * DAY and h.backfill is None


@given(st.lists(st.floats(1, 1e6), min_size=1, max_size=200), st.integers(1, 30))
@settings(max_examples=50)
def test_sma_and_ema_match_their_definitions(closes: list[float], n: int) -> None:
    sma, ema = SMA(n), EMA(n)
    s = CandleSeries(60)
    s.listeners += [sma.on_bar, ema.on_bar]
    for i, c in enumerate(closes):
        s.add(i * 60, 60, c, c, c, c, 0.0, True)
    if len(closes) < n:
        assert sma.value is None and ema.value is None
        return
    assert sma.value == pytest.approx(sum(closes[-n:]) / n, rel=1e-9)
    e = sum(closes[:n]) / n
    for c in closes[n:]:
        e += 2 / (n + 1) * (c - e)
    assert ema.value == pytest.approx(e, rel=1e-9)


def test_50_day_ma_is_right_from_the_first_minute() -> None:
    b = book_with('price < sma(50, "1d")', 'price > ema(20, "1d")')
    t0 = 1_700_000_000 - 1_700_000_000 % DAY
    closes = [1000 + 3 * i for i in range(60)]
    for i, c in enumerate(closes):
        b.on_candle(kline(t0 + i * DAY, c))
    now = t0 + 60 * DAY + 60
    env = b.update({"index": "HW", "ts": now, "level": 1100.0, "status": "ok"}, now)
    assert env["sma_50_1d"] == pytest.approx(sum(closes[-50:]) / 50)
    assert env["ema_20_1d"] is not None


def test_bootstrap_ignores_klines_of_other_assets_for_the_index() -> None:
    b = book_with('price < sma(2, "1d")', 'asset_sma("BTC", 2, "1d") > 0')
    for i in range(3):
        b.on_candle(kline(i * DAY, 10.0 * (i + 1)))
        b.on_candle(kline(i * DAY, 1000.0 * (i + 1), asset="BTC"))
    env = b.update({"level": 1.0, "ts": 3 * DAY + 1}, 3 * DAY + 1)
    assert env["sma_2_1d"] == 25.0 and env["asset_sma_BTC_2_1d"] == 2500.0


def test_pivots_fib_and_fitted_trendline() -> None:
    p = Pivots(strength=1)
    s = CandleSeries(DAY)
    s.listeners.append(p.on_bar)
    lows = [100, 90, 100, 110, 95, 105, 120, 150, 130]
    for i, low in enumerate(lows):
        s.add(i * DAY, DAY, low + 5, low + 10, low, low + 5, 0, True)
    assert [v for _, v in p.lows] == [90, 95]  # the last bar is not confirmed yet
    assert p.last_high == 160  # bar 7: high 160 above its neighbours
    # last swing: low 95 (day 4) then high 160 (day 7): an up swing, retraced from the high
    assert p.fib(0.618) == pytest.approx(160 - 0.618 * (160 - 95))


def test_level_from_config_and_floor_pivots() -> None:
    b = book_with('price > level("R1")', 'price < level("S1")', 'price > level("big")', levels={"big": 5000})
    b.on_candle(kline(0, 100, high=110, low=90))
    env = b.update({"level": 100.0, "ts": DAY + 5}, DAY + 5)
    piv = floor_pivots(type("B", (), {"high": 110, "low": 90, "close": 100})())
    assert env["level_R1"] == piv["R1"] == pytest.approx(110)
    assert env["level_S1"] == pytest.approx(90)
    assert env["level_big"] == 5000


def _trend_bars(trend, days: int = 200) -> list[Candle]:
    """Daily index klines: ``trend(d)`` with a 12-day wave and a little ripple, so swing pivots form."""
    out, prev = [], trend(0)
    for d in range(days):
        c = trend(d) + 6 * math.sin(2 * math.pi * d / 12) + 1.5 * math.sin(d * 1.7)
        hi, lo = max(prev, c) + 1 + 0.2 * (d % 3), min(prev, c) - 1 - 0.2 * ((d + 1) % 3)
        out.append(Candle("binanceusdm", "HW", "HW", DAY, d * DAY, prev, hi, lo, c, 1.0, True, d * DAY, d * DAY))
        prev = c
    return out


@pytest.mark.parametrize("shape", ["uptrend", "downtrend", "accelerating fall", "slowing rise"])
def test_support_trendline_sits_under_the_lows_and_resistance_over_the_highs(shape: str) -> None:
    trend = {"uptrend": lambda d: 100 + 0.5 * d, "downtrend": lambda d: 300 - 0.5 * d,
             "accelerating fall": lambda d: 300 - 0.004 * d * d, "slowing rise": lambda d: 100 + 12 * d ** 0.5}[shape]
    b = book_with('price < trendline("long_term")', 'price > trendline("top")', pivot_strength=3,
                  trendlines={"top": {"fit": "highs", "timeframe": "1d", "window": "180d"}})
    bars = _trend_bars(trend)
    for c in bars:
        b.on_candle(c)
    now = 200 * DAY + 3600
    price = bars[-1].close
    env = b.update({"level": price, "ts": now}, now)
    support, resistance = env["trendline_long_term"], env["trendline_top"]
    start = now - 180 * DAY
    piv = b.pivots[("", DAY)]
    for pivots, over, value in ((piv.lows, False, support), (piv.highs, True, resistance)):
        line = trendline(pivots, bars, start, over)
        assert line is not None
        t1, p1, t2, p2 = line
        assert value == pytest.approx(line_through(t1, p1, t2, p2, now))
        assert (t1, p1) in pivots and (t2, p2) in pivots  # it touches two swing pivots
        sign = -1 if over else 1
        # every swing pivot from the first anchor on is on its side, and no close between the anchors
        # crosses it
        for t, v in pivots:
            if t1 <= t <= t2:
                assert sign * (v - line_through(t1, p1, t2, p2, t)) >= -1e-6
        for c in bars:
            if t1 <= c.open_ts <= t2:
                assert sign * (c.close - line_through(t1, p1, t2, p2, c.open_ts)) >= -1e-6
    # in the window, the support is under every swing low after its first anchor, whatever the trend; the
    # resistance over every swing high
    assert support < resistance
    assert all(v >= line_through(*trendline(piv.lows, bars, start), t) - 1e-6
               for t, v in piv.lows if t >= trendline(piv.lows, bars, start)[0])
    if shape == "accelerating fall":  # the fall outruns its own support line: a break
        assert price < support < resistance
    else:  # price trades between the two lines
        assert support < price < resistance


def test_anchored_trendline_from_config() -> None:
    b = book_with('price < trendline("up")',
                  trendlines={"up": {"anchors": [["1970-01-01T00:00:00Z", 100], [DAY, 110]]}})
    env = b.update({"level": 1.0, "ts": 2 * DAY}, 2 * DAY)
    assert env["trendline_up"] == pytest.approx(120)


def test_all_time_high_is_the_high_before_this_evaluation() -> None:
    b = book_with("price > ath", "price < atl")
    b.on_candle(kline(0, 100, high=120, low=80))
    c = compile_expr("price > ath", b)
    got = []
    for t, level in [(DAY, 110.0), (DAY + 1, 121.0), (DAY + 2, 121.0), (DAY + 3, 125.0)]:
        env = b.update({"level": level, "ts": t}, t)
        got.append(c.fn(env))
        b.commit()
    assert got == [False, True, False, True]
    assert (b.ath, b.atl) == (125.0, 80.0)


def _oi_snap(t: float, price: float, venues: dict[str, float], published: dict | None = None) -> dict:
    """A snapshot with BTC at ``price`` and its open interest per venue in contracts (base units)."""
    return {"level": 1.0, "ts": t, "constituents": {"BTC": {"price": price}},
            "derivatives": {"funding_rate_8h": 0.0001 * math.sin(t / 3600),
                            "open_interest_change": published or {}},
            "assets": {"BTC": {"open_interest_venues": {v: [b, b * price] for v, b in venues.items()}}}}


def test_funding_extremes_and_open_interest_change() -> None:
    b = book_with('funding_max("8h") > 0', 'funding_min("8h") < 0', 'oi_change("1h") > 0',
                  'oi_change("4h") > 0')
    for i in range(0, 5 * 3600, 600):
        env = b.update(_oi_snap(float(i), 100.0 + i / 100, {"binanceusdm": 1e6 + i * 10.0}, {"1h": 0.5}),
                       float(i))
    vals = [0.0001 * math.sin(i / 3600) for i in range(0, 5 * 3600, 600)]
    assert env["funding_max_8h"] == pytest.approx(max(vals))
    assert env["funding_min_8h"] == pytest.approx(min(vals))
    assert env["oi_change_1h"] == 0.5  # the pricing core's own figure wins when it publishes one
    # now 17400 s: the base is the sample at or before 17400 s - 4 h = 3000 s; in contracts, whatever the
    # price did meanwhile
    assert env["oi_change_4h"] == pytest.approx((1e6 + 174000) / (1e6 + 30000) - 1)


def test_open_interest_change_survives_a_venue_outage_and_a_restart() -> None:
    """The book's own history (windows the pricing core does not publish): a venue that drops out is left
    out of both ends, never read as a fall; the history is persisted."""
    b = book_with('oi_change("15m") > 0')
    env: dict = {}
    for i in range(0, 3600, 60):
        venues = {"binanceusdm": 1000.0 + i / 60, "okx": 1000.0 + i / 60, "bybit": 1000.0 + i / 60}
        if i >= 1800:
            venues.pop("okx")  # okx stops reporting half-way
        env = b.update(_oi_snap(float(i), 100.0 * (1 + i / 36000), venues), float(i))
        assert env["oi_change_15m"] is None or env["oi_change_15m"] > 0
    assert env["oi_change_15m"] == pytest.approx(15 / (1000 + 59 - 15))
    again = book_with('oi_change("15m") > 0')
    again.load(b.dump())
    env = again.update(_oi_snap(3600.0, 120.0, {"binanceusdm": 1060.0, "bybit": 1060.0}), 3600.0)
    assert env["oi_change_15m"] == pytest.approx(15 / (1000 + 45))


def test_history_change_needs_the_whole_window() -> None:
    h = History(3600, 60)
    h.add(0, 100.0)
    h.add(1800, 110.0)
    assert h.change(1800, 3600) is None
    h.add(3600, 120.0)
    assert h.change(3600, 3600) == pytest.approx(0.2)


def test_volume_and_its_average() -> None:
    b = book_with('volume("1h", 1) > 1.5 * volume_sma(3, "1h")', 'volume("1h") > 0')
    for i, v in enumerate([10, 20, 30, 90]):
        b.on_candle(kline(i * 3600, 100, tf=3600, volume=v))
    env = b.update({"level": 100.0, "ts": 4 * 3600 + 10}, 4 * 3600 + 10)
    assert env["volume_1h_1"] == 90 and env["volume_sma_3_1h"] == pytest.approx(140 / 3)
    assert env["volume_1h_0"] == 0.0


def test_snapshot_signals_and_missing_values() -> None:
    b = book_with("contango and basis_annualized > 0", "asset_funding('BTC') > 0", "volume_24h > 0",
                  "index_degraded or confidence > 0 or sources_min > 2")
    env = b.update({"level": 1.0, "status": "degraded", "ts": 1.0,
                    "constituents": {"BTC": {"price": 1, "confidence": 0.002, "sources": 3}},
                    "derivatives": {"state": "contango", "basis_annualized": None},
                    "assets": {"BTC": {"funding_rate_8h": 0.0002, "volume_24h": 5.0},
                               "ETH": {"volume_24h": 7.0}}}, 1.0)
    assert env["contango"] is True and env["basis_annualized"] is None
    assert env["asset_funding_BTC"] == 0.0002 and env["volume_24h"] == 12.0
    assert env["index_degraded"] is True and env["confidence"] == 0.002 and env["sources_min"] == 3


def test_index_history_back_cast_from_constituent_klines(tmp_path) -> None:
    from hedgewatch.rules.stage import RuleStage
    from tests.rules_support import config_for

    f = tmp_path / "r.yaml"
    f.write_text('groups:\n  - name: g\n    rules:\n      - {name: M, expr: \'price < sma(3, "1d")\', '
                 'action: notify}\n')
    stage = RuleStage(config_for(f), 0.0)
    klines = []
    for d in range(4):
        klines.append(kline(d * DAY, 100.0 + d, asset="BTC", volume=2.0))
        klines.append(kline(d * DAY, 10.0, asset="ETH", volume=5.0))
    klines.append(kline(4 * DAY, 50.0, asset="BTC"))  # no ETH bar that day: no index bar
    stage.bootstrap(klines)
    # units BTC 1, ETH 2; level 60 now with BTC 100, ETH 10 -> divisor (100 + 20) / 60 = 2
    snap = {"index": "HW", "ts": 5 * DAY + 1, "level": 60.0, "status": "ok",
            "constituents": {"BTC": {"price": 100.0, "units": 1.0}, "ETH": {"price": 10.0, "units": 2.0}}}
    stage.evaluate(snap, 5 * DAY + 1)
    closes = [(100.0 + d + 20.0) / 2 for d in range(4)]
    assert stage.env["sma_3_1d"] == pytest.approx(sum(closes[-3:]) / 3)
    assert stage.book.ath == pytest.approx(closes[-1])
    assert not stage.book.index_klines  # back-cast bars are ours: live constituent klines still credit volume


def test_live_constituent_klines_credit_usd_volume_to_index_bars() -> None:
    b = book_with('volume("1h", 1) > volume_sma(2, "1h")', assets=("BTC", "ETH"))
    b.update({"level": 100.0, "ts": 0.0}, 0.0)
    b.on_candle(kline(0, 50.0, tf=60, asset="BTC", volume=2.0))  # 100 USD into the forming hour
    b.update({"level": 101.0, "ts": 3600.0}, 3600.0)  # the hour closes
    b.on_candle(kline(3540, 10.0, tf=60, asset="ETH", volume=3.0))  # late kline of the closed hour: +30
    b.on_candle(kline(3600, 10.0, tf=60, asset="ETH", volume=1.0, closed=False))  # unclosed: ignored
    env = b.update({"level": 102.0, "ts": 7200.0}, 7200.0)
    assert env["volume_1h_1"] == 0.0 and b.series[("", 3600)].closed[-2].volume == 130.0
    assert env["volume_sma_2_1h"] == 65.0
    b.on_candle(kline(7200, 1.0, tf=60))  # a kline of the index itself: constituent credit stops
    b.on_candle(kline(7200, 50.0, tf=60, asset="BTC", volume=2.0))
    assert b.series[("", 3600)].forming.volume == 1.0


def test_bootstrap_after_the_first_evaluation_still_gives_the_50_day_average(tmp_path) -> None:
    """The daemon evaluates as soon as the index is built; the kline history may come back later."""
    from hedgewatch.rules.stage import RuleStage
    from tests.rules_support import config_for

    f = tmp_path / "r.yaml"
    f.write_text('groups:\n  - name: g\n    rules:\n      - {name: M, expr: \'price < sma(50, "1d")\', '
                 'action: notify}\n')
    stage = RuleStage(config_for(f), 0.0)
    now = 60 * DAY + 120
    snap = {"index": "HW", "ts": now, "level": 60.0, "status": "ok",
            "constituents": {"BTC": {"price": 100.0, "units": 1.0}, "ETH": {"price": 10.0, "units": 2.0}}}
    stage.evaluate(snap, now)
    assert stage.env["sma_50_1d"] is None
    # 50 closed days and today's forming kline, as a venue answers
    klines = [kline(d * DAY, 100.0 + d, asset=a, closed=d < 60) for d in range(10, 61) for a in ("BTC", "ETH")]
    stage.bootstrap(klines)
    stage.evaluate({**snap, "ts": now + 1}, now + 1)
    # divisor (100 + 2 x 10) / 60 = 2: each day's index close is (BTC + 2 ETH) / 2
    closes = [(100.0 + d) * 3 / 2 for d in range(10, 60)]
    assert stage.env["sma_50_1d"] == pytest.approx(sum(closes) / 50)


def test_weekly_bars_open_on_monday_like_the_venues() -> None:
    from datetime import UTC, datetime

    from hedgewatch.rules.candles import bar_open

    wed = datetime(2026, 1, 7, 15, 30, tzinfo=UTC).timestamp()  # a Wednesday afternoon
    assert datetime.fromtimestamp(bar_open(wed, 604_800), UTC) == datetime(2026, 1, 5, tzinfo=UTC)  # Monday
    sunday_night = datetime(2026, 1, 11, 23, 59, tzinfo=UTC).timestamp()
    assert bar_open(sunday_night, 604_800) == bar_open(wed, 604_800)  # the week closes Sunday 23:59:59 UTC
    assert datetime.fromtimestamp(bar_open(wed, 86_400), UTC) == datetime(2026, 1, 7, tzinfo=UTC)

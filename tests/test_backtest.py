"""Backtests on hand-made history files, with answers computed by hand, and property tests of the accounts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hedgewatch.service.backtest.run import run_backtest
from hedgewatch.service.backtest.stats import summary_table
from hedgewatch.service.config import HedgeInstrumentConfig
from hedgewatch.service.history.files import HistoryError, load_history
from tests.backtest_support import DAY, HOUR, config, kline_rows, ts, write_funding, write_klines, write_market_chart

START = ts("2024-03-01")


def flat(folder: Path, asset: str, price: float, hours: int, funding: list[tuple[float, float]] | None = None,
         **kw: object) -> None:
    write_klines(folder, f"{asset}USDT", "1h", kline_rows(START, HOUR, [price] * hours), **kw)  # type: ignore[arg-type]
    if funding is not None:
        write_funding(folder, f"{asset}USDT", funding)


def sizing_config(index: dict | None = None, **kw: object):  # type: ignore[no-untyped-def,type-arg]
    # $500,000 of the index (250 units at 2,000 points), a 50% hedge, $100 a point
    return config(["BTC"], holdings={"HB": 250}, ratio=0.5, multiplier=100, lot_size=0.01,
                  index={"base_level": 2000.0, **(index or {})}, **kw)  # type: ignore[arg-type]


def test_the_sizing_example_as_a_static_hedge(tmp_path: Path) -> None:
    flat(tmp_path, "BTC", 50_000.0, 24, funding=[(START, 0.0)])
    res = run_backtest(sizing_config(), load_history(tmp_path), START, START + DAY)
    static = res.tracks["static"]
    first = static.advice[0]
    # $500,000 x 50% = $250,000 at 2,000 points x $100 = 1.25 contracts, sold at the first bar close
    assert (first["portfolio_value_usd"], first["target_notional_usd"], first["target_contracts"]) == (
        500_000, 250_000, 1.25)
    assert first["side"] == "sell" and first["ts"] == START + HOUR
    assert static.position[0] == -1.25 and set(static.position) == {-1.25}
    assert res.tracks["unhedged"].position == [0.0] * 24
    assert len(static.advice) == 1  # nothing moved: no further advice


def test_a_constant_price_makes_no_pnl_but_pays_fees_and_gets_funding(tmp_path: Path) -> None:
    fundings = [(START + k * 8 * HOUR, 1e-4) for k in range(7)]
    flat(tmp_path, "BTC", 50_000.0, 48, funding=fundings)
    cfg = sizing_config(ledger={"fee_bps": 4.0, "slippage_bps": 2.0})
    res = run_backtest(cfg, load_history(tmp_path), START, START + 2 * DAY)
    led = res.ledgers["static"]
    # sold 1.25 at 2,000 less 2 bps = 1,999.6: the slippage is the only price P&L
    assert led["pnl_usd"] == pytest.approx(-1.25 * 100 * 0.4)  # -$50
    assert led["fees_usd"] == pytest.approx(1.25 * 100 * 1999.6 * 4e-4)  # $99.98
    # funding at 08:00, 16:00, 00:00, 08:00, 16:00, 00:00 after the first bar close: 6 x $250,000 x 0.01%
    assert led["fundings"] == 6 and led["funding_usd"] == pytest.approx(6 * 25.0)
    un = res.tracks["unhedged"]
    assert set(un.hedged) == {500_000.0}  # nothing moved
    row = {r["rule_set"]: r for r in summary_table(res)}
    assert row["unhedged"]["return_ratio"] == 0.0 and row["unhedged"]["max_drawdown_ratio"] == 0.0
    assert row["static"]["end_value_usd"] == pytest.approx(500_000 - 50 - 99.98 + 150)
    assert row["static"]["funding_net_usd"] == pytest.approx(150) and row["static"]["hedge_changes"] == 1
    assert row["static"]["funding_received_usd"] == pytest.approx(150) and row["static"]["funding_paid_usd"] == 0


def test_one_funding_payment_of_known_size(tmp_path: Path) -> None:
    flat(tmp_path, "BTC", 50_000.0, 12, funding=[(START, 0.0), (START + 8 * HOUR, 3e-4)])
    res = run_backtest(sizing_config(), load_history(tmp_path), START, START + 12 * HOUR)
    led = res.ledgers["static"]
    # the 08:00 settlement at 0.03% on the $250,000 short: $75 received
    assert led["fundings"] == 1 and led["funding_usd"] == pytest.approx(75.0)
    fund = res.tracks["static"].funding
    assert fund[6] == 0.0 and fund[7] == pytest.approx(75.0)  # bar 7 closes at 08:00
    assert not any("funding" in n for n in res.notes)


def test_missing_funding_is_zero_and_said_so(tmp_path: Path) -> None:
    flat(tmp_path, "BTC", 50_000.0, 24)
    res = run_backtest(sizing_config(), load_history(tmp_path), START, START + DAY)
    assert res.ledgers["static"]["funding_usd"] == 0.0
    assert "no funding data for BTC: its funding is counted as zero" in res.notes


def test_missing_prices_are_not_filled_in(tmp_path: Path) -> None:
    rows = kline_rows(START, HOUR, [100.0] * 24)
    del rows[10:13]  # three hours missing
    write_klines(tmp_path, "BTCUSDT", "1h", rows)
    flat(tmp_path, "ETH", 10.0, 24)
    cfg = config(["BTC", "ETH"], holdings={"HB": 1000}, ratio=0.2)
    res = run_backtest(cfg, load_history(tmp_path), START, START + DAY)
    # the last price stands for one bar (the data's resolution), then BTC is stale and the index says so
    assert res.status[9:14] == ["ok", "ok", "degraded", "degraded", "ok"]
    assert "BTC: 3 bars without a price (not filled in: the last price stands for one bar, then the asset is " \
           "stale)" in res.notes


def test_the_data_shapes_binance_publishes(tmp_path: Path) -> None:
    # monthly zipped without a header, daily plain with one, overlapping: each bar once
    rows = kline_rows(START, HOUR, [100.0 + i for i in range(48)])
    write_klines(tmp_path / "monthly", "BTCUSDT", "1h", rows, header=False, zipped=True)
    write_klines(tmp_path / "daily", "BTCUSDT", "1h", rows[:24], daily=True)
    write_funding(tmp_path, "BTCUSDT", [(START, 1e-4)], zipped=True)
    h = load_history(tmp_path)
    bars = h.klines["BTC"][3600]
    assert [b.close for b in bars] == [100.0 + i for i in range(48)]
    assert h.funding["BTC"] == [(START, 1e-4, 8.0)]
    bad = tmp_path / "bad" / "ETHUSDT-1h-2024-03.csv"
    bad.parent.mkdir()
    bad.write_text("1709251200000,1,2\n")
    with pytest.raises(HistoryError, match=r"ETHUSDT-1h-2024-03.csv:1: a kline needs 12 columns, got 3"):
        load_history(tmp_path)


def test_a_rebalance_uses_the_market_caps_of_that_day(tmp_path: Path) -> None:
    # three assets, cap-weighted, rebalanced monthly on the 15th at 16:00; the caps turn over on the 10th
    hours = 20 * 24
    for a, price in (("AAA", 10.0), ("BBB", 20.0), ("CCC", 40.0)):
        write_klines(tmp_path, f"{a}USDT", "1h", kline_rows(START, HOUR, [price] * hours))
    before = {"AAA": 600e9, "BBB": 300e9, "CCC": 100e9}
    after = {"AAA": 100e9, "BBB": 300e9, "CCC": 600e9}
    for a in before:
        rows = [(START + d * DAY, 1.0, (before if d < 10 else after)[a]) for d in range(20)]
        write_market_chart(tmp_path, a, rows)
    cfg = config(["AAA", "BBB", "CCC"], holdings={"HB": 1000}, ratio=0.0,
                 index={"weighting": "cap", "rebalance": {"schedule": "monthly", "day": 15, "time_utc": "16:00"},
                        # today's caps, which a backtest must not use
                        "market_caps": {"AAA": 1e9, "BBB": 1e9, "CCC": 1e9}})
    res = run_backtest(cfg, load_history(tmp_path), START, START + hours * HOUR)
    built, rebalanced = res.compositions
    assert built["ts"] == START + HOUR
    assert built["weights"] == pytest.approx({"AAA": 0.6, "BBB": 0.3, "CCC": 0.1})
    assert rebalanced["ts"] == ts("2024-03-15T16:00:00")
    assert rebalanced["weights"] == pytest.approx({"AAA": 0.1, "BBB": 0.3, "CCC": 0.6})
    assert res.level[-1] == pytest.approx(1000.0)  # constant prices: the level stays continuous


# --- properties ---------------------------------------------------------------------------------------

paths = st.lists(st.floats(-0.04, 0.04), min_size=6, max_size=30)


def _run(tmp: Path, moves: list[float], rates: list[float], ratio: float, units: float, fees: float):  # type: ignore[no-untyped-def]
    for a, p0 in (("BTC", 100.0), ("ETH", 50.0)):
        closes, p = [], p0
        for i, m in enumerate(moves):
            p *= math.exp(m if a == "BTC" else -m / 2 + 0.001 * (i % 3))
            closes.append(p)
        write_klines(tmp, f"{a}USDT", "1h", kline_rows(START, HOUR, closes))
        write_funding(tmp, f"{a}USDT", [(START + k * 8 * HOUR, r) for k, r in enumerate(rates)])
    levels = {"R1": 1000.0}
    rules = tmp / "r.yaml"
    rules.write_text("groups:\n  - name: g\n    rules:\n"
                     "      - {name: Up, expr: 'price > level(\"R1\")', action: {set_hedge: 80%}}\n"
                     "      - {name: Down, expr: 'price < level(\"R1\") * 0.99', action: {set_hedge: 30%}}\n")
    cfg = config(["BTC", "ETH"], holdings={"HB": units}, ratio=ratio, multiplier=1.0, lot_size=1e-6,
                 rules=[str(rules)], levels=levels, ledger={"fee_bps": fees, "slippage_bps": fees / 2}, tolerance=0.0)
    return run_backtest(cfg, load_history(tmp), START, START + len(moves) * HOUR)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths, st.lists(st.floats(-1e-3, 1e-3), min_size=4, max_size=4), st.floats(0.0, 1.0), st.floats(0, 10))
def test_hedged_minus_unhedged_is_the_hedge_at_every_bar(tmp_path_factory: pytest.TempPathFactory,
                                                        moves: list[float], rates: list[float], ratio: float,
                                                        fees: float) -> None:
    res = _run(tmp_path_factory.mktemp("p"), moves, rates, ratio, 1000.0, fees)
    for name, tr in res.tracks.items():
        for h, u, pnl, f, fee in zip(tr.hedged, tr.unhedged, tr.pnl, tr.funding, tr.fees, strict=True):
            assert h is not None and u is not None
            assert h - u == pytest.approx(pnl + f - fee, abs=1e-6), name
    assert res.tracks["unhedged"].hedged == res.tracks["unhedged"].unhedged


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths, st.lists(st.floats(-1e-3, 1e-3), min_size=4, max_size=4))
def test_a_zero_ratio_reproduces_the_unhedged_curve(tmp_path_factory: pytest.TempPathFactory, moves: list[float],
                                                   rates: list[float]) -> None:
    res = _run(tmp_path_factory.mktemp("z"), moves, rates, 0.0, 1000.0, 5.0)
    static = res.tracks["static"]
    assert static.hedged == res.tracks["unhedged"].hedged  # exactly, bar by bar
    assert set(static.position) == {0.0} and res.ledgers["static"]["fees_usd"] == 0.0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths, st.lists(st.floats(-1e-3, 1e-3), min_size=4, max_size=4), st.floats(0.1, 1.0))
def test_doubling_the_portfolio_doubles_the_hedge_pnl(tmp_path_factory: pytest.TempPathFactory, moves: list[float],
                                                      rates: list[float], ratio: float) -> None:
    one = _run(tmp_path_factory.mktemp("a"), moves, rates, ratio, 1000.0, 0.0)
    two = _run(tmp_path_factory.mktemp("b"), moves, rates, ratio, 2000.0, 0.0)
    for name in ("configured", "static"):
        a, b = one.tracks[name], two.tracks[name]
        assert b.position == pytest.approx([2 * p for p in a.position], rel=1e-5, abs=1e-5)
        assert b.pnl == pytest.approx([2 * p for p in a.pnl], rel=1e-4, abs=1e-3)
        assert b.funding == pytest.approx([2 * p for p in a.funding], rel=1e-4, abs=1e-6)


def test_a_dated_future_is_rolled_at_its_expiry(tmp_path: Path) -> None:
    flat(tmp_path, "BTC", 50_000.0, 24, funding=[(START, 0.0)])
    cfg = sizing_config(ledger={"fee_bps": 4.0, "slippage_bps": 2.0},
                        index={"futures": {"mode": "contract", "exchange": "binanceusdm",
                                                                  "symbol": "HBUSD_240301", "multiplier": 100,
                                                                  "expiry": "2024-03-01T12:00:00Z"}})
    res = run_backtest(cfg, load_history(tmp_path), START, START + DAY)
    led = res.ledgers["static"]
    # 1.25 contracts bought back at 2,000.4 and sold again at 1,999.6 at 12:00: slippage and fees of both legs
    legs_fees = 1.25 * 100 * (2000.4 + 1999.6) * 4e-4
    assert led["rolls"] == 1 and led["changes"] == 1
    assert led["roll_cost_usd"] == pytest.approx(2 * 1.25 * 100 * 0.4 + legs_fees)
    assert led["fees_usd"] == pytest.approx(1.25 * 100 * 1999.6 * 4e-4 + legs_fees)
    assert led["position_contracts"] == -1.25


def test_a_coin_margined_hedge(tmp_path: Path) -> None:
    # 10 BTC at $50,000 hedged 50% with BTCUSD_PERP ($100 face): 2,500 contracts, whatever the price
    flat(tmp_path, "BTC", 50_000.0, 12, funding=[(START, 0.0), (START + 8 * HOUR, 1e-4)])
    cfg = config(["BTC"], holdings={"BTC": 10}, ratio=0.5, lot_size=1,
                 index={"base_level": 1000.0})
    inverse = HedgeInstrumentConfig(kind="inverse", asset="BTC", contract_size=100)
    cfg = cfg.model_copy(update={"portfolio": cfg.portfolio.model_copy(update={"instrument": inverse})})
    res = run_backtest(cfg, load_history(tmp_path), START, START + 12 * HOUR)
    static = res.tracks["static"]
    assert static.advice[0]["target_contracts"] == 2500 and static.position[-1] == -2500
    led = res.ledgers["static"]
    # the 08:00 funding on $250,000 face at 0.01%: 0.0005 BTC, $25 at 50,000
    assert led["fundings"] == 1 and led["funding_usd"] == pytest.approx(25.0)
    assert led["pnl_usd"] == pytest.approx(0.0)


def test_an_asset_no_venue_file_covers_is_priced_from_coingecko(tmp_path: Path) -> None:
    # BTC from Binance's klines; ETH only in CoinGecko's hourly market chart, up 10% over the day, with
    # four samples missing from 12:00 (never filled in: stale after the data's resolution)
    flat(tmp_path, "BTC", 100.0, 24, funding=[(START, 0.0)])

    def eth(h: float) -> float:
        return 10.0 * (1 + 0.1 * h / 24)

    hours = [h for h in range(25) if not 12 <= h < 16]
    write_market_chart(tmp_path, "ETH", [(START + h * HOUR, eth(h), 1e9) for h in hours])
    cfg = config(["BTC", "ETH"], holdings={"HB": 1000}, ratio=0.0)
    res = run_backtest(cfg, load_history(tmp_path), START, START + DAY)
    assert res.status[0] == "ok" and res.level[0] == pytest.approx(1000.0)
    # equal weights from the first bar close (01:00): the level moves by half ETH's move, bar for bar
    assert res.level[10] == pytest.approx(1000.0 * (0.5 + 0.5 * eth(11) / eth(1)), rel=1e-9)
    assert res.level[-1] == pytest.approx(1000.0 * (0.5 + 0.5 * eth(24) / eth(1)), rel=1e-9)
    # a sample up to two apart (two hours) still prices the bar; then the last price stands for one bar,
    # and ETH is stale until the next sample
    assert res.status[11:17] == ["ok", "ok", "ok", "degraded", "ok", "ok"]
    assert "ETH: 2 bars without a price (not filled in: the last price stands for one bar, then the asset is " \
           "stale)" in res.notes


def test_the_selection_at_a_rebalance_uses_the_market_caps_of_that_day(tmp_path: Path) -> None:
    # four assets, the top two by market cap; DDD overtakes BBB on the 10th, the rebalance is on the 15th
    hours = 20 * 24
    data = tmp_path / "data"
    for a in ("AAA", "BBB", "CCC", "DDD"):
        write_klines(data, f"{a}USDT", "1h", kline_rows(START, HOUR, [10.0] * hours))
    before = {"AAA": 900e9, "BBB": 500e9, "CCC": 100e9, "DDD": 200e9}
    after = {**before, "BBB": 300e9, "DDD": 700e9}
    for a in before:
        write_market_chart(data, a, [(START + d * DAY, 10.0, (before if d < 10 else after)[a]) for d in range(20)])
    # today's list, which a backtest must not use: CCC the largest
    (tmp_path / "today.json").write_text('[{"symbol": "CCC", "market_cap": 5e12}, '
                                         '{"symbol": "AAA", "market_cap": 1e9}]')
    cfg = config(list(before), holdings={"HB": 1000}, ratio=0.0,
                 index={"constituents": [], "weighting": "cap",
                        "rebalance": {"schedule": "monthly", "day": 15, "time_utc": "16:00"},
                        "selection": {"top_n": 2, "rank_buffer": 0, "path": str(tmp_path / "today.json")}})
    res = run_backtest(cfg, load_history(data), START, START + hours * HOUR)
    built, rebalanced = res.compositions
    assert built["weights"] == pytest.approx({"AAA": 900 / 1400, "BBB": 500 / 1400})
    assert rebalanced["ts"] == ts("2024-03-15T16:00:00")
    assert rebalanced["weights"] == pytest.approx({"AAA": 900 / 1600, "DDD": 700 / 1600})
    # a selection without market-cap history cannot be backtested: one line says why
    for p in (data / "coingecko").iterdir():
        p.unlink()
    with pytest.raises(HistoryError, match=r"^index.selection picks constituents by market cap as of each rebalance: "
                                           r"the data folder has no CoinGecko market_chart files$"):
        run_backtest(cfg, load_history(data), START, START + hours * HOUR)


def test_the_summary_figures_by_hand() -> None:
    from hedgewatch.service.backtest.stats import cost_of_protection, max_drawdown, monthly, volatility

    # bar closes; a bar closing at midnight on the 1st is the last bar of the month before
    times = [ts("2024-03-01T01:00:00"), ts("2024-03-15"), ts("2024-04-01"), ts("2024-04-15"), ts("2024-05-01")]
    unhedged = [100.0, 90.0, 110.0, 120.0, 108.0]
    hedged = [100.0, 95.0, 105.0, 112.0, 106.0]
    assert monthly(times, unhedged) == pytest.approx({"2024-03": 0.10, "2024-04": 108 / 110 - 1})
    assert monthly(times, hedged) == pytest.approx({"2024-03": 0.05, "2024-04": 106 / 105 - 1})
    # March is the one month the portfolio rose: 10% unhedged, 5% hedged
    assert cost_of_protection(times, hedged, unhedged) == pytest.approx(0.05)
    assert max_drawdown(unhedged) == pytest.approx(-0.10)
    assert max_drawdown(hedged) == pytest.approx(106 / 112 - 1)
    # daily returns of +10% and -10%: a sample deviation of 0.1414, times the root of 365 days
    assert volatility([100.0, 110.0, 99.0], 86400) == pytest.approx(math.sqrt(0.02) * math.sqrt(365))

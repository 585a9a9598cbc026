"""The simulator's shared path and venue models: deterministic for a seed, correlated as configured."""

from __future__ import annotations

import math

import pytest

from hedgewatch.connectors.simulator import parse_scenario
from hedgewatch.connectors.simulator.market import PricePath
from hedgewatch.connectors.simulator.venue import VenueModel
from hedgewatch.service.errors import ConfigError

SCENARIO = """
seed: {seed}
tick_interval_s: 60
history_days: 2
correlation: 0.3
correlations: {{"BTC/ETH": 0.8}}
assets:
  BTC: {{price: 60000, volatility: 0.5, jumps_per_day: 0}}
  ETH: {{price: 3000, volatility: 0.7}}
  SOL: {{price: 150, volatility: 0.9}}
venues:
  - {{name: a, protocol: binanceusdm, noise_bps: 2}}
  - {{name: b, protocol: bybit, noise_bps: 2}}
"""
START = 1_790_000_000_000


def run(seed: int, steps: int) -> tuple[PricePath, dict[str, VenueModel]]:
    sc = parse_scenario(SCENARIO.format(seed=seed))
    path = PricePath(sc, START)
    venues = {v.name: VenueModel(v, path) for v in sc.venues}
    for _ in range(steps):
        path.step()
        for m in venues.values():
            m.step(0.5)
    return path, venues


def test_same_seed_same_path_and_quotes() -> None:
    p1, v1 = run(11, 200)
    p2, v2 = run(11, 200)
    p3, _ = run(12, 200)
    assert [p1.price(a) for a in p1.names] == [p2.price(a) for a in p2.names]
    assert v1["a"].quotes["BTC"].bid == v2["a"].quotes["BTC"].bid
    assert v1["b"].quotes["ETH"].open_interest == v2["b"].quotes["ETH"].open_interest
    assert p1.price("BTC") != p3.price("BTC")
    assert p1.history["BTC"] == p2.history["BTC"] and p1.history["BTC"][-1] == 60000


def test_venues_quote_around_the_shared_path_with_their_own_noise() -> None:
    path, venues = run(5, 50)
    for asset in path.names:
        ref = path.price(asset)
        mids = [m.quotes[asset].mid for m in venues.values()]
        assert all(abs(mid / ref - 1) < 0.002 for mid in mids)
        assert mids[0] != mids[1]
        q = venues["a"].quotes[asset]
        assert q.ask > q.bid


def test_correlation_matches_the_scenario() -> None:
    sc = parse_scenario(SCENARIO.format(seed=3))
    path = PricePath(sc, START)
    rets: dict[str, list[float]] = {a: [] for a in path.names}
    last = {a: path.price(a) for a in path.names}
    for _ in range(4000):
        path.step()
        for a in path.names:
            rets[a].append(math.log(path.price(a) / last[a]))
            last[a] = path.price(a)

    def corr(x: list[float], y: list[float]) -> float:
        mx, my = sum(x) / len(x), sum(y) / len(y)
        cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
        return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))

    assert corr(rets["BTC"], rets["ETH"]) == pytest.approx(0.8, abs=0.05)
    assert corr(rets["BTC"], rets["SOL"]) == pytest.approx(0.3, abs=0.06)
    # annualized volatility of BTC's steps
    sd = math.sqrt(sum(r * r for r in rets["BTC"]) / len(rets["BTC"]))
    assert sd * math.sqrt(365 * 1440) == pytest.approx(0.5, rel=0.1)


def test_regimes_change_funding_and_open_interest_growth() -> None:
    text = (
        SCENARIO.format(seed=1)
        + """
regimes:
  - {at_s: 0, funding_rate: 0.0005, oi_growth_per_hour: 0.01}
  - {at_s: 600, assets: [BTC], funding_rate: -0.0002, oi_growth_per_hour: -0.01}
"""
    )
    sc = parse_scenario(text)
    path = PricePath(sc, START)
    venue = VenueModel(sc.venues[0], path)
    for _ in range(5):
        path.step()
        venue.step(0.0)
    assert venue.quotes["BTC"].funding_rate == pytest.approx(0.0005, abs=2e-5)
    oi_before = path.open_interest("BTC")
    assert oi_before > sc.assets["BTC"].open_interest
    for _ in range(20):
        path.step()
        venue.step(0.0)
    assert venue.quotes["BTC"].funding_rate == pytest.approx(-0.0002, abs=2e-5)
    assert venue.quotes["ETH"].funding_rate == pytest.approx(0.0005, abs=2e-5)
    assert path.open_interest("BTC") < oi_before


def test_scenario_errors_name_file_line_and_field() -> None:
    bad = SCENARIO.format(seed=1).replace("noise_bps: 2}", "noise_bps: 2, colour: red}", 1)
    with pytest.raises(ConfigError) as info:
        parse_scenario(bad, "x.yaml")
    problem = info.value.problems[0]
    assert problem.file == "x.yaml" and problem.line == 12 and problem.field == "venues.0.colour"
    assert problem.message == "unknown key"
    with pytest.raises(ConfigError, match="unknown venue"):
        parse_scenario(SCENARIO.format(seed=1) + "faults:\n  - {at_s: 1, venue: zz, kind: drop}\n")


@pytest.mark.parametrize("name", ["default.yaml", "faults.yaml", "manipulated.yaml", "four_phase.yaml",
                                  "coin_margined.yaml"])
def test_bundled_scenarios_load(name: str) -> None:
    from hedgewatch.connectors.simulator import load_scenario

    sc = load_scenario(name)
    assert sc.venues and sc.assets


def test_four_phase_story_plays_out() -> None:
    """The equal-weighted basket climbs towards the month's highest close, breaks below its 50-day average,
    falls on, then holds just above the month's lowest close while funding is negative."""
    from hedgewatch.connectors.simulator import load_scenario

    sc = load_scenario("four_phase.yaml")
    path = PricePath(sc, sc.start_time_ms or START)
    p0 = {a: path.price(a) for a in path.names}

    def basket(prices: dict[str, float]) -> float:
        return 1000.0 * sum(prices[a] / p0[a] for a in path.names) / len(path.names)

    hours = len(path.history["BTC"])
    daily = [basket({a: path.history[a][i] for a in path.names}) for i in range(hours - 1, -1, -24)][::-1]
    sma50, high, low = sum(daily[-50:]) / 50, max(daily[-30:]), min(daily[-30:])
    minutes = []  # the basket at the end of each simulated minute
    for _ in range(90):
        for _ in range(round(60 / sc.tick_interval_s)):
            path.step()
        minutes.append(basket({a: path.price(a) for a in path.names}))
    assert sma50 < 1000.0 < high
    assert 0.98 * high < min(minutes[10:40]) and max(minutes[:40]) < high  # 1: up towards resistance
    assert max(minutes[47:50]) < sma50  # 2: below the 50-day average
    assert minutes[64] < 0.97 * minutes[49]  # 3: the fall goes on
    assert low < min(minutes[65:]) and max(minutes[65:]) < 1.02 * low  # 4: support
    assert path.assets["BTC"].funding_rate < 0


def test_channels_are_checked_against_the_protocol() -> None:
    with pytest.raises(ConfigError, match="unknown channel"):
        parse_scenario(
            SCENARIO.format(seed=1).replace("noise_bps: 2}", "noise_bps: 2, rates: {tickers: 5}}", 1)
        )
    with pytest.raises(ConfigError, match="has no channel"):
        parse_scenario(
            SCENARIO.format(seed=1)
            + "faults:\n  - {at_s: 1, venue: b, kind: stall_channel, channel: bookTicker, duration_s: 1}\n"
        )

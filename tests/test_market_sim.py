"""Recorded-style scenario through the simulator: one venue quoting +50 % on BTC.

Three simulated Binance-protocol venues quote BTC and ETH around one price path; the real connectors decode
their frames into events and MarketState consumes them as the daemon would. When one venue starts quoting
BTC at +50 %, every one of its manipulated quotes must be out of the median by the update that received it
(the source excluded, or the tick dropped while the source keeps its last honest price), and the index
must stay within 0.1 % of the basket valued at the simulator's true prices.
"""

from __future__ import annotations

import asyncio
import time

from hedgewatch.connectors import build_connector
from hedgewatch.connectors.simulator import Simulator, parse_scenario
from hedgewatch.connectors.simulator.scenario import Fault
from hedgewatch.service.config import config_from_dict
from hedgewatch.service.events import Event, Quote
from hedgewatch.service.market import MarketState
from hedgewatch.service.metrics import Metrics
from tests.support import wait_for

SCENARIO = """
seed: 11
tick_interval_s: 0.02
history_days: 1
assets:
  BTC: {price: 60000, volatility: 0.5, tick_size: 0.1, qty_step: 0.001}
  ETH: {price: 3000, volatility: 0.7, tick_size: 0.01, qty_step: 0.001}
venues:
  - {name: bn-a, protocol: binanceusdm, noise_bps: 1, spread_bps: 0.5}
  - {name: bn-b, protocol: binanceusdm, noise_bps: 1, spread_bps: 0.5}
  - {name: bn-c, protocol: binanceusdm, noise_bps: 1, spread_bps: 0.5}
"""


async def test_a_venue_quoting_plus_50_percent_is_excluded_at_once_and_moves_nothing() -> None:
    async with Simulator(parse_scenario(SCENARIO)) as sim:
        cfg = config_from_dict(
            {
                "sources": [
                    {"exchange": ep.exchange, "name": ep.name, "symbols": ["BTC", "ETH"], "ws_url": ep.ws_url,
                     "rest_url": ep.rest_url, "channels": ["quotes"]}
                    for ep in sim.endpoints
                ],
                "index": {"name": "HW", "constituents": ["BTC", "ETH"], "weighting": "equal"},
            },
            env={},
        )
        market = MarketState(cfg, time.time())
        manipulated: list[tuple[str, float]] = []  # (source status after the update, index error)

        def honest_error() -> float:
            b = market.basket
            honest = sum(u * sim.reference_price(a) for a, u in b.units.items()) / b.divisor
            return abs(market.level / honest - 1)

        def sink(ev: Event) -> None:
            market.apply(ev)
            bad = type(ev) is Quote and ev.exchange == "bn-a" and ev.asset == "BTC"
            if bad and market.ready and ev.mid > 1.4 * sim.reference_price("BTC"):
                src = market.oracle("BTC").to_dict(ev.ts_recv)["sources"]["bn-a"]
                # out of the median: excluded or rejected, or a dropped absurd tick (its price stays honest)
                honest = src["price"] < 1.4 * sim.reference_price("BTC")
                out = src["status"] in ("excluded", "rejected") or honest
                manipulated.append((out, honest_error()))

        metrics = Metrics()
        connectors = [build_connector(src, sink, metrics) for src in cfg.sources]
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c.run(), name=f"connector-{c.name}") for c in connectors]
            try:
                three = lambda: market.ready and market.oracle("BTC").n_valid == 3  # noqa: E731
                await wait_for(three, 15, "three valid BTC sources")
                assert honest_error() < 0.001
                assert sim.faults is not None
                sim.faults.fire(Fault(at_s=0, venue="bn-a", kind="manipulate", asset="BTC", value=0.5,
                                       duration_s=60.0))
                await wait_for(lambda: len(manipulated) >= 10, 15, "ten manipulated quotes")
            finally:
                for t in tasks:
                    t.cancel()
        assert all(out for out, _ in manipulated), manipulated
        assert max(err for _, err in manipulated) < 0.001
        state = market.state(time.time())["oracle"]["BTC"]
        assert state["valid_sources"] == 2 and state["sources"]["bn-a"]["excluded"]

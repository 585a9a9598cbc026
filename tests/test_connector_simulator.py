"""Every native connector against the bundled exchange simulator, with its scripted faults: what a user sees
after a drop, a silent channel, garbage and absurd prices.

Bounds asserted (FAST tuning: backoff capped at 0.2 s, silence floor 0.3 s, watchdog every 0.05 s):
- after a dropped connection, quotes flow again within 2 s;
- a stalled channel is flagged silent within its bound max(1 x cadence, 0.3 s) (1 s for Binance markPrice,
  2 s for OKX mark-price) plus one watchdog period, asserted with 0.5 s of scheduling slack.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hedgewatch.connectors.simulator import Simulator, parse_scenario
from hedgewatch.connectors.simulator.scenario import Fault
from hedgewatch.connectors.simulator.server import _protocols
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.events import MarkPrice, Quote
from tests.connector_fakes import metric, of, running
from tests.support import wait_for

SCENARIO = """
seed: 11
tick_interval_s: 0.02
speed: 1
history_days: 2
assets:
  BTC: {{price: 60000, volatility: 0.5, tick_size: 0.1, qty_step: 0.001, okx_ct_val: 0.01}}
  ETH: {{price: 3000, volatility: 0.7, tick_size: 0.01, qty_step: 0.001, okx_ct_val: 0.1}}
venues:
  - {{name: sim, protocol: {protocol}, noise_bps: 1, spread_bps: 0.5}}
"""
# the channel whose stall each protocol's watchdog must notice (1 s cadence in the simulator)
MARK_CHANNEL = {"binanceusdm": "markPrice", "bybit": "tickers", "okx": "mark-price"}
PROTOCOLS = [pytest.param(p, marks=pytest.mark.skipif(p not in _protocols(), reason=f"simulator lacks {p}"))
             for p in ("binanceusdm", "bybit", "okx")]


@pytest.fixture(params=PROTOCOLS)
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    async with Simulator(parse_scenario(SCENARIO.format(protocol=request.param))) as s:
        yield s


def source(sim: Simulator, **kw: Any) -> SourceConfig:
    ep = sim.endpoints[0]
    base = {"exchange": ep.exchange, "symbols": ["BTC", "ETH"], "ws_url": ep.ws_url, "rest_url": ep.rest_url,
            "channels": ["quotes", "mark", "funding", "open_interest"]}
    base.update(kw)
    return SourceConfig.model_validate(base)


def fire(sim: Simulator, kind: str, **kw: Any) -> None:
    assert sim.faults is not None
    sim.faults.fire(Fault(at_s=0, venue="sim", kind=kind, **kw))


async def test_quotes_match_the_venue(sim: Simulator) -> None:
    async with running(source(sim)) as (_, ev, _m):
        await wait_for(lambda: {q.asset for q in of(ev, Quote)} == {"BTC", "ETH"}, 5, "quotes")
        await wait_for(lambda: of(ev, MarkPrice), 5, "mark prices")
        q = of(ev, Quote)[-1]
        assert q.mid == pytest.approx(sim.venue_price("sim", q.asset), rel=0.005)


async def test_drop_is_reconnected_and_resubscribed(sim: Simulator) -> None:
    async with running(source(sim)) as (conn, ev, m):
        await wait_for(lambda: len(of(ev, Quote)) > 5, 5, "quotes")
        ex = sim.endpoints[0].exchange
        fire(sim, "drop")
        dropped = time.monotonic()
        n = len(of(ev, Quote))
        await wait_for(lambda: metric(m, "hedgewatch_reconnects_total", exchange=ex) >= 1, 2, "reconnect")
        await wait_for(lambda: len(of(ev, Quote)) > n + 5, 2, "quotes after the drop")
        assert time.monotonic() - dropped < 2.0
        await wait_for(lambda: all(c["state"] == "subscribed" for c in conn.status()["connections"].values()),
                       2, "every connection subscribed again")


async def test_garbage_and_absurd_prices_are_skipped(sim: Simulator) -> None:
    async with running(source(sim)) as (_, ev, m):
        await wait_for(lambda: len(of(ev, Quote)) > 5, 5, "quotes")
        ex = sim.endpoints[0].exchange
        fire(sim, "garbage", count=3)
        fire(sim, "absurd_price", count=3, value=1000.0)
        n = len(of(ev, Quote))
        await wait_for(lambda: metric(m, "hedgewatch_messages_rejected_total", exchange=ex,
                                      reason="malformed") >= 3, 3, "garbage counted")
        await wait_for(lambda: metric(m, "hedgewatch_messages_rejected_total", exchange=ex,
                                      reason="absurd") >= 1, 3, "absurd counted")
        await wait_for(lambda: len(of(ev, Quote)) > n + 10, 3, "good data keeps flowing")
        prices = {"BTC": 60000.0, "ETH": 3000.0}
        assert all(0.5 < q.bid / prices[q.asset] < 2 for q in of(ev, Quote))


async def test_silent_channel_is_detected_within_its_bound(sim: Simulator) -> None:
    async with running(source(sim)) as (conn, ev, m):
        await wait_for(lambda: of(ev, MarkPrice), 5, "mark prices")
        ex = sim.endpoints[0].exchange
        channel = MARK_CHANNEL[ex]
        bound = max(ch["silence_bound_s"] for c in conn.status()["connections"].values()
                    for key, ch in c["channels"].items() if channel in key)
        fire(sim, "stall_channel", channel=channel, duration_s=30)
        stalled = time.monotonic()
        await wait_for(lambda: metric(m, "hedgewatch_channel_silent_total", exchange=ex,
                                      channel=channel) >= 1, bound + 2, "silence detected")
        assert time.monotonic() - stalled < bound + 0.05 + 0.5

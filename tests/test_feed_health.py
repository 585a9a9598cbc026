"""Health per connection against the bundled simulator: a quotes connection that is killed, or that goes
silent while its socket stays open, reads as down in the metrics within its bound, while the venue's other
connections stay up and untouched; ``hedgewatch_feed_connected`` never reads 1 meanwhile.

Bounds asserted (FAST tuning: silence floor 0.3 s, factor 1, watchdog every 0.05 s): a connection killed by
the peer is down at once (the socket reports it); a silent one within its bound (0.3 s here: the
connection's merged stream learns far less than the floor) plus one watchdog period, with 0.5 s of
scheduling slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hedgewatch.connectors import build_connector
from hedgewatch.connectors.simulator import Simulator, parse_scenario
from hedgewatch.connectors.simulator.server import _protocols
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.demo import feed_health
from hedgewatch.service.events import FeedStatus, Quote
from hedgewatch.service.metrics import Metrics
from tests.connector_fakes import FAST, metric, of
from tests.support import wait_for

SCENARIO = """
seed: 5
tick_interval_s: 0.02
speed: 1
history_days: 2
assets:
  BTC: {{price: 60000, volatility: 0.5, tick_size: 0.1, qty_step: 0.001, okx_ct_val: 0.01}}
  ETH: {{price: 3000, volatility: 0.7, tick_size: 0.01, qty_step: 0.001, okx_ct_val: 0.1}}
venues:
  - {{name: sim, protocol: {protocol}, noise_bps: 1, spread_bps: 0.5}}
"""
# the simulator's topic names of each venue's quotes channel
QUOTES_TOPIC = {"binanceusdm": "@bookTicker", "bybit": "tickers.", "okx": "tickers:"}
QUOTES_CONN = {"binanceusdm": "public-bookTicker-0", "bybit": "linear-tickers-0", "okx": "public-tickers-0"}
OTHER_CONN = {"binanceusdm": "market-markPrice-0", "bybit": "linear-publicTrade-0", "okx": "public-mark-price-0"}
CHANNELS = {"binanceusdm": ["quotes", "mark"], "bybit": ["quotes", "trades"], "okx": ["quotes", "mark"]}
PROTOCOLS = [pytest.param(p, marks=pytest.mark.skipif(p not in _protocols(), reason=f"simulator lacks {p}"))
             for p in ("binanceusdm", "bybit", "okx")]


@pytest.fixture(params=PROTOCOLS)
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    async with Simulator(parse_scenario(SCENARIO.format(protocol=request.param))) as s:
        yield s


class Probe:
    """The connector's sink: keeps the events and reads the health gauges at the moment the quotes
    connection reports a transition (the gauges are set before the transition is reported)."""

    def __init__(self, ex: str) -> None:
        self.ex = ex
        self.metrics = Metrics()
        self.events: list[Any] = []
        self.at_down: list[tuple[float, float, float, float]] = []  # (mono, connected, quotes up, other up)
        self.view: list[dict[tuple[str, str], str]] = []  # what the demo view showed at that moment
        self.conn: Any = None

    def __call__(self, ev: Any) -> None:
        self.events.append(ev)
        if isinstance(ev, FeedStatus) and ev.channel == QUOTES_CONN[self.ex] and ev.state in (
                "silent", "disconnected"):
            m = self.metrics
            self.at_down.append((
                time.monotonic(), metric(m, "hedgewatch_feed_connected", exchange=self.ex),
                metric(m, "hedgewatch_feed_connection_up", exchange=self.ex, connection=QUOTES_CONN[self.ex]),
                metric(m, "hedgewatch_feed_connection_up", exchange=self.ex, connection=OTHER_CONN[self.ex])))
            self.view.append(feed_health({self.ex: self.conn.status()}))


@contextlib.asynccontextmanager
async def connector(sim: Simulator) -> AsyncIterator[tuple[Any, Probe]]:
    ep = sim.endpoints[0]
    src = SourceConfig.model_validate({"exchange": ep.exchange, "symbols": ["BTC", "ETH"], "ws_url": ep.ws_url,
                                       "rest_url": ep.rest_url, "channels": CHANNELS[ep.exchange]})
    probe = Probe(ep.exchange)
    conn = probe.conn = build_connector(src, probe, probe.metrics, tuning=FAST)
    task = asyncio.create_task(conn.run(), name="connector")
    try:
        yield conn, probe
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def quotes_sockets(sim: Simulator) -> list[Any]:
    srv = sim.servers["sim"]
    topic = QUOTES_TOPIC[sim.endpoints[0].exchange]
    return list({ws for t, subs in srv.topics.items() if topic in t for ws in subs})


async def all_up(conn: Any, probe: Probe) -> None:
    await wait_for(lambda: conn.connections and all(c.state == "subscribed" for c in conn.connections)
                   and metric(probe.metrics, "hedgewatch_feed_connected", exchange=probe.ex) == 1
                   and len(of(probe.events, Quote)) > 5, 5, "every connection up and quoting")


async def test_health_series_have_samples_from_the_start(sim: Simulator) -> None:
    async with connector(sim) as (conn, probe):
        await wait_for(lambda: conn.connections, 5, "connections built")
        ex = probe.ex
        for c in conn.connections:  # registered (0) before any of them is up
            assert probe.metrics.registry.get_sample_value(
                "hedgewatch_feed_connection_up", {"exchange": ex, "connection": c.name}) is not None
        await all_up(conn, probe)
        for c in conn.connections:
            assert metric(probe.metrics, "hedgewatch_feed_connection_up", exchange=ex, connection=c.name) == 1
            for r in c.proto.routes:
                labels = {"exchange": ex, "channel": r.channel, "asset": r.asset}
                assert probe.metrics.registry.get_sample_value("hedgewatch_feed_channel_subscribed", labels) == 1
                assert probe.metrics.registry.get_sample_value("hedgewatch_feed_channel_quiet", labels) == 0
        st = conn.status()["connections"][QUOTES_CONN[ex]]
        assert st["up"] is True and st["state"] == "subscribed"
        assert all(ch["subscribed"] and not ch["quiet"] for ch in st["channels"].values())


async def test_a_killed_quotes_connection_reads_down_at_once(sim: Simulator) -> None:
    async with connector(sim) as (conn, probe):
        await all_up(conn, probe)
        killed = time.monotonic()
        for ws in quotes_sockets(sim):
            ws.transport.abort()  # the peer is gone: no close frame
        await wait_for(lambda: probe.at_down, 2, "the quotes connection reported down")
        at, connected, quotes_up, other_up = probe.at_down[0]
        assert (connected, quotes_up, other_up) == (0.0, 0.0, 1.0)
        assert at - killed < 0.5
        assert probe.view[0] == {(probe.ex, "BTC"): "down", (probe.ex, "ETH"): "down"}
        await all_up(conn, probe)  # and back once it reconnects
        assert conn.status()["connections"][OTHER_CONN[probe.ex]]["reconnects"] == 0


async def test_a_silent_quotes_connection_reads_down_within_its_bound(sim: Simulator) -> None:
    async with connector(sim) as (conn, probe):
        await all_up(conn, probe)
        quotes = next(c for c in conn.connections if c.name == QUOTES_CONN[probe.ex])
        bound = quotes.bound()
        assert bound == pytest.approx(0.3)
        srv = sim.servers["sim"]
        frozen = quotes_sockets(sim)
        silenced = time.monotonic()
        for subs in srv.topics.values():  # no more data to it; the socket stays open, pings answered
            subs.difference_update(frozen)
        await wait_for(lambda: probe.at_down, bound + 2, "the silent quotes connection reported down")
        at, connected, quotes_up, other_up = probe.at_down[0]
        assert (connected, quotes_up, other_up) == (0.0, 0.0, 1.0)
        assert at - silenced < bound + FAST.watchdog_interval_s + 0.5
        assert "no data on any of its" in quotes.last_error or quotes.state != "subscribed"
        n = len(of(probe.events, Quote))
        await all_up(conn, probe)
        await wait_for(lambda: len(of(probe.events, Quote)) > n + 5, 3, "quotes on the new connection")
        assert conn.status()["connections"][OTHER_CONN[probe.ex]]["reconnects"] == 0

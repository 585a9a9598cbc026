"""The daemon on the simulator's clock, with the test stepping that clock: simulated time never runs ahead
of what the daemon has taken in, however slow the machine (used by the four-phase and restart tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.app import Daemon


@asynccontextmanager
async def stepped_simulator(scenario: str = "four_phase.yaml") -> AsyncIterator[Simulator]:
    """The simulator with its own pacing off: the test advances it with ``Simulator.step``."""
    sc = load_scenario(scenario)
    async with Simulator(sc.model_copy(update={"speed": 1e-9})) as sim:
        yield sim


def stepped_sources(sim: Simulator) -> list[dict[str, Any]]:
    """Config sources for every simulated venue. Binance serves open interest by REST only, polled on the
    wall clock: in a run whose simulated time outpaces the wall clock its samples would come and go with the
    machine's speed, so open interest comes from the venues that stream it (Bybit tickers, OKX)."""
    assets = list(sim.scenario.assets)
    sources = []
    for ep in sim.endpoints:
        channels = ["quotes", "trades", "mark", "funding"]
        if ep.exchange not in ("binanceusdm", "binancecoinm"):
            channels.append("open_interest")
        sources.append({"exchange": ep.exchange, "name": ep.name, "symbols": assets, "ws_url": ep.ws_url,
                        "rest_url": ep.rest_url, "channels": channels, "quote": ep.quote})
    return sources


async def settle(daemon: Daemon) -> None:
    """Let the daemon take in the frames of the step just made. The venues wrote them to loopback sockets
    synchronously; a few loop turns later they are decoded and on the bus, and the pipeline has consumed
    them. Then wait for the bus to drain."""
    quiet, seen = 0, -1
    while quiet < 3:
        await asyncio.sleep(0)
        n = daemon.stats.events
        if len(daemon.bus) or n != seen:
            quiet, seen = 0, n
        else:
            quiet += 1


async def warm_up(sim: Simulator, daemon: Daemon, ready: Callable[[], bool], max_elapsed_s: float,
                  timeout_s: float = 30.0) -> None:
    """Step the simulator until ``ready()``. While the feeds connect and the kline history loads, the clock
    runs slowly (real time passes between steps); the scenarios leave minutes for this before anything is
    due, and ``max_elapsed_s`` of simulated time at most."""
    assert sim.path is not None
    async with asyncio.timeout(timeout_s):
        while not ready():
            assert sim.path.elapsed_s < max_elapsed_s, "the daemon did not warm up in time"
            sim.step()
            await settle(daemon)
            await asyncio.sleep(0.02)

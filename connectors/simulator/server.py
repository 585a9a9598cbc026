"""The simulator: the shared path, its venues and their servers, stepped by a simulated clock.

The clock advances the path one tick at a time, paced against the wall clock by the scenario's ``speed``;
after each step every venue requotes and its server sends the frames due at that step. Faults fire at their
simulated times. ``Simulator`` runs inside the caller's event loop (tests, ``hedgewatch demo``);
``run_simulator`` serves until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from hedgewatch.connectors.simulator.binance import BinanceCoinmServer, BinanceServer
from hedgewatch.connectors.simulator.coingecko import COINS_MARKETS, MARKET_CHART, MARKET_CHART_RANGE, CoinMarkets
from hedgewatch.connectors.simulator.faults import FaultRunner
from hedgewatch.connectors.simulator.market import PricePath
from hedgewatch.connectors.simulator.scenario import Scenario
from hedgewatch.connectors.simulator.transport import VenueServer
from hedgewatch.connectors.simulator.venue import VenueModel
from hedgewatch.service.errors import ClosedError

log = logging.getLogger("hedgewatch.simulator")

TRADE_CHANNEL = {"binanceusdm": "aggTrade", "binancecoinm": "aggTrade", "bybit": "publicTrade", "okx": "trades"}


def _protocols() -> dict[str, type[VenueServer]]:
    table: dict[str, type[VenueServer]] = {"binanceusdm": BinanceServer, "binancecoinm": BinanceCoinmServer}
    with contextlib.suppress(ImportError):
        from hedgewatch.connectors.simulator.bybit import BybitServer

        table["bybit"] = BybitServer
    with contextlib.suppress(ImportError):
        from hedgewatch.connectors.simulator.okx import OkxServer

        table["okx"] = OkxServer
    return table


@dataclass(frozen=True)
class VenueEndpoint:
    """Where one simulated venue listens. ``exchange`` is the ccxt id of its protocol; ``quote`` what its
    contracts are quoted in (``USD`` for coin-margined ones), the source's ``quote``; ``spot_ws_url`` and
    ``spot_rest_url`` where its spot market is served (None: the venue serves none), the source's
    ``spot_ws_url``/``spot_rest_url``."""

    name: str
    exchange: str
    ws_url: str
    rest_url: str
    quote: str = "USDT"
    spot_ws_url: str | None = None
    spot_rest_url: str | None = None

    def source(self, symbols: list[str] | tuple[str, ...]) -> dict[str, object]:
        """The ``sources:`` entry a config needs for this venue (its spot market included, where served)."""
        out: dict[str, object] = {"exchange": self.exchange, "name": self.name, "symbols": list(symbols),
                                  "ws_url": self.ws_url, "rest_url": self.rest_url, "quote": self.quote}
        if self.spot_ws_url is not None:
            out["spot_ws_url"] = self.spot_ws_url
            out["spot_rest_url"] = self.spot_rest_url
        return out


class Simulator:
    """Serves every venue of a scenario on loopback. ``start`` returns once all are listening."""

    def __init__(self, scenario: Scenario, host: str = "127.0.0.1") -> None:
        self.scenario = scenario
        self.host = host
        self.path: PricePath | None = None
        self.models: dict[str, VenueModel] = {}
        self.servers: dict[str, VenueServer] = {}
        self.faults: FaultRunner | None = None
        self.coins: CoinMarkets | None = None  # the market-cap endpoint, served on every venue's port
        self._endpoints: list[VenueEndpoint] = []
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self.stepped = asyncio.Event()  # set after every step; tests wait on it instead of sleeping

    @property
    def endpoints(self) -> list[VenueEndpoint]:
        return list(self._endpoints)

    async def start(self) -> list[VenueEndpoint]:
        if self._closed:
            raise ClosedError("simulator already closed")
        sc = self.scenario
        tick_ms = round(sc.tick_interval_s * 1000)
        start_ms = sc.start_time_ms
        if start_ms is None:
            now = int(time.time() * 1000)
            start_ms = now - now % max(tick_ms, 1)
        self.path = PricePath(sc, start_ms)
        protocols = _protocols()
        for spec in sc.venues:
            if spec.protocol not in protocols:
                raise ValueError(f"venue {spec.name}: protocol {spec.protocol} is not available")
            model = VenueModel(spec, self.path)
            model.step(0.0)
            self.models[spec.name] = model
            self.servers[spec.name] = protocols[spec.protocol](model, self._now_ms)
        self.coins = CoinMarkets(self.path, self.models)
        for srv in self.servers.values():
            srv.routes[COINS_MARKETS] = self.coins.rest
            for a in sc.assets:
                srv.routes[MARKET_CHART.format(id=a.lower())] = partial(self.coins.market_chart, a, ranged=False)
                srv.routes[MARKET_CHART_RANGE.format(id=a.lower())] = partial(self.coins.market_chart, a, ranged=True)
        for name, srv in self.servers.items():
            port = await srv.start(self.host)
            ws, rest = f"ws://{self.host}:{port}", f"http://{self.host}:{port}"
            spot = srv.spot_ws_path
            self._endpoints.append(
                VenueEndpoint(name, srv.exchange, ws, rest, srv.quote,
                              None if spot is None else ws + spot, None if spot is None else rest)
            )
        self.faults = FaultRunner(sc.faults, self.models, self.servers)
        self._runner = asyncio.create_task(self._run(), name="simulator")
        return self.endpoints

    def coins_markets_url(self, venue: int = 0) -> str:
        """The CoinGecko-style market-cap URL (``vs_currency=usd``) on the ``venue``-th venue's port."""
        if not self._endpoints:
            raise ClosedError("simulator not started")
        return f"{self._endpoints[venue].rest_url}{COINS_MARKETS}?vs_currency=usd"

    def _now_ms(self) -> int:
        assert self.path is not None
        return self.path.now_ms

    async def close(self) -> None:
        """Stop the clock and every server (idempotent)."""
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        for srv in self.servers.values():
            await srv.close()

    async def wait(self) -> None:
        """Until the clock stops: forever unless a step fails, whose error is raised here."""
        if self._runner is None:
            raise ClosedError("simulator not started")
        await self._runner

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            assert self.faults is not None
            self.faults.spawn = lambda coro, name: tg.create_task(coro, name=name)
            tg.create_task(self._clock(), name="simulator-clock")

    async def _clock(self) -> None:
        assert self.path is not None
        loop = asyncio.get_running_loop()
        wall_per_step = self.scenario.tick_interval_s / self.scenario.speed
        t0 = loop.time()
        first = self.path.step_index
        while True:
            due = t0 + (self.path.step_index + 1 - first) * wall_per_step
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.step()

    def step(self) -> None:
        """Advance the path one tick, requote every venue and send what is due (also usable by tests
        that drive the clock themselves)."""
        assert self.path is not None and self.faults is not None
        self.path.step()
        self.faults.at(self.path.elapsed_s)
        k = self.path.step_index
        for name, model in self.models.items():
            rate = model.spec.rate(TRADE_CHANNEL[model.spec.protocol])
            model.step(min(1.0, rate * self.path.dt_s))
            self.servers[name].publish(k)
            self.servers[name].drop_slow_consumers()
        self.stepped.set()
        self.stepped.clear()

    def reference_price(self, asset: str) -> float:
        """The shared "true" path price of ``asset`` now."""
        if self.path is None:
            raise ClosedError("simulator not started")
        return self.path.price(asset)

    def venue_price(self, venue: str, asset: str) -> float:
        """The mid ``venue`` is quoting for ``asset`` now (what its last quote frame says)."""
        return self.models[venue].quotes[asset].mid


async def run_simulator(
    scenario: Scenario, on_ready: Callable[[list[VenueEndpoint]], None] | None = None
) -> None:
    """Serve the scenario until cancelled; ``on_ready`` gets the endpoints once every venue listens."""
    sim = Simulator(scenario)
    try:
        endpoints = await sim.start()
        if on_ready is not None:
            on_ready(endpoints)
        await sim.wait()
    finally:
        await asyncio.shield(sim.close())

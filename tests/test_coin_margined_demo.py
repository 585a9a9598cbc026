"""The bundled ``coin_margined.yaml`` scenario as ``hedgewatch demo --scenario coin_margined.yaml`` runs it:
the demo's config from the simulator's endpoints takes the coin-margined venues with quote USD, and every
constituent is priced by all six venues (three linear, three coin-margined)."""

from __future__ import annotations

import asyncio

from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.app import Daemon
from hedgewatch.service.demo import demo_config
from tests.support import free_port, wait_for


async def test_the_demo_runs_on_linear_and_coin_margined_venues() -> None:
    async with Simulator(load_scenario("coin_margined.yaml")) as sim:
        assets = list(sim.scenario.assets)
        cfg = demo_config(sim.endpoints, assets, env={"HEDGEWATCH__HTTP__PORT": str(free_port())})
        quotes = {s.name: (s.exchange, s.quote) for s in cfg.sources}
        assert quotes == {"binanceusdm": ("binanceusdm", "USDT"), "bybit": ("bybit", "USDT"), "okx": ("okx", "USDT"),
                          "binancecoinm": ("binancecoinm", "USD"), "bybit-inverse": ("bybit", "USD"),
                          "okx-inverse": ("okx", "USD")}
        daemon = Daemon(cfg)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(daemon.run(stop), name="daemon")
            await daemon.started.wait()

            def all_six() -> bool:
                return all((o := daemon.market.oracle(a)) is not None and o.n_valid == 6 for a in assets)

            await wait_for(all_six, 30, "every asset priced by six venues")
            stop.set()
            assert await run == 0
        for a in assets:
            oracle = daemon.market.oracle(a)
            assert oracle is not None and oracle.price is not None
            assert abs(oracle.price / sim.reference_price(a) - 1) < 0.01
        assert all(not f.get("rejected") for f in daemon.state()["feeds"].values())

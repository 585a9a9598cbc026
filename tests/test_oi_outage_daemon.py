"""A venue's open interest stalling, through the whole daemon on the stepped simulator: the open-interest
change is unavailable while too little of the open interest is left to tell, never a fall.

The four-phase scenario's first phase (open interest growing 8 % an hour, prices rising) with a second
Bybit-protocol venue, ``bybit2``, carrying 40 % of the open interest; the streamed open interest is
Bybit's 30 % and bybit2's 40 %. bybit2 drops out for 10 minutes (connections aborted, reconnects refused):
with its figure stale, 3/7 of the open interest is left, too little to tell, so the change is
unavailable. Counted in USD over the venues fresh at each moment (the old figure) the outage read as a
fall of 57 %."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.connectors.simulator.scenario import Fault, VenueSpec
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import config_from_dict
from tests.stepped import settle, stepped_sources, warm_up
from tests.support import free_port

OUTAGE_S, OUTAGE_FOR_S = 1200.0, 600.0
END_S = OUTAGE_S + OUTAGE_FOR_S + 16 * 60  # a quarter hour after the outage, with both venues again
RULES = """
groups:
  - name: g
    rules:
      - {name: OiUp, expr: 'oi_change("15m") > 0.01', action: notify}
"""


async def test_a_venue_outage_leaves_the_open_interest_change_unavailable_not_a_fall(tmp_path: Path) -> None:
    sc = load_scenario("four_phase.yaml")
    bybit2 = VenueSpec(name="bybit2", protocol="bybit", noise_bps=1.5, spread_bps=0.3, oi_share=0.4)
    outage = Fault(at_s=OUTAGE_S, venue="bybit2", kind="drop", duration_s=OUTAGE_FOR_S)
    sc = sc.model_copy(update={"speed": 1e-9, "faults": (outage,), "venues": (*sc.venues, bybit2)})
    (tmp_path / "rules.yaml").write_text(RULES)
    async with Simulator(sc) as sim:
        assert sim.path is not None
        path = sim.path
        data = {"sources": stepped_sources(sim),
                "index": {"name": "OI", "constituents": list(sim.scenario.assets), "weighting": "equal"},
                "rules": {"files": [str(tmp_path / "rules.yaml")]}, "http": {"port": free_port()}}
        daemon = Daemon(config_from_dict(data, "<oi>", {}), clock=lambda: path.now_ms / 1000.0)
        stop = asyncio.Event()
        run = asyncio.create_task(daemon.run(stop))
        seen: list[tuple[float, float | None]] = []
        try:
            await daemon.started.wait()
            await warm_up(sim, daemon, lambda: daemon.market.ready, 300)
            while path.elapsed_s < END_S:
                sim.step()
                await settle(daemon)
                seen.append((path.elapsed_s, daemon.rules.env.get("oi_change_15m")))
        finally:
            stop.set()
            assert await asyncio.wait_for(run, 10) == 0
    # open interest grows ~2 % in 15 minutes: before the outage that is what is read
    before = [v for t, v in seen if 18 * 60 <= t < OUTAGE_S]
    assert before and all(v is not None and 0.01 < v < 0.04 for v in before)
    # once bybit2's figure is stale (a minute into the outage) and until it is back, the change is
    # unavailable: 3/7 of the open interest is not enough to tell
    during = [v for t, v in seen if OUTAGE_S + 70 <= t < OUTAGE_S + OUTAGE_FOR_S]
    assert during and all(v is None for v in during)
    # a quarter hour after it, over both venues again; and never a fall, at any moment
    assert all(v is not None for t, v in seen if t >= OUTAGE_S + OUTAGE_FOR_S + 15.5 * 60)
    assert all(v is None or v > 0 for _, v in seen)

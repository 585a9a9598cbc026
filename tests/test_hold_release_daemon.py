"""A rally after a break below the 50-day MA brings the hedge back to the baseline, through the whole daemon.

The bundled ``break_rally.yaml`` scenario on the stepped simulator (the daemon's clock is the simulated
one, as in the four-phase test), the bundled trigger matrix (``builtin:default``), a real redis-server. A
$1,000,000 portfolio with a 20% baseline (20 contracts of $10 a point, held): the break raises the hedge to
30% (sell 10), the user does as advised, and after the rally the break's hold is released and the advice
is to buy the 10 back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hedgewatch.connectors.simulator import Simulator
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import Config, config_from_dict
from hedgewatch.service.keys import Keys
from tests.stepped import settle, stepped_simulator, stepped_sources, warm_up
from tests.support import CONTROL_HEADERS, RedisServer, control_token_file, free_port
from tests.test_four_phase_daemon import Collector, warm

INDEX = "RALLY"
PREFIX = "hwr"
KEYS = Keys(PREFIX)
END_S = 60 * 60
WARM_UP_MAX_S = 300


def daemon_config(sim: Simulator, redis_url: str, tmp_path: Path) -> Config:
    data: dict[str, Any] = {
        "sources": stepped_sources(sim),
        "index": {"name": INDEX, "constituents": list(sim.scenario.assets), "weighting": "equal",
                  "base_level": 1000.0, "publish_interval_s": 5.0},
        "portfolio": {"holdings": {INDEX: 1000.0}, "hedge_ratio": 0.2, "multiplier": 10.0, "lot_size": 1,
                      "position_contracts": -20, "tolerance_ratio": 0.02},
        # the resistance test would take its 10 points at whatever R1 the history makes: out of the way
        "rules": {"files": ["builtin:default"], "levels": {"R1": 1e9}},
        "redis": {"url": redis_url, "prefix": PREFIX, "outbox_dir": str(tmp_path / "outbox")},
        "http": {"port": free_port(), "token_file": control_token_file(tmp_path)},
    }
    return config_from_dict(data, "<break-rally>", {})


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with stepped_simulator("break_rally.yaml") as s:
        yield s


async def test_a_rally_after_a_break_brings_the_hedge_back_to_the_baseline(
        sim: Simulator, redis_srv: RedisServer, tmp_path: Path) -> None:
    assert sim.path is not None
    path = sim.path
    daemon = Daemon(daemon_config(sim, redis_srv.url, tmp_path), clock=lambda: path.now_ms / 1000.0)
    hedge_ch = KEYS.hedge_channel(INDEX)
    collector = Collector(redis_srv.url, [hedge_ch, KEYS.alerts_channel])
    hedges, published = collector.messages[hedge_ch], collector.messages[KEYS.alerts_channel]
    stop, subscribed = asyncio.Event(), asyncio.Event()
    ratios: list[tuple[float, float]] = []
    try:
        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(collector.run(subscribed), name="collector")
            await subscribed.wait()
            run = tg.create_task(daemon.run(stop), name="daemon")
            await daemon.started.wait()
            await warm_up(sim, daemon, lambda: warm(daemon, hedges), WARM_UP_MAX_S)
            acked: set[str] = set()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.http.port}",
                                         headers=CONTROL_HEADERS) as http:
                while path.elapsed_s < END_S:
                    sim.step()
                    await settle(daemon)
                    if not ratios or ratios[-1][1] != daemon.rules.engine.ratio:
                        ratios.append((path.elapsed_s, daemon.rules.engine.ratio))
                    for h in hedges:
                        if h["state"] == "advised" and h["side"] != "none" and h["id"] not in acked:
                            acked.add(h["id"])
                            resp = await http.post("/hedge/ack", json={"advice_id": h["id"]})
                            assert resp.status_code == 200, resp.text
            stop.set()
            assert await run == 0
            entries = await collector.redis.xrange(KEYS.alerts_stream)
            listener.cancel()
    finally:
        await collector.close()
    alerts = [orjson.loads(f[b"alert"]) for _, f in entries]
    assert [a["id"] for a in published] == [a["id"] for a in alerts]

    # the target: the baseline, 30% after the break, the baseline again after the rally
    assert [round(r, 9) for _, r in ratios] == [0.2, 0.3, 0.2]
    broke_at, released_at = ratios[1][0], ratios[2][0]
    assert 600 + 15 * 60 <= broke_at < 2400  # under the average for the rule's 15 minutes
    assert 2400 < released_at < END_S  # the rally, once the index closes 1% above its average
    hedge_alerts = [(a["labels"]["alertname"], a["status"], a["hedge"]["from_ratio"], a["hedge"]["to_ratio"],
                     a["hedge"]["side"], a["hedge"]["trade_contracts"]) for a in alerts if a.get("hedge")]
    assert hedge_alerts == [("BelowMA50d", "firing", 0.2, pytest.approx(0.3), "sell", 10.0),
                            ("BelowMA50d", "resolved", pytest.approx(0.3), 0.2, "buy", 10.0)]
    advised = [(h["reason"], h["side"], h["trade_contracts"], h["position_contracts"])
               for h in hedges if h["state"] == "advised"]
    assert advised == [("initial", "none", 0.0, -20.0), ("target_changed", "sell", 10.0, -20.0),
                       ("target_changed", "buy", 10.0, -30.0)]
    assert daemon.rules.hedge.position == -20.0  # the user followed both advices: back at the baseline hedge

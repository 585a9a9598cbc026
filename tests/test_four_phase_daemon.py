"""The four-phase hedging scenario through the whole daemon.

The bundled ``four_phase.yaml`` scenario is served by the exchange simulator on loopback (Binance USDⓈ-M,
Bybit and OKX in their own protocols); the daemon runs in this process with its native connectors, oracle,
index, derivatives, kline history bootstrap, rules (``tests/data/four_phase_rules.yaml``), hedge sizing and
Redis outputs against a real redis-server. What the test checks arrives over Redis: the hedge
recommendations on ``<prefix>:hedge:<INDEX>``, the alerts in ``<prefix>:alerts:stream`` (and on the alerts
channel), and the index snapshots on ``<prefix>:index:<INDEX>``.

A $1,000,000 portfolio (1,000 units of the index, which starts at 1,000) hedged with index futures of $10
a point starts with a 20% baseline hedge, held as a 20-contract short. The scenario's phases:

1. minutes 0-40, the index approaches resistance (R1, the month's highest close) while funding runs at
   0.05% per 8 h and open interest rises: the hedge is raised by 30 points, from 20% (20 contracts) to
   50% (50 contracts: sell 30);
2. minutes 40-50, it breaks below its 50-day MA: the hedge stays at 50% (the break's rule asks for at
   least 30%);
3. minutes 50-65, it falls on: the short's gain offsets half of the spot loss;
4. minutes 65-90, funding turns slightly negative and the price holds near support (S1, the month's
   lowest close): the hedge is lowered to 10% (10 contracts: buy 40 of the 50 held).

The test is a user who follows every advice: each one is acknowledged over ``POST /hedge/ack`` as soon as
it arrives, so each next advice is from what that user holds, and the user ends at the target.

Time. The daemon's clock is the simulator's simulated clock, and this test is the simulator's clock: it
advances the market one 1 s step at a time and lets the daemon take in each step before the next, so
simulated time never runs ahead of what the daemon has seen. The daemon keeps its production timing
(10 s staleness, 3 s channel silence, 1 s evaluation, ``for`` durations in simulated time), and candles,
funding and open-interest windows all run on exchange timestamps that agree with its clock. The 75
simulated minutes take about 6 wall seconds, and the outcome does not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from hedgewatch.connectors.simulator import Simulator
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import Config, config_from_dict
from hedgewatch.service.hedge import short_pnl
from hedgewatch.service.keys import Keys
from tests.stepped import settle, stepped_simulator, stepped_sources, warm_up
from tests.support import CONTROL_HEADERS, REPO, RedisServer, control_token_file, free_port, wait_for

INDEX = "FOUR"
PREFIX = "hw4"
KEYS = Keys(PREFIX)
RULES = REPO / "tests" / "data" / "four_phase_rules.yaml"
UNITS = 1000.0  # index units held: $1,000,000 at the start level of 1,000
MULTIPLIER = 10.0  # USD per index point per contract
R1, S1 = 1030.0, 932.0  # the month's highest and lowest daily close of the basket before the start
PHASES_S = (0, 2400, 3000, 3900)  # simulated seconds at which phases 1-4 begin (the scenario's regimes)
END_S = 75 * 60  # the story is told by minute ~71; stop a little later
WARM_UP_MAX_S = 300  # nothing is due in the first minutes of phase 1


def phase(t: float, start: float) -> int:
    """The phase (1-4) at simulated time ``t``."""
    return sum(1 for p in PHASES_S if t - start >= p)


def iso_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def daemon_config(sim: Simulator, redis_url: str, tmp_path: Path) -> Config:
    assets = list(sim.scenario.assets)
    data: dict[str, Any] = {
        "sources": stepped_sources(sim),
        "index": {"name": INDEX, "constituents": assets, "weighting": "equal", "base_level": 1000.0,
                  "publish_interval_s": 5.0},
        "portfolio": {"holdings": {INDEX: UNITS}, "hedge_ratio": 0.2, "multiplier": MULTIPLIER,
                      "lot_size": 1, "position_contracts": -20, "tolerance_ratio": 0.02},
        "rules": {"files": [str(RULES)], "levels": {"R1": R1, "S1": S1}},
        "redis": {"url": redis_url, "prefix": PREFIX, "outbox_dir": str(tmp_path / "outbox")},
        "http": {"port": free_port(), "token_file": control_token_file(tmp_path)},
    }
    return config_from_dict(data, "<four-phase>", {})


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with stepped_simulator() as s:
        yield s


class Collector:
    """Every message of a few pub/sub channels, in order, decoded."""

    def __init__(self, url: str, channels: list[str]) -> None:
        self.redis = aioredis.Redis.from_url(url)
        self.pubsub = self.redis.pubsub()
        self.channels = channels
        self.messages: dict[str, list[dict[str, Any]]] = {c: [] for c in channels}

    async def run(self, subscribed: asyncio.Event) -> None:
        await self.pubsub.subscribe(*self.channels)
        subscribed.set()
        async for msg in self.pubsub.listen():
            if msg["type"] == "message":
                self.messages[msg["channel"].decode()].append(orjson.loads(msg["data"]))

    async def close(self) -> None:
        await self.pubsub.aclose()
        await self.redis.aclose()


def warm(daemon: Daemon, hedges: list[dict[str, Any]]) -> bool:
    """Every venue quotes every constituent, the 50-day MA is known, and the first recommendation is out."""
    oracles = [daemon.market.oracle(a) for a in daemon.config.index.constituents]
    signals = daemon.rules.state()["signals"]
    return (all(o is not None and o.n_valid == 3 for o in oracles)
            and signals.get("sma_50_1d") is not None and bool(hedges))


def counter_total(daemon: Daemon, family: str) -> float:
    """The sum of a counter family's samples in the daemon's registry."""
    return sum(s.value for m in daemon.metrics.registry.collect() if m.name == family
               for s in m.samples if s.name.endswith("_total"))


def at(snapshots: list[dict[str, Any]], t: float) -> dict[str, Any]:
    """The first snapshot published at or after simulated time ``t``."""
    return next(s for s in snapshots if s["ts"] >= t)


async def test_four_phase_hedging_through_the_daemon(sim: Simulator, redis_srv: RedisServer,
                                                     tmp_path: Path) -> None:
    assert sim.path is not None
    path = sim.path
    start = path.now_ms / 1000.0
    daemon = Daemon(daemon_config(sim, redis_srv.url, tmp_path), clock=lambda: path.now_ms / 1000.0)
    hedge_ch, index_ch = KEYS.hedge_channel(INDEX), KEYS.index_channel(INDEX)
    collector = Collector(redis_srv.url, [hedge_ch, index_ch, KEYS.alerts_channel])
    hedges, snapshots = collector.messages[hedge_ch], collector.messages[index_ch]
    published = collector.messages[KEYS.alerts_channel]
    stop, subscribed = asyncio.Event(), asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(collector.run(subscribed), name="collector")
            await subscribed.wait()
            run = tg.create_task(daemon.run(stop), name="daemon")
            await daemon.started.wait()
            await warm_up(sim, daemon, lambda: warm(daemon, hedges), WARM_UP_MAX_S)
            warm_at = start + path.elapsed_s
            acked: list[dict[str, Any]] = []
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.http.port}",
                                         headers=CONTROL_HEADERS) as http:
                while path.elapsed_s < END_S:
                    sim.step()
                    await settle(daemon)
                    for h in [h for h in hedges if h["state"] == "advised" and h["side"] != "none"]:
                        if all(a["advice"]["id"] != h["id"] for a in acked):  # the user does as advised
                            resp = await http.post("/hedge/ack", json={"advice_id": h["id"]})
                            assert resp.status_code == 200, resp.text
                            acked.append(resp.json())
            stop.set()
            assert await run == 0
            # the last snapshot and recommendations were flushed at stop; take in what is on its way
            final = orjson.loads(await collector.redis.get(KEYS.state(INDEX)) or b"{}")
            await wait_for(lambda: bool(snapshots) and snapshots[-1]["ts"] >= final["snapshot"]["ts"]
                           and len(published) >= 4, 5, "the final snapshot and the alerts")
            listener.cancel()
        entries = await collector.redis.xrange(KEYS.alerts_stream)
    finally:
        await collector.close()
    alerts = [orjson.loads(fields[b"alert"]) for _, fields in entries]

    # the daemon followed the simulated clock: every venue stayed up and fresh, no tick was dropped (a
    # snapshot superseded before Redis took it may be: the index channel is latest-wins)
    assert {s["status"] for s in snapshots if s["ts"] >= warm_at} == {"ok"}
    assert all(s["constituents"][a]["sources"] == 3 for s in snapshots if s["ts"] >= warm_at
               for a in sim.scenario.assets)
    for family in ("hedgewatch_reconnects", "hedgewatch_channel_silent", "hedgewatch_messages_rejected"):
        assert counter_total(daemon, family) == 0, family
    assert daemon.bus.dropped == 0

    # the hedge recommendations over Redis: the baseline, raised to 50%, lowered to 10%
    recs = [(phase(h["ts"], start), h["reason"], h["ratio"], h["target_contracts"], h["position_contracts"],
             h["side"], h["trade_contracts"], h["state"]) for h in hedges]
    assert recs == [
        (1, "initial", 0.2, 20.0, -20.0, "none", 0.0, "advised"),  # the 20% baseline is held: within the band
        (1, "target_changed", pytest.approx(0.5), 50.0, -20.0, "sell", 30.0, "advised"),
        (1, "target_changed", pytest.approx(0.5), 50.0, -20.0, "sell", 30.0, "acknowledged"),
        (4, "target_changed", pytest.approx(0.1), 10.0, -50.0, "buy", 40.0, "advised"),  # from the 50 held
        (4, "target_changed", pytest.approx(0.1), 10.0, -50.0, "buy", 40.0, "acknowledged"),
    ]
    assert len({h["id"] for h in hedges}) == 3  # an acknowledgement restates its advice, same id
    # the user followed every advice and holds the target
    assert [a["position"]["contracts"] for a in acked] == [-50.0, -10.0]
    assert daemon.rules.hedge.position == -10.0 and daemon.state()["position"]["source"] == "ack"
    assert final["rules"]["hedge"]["positions"]["position"]["contracts"] == -10.0
    first = hedges[0]
    assert first["portfolio_value_usd"] == pytest.approx(1_000_000, rel=2e-3)
    assert first["target_notional_usd"] == pytest.approx(0.2 * first["portfolio_value_usd"])
    for h in hedges:  # contracts = value x ratio / (futures price x multiplier), to the lot
        raw = h["portfolio_value_usd"] * h["ratio"] / (h["futures_price"] * MULTIPLIER)
        assert h["target_contracts"] == round(raw) and abs(raw - round(raw)) < 0.05

    # the alerts in the durable stream (and on the channel), in order, with the hedge change on the acting
    # ones
    assert [a["id"] for a in published] == [a["id"] for a in alerts]
    seen = [(a["labels"]["alertname"], a["status"],
             a.get("hedge") and (a["hedge"]["from_ratio"], a["hedge"]["to_ratio"], a["hedge"]["contracts"],
                                 a["hedge"]["side"], a["hedge"]["position"], a["hedge"]["trade_contracts"]))
            for a in alerts]
    assert seen == [
        ("LeveragedApproachToResistance", "firing", (0.2, pytest.approx(0.5), 50.0, "sell", -20.0, 30.0)),
        ("LeveragedApproachToResistance", "resolved", None),
        ("BelowMA50", "firing", (pytest.approx(0.5), pytest.approx(0.5), 50.0, "none", -50.0, 0.0)),
        ("FundingNegativeAtSupport", "firing", (pytest.approx(0.5), pytest.approx(0.1), 10.0, "buy", -50.0, 40.0)),
    ]
    fired = [iso_ts(a["endsAt"] if a["status"] == "resolved" else a["startsAt"]) - start for a in alerts]
    assert [phase(start + t, start) for t in fired] == [1, 2, 2, 4]
    # the first rule needs 15 minutes of open-interest history and then 5 minutes of `for`
    assert fired[0] >= 20 * 60
    assert all(a["labels"]["index"] == INDEX and a["id"] for a in alerts)
    # Alertmanager's shape: a firing has no endsAt, its resolve keeps the firing's start
    assert all(("endsAt" in a) == (a["status"] == "resolved") for a in alerts)
    assert alerts[1]["startsAt"] == alerts[0]["startsAt"] and alerts[1]["fingerprint"] == alerts[0]["fingerprint"]
    assert all(a["generatorURL"].startswith("http://127.0.0.1:") and "/state?index=" in a["generatorURL"]
               for a in alerts)
    lev, _, below, support = alerts
    assert lev["annotations"]["summary"].startswith(f"{INDEX} near R1 with funding 0.05% and OI +")
    assert lev["values"]["level_R1"] == R1 and lev["values"]["funding_rate_8h"] == pytest.approx(5e-4, abs=2e-5)
    assert lev["values"]["price"] >= 0.98 * R1 and lev["values"]["oi_change_15m"] > 0.01
    sma50 = below["values"]["sma_50_1d"]
    assert below["annotations"]["summary"] == f"{INDEX} below its 50-day MA ({sma50:.1f})"
    assert below["values"]["price"] < sma50 < 1000  # the month-long uptrend left the average under the start
    assert support["values"]["funding_rate_8h"] < 0 and support["values"]["price"] <= 1.02 * S1
    assert re.fullmatch(rf"{INDEX} at support with funding -0\.00\d+%", support["annotations"]["summary"])

    # the sequence of hedge ratios and the contracts at each step: baseline, resistance, break, support
    steps = [(hedges[0]["ratio"], hedges[0]["target_contracts"])]
    steps += [(a["hedge"]["to_ratio"], a["hedge"]["contracts"]) for a in (lev, below, support)]
    assert steps == [(0.2, 20.0), (pytest.approx(0.5), 50.0), (pytest.approx(0.5), 50.0),
                     (pytest.approx(0.1), 10.0)]

    # from the break until support the hedge stays at 50%, and the short's gain offsets half the spot
    # loss of the 1,000 units held
    broke, held = at(snapshots, start + fired[2]), at(snapshots, start + fired[3] - 1)
    spot_loss = UNITS * (broke["level"] - held["level"])
    gain = short_pnl(50.0, MULTIPLIER, broke["derivatives"]["futures_price"],
                     held["derivatives"]["futures_price"])
    assert spot_loss > 30_000  # the fall goes on after the break: about $43,000
    assert gain == pytest.approx(0.5 * spot_loss, rel=0.01)

    # the target ratio persisted with the rule states
    assert final["rules"]["engine"]["ratio"] == pytest.approx(0.1)
    assert daemon.rules.engine.ratio == pytest.approx(0.1)

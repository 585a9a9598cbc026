"""The bundled "new all-time high on high volume" rule through the whole daemon, in the default config.

The bundled ``volume_ath.yaml`` scenario on the stepped simulator (the daemon's clock is the simulated one,
as in the four-phase test): Binance USDⓈ-M, Bybit and OKX on loopback in their own protocols, a real
redis-server, and the daemon with the bundled rules and the default config's channels (1-minute klines
included, so live volume comes from the volume venue's klines, on the basis of its kline history). The
history leaves the basket's all-time high 1.04% above the start; trades run at four times the usual hourly
volume; a rally from minute 25 takes the basket through the old high. ``NewAllTimeHighOnVolume`` fires, its
alert arrives on the Redis alert stream and the hedge advice drops from the 20% baseline to 0%. The control
run is the same market at the usual volume (``volume_factor: 1``): the same new high, no alert.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import Config, config_from_dict, load_config
from hedgewatch.service.events import FeedState
from hedgewatch.service.keys import Keys
from tests.stepped import settle, warm_up
from tests.support import RedisServer, control_token_file, free_port
from tests.test_four_phase_daemon import Collector, iso_ts, warm

INDEX = "VATH"
PREFIX = "hwv"
KEYS = Keys(PREFIX)
RULE = "NewAllTimeHighOnVolume"
RALLY_S = 1500  # the scenario's rally regime
END_S = 36 * 60
WARM_UP_MAX_S = 300


@asynccontextmanager
async def simulator(volume_factor: float) -> AsyncIterator[Simulator]:
    """The scenario, its volume regime at ``volume_factor``, stepped by the test."""
    sc = load_scenario("volume_ath.yaml")
    regimes = tuple(r.model_copy(update={"volume_factor": volume_factor}) if r.volume_factor is not None else r
                    for r in sc.regimes)
    async with Simulator(sc.model_copy(update={"speed": 1e-9, "regimes": regimes})) as sim:
        yield sim


def daemon_config(sim: Simulator, redis_url: str, tmp_path: Path) -> Config:
    """The bundled default config's channels and rules on the simulated venues. Binance serves open
    interest by REST only, polled on the wall clock, which the stepped clock outpaces (tests/stepped.py);
    the scenario has no composite index."""
    channels = load_config(None, env={}).sources[0].channels or ()
    assert "candles" in channels
    sources = []
    for ep in sim.endpoints:
        skip = {"composite_index"} | ({"open_interest"} if ep.exchange == "binanceusdm" else set())
        sources.append({**ep.source(list(sim.scenario.assets)), "channels": [c for c in channels if c not in skip]})
    data: dict[str, Any] = {
        "sources": sources,
        "index": {"name": INDEX, "constituents": list(sim.scenario.assets), "weighting": "equal",
                  "base_level": 1000.0, "publish_interval_s": 5.0},
        "portfolio": {"holdings": {INDEX: 1000.0}, "hedge_ratio": 0.2, "multiplier": 10.0, "lot_size": 1,
                      "position_contracts": -20, "tolerance_ratio": 0.02},
        "redis": {"url": redis_url, "prefix": PREFIX, "outbox_dir": str(tmp_path / "outbox")},
        "http": {"port": free_port(), "token_file": control_token_file(tmp_path)},
    }
    return config_from_dict(data, "<volume-ath>", {})


def streaming(daemon: Daemon) -> bool:
    """Every connection of every venue is subscribed, the klines' included: the venues' connection pacing
    runs on the wall clock, and live volume only counts from the minute klines on."""
    feeds = daemon.market.feeds
    klines = [k for k in feeds if "kline" in k or "candle" in k]
    return len(klines) == len(daemon.config.sources) and all(s == FeedState.SUBSCRIBED for s in feeds.values())


async def play(volume_factor: float, redis_url: str, tmp_path: Path) -> dict[str, Any]:
    """Run the scenario through the daemon; what arrived over Redis and what the rule saw at each step."""
    async with simulator(volume_factor) as sim:
        assert sim.path is not None
        path = sim.path
        start = path.now_ms / 1000.0
        daemon = Daemon(daemon_config(sim, redis_url, tmp_path), clock=lambda: path.now_ms / 1000.0)
        hedge_ch = KEYS.hedge_channel(INDEX)
        collector = Collector(redis_url, [hedge_ch])
        hedges = collector.messages[hedge_ch]
        stop, subscribed = asyncio.Event(), asyncio.Event()
        seen: list[dict[str, Any]] = []  # per step: simulated seconds, the rule's inputs, its state, the ratio
        try:
            async with asyncio.TaskGroup() as tg:
                listener = tg.create_task(collector.run(subscribed), name="collector")
                await subscribed.wait()
                run = tg.create_task(daemon.run(stop), name="daemon")
                await daemon.started.wait()
                await warm_up(sim, daemon, lambda: warm(daemon, hedges) and streaming(daemon), WARM_UP_MAX_S)
                while path.elapsed_s < END_S:
                    sim.step()
                    await settle(daemon)
                    env = daemon.rules.env
                    state = next(r["state"] for r in daemon.rules.state()["rules"] if r["name"] == RULE)
                    seen.append({"t": path.elapsed_s, "price": env.get("price"), "ath": env.get("ath"),
                                 "volume": max(env.get("volume_1h_0") or 0.0, env.get("volume_1h_1") or 0.0),
                                 "sma": env.get("volume_sma_24_1h"), "state": state,
                                 "ratio": daemon.rules.engine.ratio})
                stop.set()
                assert await run == 0
                entries = await collector.redis.xrange(KEYS.alerts_stream)
                listener.cancel()
        finally:
            await collector.close()
    return {"start": start, "seen": seen, "hedges": hedges,
            "alerts": [orjson.loads(f[b"alert"]) for _, f in entries]}


def first_new_high(seen: list[dict[str, Any]]) -> dict[str, Any]:
    return next(s for s in seen if s["price"] is not None and s["ath"] is not None and s["price"] > s["ath"])


async def test_a_new_high_on_heavy_volume_fires_the_bundled_rule_and_lifts_the_hedge(
        redis_srv: RedisServer, tmp_path: Path) -> None:
    out = await play(4.0, redis_srv.url, tmp_path)
    seen = out["seen"]
    high = first_new_high(seen)
    fired = next(s for s in seen if s["state"] == "firing")
    assert high["t"] > RALLY_S  # the history's high is above the start: the rally makes the first new high
    assert high["t"] <= fired["t"] < RALLY_S + 600
    assert fired["price"] > fired["ath"] and fired["volume"] > 1.5 * fired["sma"]
    assert all(s["volume"] <= 1.5 * s["sma"] or s["price"] <= s["ath"] for s in seen if s["t"] < fired["t"])
    # the alert on the Redis alert stream, with the hedge it moved
    ath = [a for a in out["alerts"] if a["labels"]["alertname"] == RULE]
    assert [(a["status"], a["hedge"]["from_ratio"], a["hedge"]["to_ratio"], a["hedge"]["side"],
             a["hedge"]["trade_contracts"]) for a in ath] == [("firing", 0.2, 0.0, "buy", 20.0)]
    assert iso_ts(ath[0]["startsAt"]) == out["start"] + fired["t"]  # on the simulated clock
    # the advice over Redis: from the 20-contract short of the 20% baseline to no hedge
    advised = [(h["reason"], round(h["ratio"], 9), h["side"], h["trade_contracts"]) for h in out["hedges"]
               if h["state"] == "advised"]
    assert advised == [("initial", 0.2, "none", 0.0), ("target_changed", 0.0, "buy", 20.0)]
    assert seen[-1]["ratio"] == 0.0 and seen[-1]["state"] == "firing"


async def test_the_same_new_high_on_ordinary_volume_does_not_fire(redis_srv: RedisServer, tmp_path: Path) -> None:
    out = await play(1.0, redis_srv.url, tmp_path)
    seen = out["seen"]
    high = first_new_high(seen)
    peak = max(s["volume"] / s["sma"] for s in seen if s["sma"])
    assert RALLY_S < high["t"] < END_S - 300  # the same new high, minutes of it
    assert peak < 1.5
    assert {s["state"] for s in seen} == {"inactive"}
    assert [a for a in out["alerts"] if a["labels"]["alertname"] == RULE] == []
    assert {round(s["ratio"], 9) for s in seen} == {0.2}

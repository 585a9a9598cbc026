"""Restart safety through the whole daemon: a daemon restart, a Redis restart under a running daemon, and a
shutdown while Redis is down.

The exchange simulator (the bundled four-phase scenario: funding at 0.05% per 8 h from the start) serves
Binance USDⓈ-M, Bybit and OKX on loopback; the real ``Daemon`` runs in this process against a real
redis-server. As in the four-phase test, the daemon's clock is the simulator's clock and the test advances
it one 1 s step at a time, letting the daemon take in each step before the next: rule durations are
simulated time, and outcomes do not depend on the machine's speed.

The rule file written for these tests:

* ``FundingHot`` (funding at or above 0.04%, ``for`` 1 minute) adds 30 points of hedge (``adjust_hedge``):
  it fires soon after the start, and its action must never be applied twice;
* ``AboveLongAverage`` (the index above half its 50-day MA, ``for`` 10 minutes) needs the kline-bootstrapped
  daily history; it is pending when a daemon is stopped, and its ``for`` must keep counting from where it
  was.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from hedgewatch.connectors.simulator import Simulator
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import Config, config_from_dict
from hedgewatch.service.keys import Keys
from hedgewatch.service.outbox import Outbox
from tests.stepped import settle, stepped_simulator, stepped_sources
from tests.support import RedisServer, free_port, wait_for

INDEX = "RST"
PREFIX = "hwr"
KEYS = Keys(PREFIX)
UNITS = 1000.0
MULTIPLIER = 10.0
FIRES, PENDS = "FundingHot", "AboveLongAverage"
PENDING_FOR_S = 600.0
STOP_BUDGET_S = 5.0
WARM_UP_MAX_S = 300  # simulated seconds a warm-up may take (feeds connect, klines load)

RULES = """
groups:
  - name: restart
    rules:
      - name: FundingHot
        expr: funding >= 0.0004
        for: 1m
        resolve: funding < 0.0002
        severity: warning
        priority: 20
        action: {adjust_hedge: +30%}
        annotations: {summary: '{{ $index }} funding {{ .funding_rate_8h | pct }}'}
      - name: AboveLongAverage
        expr: price > sma(50, "1d") * 0.5
        for: 10m
        severity: info
        action: notify
"""


def daemon_config(sim: Simulator, redis_url: str, tmp_path: Path) -> Config:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    assets = list(sim.scenario.assets)
    data: dict[str, Any] = {
        "sources": stepped_sources(sim),
        "index": {"name": INDEX, "constituents": assets, "weighting": "equal", "base_level": 1000.0,
                  "publish_interval_s": 5.0},
        "portfolio": {"holdings": {INDEX: UNITS}, "hedge_ratio": 0.2, "multiplier": MULTIPLIER,
                      "lot_size": 1, "position_contracts": -20, "tolerance_ratio": 0.02},
        "rules": {"files": [str(rules)]},
        "redis": {"url": redis_url, "prefix": PREFIX, "outbox_dir": str(tmp_path / "outbox"),
                  "heartbeat_interval_s": 2.0},
        "http": {"port": free_port()},
    }
    return config_from_dict(data, "<restart>", {})


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with stepped_simulator() as s:
        yield s


class Running:
    """One daemon run in this event loop, on the simulator's clock."""

    def __init__(self, sim: Simulator, config: Config) -> None:
        assert sim.path is not None
        path = sim.path
        self.sim = sim
        self.daemon = Daemon(config, clock=lambda: path.now_ms / 1000.0)
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[int] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.daemon.run(self.stop_event), name="daemon")
        started = asyncio.create_task(self.daemon.started.wait())
        await asyncio.wait([self.task, started], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            raise AssertionError("the daemon did not start")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None and not self.task.done():
            self.stop_event.set()
            await asyncio.wait_for(self.task, 10)

    async def stop(self) -> float:
        """Stop as SIGTERM does; returns the wall seconds the shutdown took."""
        assert self.task is not None
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        self.stop_event.set()
        assert await asyncio.wait_for(self.task, 10) == 0
        return loop.time() - t0

    @property
    def now(self) -> float:
        return self.daemon.clock()

    def rule(self, name: str) -> Any:
        return self.daemon.rules.engine.states[name]

    async def settle(self) -> None:
        await settle(self.daemon)

    async def step_until(self, done: Callable[[], bool | Awaitable[bool]], max_s: float, what: str,
                         pace_s: float = 0.0) -> None:
        """Advance the simulated clock one step at a time until ``done``. ``pace_s`` lets wall time pass
        between steps, for what runs on the wall clock (connecting, the kline REST calls, Redis retries)."""
        limit = self.sim.path.elapsed_s + max_s  # type: ignore[union-attr]
        async with asyncio.timeout(30):
            while not await _holds(done):
                assert self.sim.path is not None and self.sim.path.elapsed_s < limit, f"no {what} in {max_s} s"
                assert self.task is not None and not self.task.done(), "the daemon exited"
                self.sim.step()
                await self.settle()
                if pace_s:
                    await asyncio.sleep(pace_s)

    def warm(self) -> bool:
        """Every venue quotes every constituent, the index is ok and the 50-day MA is known."""
        d = self.daemon
        oracles = [d.market.oracle(a) for a in d.config.index.constituents]
        return (all(o is not None and o.n_valid == 3 for o in oracles) and d.market.status == "ok"
                and d.rules.state()["signals"].get("sma_50_1d") is not None)

    async def warm_up(self) -> None:
        await self.step_until(self.warm, WARM_UP_MAX_S, "warm-up", pace_s=0.02)


async def stream_alerts(r: aioredis.Redis) -> list[dict[str, Any]]:
    return [orjson.loads(f[b"alert"]) for _, f in await r.xrange(KEYS.alerts_stream)]


def alerts_total(daemon: Daemon) -> float:
    return sum(s.value for m in daemon.metrics.registry.collect() if m.name == "hedgewatch_alerts"
               for s in m.samples if s.name.endswith("_total"))


def firing(alerts: list[dict[str, Any]], rule: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"] == rule and a["status"] == "firing"]


async def test_restart_restores_rules_hedge_and_indicators(sim: Simulator, redis_srv: RedisServer,
                                                          tmp_path: Path) -> None:
    cfg = daemon_config(sim, redis_srv.url, tmp_path)
    r = aioredis.Redis.from_url(redis_srv.url)
    hedges: list[dict[str, Any]] = []
    pubsub = r.pubsub()
    await pubsub.subscribe(KEYS.hedge_channel(INDEX))
    try:
        async with Running(sim, cfg) as one:
            await one.warm_up()
            await one.step_until(lambda: one.rule(FIRES).state == "firing", 300, f"{FIRES} firing")
            await wait_for(lambda: _count(r, FIRES), 5, "the firing alert in the stream")
            assert one.daemon.rules.engine.ratio == pytest.approx(0.5)  # 20% + 30 points
            pend = one.rule(PENDS)
            assert pend.state == "pending"
            since = pend.since
            # stop with the pending rule a few minutes into its 10 minutes
            await one.step_until(lambda: one.now - since >= 180, 300, "three minutes of pending")
            assert one.rule(PENDS).state == "pending"
            fired_at = one.rule(FIRES).fired_at
            sma = one.daemon.rules.state()["signals"]["sma_50_1d"]
            position = one.daemon.rules.hedge.position
            took = await one.stop()
        assert took < STOP_BUDGET_S
        saved = orjson.loads(await r.get(KEYS.state(INDEX)))
        assert saved["rules"]["engine"]["ratio"] == pytest.approx(0.5)
        assert saved["rules"]["engine"]["rules"][PENDS]["since"] == since
        before = await stream_alerts(r)
        assert [(a["labels"]["alertname"], a["status"]) for a in before] == [(FIRES, "firing")]
        assert before[0]["hedge"]["from_ratio"] == pytest.approx(0.2)
        assert before[0]["hedge"]["to_ratio"] == pytest.approx(0.5)
        await _drain(pubsub, hedges)
        assert [(h["reason"], h["ratio"]) for h in hedges] == [("initial", 0.2), ("target_changed", 0.5)]
        recs_before = len(hedges)

        async with Running(sim, cfg) as two:
            # restored before anything was evaluated: the firing rule fires on, the pending one waits on
            assert two.rule(FIRES).state == "firing" and two.rule(FIRES).fired_at == fired_at
            assert two.rule(PENDS).state == "pending" and two.rule(PENDS).since == since
            assert two.daemon.rules.engine.ratio == pytest.approx(0.5)
            await two.warm_up()
            # the 50-day MA is back (re-bootstrapped from the venues' klines) as soon as the index is ok
            assert two.daemon.rules.state()["signals"]["sma_50_1d"] == pytest.approx(sma, rel=1e-3)
            # warm-up (stale, then degraded index; no MA yet) neither reset nor re-fired anything
            assert two.rule(FIRES).state == "firing" and two.rule(FIRES).fired_at == fired_at
            assert two.rule(PENDS).state == "pending" and two.rule(PENDS).since == since
            assert two.daemon.rules.engine.ratio == pytest.approx(0.5)
            assert two.daemon.rules.hedge.position == position == -20
            # the pending rule fires 10 minutes after it started pending in the first run
            await two.step_until(lambda: two.rule(PENDS).state == "firing", PENDING_FOR_S,
                                 f"{PENDS} firing")
            assert since + PENDING_FOR_S <= two.rule(PENDS).fired_at <= since + PENDING_FOR_S + 2
            await wait_for(lambda: _count(r, PENDS), 5, "the pending rule's alert in the stream")
            assert two.daemon.rules.engine.ratio == pytest.approx(0.5)  # adjust_hedge not applied again
            assert two.rule(FIRES).fired_at == fired_at
            await two.stop()
        alerts = await stream_alerts(r)
        assert [(a["labels"]["alertname"], a["status"]) for a in alerts] == [(FIRES, "firing"), (PENDS, "firing")]
        assert len({a["id"] for a in alerts}) == 2
        await _drain(pubsub, hedges)
        # no recommendation after the restart moved the target: it stayed at 50%
        assert all(h["reason"] != "target_changed" and h["ratio"] == pytest.approx(0.5)
                   for h in hedges[recs_before:])
        final = orjson.loads(await r.get(KEYS.state(INDEX)))
        assert final["rules"]["engine"]["ratio"] == pytest.approx(0.5)
    finally:
        await pubsub.aclose()
        await r.aclose()


async def test_redis_restart_under_a_running_daemon(sim: Simulator, redis_srv: RedisServer,
                                                    tmp_path: Path) -> None:
    cfg = daemon_config(sim, redis_srv.url, tmp_path)
    r = aioredis.Redis.from_url(redis_srv.url)
    try:
        async with Running(sim, cfg) as run, httpx.AsyncClient(timeout=2.0) as http:
            d = run.daemon
            await run.warm_up()
            await run.step_until(lambda: run.rule(FIRES).state == "firing", 300, f"{FIRES} firing")
            await wait_for(lambda: _count(r, FIRES), 5, "the first alert in the stream")
            before = await stream_alerts(r)
            since = run.rule(PENDS).since
            assert since is not None
            # Redis goes away two minutes before the pending rule is due
            await run.step_until(lambda: run.now - since >= PENDING_FOR_S - 120, PENDING_FOR_S, "the outage")
            redis_srv.stop()
            updates, level_ts = d.stats.index_updates, d.market.snapshot(run.now)["ts"]
            await run.step_until(lambda: run.rule(PENDS).state == "firing", 300, f"{PENDS} firing")
            await run.step_until(lambda: not d.publisher.connected, 30, "the outage noticed", pace_s=0.01)
            # the pipeline never waited on Redis: the index kept updating, /state answers with the news
            assert d.stats.index_updates >= updates + 100
            state = (await http.get(f"http://127.0.0.1:{cfg.http.port}/state")).json()
            assert state["market"]["index"]["ts"] >= level_ts + 100
            assert state["pipeline"]["redis"]["connected"] is False
            assert state["pipeline"]["index_updates"] >= updates + 100
            assert d.alerts.pending == 1  # the outage's alert waits in the outbox
            outage_end = run.now
            redis_srv.start()  # same port, empty: it does not persist
            await r.aclose()
            r = aioredis.Redis.from_url(redis_srv.url)
            await wait_for(lambda: _count(r, PENDS), 10, "the outage's alert in the stream")
            # the state key and the heartbeat are written again (the publisher retries on the wall clock)
            async def rewritten() -> bool:
                raw = await r.get(KEYS.state(INDEX))
                return raw is not None and orjson.loads(raw)["saved_at"] >= outage_end

            await run.step_until(rewritten, 300, "the state key written again", pace_s=0.02)
            saved = orjson.loads(await r.get(KEYS.state(INDEX)))
            assert saved["saved_at"] >= outage_end
            assert saved["rules"]["engine"]["rules"][PENDS]["state"] == "firing"
            assert await r.pttl(KEYS.heartbeat) > 0
            after = await stream_alerts(r)
            # every alert the daemon raised is in the stream exactly once: before the outage (the stream that
            # Redis lost) or after it
            seen = [a["id"] for a in before + after]
            assert len(seen) == len(set(seen)) == alerts_total(d) == 2
            assert [(a["labels"]["alertname"], a["status"]) for a in after] == [(PENDS, "firing")]
    finally:
        await r.aclose()


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
async def test_shutdown_while_redis_is_down_keeps_alerts(sim: Simulator, redis_srv: RedisServer,
                                                         tmp_path: Path, outage: str) -> None:
    """Redis is down (its process stopped: connections refused, data gone when it returns) or frozen (the
    process paused: connections hang until the client's timeouts, data kept) while both rules fire and
    while the daemon stops."""
    cfg = daemon_config(sim, redis_srv.url, tmp_path)
    outbox = Path(cfg.redis.outbox_dir)
    frozen = outage == "frozen"
    try:
        async with Running(sim, cfg) as one:
            await one.warm_up()
            assert one.rule(FIRES).state == one.rule(PENDS).state == "pending"
            if frozen:
                assert redis_srv.proc is not None
                redis_srv.proc.send_signal(signal.SIGSTOP)
            else:
                redis_srv.stop()
            await one.step_until(lambda: one.rule(PENDS).state == one.rule(FIRES).state == "firing",
                                 PENDING_FOR_S + 60, "both rules firing")
            assert alerts_total(one.daemon) == 2
            assert one.daemon.alerts is not None and one.daemon.alerts.pending == 2
            took = await one.stop()
        assert took < STOP_BUDGET_S
    finally:
        if frozen and redis_srv.proc is not None:
            redis_srv.proc.send_signal(signal.SIGCONT)
    kept = Outbox(outbox).load()
    assert sorted(orjson.loads(rec.payload)["labels"]["alertname"] for rec in kept) == sorted([FIRES, PENDS])
    ids = [rec.alert_id for rec in kept]

    if not frozen:
        redis_srv.start()  # same port, empty
    r = aioredis.Redis.from_url(redis_srv.url)
    try:
        if frozen:  # Redis kept the state written before the outage, older than the local copy
            old = orjson.loads(await r.get(KEYS.state(INDEX)))
            assert old["rules"]["engine"]["rules"][FIRES]["state"] == "pending"
        else:
            assert await r.get(KEYS.state(INDEX)) is None
        async with Running(sim, cfg) as two:
            # the state saved at the stop was not lost with Redis (nor overruled by its older copy)
            assert two.rule(FIRES).state == two.rule(PENDS).state == "firing"
            assert two.daemon.rules.engine.ratio == pytest.approx(0.5)
            await wait_for(lambda: _len(r, 2), 10, "the kept alerts in the stream")
            await two.warm_up()
            # nothing fires again: two minutes on, FundingHot's `for` (1 minute) would have fired it
            await two.step_until(lambda: two.now - two.daemon.stats.started >= 120, 200, "two minutes")
            assert two.rule(FIRES).state == two.rule(PENDS).state == "firing"
            assert alerts_total(two.daemon) == 0
            assert two.daemon.rules.engine.ratio == pytest.approx(0.5)
            await two.stop()
        alerts = await stream_alerts(r)
        assert [a["id"] for a in alerts] == ids  # delivered exactly once, in order
    finally:
        await r.aclose()


async def _count(r: aioredis.Redis, rule: str) -> bool:
    return len(firing(await stream_alerts(r), rule)) >= 1


async def _len(r: aioredis.Redis, n: int) -> bool:
    return await r.xlen(KEYS.alerts_stream) >= n


async def _drain(pubsub: Any, into: list[dict[str, Any]]) -> None:
    """Every message already published (the daemon stopped after flushing them) into ``into``."""
    while (msg := await pubsub.get_message(timeout=0.2)) is not None:
        if msg["type"] == "message":
            into.append(orjson.loads(msg["data"]))


async def _holds(predicate: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = predicate()
    if isinstance(result, Awaitable):
        result = await result
    return bool(result)

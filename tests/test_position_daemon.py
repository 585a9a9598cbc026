"""The believed hedge position through the whole daemon: the exchange simulator on loopback, a real
redis-server, the daemon in this process. A user who does nothing is reminded of the same advice; an
acknowledgement over the Redis command stream moves the position and survives a restart; balances read
from the venue (the simulator's Binance account endpoints, through ccxt) change the advice."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import config_from_dict
from hedgewatch.service.keys import Keys
from tests.support import CONTROL_HEADERS, CONTROL_TOKEN, REPO, RedisServer, control_token_file, free_port, wait_for

INDEX = "POS"
PREFIX = "hwp"
KEYS = Keys(PREFIX)
UNITS = 1000.0  # index units held: about $1,000,000 at the base level of 1,000
MULTIPLIER = 10.0  # 20% of $1,000,000 at 1,000 points x $10 is 20 contracts


def config(sim: Simulator, redis_url: str, tmp_path: Path, **portfolio: Any) -> dict[str, Any]:
    rules = tmp_path / "no_rules.yaml"
    rules.write_text("groups: []\n")
    return {
        "sources": [{"exchange": ep.exchange, "name": ep.name, "symbols": list(sim.scenario.assets),
                     "ws_url": ep.ws_url, "rest_url": ep.rest_url} for ep in sim.endpoints],
        "index": {"name": INDEX, "constituents": list(sim.scenario.assets), "weighting": "equal",
                  "base_level": 1000.0, "publish_interval_s": 0.2},
        "portfolio": {"holdings": {INDEX: UNITS}, "hedge_ratio": 0.2, "multiplier": MULTIPLIER, "lot_size": 1,
                      "tolerance_ratio": 0.05, **portfolio},
        "rules": {"files": [str(rules)], "eval_interval_s": 0.1},
        "redis": {"url": redis_url, "prefix": PREFIX, "outbox_dir": str(tmp_path / "outbox")},
        "http": {"port": free_port(), "token_file": control_token_file(tmp_path)},
    }


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(load_scenario(None)) as s:
        yield s


@asynccontextmanager
async def running(cfg: dict[str, Any]) -> AsyncIterator[Daemon]:
    daemon = Daemon(config_from_dict(cfg, "<position>", {}))
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop), name="daemon")
    try:
        await asyncio.wait_for(daemon.started.wait(), 10)
        yield daemon
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0


@asynccontextmanager
async def hedge_messages(url: str) -> AsyncIterator[list[dict[str, Any]]]:
    r = aioredis.Redis.from_url(url)
    ps = r.pubsub()
    await ps.subscribe(KEYS.hedge_channel(INDEX))
    got: list[dict[str, Any]] = []

    async def listen() -> None:
        async for msg in ps.listen():
            if msg["type"] == "message":
                got.append(orjson.loads(msg["data"]))

    task = asyncio.create_task(listen(), name="hedge-listener")
    try:
        yield got
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ps.aclose()
        await r.aclose()


async def command(r: aioredis.Redis, body: dict[str, Any]) -> dict[str, Any]:
    """Send a command on the stream and wait for its outcome."""
    entry = (await r.xadd(KEYS.commands, {"json": orjson.dumps(body)})).decode()
    out: dict[str, Any] = {}

    async def answered() -> bool:
        raw = await r.get(KEYS.command_result(entry))
        if raw:
            out.update(orjson.loads(raw))
        return bool(raw)

    await wait_for(answered, 10, "the command's outcome")
    return out


async def test_a_user_who_does_nothing_is_reminded_of_the_same_advice_then_acknowledges(
        sim: Simulator, redis_srv: RedisServer, tmp_path: Path) -> None:
    cfg = config(sim, redis_srv.url, tmp_path, position_contracts=0, remind_s=0.5)
    r = aioredis.Redis.from_url(redis_srv.url)
    try:
        async with hedge_messages(redis_srv.url) as hedges, running(cfg) as daemon:
            await wait_for(lambda: len(hedges) >= 4, 20, "the first advice and three reminders")
            first = hedges[0]
            assert (first["reason"], first["side"], first["trade_contracts"], first["state"]) == (
                "initial", "sell", 20.0, "advised")
            # nothing was done: the same advice, the same id, from the same position, not a new one
            assert {(h["id"], h["side"], h["trade_contracts"], h["position_contracts"]) for h in hedges} == {
                (first["id"], "sell", 20.0, 0.0)}

            refused = await command(r, {"command": "hedge_ack", "advice_id": "POS-99", "by": "telegram:1"})
            assert refused == {"ok": False, "error": f"advice POS-99 is not open (open: {first['id']})"}
            assert (await command(r, {"command": "close_all"}))["ok"] is False
            done = await command(r, {"command": "hedge_ack", "by": "telegram:1"})
            assert done["ok"] and done["position"]["contracts"] == -20.0 and done["position"]["by"] == "telegram:1"
            assert done["advice"]["state"] == "acknowledged"
            await wait_for(lambda: hedges[-1]["state"] == "acknowledged", 10, "the advice restated acknowledged")
            n = len(hedges)
            await wait_for(lambda: daemon.stats.snapshots > 10, 10, "more evaluations")
            assert len(hedges) == n  # held as advised: nothing more to say
            assert daemon.state()["position"]["source"] == "ack"
        # a restart keeps the position and the advice: no new "initial"
        async with hedge_messages(redis_srv.url) as hedges, running(cfg) as daemon:
            await wait_for(lambda: daemon.stats.snapshots > 10, 20, "the restarted daemon publishing")
            assert daemon.rules.hedge.position == -20.0
            assert hedges == []
    finally:
        await r.aclose()


async def test_balances_read_from_the_venue_change_the_advice(sim: Simulator, redis_srv: RedisServer,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    binance = next(ep for ep in sim.endpoints if ep.exchange == "binanceusdm")
    account = sim.servers[binance.name].account  # type: ignore[attr-defined]
    account.balances = {"USDT": 25_000.0}
    account.positions = {"BTC": -20.0}
    monkeypatch.setenv("HEDGEWATCH_BALANCES_API_KEY", "read-only-key")
    monkeypatch.setenv("HEDGEWATCH_BALANCES_SECRET", "read-only-secret")
    balances = {"exchange": "binanceusdm", "rest_url": binance.rest_url, "position_symbol": "BTC/USDT:USDT",
                "assets": ["NONE"], "poll_s": 0.2}
    cfg = config(sim, redis_srv.url, tmp_path, position_contracts=0, balances=balances)
    async with hedge_messages(redis_srv.url) as hedges, running(cfg) as daemon:
        # the first advice is either from the venue's 20 short (nothing to trade) or from the config's 0,
        # then reconciled once the venue shows the 20 short it asked for
        await wait_for(lambda: bool(hedges) and hedges[-1]["position"]["contracts"] == -20.0
                       and (hedges[-1]["side"] == "none" or hedges[-1]["state"] == "reconciled"), 20,
                       "the advice squared with the venue's position")
        assert daemon.state()["position"]["source"] == "venue"
        account.positions = {"BTC": -5.0}  # part of the short was closed on the venue
        await wait_for(lambda: hedges[-1]["reason"] == "position_changed", 20, "an advice from the new position")
        last = hedges[-1]
        assert (last["position_contracts"], last["side"], last["trade_contracts"]) == (-5.0, "sell", 15.0)
        assert last["position"]["source"] == "venue"
        assert account.reads >= 2


async def test_hedge_ack_over_http_and_the_cli(sim: Simulator, redis_srv: RedisServer, tmp_path: Path) -> None:
    cfg = config(sim, redis_srv.url, tmp_path, position_contracts=0)
    async with hedge_messages(redis_srv.url) as hedges, running(cfg) as daemon:
        await wait_for(lambda: bool(hedges), 20, "the first advice")
        url = f"http://127.0.0.1:{daemon.http.port}"
        async with httpx.AsyncClient(base_url=url, headers=CONTROL_HEADERS) as http:
            # a browser's cross-site form cannot acknowledge: JSON bodies only
            form = await http.post("/hedge/ack", data={"contracts": "-3"})
            assert form.status_code == 415 and daemon.rules.hedge.position == 0.0
            bad = await http.post("/hedge/ack", json={"contracts": "lots"})
            assert bad.status_code == 409 and "number" in bad.json()["error"]

        async def cli(*args: str) -> tuple[int, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hedgewatch.service", "hedge", "ack", "--url",
                f"http://hedgewatch:{CONTROL_TOKEN}@127.0.0.1:{daemon.http.port}", *args, cwd=REPO,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, out.decode()

        code, out = await cli("--advice", "POS-42")
        assert code == 1 and "POS-42 is not open" in out
        code, out = await cli("--contracts", "-7")
        assert code == 0, out
        answer = orjson.loads(out)
        assert {k: answer["position"][k] for k in ("contracts", "source", "by")} == {
            "contracts": -7.0, "source": "ack", "by": "http:127.0.0.1"}
        assert answer["advice"]["state"] == "superseded"  # not what was advised: advised afresh
        # a fresh advice from the 7 held, at once
        await wait_for(lambda: hedges[-1]["reason"] == "position_changed", 10, "an advice from the 7 held")
        assert (hedges[-1]["position_contracts"], hedges[-1]["trade_contracts"]) == (-7.0, 13.0)

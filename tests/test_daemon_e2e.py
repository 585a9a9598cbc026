"""The whole daemon, end to end: the exchange simulator on loopback (in this process, so the test knows the
prices it quotes), the daemon as a real subprocess (`hedgewatch run -c FILE`), and a real redis-server."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from hedgewatch.connectors.simulator import Simulator, load_scenario
from tests.support import REPO, RedisServer, free_port, wait_for

INDEX = "E2E"
PREFIX = "hwt"
# The daemon's level is the median of the venues' mids at the last tick it saw; the test reads the
# simulator's mids a few milliseconds later. Between the two the path moves by well under 1e-4 on the
# bundled scenario, so 5e-4 flags any wrong price, weight, unit or divisor without flaking on timing.
LEVEL_TOLERANCE = 5e-4

REQUIRED_METRICS = [
    "hedgewatch_index_price", "hedgewatch_asset_price", "hedgewatch_source_price",
    "hedgewatch_source_age_seconds", "hedgewatch_source_excluded", "hedgewatch_oracle_sources",
    "hedgewatch_messages_total", "hedgewatch_messages_rejected_total", "hedgewatch_reconnects_total",
    "hedgewatch_tick_to_index_seconds",
]


def daemon_config(sim: Simulator, redis_url: str, http_port: int, outbox_dir: Path) -> dict[str, Any]:
    return {
        "sources": [
            {"exchange": ep.exchange, "name": ep.name, "symbols": list(sim.scenario.assets),
             "ws_url": ep.ws_url, "rest_url": ep.rest_url}
            for ep in sim.endpoints
        ],
        "index": {"name": INDEX, "constituents": list(sim.scenario.assets), "weighting": "equal",
                  "publish_interval_s": 0.2},
        "redis": {"url": redis_url, "prefix": PREFIX, "heartbeat_interval_s": 1.0,
                  "outbox_dir": str(outbox_dir)},
        "http": {"port": http_port},
    }


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(load_scenario(None)) as s:
        yield s


async def start_daemon(cfg: dict[str, Any], tmp_path: Path) -> tuple[asyncio.subprocess.Process, Path]:
    path = tmp_path / "config.yaml"
    path.write_bytes(orjson.dumps(cfg))  # JSON is YAML
    log = tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEWATCH__")}
    env["PYTHONPATH"] = str(REPO)
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hedgewatch.service", "run", "-c", str(path), cwd=REPO, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=out,
        )
    return proc, log


def expected_level(sim: Simulator, snap: dict[str, Any]) -> float:
    """The basket's value from the simulator's own quotes: each asset at the median of the venues' mids."""
    total = 0.0
    for asset, c in snap["constituents"].items():
        mids = [sim.venue_price(ep.name, asset) for ep in sim.endpoints]
        total += c["units"] * statistics.median(mids)
    return total / snap["divisor"]


async def next_message(pubsub: Any, timeout_s: float) -> dict[str, Any]:
    """The next pub/sub message's JSON (subscribe confirmations skipped); fails after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout_s)
            if msg is not None:
                return dict(orjson.loads(msg["data"]))


def parse_metrics(text: str) -> tuple[set[str], dict[str, float]]:
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return families, samples


async def test_daemon_end_to_end(sim: Simulator, redis_srv: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    cfg = daemon_config(sim, redis_srv.url, port, tmp_path / "outbox")
    r = aioredis.Redis.from_url(redis_srv.url)
    pubsub = r.pubsub()
    await pubsub.subscribe(f"{PREFIX}:index:{INDEX}")
    proc, log = await start_daemon(cfg, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            async def ready() -> bool:
                if proc.returncode is not None:
                    raise AssertionError(f"daemon exited: {log.read_text()[-2000:]}")
                try:
                    return (await http.get(f"{base}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(ready, 30, "/readyz to turn 200")
            assert (await http.get(f"{base}/healthz")).status_code == 200

            # index snapshots over Redis pub/sub equal the basket computed from the simulator's prices
            # ready means quorum; "ok" needs every venue's first quote, which follows within a second
            snap = await next_message(pubsub, 5.0)
            async with asyncio.timeout(10):
                while snap["status"] != "ok":
                    snap = await next_message(pubsub, 5.0)
            checked = 0
            while checked < 5:
                snap = await next_message(pubsub, 5.0)
                assert snap["index"] == INDEX and snap["status"] == "ok"
                assert set(snap["constituents"]) == set(sim.scenario.assets)
                want = expected_level(sim, snap)
                assert snap["level"] == pytest.approx(want, rel=LEVEL_TOLERANCE)
                for c in snap["constituents"].values():
                    assert c["sources"] == len(sim.endpoints)
                checked += 1

            state = orjson.loads(await r.get(f"{PREFIX}:state:{INDEX}"))
            assert state["snapshot"]["index"] == INDEX
            assert await r.pttl(f"{PREFIX}:heartbeat") > 0

            body = (await http.get(f"{base}/state")).json()
            assert set(body["feeds"]) == {ep.name for ep in sim.endpoints}
            assert set(body["market"]["oracle"]) == set(sim.scenario.assets)

            families, samples = parse_metrics((await http.get(f"{base}/metrics")).text)
            for name in REQUIRED_METRICS:
                assert name in families, name
            asset = next(iter(sim.scenario.assets))
            assert samples[f'hedgewatch_oracle_sources{{asset="{asset}"}}'] == len(sim.endpoints)
            assert samples[f'hedgewatch_asset_price{{asset="{asset}"}}'] == pytest.approx(
                sim.reference_price(asset), rel=0.01)
            ages = [v for k, v in samples.items() if k.startswith("hedgewatch_source_age_seconds{")]
            assert ages and all(0 <= a < 10 for a in ages)
            assert samples["hedgewatch_tick_to_index_seconds_count"] > 0
            assert sum(v for k, v in samples.items() if k.startswith("hedgewatch_messages_total{")) > 0

        # SIGTERM: exit 0 within 5 s with one summary line
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 5.0)
        assert code == 0
        assert loop.time() - t0 < 5.0
        assert "stopped after" in log.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await pubsub.aclose()
        await r.aclose()


async def test_sigint_also_stops_cleanly(sim: Simulator, tmp_path: Path) -> None:
    """Without Redis configured everything but the Redis outputs runs, and SIGINT stops it with exit 0."""
    port = free_port()
    cfg = daemon_config(sim, "", port, tmp_path / "outbox")
    del cfg["redis"]
    proc, log = await start_daemon(cfg, tmp_path)
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            async def ready() -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(ready, 30, "/readyz")
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 5.0) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "Traceback" not in log.read_text()

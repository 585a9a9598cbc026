"""On-demand rebalancing: `POST /rebalance` on the daemon's port (loopback clients with the control token)
and the `hedgewatch rebalance` command that calls it, against the daemon running on the simulator."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.app import Daemon
from hedgewatch.service.demo import demo_config
from tests.support import CONTROL_HEADERS, CONTROL_TOKEN, REPO, control_token_file, free_port, wait_for


@pytest.fixture(scope="module")
def sockets() -> Iterator[Path]:
    """A short folder for Unix sockets: a socket path has about 100 bytes at most."""
    with tempfile.TemporaryDirectory(prefix="hw-sock-") as d:
        yield Path(d)


@pytest.fixture
async def daemon(tmp_path: Path, sockets: Path) -> AsyncIterator[tuple[Daemon, int]]:
    async with Simulator(load_scenario(None)) as sim:
        port = free_port()
        cfg = demo_config(sim.endpoints, list(sim.scenario.assets), env={
            "HEDGEWATCH__HTTP__PORT": str(port), "HEDGEWATCH__HTTP__TOKEN_FILE": control_token_file(tmp_path),
            "HEDGEWATCH__HTTP__UNIX_SOCKET": str(sockets / f"{port}.sock")})
        d = Daemon(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        try:
            yield d, port
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


def weights(d: Daemon) -> list[float]:
    return [c["weight"] for c in d.market.snapshot(d.clock())["constituents"].values()]


async def test_rebalance_on_demand_restores_target_weights_and_keeps_the_level(
        daemon: tuple[Daemon, int]) -> None:
    d, port = daemon
    async with httpx.AsyncClient(timeout=5.0, headers=CONTROL_HEADERS) as http:
        # before the index is built there is nothing to rebalance
        early = await http.post(f"http://127.0.0.1:{port}/rebalance")
        assert early.status_code in (200, 409)
        await wait_for(lambda: d.market.ready, 20, "the index to be ready")
        # prices move the equal weights away from 1/3 ...
        await wait_for(lambda: max(abs(w - 1 / 3) for w in weights(d)) > 1e-7, 20, "weights to drift")
        level_before = d.market.level
        resp = await http.post(f"http://127.0.0.1:{port}/rebalance")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["rebalanced"] is True and body["index"] == "HWDEMO"
    # ... and the rebalance brings them back while the level carries on from where it was
    assert all(w == pytest.approx(1 / 3, rel=1e-9) for w in body["weights"].values())
    assert body["level"] == pytest.approx(level_before, rel=1e-3)
    # the user is told, by the bundled `Rebalanced` event rule, not only a log line
    fired = {"rule": "Rebalanced", "status": "firing"}
    await wait_for(lambda: d.metrics.registry.get_sample_value("hedgewatch_alerts_total", fired) == 1.0, 10,
                   "the rebalance alert")


@pytest.mark.parametrize("how", ["url password", "token file", "token file from the environment",
                                 "unix socket"])
async def test_rebalance_command(daemon: tuple[Daemon, int], tmp_path: Path, sockets: Path, how: str) -> None:
    d, port = daemon
    await wait_for(lambda: d.market.ready, 20, "the index to be ready")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEWATCH")}
    env["PYTHONPATH"] = str(REPO)
    url = f"http://127.0.0.1:{port}"
    args = {"url password": ["--url", f"http://hedgewatch:{CONTROL_TOKEN}@127.0.0.1:{port}"],
            "token file": ["--url", url, "--token-file", str(tmp_path / "control.token")],
            "token file from the environment": ["--url", url],
            "unix socket": ["--unix-socket", str(sockets / f"{port}.sock")]}[how]
    if how == "token file from the environment":
        env["HEDGEWATCH_TOKEN_FILE"] = str(tmp_path / "control.token")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hedgewatch.service", "rebalance", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b'"rebalanced":true' in out


async def test_without_the_token_the_daemon_does_not_rebalance(daemon: tuple[Daemon, int]) -> None:
    d, port = daemon
    await wait_for(lambda: d.market.ready, 20, "the index to be ready")
    async with httpx.AsyncClient(timeout=5.0) as http:
        assert (await http.post(f"http://127.0.0.1:{port}/rebalance")).status_code == 401
        evil = await http.post(f"http://127.0.0.1:{port}/rebalance", data={"a": "b"},
                               headers={"Origin": "http://evil.example", **CONTROL_HEADERS})
        assert evil.status_code == 403


async def test_the_command_says_when_no_daemon_answers() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEWATCH__")}
    env["PYTHONPATH"] = str(REPO)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hedgewatch.service", "rebalance", "--url",
        f"http://hedgewatch:{CONTROL_TOKEN}@127.0.0.1:{free_port()}", cwd=REPO,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1 and b"cannot reach the daemon" in err
    assert CONTROL_TOKEN.encode() not in err  # the token given in the URL is never printed

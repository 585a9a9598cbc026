"""The scaled layout in tests: ingest shards, engines and the one-process daemon as real subprocesses against
the stepped simulator and a real Redis (single or Cluster), and the views the tests compare."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from hedgewatch.connectors.simulator import Simulator
from tests.support import REPO, free_port

INDEX = "SCL"
LEASE_S = 2.0
RULES = """
groups:
  - name: scale
    rules:
      - name: IndexUp
        expr: price > 0
        for: 0s
        severity: info
        action: notify
        act_on: [ok, degraded, stale]
        annotations: {summary: '{{ $index }} is priced'}
"""


def one_venue_per_asset(sim: Simulator) -> list[dict[str, Any]]:
    """Each asset from one venue: the oracle's price of an asset is that venue's whatever order events
    arrive in, so two layouts that take in the same frames build the same basket. No trades: a trade stands
    in for a quote until the first quote, so the price at the build would depend on that order."""
    assets = list(sim.scenario.assets)
    sources = []
    for ep, asset in zip(sim.endpoints, assets, strict=False):
        channels = ["quotes", "mark", "funding"]
        sources.append({"exchange": ep.exchange, "name": ep.name, "symbols": [asset], "ws_url": ep.ws_url,
                        "rest_url": ep.rest_url, "channels": channels, "quote": ep.quote})
    return sources


def write_config(path: Path, sim: Simulator, redis_url: str, prefix: str, *, bus: str, name: str,
                 port: int) -> Path:
    rules = path.parent / "rules.yaml"
    rules.write_text(RULES)
    sources = one_venue_per_asset(sim)
    data = {
        "sources": sources,
        "index": {"name": INDEX, "constituents": [s["symbols"][0] for s in sources], "weighting": "equal",
                  "publish_interval_s": 0.0},
        "oracle": {"max_age_s": 5.0},
        "rules": {"files": [str(rules)], "startup_grace_s": 0.0, "eval_interval_s": 0.2},
        "redis": {"url": redis_url, "prefix": prefix, "outbox_dir": str(path.parent / f"outbox-{name}"),
                  "heartbeat_interval_s": 1.0},
        "http": {"port": port},
        "bus": bus,
        "scale": {"lease_s": LEASE_S, "process_name": name},
        "log_level": "INFO",
    }
    path.write_bytes(orjson.dumps(data))  # JSON is YAML
    return path


@dataclass
class Proc:
    """One hedgewatch subprocess with its log file and HTTP port."""

    name: str
    args: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env = {k: v for k, v in env.items() if not k.startswith("HEDGEWATCH__")}
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen([sys.executable, "-m", "hedgewatch.service", *self.args], stdout=out,
                                     stderr=subprocess.STDOUT, env=env, cwd=REPO)
        out.close()
        return self

    def state(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/state", timeout=2.0)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def metrics(self) -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2.0).text
        except httpx.HTTPError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
                self.proc.terminate()
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""


@dataclass
class Layout:
    """Two ingest shards, engines, and the one-process daemon for comparison."""

    tmp: Path
    sim: Simulator
    redis_url: str
    one_url: str = ""  # the one-process daemon's Redis (a single one; by default the same)
    procs: dict[str, Proc] = field(default_factory=dict)
    harness: Any = None  # the test's view of Redis, closed with the layout

    def config(self, name: str, bus: str, prefix: str, port: int) -> Path:
        url = (self.one_url or self.redis_url) if bus == "memory" else self.redis_url
        return write_config(self.tmp / f"{name}.yaml", self.sim, url, prefix, bus=bus, name=name, port=port)

    def add(self, name: str, args: list[str], port: int) -> Proc:
        p = Proc(name, args, port, self.tmp / f"{name}.log").start()
        self.procs[name] = p
        return p

    def ingest(self, shard: str) -> Proc:
        name = f"ingest{shard.replace('/', 'of')}"
        port = free_port()
        cfg = self.config("dist", "redis", "hw", 0)
        return self.add(name, ["ingest", "-c", str(cfg), "--shard", shard, "--http-port", str(port)], port)

    def engine(self, name: str) -> Proc:
        port = free_port()
        cfg = self.config(name, "redis", "hw", port)
        return self.add(name, ["run", "--bus", "redis", "-c", str(cfg)], port)

    def one_process(self) -> Proc:
        port = free_port()
        cfg = self.config("one", "memory", "one", port)
        return self.add("one", ["run", "-c", str(cfg)], port)

    async def close(self) -> None:
        for p in self.procs.values():
            await asyncio.to_thread(p.stop)
        if self.harness is not None:
            await self.harness.close()

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.tail()}" for n, p in self.procs.items())


def subscribed(feeds: Any) -> bool:
    """Every channel of every connection in a ``/state`` feeds block is subscribed."""
    flags: list[bool] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "subscribed" in node and "channel" in node:
                flags.append(bool(node["subscribed"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(feeds)
    return bool(flags) and all(flags)


def basket(raw: bytes | None) -> dict[str, Any] | None:
    """What of a persisted state's snapshot depends only on the prices taken in: level, divisor, units and
    prices (ages, statuses and derivatives depend on when it was taken)."""
    if raw is None:
        return None
    snap = orjson.loads(raw).get("snapshot") or {}
    if snap.get("level") is None:
        return None
    return {"level": snap["level"], "divisor": snap["divisor"],
            "constituents": {a: (c["units"], c["price"]) for a, c in snap["constituents"].items()}}


def same_basket(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """The same units, prices and divisor, and the same level up to the rounding of a running sum (one
    process updates it tick by tick; a restored basket starts from a fresh sum)."""
    if a is None or b is None:
        return False
    return (a["constituents"] == b["constituents"] and a["divisor"] == b["divisor"]
            and math.isclose(a["level"], b["level"], rel_tol=1e-12))


@dataclass
class ClusterNodes:
    ports: list[int]
    procs: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0?cluster=true"


@contextlib.contextmanager
def redis_cluster(workdir: Path, nodes: int = 3) -> Iterator[ClusterNodes]:
    """A real Redis Cluster of ``nodes`` masters on loopback ports, created with ``redis-cli --cluster``."""
    exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if exe is None or cli is None:
        raise RuntimeError("redis-server and redis-cli are needed")
    ports = [_cluster_port() for _ in range(nodes)]
    procs = []
    try:
        for p in ports:
            d = workdir / f"node-{p}"
            d.mkdir()
            procs.append(subprocess.Popen(
                [exe, "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(d / "nodes.conf"), "--save", "", "--appendonly", "no",
                 "--dir", str(d)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in ports:
            _wait_port(p)
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        for p in ports:
            _wait_cluster_ok(cli, p, nodes)
        yield ClusterNodes(ports, procs)
    finally:
        for pr in procs:
            pr.terminate()
        for pr in procs:
            pr.wait(10)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    while True:
        p = free_port()
        if p + 10000 > 65535:
            continue
        with contextlib.suppress(OSError), socket.socket() as s:
            s.bind(("127.0.0.1", p + 10000))
            return p


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)  # a child process with no readiness signal
    raise RuntimeError(f"redis-server on {port} did not listen")


def _wait_cluster_ok(cli: str, port: int, nodes: int) -> None:
    """Until the node sees the whole cluster: a client that reads the slot map from a node still joining
    gets a partial one."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out = subprocess.run([cli, "-p", str(port), "cluster", "info"], capture_output=True, text=True).stdout
        if ("cluster_state:ok" in out and f"cluster_known_nodes:{nodes}\n" in out
                and "cluster_slots_ok:16384" in out):
            return
        time.sleep(0.05)  # the cluster converges on its own bus; no signal to wait on
    raise RuntimeError("the cluster did not reach cluster_state:ok")

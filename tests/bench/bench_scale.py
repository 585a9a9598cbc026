"""The scaled layout against the one-process daemon, in the same run: throughput, latency and takeover time.

    python -m tests.bench.bench_scale [--seconds 5] [--symbols 10] [--kills 20] [--rate 0]

- one process: the real daemon with the native Binance connector (``tests.bench.bench_pipeline``);
- 1 and 2 shards: ``hedgewatch ingest --shard K/N`` subprocesses with the same connector, writing to a
  private redis-server, and the engine (``run --bus redis``, in this process) reading the streams.

The frames come from the simulator's blaster (a separate process, as fast as each socket drains), Binance
bookTicker for ``--symbols`` symbols; every shard subscribes to its share. Reported: events/s the engine
took in (median of 0.5 s windows, ramp-up and tail dropped), p50/p99 of tick-to-index (the connector's receive
time in the shard to the index update in the engine: Redis and a process boundary in between).

Takeover: two engine subprocesses (default ``scale.lease_s`` of 4 s); ``kill -9`` of the owner, the time until
the other reports itself owner on ``/state``; the killed one is started again as the standby; ``--kills``
times, median and worst.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from hedgewatch.connectors.simulator import Simulator, parse_scenario
from hedgewatch.connectors.simulator.blaster import BlasterProcess, symbols_for
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import config_from_dict
from tests.bench.bench_pipeline import WINDOW_S, Recorder, pct, pipeline_run, rest_scenario
from tests.support import REPO, free_port, redis_server, wait_for


def config(symbols: int, ws_url: str, rest_url: str, redis_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "sources": [{"exchange": "binanceusdm", "symbols": symbols_for(symbols), "ws_url": ws_url,
                     "rest_url": rest_url, "channels": ["quotes"]}],
        "index": {"name": "BENCH", "constituents": symbols_for(symbols), "weighting": "equal",
                  "publish_interval_s": 0.0},
        "redis": {"url": redis_url, "prefix": f"b{os.getpid()}"},
        "ingest_queue_size": 100_000,
        "http": {"port": 0},
        **extra,
    }


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEWATCH__")}
    env["PYTHONPATH"] = str(REPO)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "hedgewatch.service", *args], stdout=out,
                                stderr=subprocess.STDOUT,
                                env=env, cwd=REPO)


async def sharded_run(shards: int, rate: float, seconds: float, symbols: int, rest_url: str, redis_url: str,
                      tmp: Path) -> tuple[float, list[float]]:
    """Events/s into the engine and its tick-to-index samples, with ``shards`` ingest processes; ``rate``
    frames/s offered in total (0: as fast as each shard's socket drains)."""
    samples: list[float] = []
    blaster = BlasterProcess(rate / shards, seconds, symbols)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        data = config(symbols, blaster.ws_url, rest_url, redis_url, bus="redis",
                      scale={"process_name": f"bench-engine-{shards}"})
        data["redis"]["outbox_dir"] = str(tmp / f"outbox-{shards}")
        data["redis"]["prefix"] += f"s{shards}"
        daemon = Daemon(config_from_dict(data, "<bench>", env={}))
        daemon.metrics.tick_to_index = Recorder(daemon.metrics.tick_to_index, samples)  # type: ignore[assignment]
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await wait_for(lambda: daemon.owning, 30, "the engine to own the index")
        path = tmp / f"ingest-{shards}.yaml"
        path.write_bytes(orjson.dumps({**data, "bus": "redis"}))
        for k in range(1, shards + 1):
            procs.append(spawn(["ingest", "-c", str(path), "--shard", f"{k}/{shards}", "--http-port",
                                str(free_port())], tmp / f"ingest-{shards}-{k}.log"))
        done = asyncio.create_task(asyncio.to_thread(blaster.result))
        rates: list[float] = []
        prev_n, prev_t = daemon.stats.events, time.perf_counter()
        while not done.done():
            await asyncio.sleep(WINDOW_S)
            n, t = daemon.stats.events, time.perf_counter()
            if n > prev_n and prev_n > 0:
                rates.append((n - prev_n) / (t - prev_t))
            prev_n, prev_t = n, t
        await done
        stop.set()
        await task
        steady = rates[1:-1] if len(rates) > 3 else rates
        return (statistics.median(steady) if steady else 0.0), samples
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        blaster.close()


def owner(port: int) -> bool:
    try:
        st = httpx.get(f"http://127.0.0.1:{port}/state", timeout=1.0).json()
    except (httpx.HTTPError, ValueError):
        return False
    return bool((st.get("scale") or {}).get("role") == "owner")


def takeovers(kills: int, rest_url: str, ws_url: str, redis_url: str, tmp: Path) -> list[float]:
    """Seconds from ``kill -9`` of the owner to the standby reporting itself owner, ``kills`` times."""
    ports = {"a": free_port(), "b": free_port()}
    cfgs = {}
    for name, port in ports.items():
        data = config(3, ws_url, rest_url, redis_url, bus="redis", scale={"process_name": f"bench-{name}"})
        data["http"]["port"] = port
        data["redis"]["outbox_dir"] = str(tmp / f"outbox-{name}")
        data["redis"]["prefix"] += "takeover"
        cfgs[name] = tmp / f"engine-{name}.yaml"
        cfgs[name].write_bytes(orjson.dumps(data))
    procs = {n: spawn(["run", "-c", str(cfgs[n])], tmp / f"engine-{n}.log") for n in ports}
    times: list[float] = []
    try:
        while not any(owner(p) for p in ports.values()):
            time.sleep(0.05)
        for _ in range(kills):
            own = next(n for n, p in ports.items() if owner(p))
            other = "b" if own == "a" else "a"
            while httpx.get(f"http://127.0.0.1:{ports[other]}/healthz", timeout=1.0).status_code != 200:
                time.sleep(0.05)
            procs[own].send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            procs[own].wait(5)
            while not owner(ports[other]):
                time.sleep(0.01)
            times.append(time.monotonic() - t0)
            procs[own] = spawn(["run", "-c", str(cfgs[own])], tmp / f"engine-{own}.log")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{ports[own]}/healthz", timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
    finally:
        for p in procs.values():
            p.terminate()
            p.wait(10)
    return times


async def main_async(args: argparse.Namespace) -> None:
    assets = symbols_for(args.symbols)
    async with Simulator(parse_scenario(rest_scenario(assets))) as sim:
        rest_url = sim.endpoints[0].rest_url
        with redis_server() as redis, tempfile.TemporaryDirectory(prefix="hw-bench-scale-") as d:
            tmp = Path(d)
            offered = "as fast as the sockets drain" if not args.rate else f"{args.rate:,.0f} frames/s offered"
            print(f"{offered}\n{'layout':>12} {'events/s':>10} {'p50':>9} {'p99':>9}")
            one = await pipeline_run(args.rate, args.seconds, args.symbols, rest_url, redis.url)
            print(f"{'one process':>12} {one.sustained:>10,.0f} {pct(one.to_index, .5) * 1e3:>7.2f}ms "
                  f"{pct(one.to_index, .99) * 1e3:>7.2f}ms")
            for shards in (1, 2):
                rate, samples = await sharded_run(shards, args.rate, args.seconds, args.symbols, rest_url, redis.url,
                                                  tmp)
                label = f"{shards} shard" + ("s" if shards > 1 else "")
                print(f"{label:>12} {rate:>10,.0f} {pct(samples, .5) * 1e3:>7.2f}ms {pct(samples, .99) * 1e3:>7.2f}ms")
            if args.kills:
                times = await asyncio.to_thread(takeovers, args.kills, rest_url, sim.endpoints[0].ws_url,
                                                redis.url, tmp)
                print(f"takeover over {len(times)} kill -9: median {statistics.median(times):.2f} s, "
                      f"worst {max(times):.2f} s (lease 4 s; bound two lease periods, 8 s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--symbols", type=int, default=10)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--rate", type=float, default=0.0, help="frames/s offered in total; 0 = as fast as possible")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()

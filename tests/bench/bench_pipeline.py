"""Whole-pipeline benchmark: connector → bus → oracle → index → Redis publish, against the floor.

    python -m tests.bench.bench_pipeline [--seconds 5] [--repeat 3] [--symbols 10]

The frames come from the simulator's blaster, a separate process that pre-encodes Binance bookTicker frames
and pushes them at a chosen rate (or as fast as the socket drains), so the sender is not the bottleneck.

- floor: a bare ``websockets`` client receiving the same frames and decoding them with orjson;
- pipeline: the real daemon (in this process) with the native Binance connector, the oracle and the index,
  publishing every index change (``publish_interval_s: 0``) to a private redis-server.

For each offered rate it reports the sustained processed rate (median of 0.5 s windows), events dropped by
the ingest bus, and p50/p99 of tick-to-index (receive → index updated) and tick-to-publish (receive → Redis
pipeline written). Timings are medians over ``--repeat`` runs; the figure that matters is the ratio measured
in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import connect

from hedgewatch.connectors.simulator import Simulator, parse_scenario
from hedgewatch.connectors.simulator.blaster import BlasterProcess, symbols_for
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import config_from_dict
from tests.support import redis_server

WINDOW_S = 0.5


def rest_scenario(assets: list[str]) -> str:
    """A simulator scenario serving the Binance REST instrument list for the blaster's symbols."""
    lines = ["seed: 1", "tick_interval_s: 1.0", "history_days: 1", "assets:"]
    lines += [f"  {a}: {{price: 10.0, volatility: 0.5, tick_size: 0.0001, qty_step: 0.001}}" for a in assets]
    lines += ["venues:", "  - {name: binanceusdm, protocol: binanceusdm}"]
    return "\n".join(lines) + "\n"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def floor_run(seconds: float, symbols: int) -> float:
    """Messages/s a bare websockets client receives and decodes with orjson."""
    blaster = BlasterProcess(0, seconds, symbols)
    try:
        streams = "/".join(f"{a.lower()}usdt@bookTicker" for a in symbols_for(symbols))
        n = 0
        first = last = 0.0
        async with connect(f"{blaster.ws_url}/public/stream?streams={streams}", max_size=1 << 20,
                           compression=None, max_queue=None) as ws:
            async for raw in ws:
                msg = orjson.loads(raw)
                float(msg["data"]["b"])
                float(msg["data"]["a"])
                n += 1
                last = time.perf_counter()
                if n == 1:
                    first = last
        return (n - 1) / (last - first) if n > 1 else 0.0
    finally:
        blaster.close()


@dataclass
class PipelineResult:
    offered: float
    sustained: float
    dropped: int
    to_index: list[float] = field(default_factory=list)
    to_publish: list[float] = field(default_factory=list)


class Recorder:
    """Stands in front of the tick-to-index histogram to keep the raw samples as well."""

    def __init__(self, histogram: Any, samples: list[float]) -> None:
        self._h = histogram
        self._samples = samples

    def observe(self, value: float) -> None:
        self._samples.append(value)
        self._h.observe(value)


async def pipeline_run(rate: float, seconds: float, symbols: int, rest_url: str, redis_url: str) -> PipelineResult:
    blaster = BlasterProcess(rate, seconds, symbols)
    result = PipelineResult(rate, 0.0, 0)
    try:
        cfg = config_from_dict({
            "sources": [{"exchange": "binanceusdm", "symbols": symbols_for(symbols), "ws_url": blaster.ws_url,
                         "rest_url": rest_url, "channels": ["quotes"]}],
            "index": {"name": "BENCH", "constituents": symbols_for(symbols), "weighting": "equal",
                      "publish_interval_s": 0.0},
            "redis": {"url": redis_url},
            "ingest_queue_size": 100_000,
            "http": {"port": 0},
        }, "<bench>", env={})
        daemon = Daemon(cfg)
        daemon.metrics.tick_to_index = Recorder(daemon.metrics.tick_to_index, result.to_index)  # type: ignore[assignment]
        assert daemon.publisher is not None
        daemon.publisher.on_published = lambda index, snap, latency: (
            result.to_publish.append(latency) if latency is not None else None
        )
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
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
        # drop the ramp-up and the tail windows
        steady = rates[1:-1] if len(rates) > 3 else rates
        result.sustained = statistics.median(steady) if steady else 0.0
        result.dropped = daemon.bus.dropped
        return result
    finally:
        blaster.close()


async def main_async(args: argparse.Namespace) -> None:
    assets = symbols_for(args.symbols)
    async with Simulator(parse_scenario(rest_scenario(assets))) as sim:
        rest_url = sim.endpoints[0].rest_url
        with redis_server() as redis:
            floors = [await floor_run(args.seconds, args.symbols) for _ in range(args.repeat)]
            floor = statistics.median(floors)
            print(f"floor (websockets + orjson): {floor:,.0f} msg/s  (runs: {', '.join(f'{f:,.0f}' for f in floors)})")
            print(f"{'offered':>10} {'sustained':>10} {'dropped':>8} {'idx p50':>9} {'idx p99':>9}"
                  f" {'pub p50':>9} {'pub p99':>9}")
            maxes = []
            for rate in args.rates:
                runs = [await pipeline_run(rate, args.seconds, args.symbols, rest_url, redis.url)
                        for _ in range(args.repeat if rate == 0 else 1)]
                r = sorted(runs, key=lambda x: x.sustained)[len(runs) // 2]
                if rate == 0:
                    maxes = [x.sustained for x in runs]
                label = "max" if rate == 0 else f"{rate:,.0f}"
                print(f"{label:>10} {r.sustained:>10,.0f} {r.dropped:>8,} "
                      f"{pct(r.to_index, .5) * 1e3:>7.3f}ms {pct(r.to_index, .99) * 1e3:>7.3f}ms "
                      f"{pct(r.to_publish, .5) * 1e3:>7.3f}ms {pct(r.to_publish, .99) * 1e3:>7.3f}ms")
            if maxes:
                best = statistics.median(maxes)
                print(f"pipeline max {best:,.0f} msg/s = {best / floor:.2f} x floor (target >= 0.5)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--symbols", type=int, default=10)
    p.add_argument("--rates", type=float, nargs="+", default=[5000, 20000, 50000, 100000, 0])
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()

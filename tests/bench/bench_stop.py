"""Stop times with Redis frozen (SIGSTOP) and an alert delivery in flight, over many runs.

Run: ``python -m tests.bench.bench_stop [RUNS]`` (default 20; about 8 s a run). Each run starts the real
daemon against a private redis-server, freezes Redis, submits an alert, sends the stop after a random
0.1-4.9 s of the delivery being blocked (the Redis client's socket timeout is 5 s), and reports how long the
stop took and whether anything of the daemon still ran after its "stopped" line.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import tempfile
from pathlib import Path

from tests.support import redis_server
from tests.test_stop_frozen_redis import STOP_BUDGET_S, stop_with_frozen_redis


async def main(runs: int) -> None:
    rng = random.Random(7)
    took, after = [], []
    with redis_server() as srv:
        for i in range(runs):
            in_flight = rng.uniform(0.1, 4.9)
            with tempfile.TemporaryDirectory(prefix="hw-stop-") as d:
                t, watch = await stop_with_frozen_redis(srv, Path(d), in_flight)
            took.append(t)
            after.append(max(watch.run_after_s, watch.last_after_s if watch.after else 0.0))
            print(f"run {i + 1:2d}: in flight {in_flight:.2f} s, stop {t:.3f} s, lines after stopped "
                  f"{len(watch.after)}, returned {watch.run_after_s:.3f} s after it", flush=True)
    print(f"{runs} runs: stop median {statistics.median(took):.3f} s, worst {max(took):.3f} s, "
          f"{sum(t > STOP_BUDGET_S for t in took)} over {STOP_BUDGET_S:.0f} s; worst after the stopped line "
          f"{max(after):.3f} s")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))

"""Per-tick cost of ``MarketState.apply`` (oracle + index update), 5 sources per asset.

Run: ``python -m tests.bench.bench_core``. For 10, 100 and 1,000 constituents it feeds pre-built quotes
(random constituent, random venue, price within the exclusion band) and reports the median over several
runs of the mean cost per tick, and the ratio of the largest basket to the smallest measured in the same
run. Target: under 10 µs per tick and flat (within 1.5x) from 10 to 1,000 constituents.
"""

from __future__ import annotations

import gc
import random
import statistics
import time

from hedgewatch.service.config import parse_config
from hedgewatch.service.events import Quote
from hedgewatch.service.market import MarketState
from hedgewatch.service.market_metrics import GaugeExporter

VENUES = ("binanceusdm", "bybit", "okx", "kraken", "coinbase")
SIZES = (10, 100, 1000)
TICKS = 50_000
RUNS = 7


def build(n: int) -> tuple[MarketState, list[Quote]]:
    assets = [f"A{i:04d}" for i in range(n)]
    syms = ", ".join(assets)
    sources = "\n".join(f"  - {{exchange: {v}, symbols: [{syms}]}}" for v in VENUES)
    cfg = parse_config(
        f"sources:\n{sources}\nindex:\n  name: B{n}\n  constituents: [{syms}]\n  weighting: equal\n", env={}
    )
    rng = random.Random(n)
    base = {a: rng.uniform(1.0, 1000.0) for a in assets}
    m = MarketState(cfg, now=0.0)
    for a in assets:
        for v in VENUES:
            m.apply(Quote(v, a, a + "USD", base[a], base[a], 1.0, 1.0, "USD"))
    assert m.ready and m.level is not None
    events = []
    t = 1.0
    for _ in range(TICKS):
        a = assets[rng.randrange(n)]
        p = base[a] * (1.0 + rng.uniform(-0.002, 0.002))
        t += 0.0001
        events.append(Quote(VENUES[rng.randrange(5)], a, a + "USD", p, p * 1.0001, t, t, "USD"))
    return m, events


def measure(sizes: tuple[int, ...]) -> dict[int, float]:
    """Median over RUNS of the mean seconds per apply(), per size. Sizes are interleaved run by run so
    that background load on a shared machine hits them alike and the ratios stay meaningful."""
    built = {n: build(n) for n in sizes}
    per_tick: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(RUNS):
        for n, (m, events) in built.items():
            apply = m.apply
            gc.disable()
            t0 = time.perf_counter()
            for ev in events:
                apply(ev)
            dt = time.perf_counter() - t0
            gc.enable()
            per_tick[n].append(dt / len(events))
            m.tick(events[-1].ts_recv)
    return {n: statistics.median(v) for n, v in per_tick.items()}


def periodic(n: int) -> tuple[float, float, float]:
    """Median seconds of the off-hot-path calls the daemon makes: tick (every 250 ms), snapshot (at most
    once per publish interval) and export (about once a second)."""
    from hedgewatch.service.metrics import Metrics

    m, events = build(n)
    for ev in events:
        m.apply(ev)
    now = events[-1].ts_recv
    metrics = Metrics()
    exporter = GaugeExporter()
    out = []
    for call in (lambda: m.tick(now), lambda: m.snapshot(now), lambda: exporter.export(m, metrics, now)):
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            call()
            samples.append(time.perf_counter() - t0)
        out.append(statistics.median(samples))
    return out[0], out[1], out[2]


def main() -> None:
    results = measure(SIZES)
    extra = {n: periodic(n) for n in SIZES}
    print(f"{'constituents':>12} {'µs/tick (median)':>18} {'vs 10':>7} {'tick ms':>9} {'snapshot ms':>12} "
          f"{'export ms':>10}")
    for n, s in results.items():
        t, sn, ex = extra[n]
        print(f"{n:>12} {s * 1e6:>18.2f} {s / results[SIZES[0]]:>7.2f} {t * 1e3:>9.2f} {sn * 1e3:>12.2f} "
              f"{ex * 1e3:>10.2f}")
    worst = max(results.values())
    print(f"target < 10 µs: {'met' if worst < 10e-6 else 'MISSED'}; "
          f"flat within 1.5x: {'met' if max(results.values()) / min(results.values()) <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()

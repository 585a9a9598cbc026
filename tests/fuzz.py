"""The fuzz run: the daemon's own engine fed by the real native connectors, each venue of the simulator
behind a ``HostileProxy``, measured as a user sees it: alerts, index and oracle status flips, source
transitions, the oracle's deviation from the honest reference, rejects by reason, and whether anything
crashed or logged at ERROR. ``tests/test_hostile_feeds.py`` runs it for seconds, ``tests.bench.bench_fuzz``
for the full 150 s.

The engine is driven as the daemon drives it (``service.app``): every event through ``apply_batch``; every
0.25 s ``tick``, ``transitions`` (the event rules) and ``evaluate`` (the expression rules).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hedgewatch.connectors import build_connector
from hedgewatch.connectors.simulator import Simulator, parse_scenario
from hedgewatch.service.config import config_from_dict
from hedgewatch.service.engine import Engine
from hedgewatch.service.events import Event, Quote
from hedgewatch.service.metrics import Metrics
from tests.hostile import CATEGORIES, HostileProxy

ASSETS = ("BTC", "ETH", "SOL")
SCENARIO = """
seed: 15
tick_interval_s: 0.1
history_days: 1
assets:
  BTC: {price: 60000, volatility: 0.5, tick_size: 0.1, qty_step: 0.001}
  ETH: {price: 3000, volatility: 0.7, tick_size: 0.01, qty_step: 0.001}
  SOL: {price: 150, volatility: 0.9, tick_size: 0.001, qty_step: 0.01}
venues:
  - {name: binanceusdm, protocol: binanceusdm, noise_bps: 1, spread_bps: 0.5}
  - {name: bybit, protocol: bybit, noise_bps: 1, spread_bps: 0.5}
  - {name: okx, protocol: okx, noise_bps: 1, spread_bps: 0.5}
"""
TICK_S = 0.25


@dataclass
class FuzzReport:
    seconds: float = 0.0
    hostile: Counter[str] = field(default_factory=Counter)      # frames sent, per category
    rejected: Counter[str] = field(default_factory=Counter)     # "venue:reason"
    alerts: Counter[str] = field(default_factory=Counter)       # "rule status"
    index_flips: int = 0
    oracle_flips: int = 0
    source_transitions: int = 0
    max_deviation: float = 0.0          # |oracle / honest - 1| over every asset and sample
    samples: int = 0
    quotes: Counter[str] = field(default_factory=Counter)       # accepted quotes per venue during the run
    errors: list[str] = field(default_factory=list)             # ERROR log lines and crashed tasks
    final_status: str = ""

    @property
    def hostile_total(self) -> int:
        return sum(self.hostile.values())

    @property
    def alert_total(self) -> int:
        return sum(self.alerts.values())


class _Errors(logging.Handler):
    def __init__(self, out: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.append(record.getMessage()[:300])


async def fuzz_run(duration_s: float, rate_per_venue: float, categories: tuple[str, ...] = CATEGORIES,
                   seed: int = 1, warmup_timeout_s: float = 30.0) -> FuzzReport:
    """Warm up honestly until every asset has three valid sources and the index is ok, then inject for
    ``duration_s`` and report."""
    report = FuzzReport()
    handler = _Errors(report.errors)
    logging.getLogger("hedgewatch").addHandler(handler)
    try:
        async with Simulator(parse_scenario(SCENARIO)) as sim:
            proxies = [HostileProxy(ep.ws_url, ep.exchange, rate_per_venue, categories, seed + i)
                       for i, ep in enumerate(sim.endpoints)]
            urls = [await p.start() for p in proxies]
            try:
                await _drive(sim, proxies, urls, duration_s, warmup_timeout_s, report)
            finally:
                for p in proxies:
                    await p.close()
    finally:
        logging.getLogger("hedgewatch").removeHandler(handler)
    return report


async def _drive(sim: Simulator, proxies: list[HostileProxy], urls: list[str], duration_s: float,
                 warmup_timeout_s: float, report: FuzzReport) -> None:
    cfg = config_from_dict({
        "sources": [{"exchange": ep.exchange, "name": ep.name, "symbols": list(ASSETS), "ws_url": url,
                     "rest_url": ep.rest_url, "channels": ["quotes"]}
                    for ep, url in zip(sim.endpoints, urls, strict=True)],
        "index": {"name": "HW", "constituents": list(ASSETS), "weighting": "equal"},
        "rules": {"files": ["builtin:default"]},
    }, env={})
    run = _Run(Engine(cfg, time.time()), sim, report)
    connectors = [build_connector(src, run.sink, Metrics()) for src in cfg.sources]
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(c.run(), name=f"connector-{c.name}") for c in connectors]
        try:
            await run.warm_up(warmup_timeout_s)
            before = {c.name: dict(c.status()["rejected"]) for c in connectors}
            run.counting = True
            for p in proxies:
                p.enabled = True
            started = time.monotonic()
            while time.monotonic() - started < duration_s:
                await asyncio.sleep(TICK_S)
                run.step(time.time())
                crashed = [t.get_name() for t in tasks if t.done()]
                if crashed:
                    report.errors.append(f"connector task ended: {crashed}")
                    break
            report.seconds = time.monotonic() - started
            for p in proxies:
                p.enabled = False
                report.hostile.update(p.sent)
            for c in connectors:
                for reason, n in c.status()["rejected"].items():
                    if n - before[c.name].get(reason, 0):
                        report.rejected[f"{c.name}:{reason}"] += n - before[c.name].get(reason, 0)
            report.final_status = run.market.status
        finally:
            for t in tasks:
                t.cancel()


class _Run:
    """The daemon's drive of the engine, with the counting."""

    def __init__(self, engine: Engine, sim: Simulator, report: FuzzReport) -> None:
        self.engine = engine
        self.market = engine.market
        self.sim = sim
        self.report = report
        self.counting = False

    def sink(self, ev: Event) -> None:
        self.engine.apply_batch((ev,))
        if self.counting and type(ev) is Quote:
            self.report.quotes[ev.exchange] += 1

    async def warm_up(self, timeout_s: float) -> None:
        """Honest feeds until every asset has three valid sources and the index is ok, then a settling
        second so the warm-up's own transitions are not counted."""
        m = self.market
        deadline = time.monotonic() + timeout_s
        while not (m.ready and m.status == "ok" and all(m.oracles[a].n_valid == 3 for a in ASSETS)):
            if time.monotonic() > deadline:
                raise AssertionError(f"no honest quorum after {timeout_s} s: {m.status}")
            self.step(time.time())
            await asyncio.sleep(TICK_S)
        for _ in range(8):
            self.step(time.time())
            await asyncio.sleep(TICK_S)

    def step(self, now: float) -> None:
        engine, report = self.engine, self.report
        engine.tick(now)
        logged, alerts = engine.transitions(now)
        results = engine.evaluate(now)
        if not self.counting:
            return
        kinds = Counter(d["kind"] for d in logged)
        report.index_flips += kinds["index"]
        report.oracle_flips += kinds["oracle"]
        report.source_transitions += kinds["source"]
        for a in [*alerts, *results[0].alerts]:
            report.alerts[f"{a.rule} {a.status}"] += 1
        for asset in ASSETS:
            price = self.market.oracles[asset].price
            if price is not None:
                report.max_deviation = max(report.max_deviation, abs(price / self.sim.reference_price(asset) - 1))
                report.samples += 1


def summary(r: FuzzReport) -> dict[str, Any]:
    """The report as plain data (for printing)."""
    return {
        "seconds": round(r.seconds, 1), "hostile_frames": r.hostile_total, "hostile_by_category": dict(r.hostile),
        "alerts": r.alert_total, "alerts_by_rule": dict(r.alerts), "index_flips": r.index_flips,
        "oracle_flips": r.oracle_flips, "source_transitions": r.source_transitions,
        "max_deviation_pct": round(r.max_deviation * 100, 4), "samples": r.samples,
        "honest_quotes_accepted": dict(r.quotes), "rejected": dict(sorted(r.rejected.items())),
        "errors": r.errors[:5], "final_status": r.final_status,
    }

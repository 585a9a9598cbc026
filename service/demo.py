"""``hedgewatch demo``: the daemon against the bundled exchange simulator on loopback, with a live view.

The simulator serves one venue per protocol (Binance USDⓈ-M, Bybit, OKX) on ephemeral loopback ports; the
daemon is configured from the endpoints it reports, so nothing leaves the machine. Environment overrides
(``HEDGEWATCH__REDIS__URL``, ``HEDGEWATCH__HTTP__PORT``, ...) apply exactly as for ``run``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from connectors.simulator import Simulator, VenueEndpoint, load_scenario
from service.app import Daemon, install_signal_handlers
from service.config import Config, config_from_dict

log = logging.getLogger("hedgewatch.demo")

DEMO_INDEX = "HWDEMO"
PLAIN_INTERVAL_S = 5.0
LIVE_REFRESH_S = 0.5


def demo_config(endpoints: list[VenueEndpoint], assets: list[str], env: dict[str, str] | None = None) -> Config:
    """The daemon's config for the simulator's endpoints: every venue quotes every asset, and the index is
    an equal-weighted basket of them."""
    data: dict[str, Any] = {
        "sources": [
            {"exchange": ep.exchange, "name": ep.name, "symbols": assets, "ws_url": ep.ws_url,
             "rest_url": ep.rest_url, "open_interest_poll_s": 2.0}
            for ep in endpoints
        ],
        "index": {"name": DEMO_INDEX, "constituents": assets, "weighting": "equal", "base_level": 1000.0,
                  "publish_interval_s": 1.0},
    }
    return config_from_dict(data, "<demo>", os.environ if env is None else env)


class Rates:
    """Messages per second per exchange, from the daemon's own counters, over the last refresh."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._t = time.monotonic()
        self.per_exchange: dict[str, float] = {}

    def update(self, daemon: Daemon) -> None:
        now = time.monotonic()
        totals: dict[str, float] = {}
        for metric in daemon.metrics.messages.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    ex = s.labels["exchange"]
                    totals[ex] = totals.get(ex, 0.0) + s.value
        dt = max(now - self._t, 1e-6)
        self.per_exchange = {ex: (v - self._last.get(ex, 0.0)) / dt for ex, v in totals.items()}
        self._last, self._t = totals, now

    @property
    def total(self) -> float:
        return sum(self.per_exchange.values())


def _fmt_price(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:,.2f}" if p >= 1 else f"{p:.6f}"


def render(daemon: Daemon, rates: Rates) -> Group:
    now = daemon.clock()
    snap = daemon.market.snapshot(now)
    market = daemon.market.state(now)
    status = snap.get("status", "?")
    colour = {"ok": "green", "degraded": "yellow"}.get(status, "red")
    head = Text.assemble(
        (f"{snap.get('index', DEMO_INDEX)} ", "bold"), (_fmt_price(snap.get("level")), "bold cyan"),
        "  ", (status, colour), f"   {rates.total:,.0f} msg/s", f"   up {now - daemon.stats.started:,.0f} s",
    )
    assets = Table(title="oracle", expand=True)
    for col in ("asset", "price", "status", "sources", "spread", "per source (price, age)"):
        assets.add_column(col)
    for asset, c in sorted(snap.get("constituents", {}).items()):
        per = []
        for src in _sources(market, asset):
            mark = "" if src.get("status") == "ok" else f" [{src.get('status')}]"
            per.append(f"{src.get('exchange')} {_fmt_price(src.get('price'))} ({src.get('age_s', 0):.1f}s){mark}")
        assets.add_row(asset, _fmt_price(c.get("price")), str(c.get("status")), str(c.get("sources")),
                       f"{(c.get('confidence') or 0) * 1e4:.1f} bp", "\n".join(per))
    feeds = Table(title="feeds", expand=True)
    for col in ("exchange", "msg/s"):
        feeds.add_column(col)
    for ex, r in sorted(rates.per_exchange.items()):
        feeds.add_row(ex, f"{r:,.0f}")
    return Group(head, assets, feeds)


def _sources(market: dict[str, Any], asset: str) -> list[dict[str, Any]]:
    info = market.get("oracle", {}).get(asset, {})
    srcs = info.get("sources", [])
    if isinstance(srcs, dict):
        return [{"exchange": k, **v} for k, v in srcs.items()]
    return list(srcs)


def plain_line(daemon: Daemon, rates: Rates) -> str:
    snap = daemon.market.snapshot(daemon.clock())
    parts = [f"index {snap.get('index')} {_fmt_price(snap.get('level'))} {snap.get('status')}"]
    for asset, c in sorted(snap.get("constituents", {}).items()):
        parts.append(f"{asset} {_fmt_price(c.get('price'))} ({c.get('sources')} src)")
    parts.append(f"{rates.total:,.0f} msg/s")
    return " | ".join(parts)


async def _view(daemon: Daemon, plain: bool, stop: asyncio.Event) -> None:
    rates = Rates()
    await daemon.started.wait()
    if plain:
        while not stop.is_set():
            await _wait(stop, PLAIN_INTERVAL_S)
            rates.update(daemon)
            print(plain_line(daemon, rates), flush=True)
        return
    console = Console()
    with Live(render(daemon, rates), console=console, refresh_per_second=4, transient=False) as live:
        while not stop.is_set():
            await _wait(stop, LIVE_REFRESH_S)
            rates.update(daemon)
            live.update(render(daemon, rates))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        pass


async def run_demo(scenario: Path | None, *, plain: bool) -> int:
    stop = asyncio.Event()
    install_signal_handlers(stop)
    sim = Simulator(load_scenario(scenario))
    endpoints = await sim.start()
    try:
        cfg = demo_config(endpoints, list(sim.scenario.assets))
        daemon = Daemon(cfg)
        print(
            f"simulator: {', '.join(f'{e.name} {e.ws_url}' for e in endpoints)}; "
            f"http://{cfg.http.host}:{cfg.http.port}/metrics",
            file=sys.stderr, flush=True,
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_view(daemon, plain, stop), name="view")
            code = await daemon.run(stop)
        return code
    finally:
        await sim.close()

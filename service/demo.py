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
from collections import deque
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hedgewatch.connectors.simulator import Simulator, VenueEndpoint, load_scenario
from hedgewatch.service.app import Daemon, install_signal_handlers
from hedgewatch.service.config import Config, config_from_dict

log = logging.getLogger("hedgewatch.demo")

DEMO_INDEX = "HWDEMO"
PLAIN_INTERVAL_S = 5.0
DEMO_HOLDINGS = {"BTC": 3.0, "ETH": 60.0, "SOL": 1300.0}
LIVE_REFRESH_S = 0.5


def demo_config(endpoints: list[VenueEndpoint], assets: list[str], env: dict[str, str] | None = None) -> Config:
    """The daemon's config for the simulator's endpoints: every venue quotes every asset, and the index is
    an equal-weighted basket of them."""
    data: dict[str, Any] = {
        "sources": [
            {**ep.source(assets), "open_interest_poll_s": 2.0}  # the venues' spot markets included
            for ep in endpoints
        ],
        "index": {"name": DEMO_INDEX, "constituents": assets, "weighting": "equal", "base_level": 1000.0,
                  "publish_interval_s": 1.0},
        # a portfolio of roughly equal parts of each asset worth about $600,000, hedged 20% with contracts
        # of $100 per index point
        "portfolio": {"holdings": {a: DEMO_HOLDINGS.get(a, 1.0) for a in assets}, "hedge_ratio": 0.2,
                      "multiplier": 100.0, "lot_size": 0.01},
    }
    return config_from_dict(data, "<demo>", os.environ if env is None else env)


class Rates:
    """Messages per second per exchange from the daemon's own counters, over a sliding window so the view
    does not flicker with the venues' bursts."""

    WINDOW_S = 2.0

    def __init__(self) -> None:
        self._history: deque[tuple[float, dict[str, float]]] = deque()
        self.per_exchange: dict[str, float] = {}

    @staticmethod
    def _totals(daemon: Daemon, family: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in daemon.metrics.registry.collect():
            if metric.name != family:
                continue
            for s in metric.samples:
                if s.name.endswith("_total"):
                    out[s.labels[label]] = out.get(s.labels[label], 0.0) + s.value
        return out

    def update(self, daemon: Daemon) -> None:
        now = time.monotonic()
        totals = self._totals(daemon, "hedgewatch_messages", "exchange")
        self._history.append((now, totals))
        while len(self._history) > 2 and now - self._history[1][0] >= self.WINDOW_S:
            self._history.popleft()
        t0, first = self._history[0]
        dt = max(now - t0, 1e-6)
        self.per_exchange = {ex: (v - first.get(ex, 0.0)) / dt for ex, v in totals.items()} if dt > 0.1 else {}

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
        "   Ctrl-C to stop",
    )
    feeds = {c.name: c.status() for c in daemon.connectors}
    return Group(head, _oracle_table(snap, market, feed_health(feeds)), _derivatives_table(snap),
                 _hedge_table(daemon), _feeds_table(daemon, rates, feeds))


def feed_health(feeds: dict[str, dict[str, Any]]) -> dict[tuple[str, str], str]:
    """``(source, asset) -> "down" | "quiet"`` from the connectors' ``status()``: "down" when a connection
    carrying one of the asset's channels is not up, "quiet" when the connection is up but the venue has sent
    nothing for one of them past its learned bound (a thin market, not a broken feed)."""
    out: dict[tuple[str, str], str] = {}
    for source, st in feeds.items():
        for name, conn in (st.get("connections") or {}).items():
            if name.startswith("spot-"):
                continue  # a spot market that is down is told by the source's market: its perpetual stands in
            for ch in (conn.get("channels") or {}).values():
                asset = ch.get("asset")
                if not asset:
                    continue
                key = (source, asset)
                if not conn.get("up", conn.get("state") == "subscribed"):
                    out[key] = "down"
                elif ch.get("quiet") and out.get(key) != "down":
                    out[key] = "quiet"
    return out


def source_label(src: dict[str, Any], health: str | None) -> str:
    """One source of an asset for the view: the market pricing it, price, age, and why it is not used,
    telling a stale source on a live feed (the symbol went quiet) from one whose feed is down."""
    status = src.get("status")
    market = f" {src['market']}" if src.get("market") else ""  # spot, or the perpetual standing in
    text = f"{src.get('exchange')}{market} {_fmt_price(src.get('price'))} ({src.get('age_s') or 0:.1f}s)"
    if status == "stale":
        why = {"quiet": "quiet symbol, feed live", "down": "feed down"}.get(health or "", src.get("reason", ""))
        return f"{text} [stale: {why}]"
    if status != "ok":
        return f"{text} [{status}: {src.get('reason', '')}]"
    if health == "quiet":
        return f"{text} [quiet]"
    if health == "down":
        return f"{text} [feed down]"
    return text


def _oracle_table(snap: dict[str, Any], market: dict[str, Any],
                  health: dict[tuple[str, str], str] | None = None) -> Table:
    health = health or {}
    t = Table(title="oracle", title_justify="left")
    for col in ("asset", "price", "status", "sources", "spread", "weight", "per source: price (age)"):
        t.add_column(col)
    for asset, c in sorted(snap.get("constituents", {}).items()):
        per = []
        for src in _sources(market, asset):
            per.append(source_label(src, health.get((str(src.get("exchange")), asset))))
        t.add_row(asset, _fmt_price(c.get("price")), str(c.get("status")), str(c.get("sources")),
                  f"{(c.get('confidence') or 0) * 1e4:.1f} bp", f"{(c.get('weight') or 0):.1%}", "\n".join(per))
    return t


def _pct(v: Any, digits: int = 4) -> str:
    return "—" if v is None else f"{v * 100:.{digits}f}%"


def _derivatives_table(snap: dict[str, Any]) -> Table:
    d = snap.get("derivatives") or {}
    t = Table(title="futures leg", title_justify="left")
    for col in ("futures", "basis", "annualized", "state", "funding / 8h", "funding / yr", "open interest"):
        t.add_column(col)
    oi = d.get("open_interest_usd")
    t.add_row(_fmt_price(d.get("futures_price")), _pct(d.get("basis_ratio")), _pct(d.get("basis_annualized"), 2),
              str(d.get("state") or "—"), _pct(d.get("funding_rate_8h")), _pct(d.get("funding_annualized"), 2),
              "—" if oi is None else f"${oi / 1e9:,.2f} bn")
    return t


def _hedge_table(daemon: Daemon) -> Table:
    st = daemon.rules.state()
    h = st.get("hedge") or {}
    t = Table(title="hedge", title_justify="left")
    for col in ("ratio", "portfolio", "target notional", "contracts", "position", "trade", "funding/day",
                "rules firing/pending"):
        t.add_column(col)
    active = [f"{r['name']} ({r['state']})" for r in st.get("rules", []) if r.get("state") in ("firing", "pending")]
    trade = h.get("delta_contracts")
    t.add_row(f"{st.get('hedge_ratio', 0):.0%}", f"${h.get('portfolio_value_usd') or 0:,.0f}",
              f"${h.get('target_notional_usd') or 0:,.0f}", f"{h.get('target_contracts') or 0:g}",
              f"{h.get('position_contracts') or 0:g}",
              "—" if not trade else f"{h.get('side')} {abs(trade):g}",
              "—" if h.get("funding_per_day_usd") is None else f"${h['funding_per_day_usd']:,.2f}",
              "\n".join(active) or "—")
    return t


def _feeds_table(daemon: Daemon, rates: Rates, feeds: dict[str, dict[str, Any]]) -> Table:
    rejects = Rates._totals(daemon, "hedgewatch_messages_rejected", "exchange")
    reconnects = Rates._totals(daemon, "hedgewatch_reconnects", "exchange")
    t = Table(title="feeds", title_justify="left")
    for col in ("source", "msg/s", "rejected", "reconnects", "connections up", "down", "quiet"):
        t.add_column(col)
    for c in daemon.connectors:
        conns = (feeds.get(c.name) or {}).get("connections") or {}
        up = [n for n, s in conns.items() if s.get("up", s.get("state") == "subscribed")]
        quiet = sorted(k for s in conns.values() for k, ch in (s.get("channels") or {}).items() if ch.get("quiet"))
        t.add_row(c.name, f"{rates.per_exchange.get(c.name, 0):,.0f}", f"{rejects.get(c.name, 0):,.0f}",
                  f"{reconnects.get(c.name, 0):,.0f}", f"{len(up)}/{len(conns)}",
                  ", ".join(sorted(set(conns) - set(up))) or "—", ", ".join(quiet) or "—")
    return t


def _sources(market: dict[str, Any], asset: str) -> list[dict[str, Any]]:
    """Per-source status of ``asset``'s oracle (``/state`` keys it by venue) as rows for the view."""
    srcs = market.get("oracle", {}).get(asset, {}).get("sources", {})
    return [{"exchange": k, **v} for k, v in srcs.items()]


def plain_line(daemon: Daemon, rates: Rates) -> str:
    snap = daemon.market.snapshot(daemon.clock())
    parts = [f"index {snap.get('index')} {_fmt_price(snap.get('level'))} {snap.get('status')}"]
    for asset, c in sorted(snap.get("constituents", {}).items()):
        parts.append(f"{asset} {_fmt_price(c.get('price'))} ({c.get('sources')} src)")
    trouble: dict[str, list[str]] = {}
    for (source, _), health in feed_health({c.name: c.status() for c in daemon.connectors}).items():
        trouble.setdefault(source, []).append(health)
    for source, marks in sorted(trouble.items()):
        parts.append(f"{source} " + ", ".join(f"{marks.count(h)} {h}" for h in ("down", "quiet") if h in marks))
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

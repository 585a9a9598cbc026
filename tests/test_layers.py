"""The layers import one way. The foundation imports nothing else of the project; the pure core (pricing,
index, weights, rebalance, selection rule, derivatives, hedge, ledger, rules and the engine that drives them
for the daemon and the backtest) loads no event loop, network or metrics library, so it runs the same
under the daemon, the backtest and a test with no event loop. Each module is imported alone in a fresh
interpreter, where nothing else has loaded those libraries first."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

from tests.support import REPO

FOREIGN_IO = ("asyncio", "redis", "websockets", "httpx", "prometheus_client", "aiohttp", "ccxt")

FOUNDATION = ("service.events", "service.errors", "service.keys", "service.clock", "service.retry",
              "service.contracts", "rules.durations")

CORE = (
    "service.config", "service.oracle", "service.index", "service.weights", "service.constituents",
    "service.rebalance", "service.derivatives", "service.hedge", "service.position", "service.ledger",
    "service.market", "service.venue_markets", "service.futures_leg", "service.expiry",
    "service.overlay", "service.engine",
    "rules.expr", "rules.functions", "rules.indicators", "rules.candles", "rules.model", "rules.loader",
    "rules.events", "rules.signals", "rules.synth", "rules.templates", "rules.engine", "rules.stage",
    "rules.testing",
)

PROBE = """
import importlib, json, sys
name, foreign = sys.argv[1], tuple(sys.argv[2].split(","))
importlib.import_module(name)
print(json.dumps({"loaded": sorted(m for m in sys.modules if m.split(".")[0] in foreign),
                  "project": sorted(m for m in sys.modules if m.startswith("hedgewatch.") and m.count(".") > 1
                                    and m != name)}))
"""


@functools.cache
def _probe(module: str) -> dict[str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, f"hedgewatch.{module}", ",".join(FOREIGN_IO)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[str]] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("module", CORE)
def test_the_core_loads_no_event_loop_network_or_metrics_library(module: str) -> None:
    loaded = _probe(module)["loaded"]
    assert not loaded, f"hedgewatch.{module} loads {sorted({m.split('.')[0] for m in loaded})}"


@pytest.mark.parametrize("module", FOUNDATION)
def test_the_foundation_imports_nothing_else_of_the_project(module: str) -> None:
    assert _probe(module)["project"] == []


def test_the_connectors_and_the_core_do_not_import_the_daemon_shell() -> None:
    shell = {"hedgewatch.service.app", "hedgewatch.service.http", "hedgewatch.service.cli",
             "hedgewatch.service.demo", "hedgewatch.service.publisher", "hedgewatch.service.outbox"}
    venues = ("connectors.binance", "connectors.bybit", "connectors.okx", "connectors.ccxt.connector",
              "connectors.registry")
    for module in (*CORE, *venues):
        reached = shell & set(_probe(module)["project"])
        assert not reached, f"hedgewatch.{module} imports the shell: {sorted(reached)}"

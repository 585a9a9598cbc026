"""The exchange simulator: seeded, correlated price paths served on loopback in the venues' real protocols
(Binance USDⓈ-M, Bybit v5 linear, OKX v5), with scripted funding, open interest and faults.

Used by ``hedgewatch simulate``, ``hedgewatch demo``, the tests and the benchmarks. See README.md here.
"""

from hedgewatch.connectors.simulator.scenario import Scenario, load_scenario, parse_scenario
from hedgewatch.connectors.simulator.server import Simulator, VenueEndpoint, run_simulator

__all__ = ["Scenario", "Simulator", "VenueEndpoint", "load_scenario", "parse_scenario", "run_simulator"]

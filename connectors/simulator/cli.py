"""``hedgewatch simulate``: run the simulator alone, print its endpoints as config, stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from hedgewatch.connectors.simulator.coingecko import COINS_MARKETS
from hedgewatch.connectors.simulator.scenario import Scenario, load_scenario
from hedgewatch.connectors.simulator.server import VenueEndpoint, run_simulator
from hedgewatch.service.errors import ConfigError


def sources_yaml(scenario: Scenario, endpoints: list[VenueEndpoint]) -> str:
    """The endpoints as ``sources:`` entries a hedgewatch config can paste."""
    lines = ["sources:"]
    for ep in endpoints:
        symbols = ", ".join(scenario.venue_assets(ep.name))
        lines += [
            f"  - exchange: {ep.exchange}",
            f"    name: {ep.name}",
            f"    symbols: [{symbols}]",
            f"    ws_url: {ep.ws_url}",
            f"    rest_url: {ep.rest_url}",
        ]
        if ep.quote != "USDT":
            lines.append(f"    quote: {ep.quote}")
        if ep.spot_ws_url is not None:
            lines += [f"    spot_ws_url: {ep.spot_ws_url}", f"    spot_rest_url: {ep.spot_rest_url}"]
    return "\n".join(lines) + "\n"


async def _serve(scenario: Scenario, print_endpoints: bool) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)

    def ready(endpoints: list[VenueEndpoint]) -> None:
        if print_endpoints:
            sys.stdout.write(f"# hedgewatch simulator, seed {scenario.seed}; Ctrl-C stops it\n")
            sys.stdout.write(sources_yaml(scenario, endpoints))
            # for an index.selection of provider rest (served on every venue's port)
            sys.stdout.write(f"# market caps: {endpoints[0].rest_url}{COINS_MARKETS}?vs_currency=usd\n")
            sys.stdout.flush()

    await run_simulator(scenario, ready)


def main(scenario: str | None = None, print_endpoints: bool = True) -> int:
    """Load ``scenario`` (None: the bundled default), serve it until SIGINT/SIGTERM; exit code."""
    try:
        sc = load_scenario(scenario)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(_serve(sc, print_endpoints))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else None))

"""Learned cadences and silence bounds, measured.

Run: ``python -m tests.bench.bench_cadence [--seconds 60] [--channels all]``

- simulator: each native connector (production ``Tuning``: 0.5 s watchdog, 3 s floor, 5 x cadence) against
  the bundled default scenario on loopback for ``--seconds`` of wall time; per channel, the median over the
  assets of the learned cadence and of the bound in force, beside the configured bound (its floor); and the
  same per connection (the merged stream that decides a recycle);
- recorded: the frames recorded from the venues in tests/frames, fed to the same estimator at their venue
  timestamps (exact gaps), and the quiet-symbol timings of the replay tests (gaps of 12.7 s and 7.5 s; 15 s)
  both exactly and at the watchdog's 0.5 s resolution.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

from hedgewatch.connectors import build_connector
from hedgewatch.connectors.base import Cadence, Tuning
from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.metrics import Metrics
from tests.test_connector_quiet import QUIET_15, REAL_TIMING

FRAMES = Path(__file__).resolve().parents[1] / "frames"
TUNING = Tuning()


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


async def simulator(seconds: float, channels: list[str] | None) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    async with Simulator(load_scenario(None)) as sim:
        conns = []
        for ep in sim.endpoints:
            spec: dict[str, Any] = {"exchange": ep.exchange, "name": ep.name, "symbols": list(sim.scenario.assets),
                                    "ws_url": ep.ws_url, "rest_url": ep.rest_url}
            if channels is not None:
                spec["channels"] = channels
            conns.append(build_connector(SourceConfig.model_validate(spec), lambda e: None, Metrics(),
                                         tuning=TUNING))
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c.run(), name=f"bench:{c.name}") for c in conns]
            await asyncio.sleep(seconds)
            statuses = [(c.name, c.status()) for c in conns]
            for t in tasks:
                t.cancel()
    for venue, st in statuses:
        for cname, c in st.get("connections", {}).items():
            chans: dict[str, list[dict[str, Any]]] = {}
            for ch in c["channels"].values():
                chans.setdefault(ch["channel"], []).append(ch)
            for channel, chs in chans.items():
                learned = [x["learned_cadence_s"] for x in chs if x["learned_cadence_s"] is not None]
                rows.append((venue, f"{cname}: {channel} (x{len(chs)})",
                             _fmt(statistics.median(learned)) if learned else "-",
                             _fmt(chs[0]["configured_bound_s"]),
                             _fmt(statistics.median(x["silence_bound_s"] for x in chs)),
                             str(sum(x["state"] == "quiet" for x in chs))))
            rows.append((venue, f"{cname}: whole connection", _fmt(c["learned_cadence_s"]), "-",
                         _fmt(c["silence_bound_s"]), f"reconnects {c['reconnects']}"))
    return rows


def _learn(times: list[float], resolution: float = 0.0) -> Cadence:
    c = Cadence(TUNING.cadence_memory_s)
    if not resolution:
        for t in times:
            c.arrive(t)
        return c
    # as the watchdog sees them: counted every ``resolution`` seconds
    start = times[0] - resolution
    k, i, last_check = 1, 0, start
    end = max(times) + resolution
    while start + k * resolution <= end:
        now = start + k * resolution
        n = 0
        while i < len(times) and times[i] <= now:
            n += 1
            i += 1
        c.arrive(now, n, now - last_check)
        last_check = now
        k += 1
    return c


def recorded() -> list[tuple[str, ...]]:
    rows = []
    bybit = json.loads((FRAMES / "bybit.ws.watchTicker.linear.json").read_text())
    okx = json.loads((FRAMES / "okx.ws.watchTicker.swap.json").read_text())
    sets = {
        "bybit tickers.BTCUSDT (recorded, 2 frames)": [m["ts"] / 1000 for m in bybit["messages"] if "ts" in m],
        "okx tickers BTC-USDT-SWAP (recorded, 2 frames)": [int(m["data"][0]["ts"]) / 1000
                                                           for m in okx["messages"] if "data" in m],
        "thin symbol, gaps 12.7 s and 7.5 s (30 s)": REAL_TIMING,
        "symbol quiet for 15 s (30 s)": QUIET_15,
    }
    floor = TUNING.silence_bound(0.1)
    for name, times in sets.items():
        for res in (0.0, TUNING.watchdog_interval_s):
            c = _learn(sorted(times), res)
            rows.append((name, "exact" if not res else f"{res:g} s watchdog", _fmt(c.value), _fmt(floor),
                         _fmt(TUNING.learned_bound(floor, c.value))))
    return rows


def table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--channels", default="default", help="comma-separated, or 'default'")
    args = ap.parse_args()
    channels = None if args.channels == "default" else args.channels.split(",")
    print(f"simulator, default scenario, {args.seconds:g} s, production tuning\n")
    print(table(("source", "channel", "learned cadence s", "configured bound s", "bound in force s", "quiet"),
                asyncio.run(simulator(args.seconds, channels))))
    print("\nrecorded frames and the quiet-symbol timings (quote channel: configured bound 3 s)\n")
    print(table(("frames", "seen", "learned cadence s", "configured bound s", "bound in force s"), recorded()))


if __name__ == "__main__":
    main()

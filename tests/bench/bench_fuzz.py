"""The fuzz run at full length: about 150,000 hostile frames over 150 s across Binance USDⓈ-M, Bybit and
OKX (each simulated venue behind a ``HostileProxy``, every category of ``tests/hostile.py``), into the
daemon's own engine with the bundled rules. Reports what a user would see: alerts, index and oracle status
flips, source transitions, the oracle's largest deviation from the honest reference (the simulator's true
path), honest quotes accepted, rejects by venue and reason, and anything logged at ERROR.

    python3 -m tests.bench.bench_fuzz [--seconds 150] [--rate 333] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

from tests.fuzz import fuzz_run, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=150.0)
    ap.add_argument("--rate", type=float, default=333.0, help="hostile frames per second per venue")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    r = asyncio.run(fuzz_run(args.seconds, args.rate, seed=args.seed))
    s = summary(r)
    rows = [
        ("seconds", s["seconds"]), ("hostile frames", s["hostile_frames"]),
        ("alerts", s["alerts"]), ("index status flips", s["index_flips"]),
        ("oracle status flips", s["oracle_flips"]), ("source transitions", s["source_transitions"]),
        ("max |oracle / honest - 1|", f"{s['max_deviation_pct']:.4f} %"),
        ("honest quotes accepted", sum(s["honest_quotes_accepted"].values())),
        ("ERROR lines / crashes", len(r.errors)), ("final index status", s["final_status"]),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(json.dumps({"hostile_by_category": s["hostile_by_category"], "alerts_by_rule": s["alerts_by_rule"],
                      "rejected": s["rejected"], "errors": s["errors"]}, indent=1))


if __name__ == "__main__":
    main()

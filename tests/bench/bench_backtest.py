"""Backtest speed: one year of hourly bars for 10 constituents, the bundled trigger matrix, three rule sets
compared (the bundled one and two --compare files, beside the unhedged and static baselines: five overlays
on one market). Target: under 10 s.

Run: ``python -m tests.bench.bench_backtest``. The history is generated once (seeded; Binance public-data
CSVs and CoinGecko market_chart JSON in a temporary folder) and read with the backtest's own reader; the
timed part is ``run_backtest`` alone (plus, in its own row, writing the report). Then the same run at a
quarter and half of the year and with the configured rule set alone, to show the cost is linear in
bars x rule sets: ``us/bar/overlay`` stays flat down the table. Medians of ``--repeat`` runs. The summary
table of the year (bundled rules against the baselines) is printed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from service.backtest.cli import print_summary
from service.backtest.output import write_outputs
from service.backtest.run import run_backtest
from service.backtest.stats import summary_table
from service.history.files import load_history
from tests.backtest_support import DAY, config, story, ts

ASSETS = ["BTC", "ETH", "SOL", "XRP", "BNB", "ADA", "DOGE", "AVAX", "LINK", "DOT"]
START = ts("2024-01-01")
COMPARE = {
    "trend": """groups:
  - name: trend
    rules:
      - {name: BelowMA20d, expr: 'price < sma(20, "1d")', for: 4h, resolve: 'price > sma(20, "1d")',
         action: {set_hedge: 60%}}
      - {name: AboveMA20d, expr: 'price > sma(20, "1d") * 1.03', for: 4h, action: {set_hedge: 10%}}
""",
    "carry": """groups:
  - name: carry
    rules:
      - {name: RichFunding, expr: 'funding > 0.0003', for: 8h, resolve: 'funding < 0.0001',
         action: {adjust_hedge: +20%}}
      - {name: PaidToHedge, expr: 'funding < 0', for: 8h, action: {lower_hedge_to: 10%}}
""",
}


def timed(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hw-bench-backtest-") as tmp:
        root = Path(tmp)
        story(root / "data", ASSETS, START, 366, warmup_days=60, seed=11)
        files = []
        for name, text in COMPARE.items():
            (root / f"{name}.yaml").write_text(text)
            files.append(str(root / f"{name}.yaml"))
        t0 = time.perf_counter()
        history = load_history(root / "data")
        load_s = time.perf_counter() - t0
        cfg = config(ASSETS, holdings={"HB": 1000}, ratio=0.2, multiplier=10, lot_size=1,
                     rules=["builtin:default"], levels={"R1": 1500.0}, ledger={"fee_bps": 4.0, "slippage_bps": 2.0},
                     index={"weighting": "capped", "cap_ratio": 0.3, "market_caps": dict.fromkeys(ASSETS, 1e9)})
        rows = []
        year = None
        for days, compare in ((366, files), (183, files), (92, files), (366, [])):
            end = START + days * DAY
            secs, res = timed(lambda end=end, compare=compare: run_backtest(cfg, history, START, end, compare=compare),
                              args.repeat)
            bars, overlays = len(res.times), len(res.tracks)  # type: ignore[attr-defined]
            rows.append((days, overlays, bars, secs, bars / secs, secs / (bars * overlays) * 1e6))
            if year is None:
                year = res
        assert year is not None
        report_s, _ = timed(lambda: write_outputs(year, root / "out"), 1)  # type: ignore[arg-type]
    print(f"history read: {load_s:.2f} s ({len(ASSETS)} assets, hourly, 426 days incl. 60 of warm-up)")
    print(f"{'days':>5} {'overlays':>8} {'bars':>6} {'seconds':>8} {'bars/s':>8} {'us/bar/overlay':>15}")
    for days, ov, bars, secs, rate, unit in rows:
        print(f"{days:>5} {ov:>8} {bars:>6} {secs:>8.2f} {rate:>8.0f} {unit:>15.0f}")
    print(f"report (HTML, JSON, CSV) of the year: {report_s:.2f} s")
    print()
    print_summary(summary_table(year))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()

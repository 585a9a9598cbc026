"""Backtest speed: one year of hourly bars for 10 constituents, the bundled trigger matrix, three rule sets
compared (the bundled one and two --compare files, beside the unhedged and static baselines: five overlays
on one market). Target: under 10 s.

Run: ``python -m tests.bench.bench_backtest``. The history is generated once (seeded; Binance public-data
CSVs and CoinGecko market_chart JSON in a temporary folder) and read with the backtest's own reader; the
timed part is ``run_backtest`` alone (plus, in its own row, writing the report). Then the cost model: the
year, half and a quarter of it, each with one and with three copies of the bundled rule set (beside the
baselines), fitted by least squares to ``seconds = setup + bars x (market + rule sets x per rule set)``; the
residuals show the cost is linear in bars x rule sets. The best of ``--repeat`` runs (wall clock for the
headline, CPU time for the model). ``--screenshot PNG`` keeps the year's report as the README shows it (headless
Chromium, tests/chromium.py). The summary table of the year (bundled rules against the baselines and the
compared files) is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from hedgewatch.service.backtest.cli import print_summary
from hedgewatch.service.backtest.output import write_outputs
from hedgewatch.service.backtest.run import run_backtest
from hedgewatch.service.backtest.stats import summary_table
from hedgewatch.service.history.files import load_history
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


def timed(fn, repeat: int) -> tuple[float, float, object]:  # type: ignore[no-untyped-def]
    """The best wall-clock and CPU seconds of ``repeat`` runs (the machine is shared: the best run is the one
    least disturbed), and the result."""
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu), out


def fit(rows: list[tuple[int, int, int, int, float]]) -> tuple[float, float, float]:
    """Least squares of seconds = setup + bars x market + bars x rule sets x per_set."""
    xs = [(1.0, float(n), float(n * k)) for _, k, _, n, _ in rows]
    ys = [s for *_, s in rows]
    # the normal equations, solved by elimination
    a = [[sum(x[i] * x[j] for x in xs) for j in range(3)] + [sum(x[i] * y for x, y in zip(xs, ys, strict=True))]
         for i in range(3)]
    for c in range(3):
        for r in range(c + 1, 3):
            f = a[r][c] / a[c][c]
            a[r] = [v - f * w for v, w in zip(a[r], a[c], strict=True)]
    out = [0.0, 0.0, 0.0]
    for r in (2, 1, 0):
        out[r] = (a[r][3] - sum(a[r][c] * out[c] for c in range(r + 1, 3))) / a[r][r]
    return out[0], out[1], out[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--screenshot", type=Path, help="write the year's report screenshot (PNG) here")
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
        cfg = config(ASSETS, holdings={"HW10": 1000}, ratio=0.2, multiplier=10, lot_size=1,
                     rules=["builtin:default"], levels={"R1": 1500.0}, ledger={"fee_bps": 4.0, "slippage_bps": 2.0},
                     index={"name": "HW10", "weighting": "capped", "cap_ratio": 0.3,
                            "market_caps": dict.fromkeys(ASSETS, 1e9)})
        secs, cpu_s, year = timed(lambda: run_backtest(cfg, history, START, START + 366 * DAY, compare=files),
                                  args.repeat)
        bars = len(year.times)  # type: ignore[attr-defined]
        report_s, _, _ = timed(lambda: write_outputs(year, root / "out"), 1)  # type: ignore[arg-type]
        if args.screenshot is not None:
            import asyncio

            from tests.chromium import open_page

            page = asyncio.run(open_page(root / "out" / "report.html", "1", clip_height=2350))
            args.screenshot.write_bytes(page.screenshot)
        rows = []
        for copies in (1, 3):
            bundled = ["builtin:default"] * (copies - 1)  # the configured set is the first copy
            for days in (92, 183, 366):
                end = START + days * DAY
                _, c, res = timed(lambda end=end, bundled=bundled: run_backtest(cfg, history, START, end,
                                                                                  compare=bundled), args.repeat)
                rows.append((days, copies, len(res.tracks), len(res.times), c))  # type: ignore[attr-defined]
    print(f"history read: {load_s:.2f} s ({len(ASSETS)} assets, hourly, 426 days incl. 60 of warm-up)")
    print(f"the year, bundled rules + 2 compared (5 overlays): {bars} bars in {secs:.2f} s ({cpu_s:.2f} s CPU), "
          f"{bars / secs:,.0f} bars/s; load average {os.getloadavg()[0]:.1f}")
    print(f"report (HTML, JSON, CSV) of the year: {report_s:.2f} s")
    setup, market, per_set = fit(rows)
    print()
    print(f"cost model (CPU): seconds = {setup:.2f} + bars x ({market * 1e6:.0f} us + rule sets x "
          f"{per_set * 1e6:.0f} us)")
    print(f"{'days':>5} {'rule sets':>9} {'overlays':>8} {'bars':>6} {'CPU s':>8} {'bars/s':>8} {'model s':>8} "
          f"{'residual':>8}")
    for days, copies, ov, n, s_ in rows:
        model = setup + n * (market + copies * per_set)
        print(f"{days:>5} {copies:>9} {ov:>8} {n:>6} {s_:>8.2f} {n / s_:>8.0f} {model:>8.2f} {s_ / model - 1:>+8.1%}")
    print()
    print_summary(summary_table(year))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()

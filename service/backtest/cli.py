"""``hedgewatch backtest`` and ``hedgewatch history fetch``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hedgewatch.service.errors import ConfigError, HedgewatchError

history_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="Historical data: download klines, funding and market caps.")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"hedgewatch: {message}", err=True)
    return typer.Exit(1)


def _config(path: Path):  # type: ignore[no-untyped-def]
    from hedgewatch.service.config import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for p in exc.problems:
            typer.echo(str(p), err=True)
        raise typer.Exit(1) from exc


def _fmt(v: object, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:+.2%}" if pct else f"{v:,.0f}"
    return str(v)


def print_summary(rows: list[dict[str, object]]) -> None:
    cols = [("rule set", "rule_set", False), ("return", "return_ratio", True), ("max dd", "max_drawdown_ratio", True),
            ("vol", "volatility_annualized_ratio", True), ("worst month", "worst_month_ratio", True),
            ("protection cost", "cost_of_protection_ratio", True), ("dd saved", "drawdown_saved_ratio", True),
            ("funding $", "funding_net_usd", False), ("fees $", "fees_usd", False),
            ("changes", "hedge_changes", False), ("turnover", "turnover_ratio", False)]
    table = [[c for c, _, _ in cols]]
    for r in rows:
        line = []
        for _, key, pct in cols:
            v = r.get(key)
            line.append(f"{v:.2f}x" if key == "turnover_ratio" and isinstance(v, float) else _fmt(v, pct))
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        typer.echo("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                             strict=True))))


def backtest(
    config: Annotated[Path, typer.Option("-c", "--config", help="config file (YAML)")],
    start: Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD (UTC)")],
    end: Annotated[str, typer.Option("--to", help="end, YYYY-MM-DD (UTC, exclusive)")],
    data: Annotated[Path, typer.Option(help="folder of historical data files")] = Path("data"),
    compare: Annotated[list[Path] | None, typer.Option(
        help="a rule file, or a bundled rule set by name, to compare (repeatable)")] = None,
    out: Annotated[Path | None, typer.Option(help="report folder (default backtest-<index>-<from>-<to>)")] = None,
    interval: Annotated[str | None, typer.Option(help="bar interval, e.g. 1h (default: the finest in the data)")]
    = None,
) -> None:
    """Run the configured rules over history beside the unhedged portfolio, a static hedge at the baseline
    ratio and every --compare rule file; writes report.html, summary.json and series.csv."""
    from hedgewatch.rules import named_rule_file
    from hedgewatch.rules.stage import check_rules
    from hedgewatch.service.backtest.output import write_outputs
    from hedgewatch.service.backtest.run import run_backtest
    from hedgewatch.service.backtest.stats import summary_table
    from hedgewatch.service.history.files import INTERVALS_S, load_history, parse_date

    cfg = _config(config)
    files = [named_rule_file(str(f)) for f in compare or []]
    problems = check_rules(files, cfg.rules) if files else []
    if problems:
        for p in problems:
            typer.echo(str(p), err=True)
        raise typer.Exit(1)
    try:
        t0, t1 = parse_date(start), parse_date(end)
        if t1 <= t0:
            raise _fail(f"--to ({end}) must be after --from ({start})")
        iv = None
        if interval is not None:
            if interval not in INTERVALS_S:
                raise _fail(f"unknown interval {interval!r} (one of {', '.join(INTERVALS_S)})")
            iv = INTERVALS_S[interval]
        history = load_history(data)
        res = run_backtest(cfg, history, t0, t1, compare=files, interval_s=iv)
    except HedgewatchError as exc:
        raise _fail(str(exc)) from exc
    folder = out or Path(f"backtest-{cfg.index.name}-{start}-{end}")
    paths = write_outputs(res, folder)
    print_summary(summary_table(res))  # type: ignore[arg-type]
    for note in res.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"report: {paths['html']}  figures: {paths['json']}  series: {paths['csv']}")


@history_app.command("fetch")
def fetch(
    config: Annotated[Path, typer.Option("-c", "--config", help="config file (YAML)")],
    start: Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD (UTC)")],
    end: Annotated[str, typer.Option("--to", help="end, YYYY-MM-DD (UTC, exclusive)")],
    data: Annotated[Path, typer.Option(help="folder to write the files to")] = Path("data"),
    interval: Annotated[str, typer.Option(help="kline interval")] = "1h",
    coingecko_url: Annotated[str | None, typer.Option(help="CoinGecko API base (market caps)")] = None,
    rate_per_s: Annotated[float | None, typer.Option(
        help="requests per second to every endpoint (default: within each venue's published limits)")] = None,
) -> None:
    """Download klines, funding history and market caps from the venues' REST APIs into files of the
    shapes the backtest reads (resumable: what is complete on disk is not fetched again). Open interest is
    not fetched (Binance keeps 30 days of it): rules on it need the public-data metrics files."""
    import asyncio

    from hedgewatch.service.history.fetch import FetchPlan, run_fetch
    from hedgewatch.service.history.files import INTERVALS_S, parse_date

    cfg = _config(config)
    if interval not in INTERVALS_S:
        raise _fail(f"unknown interval {interval!r} (one of {', '.join(INTERVALS_S)})")
    try:
        plan = FetchPlan.for_config(cfg, parse_date(start), parse_date(end), data, interval, coingecko_url,
                                    rate_per_s)
        written = asyncio.run(run_fetch(plan))
    except HedgewatchError as exc:
        raise _fail(str(exc)) from exc
    except KeyboardInterrupt:
        raise _fail("interrupted; run again to resume") from None
    typer.echo(f"{written} files written to {data}")

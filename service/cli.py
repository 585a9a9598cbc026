"""The ``hedgewatch`` command line (DESIGN: CLI)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from rules.stage import check_rules
from service.backtest.cli import backtest as backtest_command
from service.backtest.cli import history_app
from service.config import DEFAULT_CONFIG, Config, load_config
from service.errors import ConfigError, HedgewatchError, Problem
from service.logs import setup_logging
from service.notify.cli import notify_app
from service.preflight import preflight

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Monitor and size a crypto index hedge.")
rules_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Rule files: unit tests.")
app.add_typer(rules_app, name="rules")
hedge_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The hedge position and its advice.")
app.add_typer(hedge_app, name="hedge")
app.add_typer(notify_app, name="notify")
app.add_typer(history_app, name="history")
app.command("backtest")(backtest_command)

SCENARIO_HELP = "a scenario file, or a bundled one by name (default, faults, four_phase, break_rally, manipulated)"
ConfigOpt = Annotated[Path | None, typer.Option("-c", "--config", help="config file (YAML)")]


def _print_problems(problems: list[Problem]) -> None:
    for p in problems:
        typer.echo(str(p), err=True)


def _load(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        _print_problems(exc.problems)
        raise typer.Exit(1) from exc


def _run_async(coro: object) -> int:
    try:
        return int(asyncio.run(coro) or 0)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 0
    except HedgewatchError as exc:
        typer.echo(f"hedgewatch: {exc}", err=True)
        return 1


@app.command()
def run(config: ConfigOpt = None) -> None:
    """Run the daemon (without -c: the bundled live config for Binance USDⓈ-M, Bybit and OKX)."""
    from service.app import serve

    cfg = _load(config)
    problems = preflight(cfg, str(config or DEFAULT_CONFIG))
    if problems:
        _print_problems(problems)
        raise typer.Exit(1)
    setup_logging(cfg.log_level)
    raise typer.Exit(_run_async(serve(cfg)))


@app.command()
def demo(
    scenario: Annotated[Path | None, typer.Option(help=SCENARIO_HELP)] = None,
    plain: Annotated[bool, typer.Option(help="plain status lines even on a terminal")] = False,
) -> None:
    """The daemon against the bundled exchange simulator on loopback, with a live view. Works offline."""
    from service.demo import run_demo

    setup_logging("WARNING" if sys.stdout.isatty() and not plain else "INFO")
    raise typer.Exit(_run_async(run_demo(scenario, plain=plain or not sys.stdout.isatty())))


@app.command()
def check(file: Annotated[Path | None, typer.Argument(
        help="config file (default: the bundled live config)", show_default=False)] = None) -> None:
    """Validate a config, its rule files, secrets and outbox directory as run would: exit 0, or 1 with every
    error's file, line and field."""
    cfg = _load(file)
    where = str(file or DEFAULT_CONFIG)
    problems = _check_rules(cfg) + preflight(cfg, where)
    if problems:
        _print_problems(problems)
        raise typer.Exit(1)
    typer.echo(f"{where}: ok ({len(cfg.sources)} sources, index {cfg.index.name})")


def _check_rules(cfg: Config) -> list[Problem]:
    return check_rules(list(cfg.rules.files), cfg.rules)


@app.command()
def simulate(scenario: Annotated[Path | None, typer.Option(help=SCENARIO_HELP)] = None) -> None:
    """Run the exchange simulator alone, on loopback."""
    from connectors.simulator.cli import main as sim_main

    setup_logging("INFO")
    raise typer.Exit(sim_main(str(scenario) if scenario else None))


@app.command()
def rebalance(
    url: Annotated[str, typer.Option(help="the daemon's HTTP address")] = "http://127.0.0.1:9108",
) -> None:
    """Rebalance the running daemon's index now (on demand), keeping its level continuous."""
    import httpx

    try:
        resp = httpx.post(f"{url.rstrip('/')}/rebalance", timeout=10.0)
    except httpx.HTTPError as exc:
        typer.echo(f"hedgewatch: cannot reach the daemon at {url}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(resp.text)
    raise typer.Exit(0 if resp.status_code == 200 else 1)


@hedge_app.command("ack")
def hedge_ack(
    contracts: Annotated[float | None, typer.Option(
        help="the position now held, signed as the venue shows it (a short of 50 is -50); without it, the "
             "open advice was done as advised")] = None,
    advice: Annotated[str | None, typer.Option(help="the id of the advice acknowledged (refused if not open)")]
    = None,
    index: Annotated[str | None, typer.Option(help="the index (default: the daemon's)")] = None,
    url: Annotated[str, typer.Option(help="the daemon's HTTP address")] = "http://127.0.0.1:9108",
) -> None:
    """Tell the running daemon that the last hedge advice was executed, or what position is held now."""
    import httpx

    body = {"contracts": contracts, "advice_id": advice, "index": index}
    try:
        resp = httpx.post(f"{url.rstrip('/')}/hedge/ack", json={k: v for k, v in body.items() if v is not None},
                          timeout=10.0)
    except httpx.HTTPError as exc:
        typer.echo(f"hedgewatch: cannot reach the daemon at {url}: {type(exc).__name__}", err=True)
        raise typer.Exit(1) from None
    typer.echo(resp.text)
    raise typer.Exit(0 if resp.status_code == 200 else 1)


@rules_app.command("test")
def rules_test(file: Annotated[Path, typer.Argument(
        help="a rule test file, or a bundled rule set's tests by name (default)")]) -> None:
    """Run rule unit tests (input series and expected alerts), like promtool test rules."""
    from rules import named_rule_file
    from rules.testing import run_rule_tests

    raise typer.Exit(run_rule_tests(named_rule_file(str(file), test=True)))


def main() -> None:
    app(prog_name="hedgewatch")

"""The ``hedgewatch`` command line (DESIGN: CLI)."""

from __future__ import annotations

import asyncio
import errno
import os
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import typer

from hedgewatch.rules.stage import check_config_rules
from hedgewatch.service.backtest.cli import backtest as backtest_command
from hedgewatch.service.backtest.cli import history_app
from hedgewatch.service.config import DEFAULT_CONFIG, LOG_LEVELS, Config, load_config
from hedgewatch.service.errors import ConfigError, HedgewatchError, Problem
from hedgewatch.service.logs import LOG_FORMATS, force, setup_logging
from hedgewatch.service.notify.cli import notify_app
from hedgewatch.service.preflight import preflight

# no pretty tracebacks: they print local variables (a secret among them) and run to a hundred lines; a
# failure is one line, the plain traceback only with --debug
app = typer.Typer(add_completion=False, no_args_is_help=True, help="Monitor and size a crypto index hedge.",
                  pretty_exceptions_enable=False)
rules_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Rule files: unit tests.")
app.add_typer(rules_app, name="rules")
hedge_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The hedge position and its advice.")
app.add_typer(hedge_app, name="hedge")
app.add_typer(notify_app, name="notify")
app.add_typer(history_app, name="history")
app.command("backtest")(backtest_command)

SCENARIO_HELP = "a scenario file, or a bundled one by name (default, faults, four_phase, break_rally, manipulated)"
ConfigOpt = Annotated[Path | None, typer.Option("-c", "--config", help="config file (YAML)")]


_debug = False
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["text", "json"]


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"hedgewatch {version('hedgewatch')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("hedgewatch (not installed)")
        raise typer.Exit(0)


@app.callback()
def options(
    log_level: Annotated[LogLevel | None, typer.Option(
        metavar="LEVEL", case_sensitive=False, show_default=False,
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL for every command, over the config's log_level")] = None,
    log_format: Annotated[LogFormat, typer.Option(
        metavar="text|json", help="text lines, or JSON lines with time, level, logger and message")] = "text",
    debug: Annotated[bool, typer.Option("--debug", help="print the traceback of a fatal error")] = False,
    show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="print the version and exit")] = False,
) -> None:
    """Monitor and size a crypto index hedge."""
    global _debug
    _debug = debug
    force(log_level, log_format)


assert get_args(LogLevel) == LOG_LEVELS and get_args(LogFormat) == LOG_FORMATS


def describe(exc: BaseException) -> str:
    """A fatal error as one line. An error of ours says what and where; an OSError its reason and file or
    address; anything else only its type, since its message may quote a secret (--debug shows it)."""
    if isinstance(exc, HedgewatchError):
        return str(exc)
    if isinstance(exc, OSError):
        reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else type(exc).__name__)
        return f"{reason} ({exc.filename})" if exc.filename else reason
    return f"unexpected {type(exc).__name__}; run with --debug for the traceback"


def _fatal(exc: BaseException, what: str = "") -> int:
    if _debug:
        traceback.print_exception(exc)
    typer.echo(f"hedgewatch: {what or describe(exc)}", err=True)
    return 1


def _print_problems(problems: list[Problem]) -> None:
    for p in problems:
        typer.echo(str(p), err=True)


def _load(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        _print_problems(exc.problems)
        raise typer.Exit(1) from exc


def _run_async(coro: object, listen: tuple[str, str, int] | None = None) -> int:
    """Run ``coro``; a fatal error is one line. ``listen`` (setting, host, port) names the one listener the
    coroutine opens, so a busy or forbidden port is reported as that setting's."""
    try:
        return int(asyncio.run(coro) or 0)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 0
    except HedgewatchError as exc:
        return _fatal(exc)
    except OSError as exc:
        if listen is not None and exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            setting, host, port = listen
            return _fatal(exc, f"{setting}: cannot listen on {host}:{port}: {os.strerror(exc.errno).lower()}")
        return _fatal(exc)


Bus = Literal["memory", "redis"]


@app.command()
def run(
    config: ConfigOpt = None,
    bus: Annotated[Bus | None, typer.Option(
        metavar="memory|redis", show_default=False,
        help="where the events come from: this process's connectors (memory, the default), or the Redis "
             "streams of `hedgewatch ingest` shards (redis: the index owned through a lease, with failover)")]
    = None,
) -> None:
    """Run the daemon (without -c: the bundled live config for Binance USDⓈ-M, Bybit and OKX)."""
    from hedgewatch.service.app import serve

    cfg = _load(config)
    if bus is not None:
        cfg = cfg.model_copy(update={"bus": bus})
    problems = preflight(cfg, str(config or DEFAULT_CONFIG))
    if problems:
        _print_problems(problems)
        raise typer.Exit(1)
    setup_logging(cfg.log_level)
    listen = (f"{config or DEFAULT_CONFIG}: http.port", cfg.http.host, cfg.http.port)
    raise typer.Exit(_run_async(serve(cfg), listen))


@app.command()
def ingest(
    config: ConfigOpt = None,
    shard: Annotated[str, typer.Option(metavar="K/N", help="run shard K of N of the (source, asset) pairs")]
    = "1/1",
    http_port: Annotated[int | None, typer.Option(help="this shard's metrics and /state port (default: "
                                                       "http.port)", show_default=False)] = None,
) -> None:
    """The connectors alone, for one shard of the sources: events into Redis Streams (the scaled layout)."""
    from hedgewatch.service.ingest import parse_shard, serve_ingest

    try:
        k, n = parse_shard(shard)
    except ValueError as exc:
        raise typer.Exit(_fatal(exc, str(exc))) from None
    cfg = _load(config)
    if http_port is not None:
        cfg = cfg.model_copy(update={"http": cfg.http.model_copy(update={"port": http_port})})
    problems = preflight(cfg, str(config or DEFAULT_CONFIG))
    if problems:
        _print_problems(problems)
        raise typer.Exit(1)
    setup_logging(cfg.log_level)
    listen = (f"{config or DEFAULT_CONFIG}: http.port", cfg.http.host, cfg.http.port)
    raise typer.Exit(_run_async(serve_ingest(cfg, k, n), listen))


@app.command()
def demo(
    scenario: Annotated[Path | None, typer.Option(metavar="NAME|FILE", help=SCENARIO_HELP)] = None,
    plain: Annotated[bool, typer.Option(help="plain status lines even on a terminal")] = False,
) -> None:
    """The daemon against the bundled exchange simulator on loopback, with a live view. Works offline."""
    from hedgewatch.service.demo import run_demo

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
    return check_config_rules(cfg)


@app.command()
def simulate(scenario: Annotated[Path | None, typer.Option(metavar="NAME|FILE", help=SCENARIO_HELP)] = None) -> None:
    """Run the exchange simulator alone, on loopback."""
    from hedgewatch.connectors.simulator.cli import main as sim_main

    setup_logging("INFO")
    raise typer.Exit(sim_main(str(scenario) if scenario else None))


URL_HELP = "the daemon's HTTP address (default: from -c, else http://127.0.0.1:9108)"
TOKEN_HELP = "a file holding the daemon's control token (default: from -c, http.token_file)"
SOCKET_HELP = "the daemon's Unix socket, which needs no token (default: from -c, http.unix_socket)"
UrlOpt = Annotated[str | None, typer.Option(help=URL_HELP, show_default=False)]
TokenFileOpt = Annotated[Path | None, typer.Option(help=TOKEN_HELP, envvar="HEDGEWATCH_TOKEN_FILE",
                                                   show_default=False)]
SocketOpt = Annotated[Path | None, typer.Option(help=SOCKET_HELP, show_default=False)]


def _control_post(path: str, body: dict[str, Any], config: Path | None, url: str | None,
                  token_file: Path | None, unix_socket: Path | None) -> None:
    """POST a state-changing request to the running daemon: over its Unix socket when one is named, else
    over TCP with the control token as a bearer token. Prints the answer; exit 0 on 200."""
    import httpx

    from hedgewatch.service.http import read_token

    cfg = _load(config) if config is not None else None
    if cfg is not None:
        url = url or f"http://{cfg.http.host}:{cfg.http.port}"
        token_file = token_file or (Path(cfg.http.token_file) if cfg.http.token_file else None)
        unix_socket = unix_socket or (Path(cfg.http.unix_socket) if cfg.http.unix_socket else None)
    target = httpx.URL(url or "http://127.0.0.1:9108")
    headers = {}
    if target.password:  # the token given as the URL's password: sent as a bearer token, never printed
        headers["authorization"] = f"Bearer {target.password}"
        target = target.copy_with(username=None, password=None)
    try:
        if unix_socket is None and token_file is not None:
            token = read_token(str(token_file))
            if token is not None:
                headers["authorization"] = f"Bearer {token.decode()}"
    except HedgewatchError as exc:
        raise typer.Exit(_fatal(exc)) from None
    transport = httpx.HTTPTransport(uds=str(unix_socket)) if unix_socket is not None else None
    where = f"unix socket {unix_socket}" if unix_socket is not None else str(target)
    try:
        with httpx.Client(transport=transport, timeout=10.0) as client:
            base = "http://hedgewatch" if unix_socket is not None else str(target).rstrip("/")
            resp = client.post(f"{base}{path}", json=body, headers=headers)
    except httpx.HTTPError as exc:
        typer.echo(f"hedgewatch: cannot reach the daemon at {where}: {type(exc).__name__}", err=True)
        raise typer.Exit(1) from None
    typer.echo(resp.text)
    raise typer.Exit(0 if resp.status_code == 200 else 1)


@app.command()
def rebalance(
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token_file: TokenFileOpt = None,
    unix_socket: SocketOpt = None,
) -> None:
    """Rebalance the running daemon's index now (on demand), keeping its level continuous."""
    _control_post("/rebalance", {}, config, url, token_file, unix_socket)


@hedge_app.command("ack")
def hedge_ack(
    contracts: Annotated[float | None, typer.Option(
        help="the position now held, signed as the venue shows it (a short of 50 is -50); without it, the "
             "open advice was done as advised")] = None,
    advice: Annotated[str | None, typer.Option(help="the id of the advice acknowledged (refused if not open)")]
    = None,
    index: Annotated[str | None, typer.Option(help="the index (default: the daemon's)")] = None,
    config: ConfigOpt = None,
    url: UrlOpt = None,
    token_file: TokenFileOpt = None,
    unix_socket: SocketOpt = None,
) -> None:
    """Tell the running daemon that the last hedge advice was executed, or what position is held now."""
    body = {"contracts": contracts, "advice_id": advice, "index": index}
    _control_post("/hedge/ack", {k: v for k, v in body.items() if v is not None}, config, url, token_file,
                  unix_socket)


@rules_app.command("test")
def rules_test(file: Annotated[Path, typer.Argument(
        help="a rule test file, or a bundled rule set's tests by name (default)")]) -> None:
    """Run rule unit tests (input series and expected alerts), like promtool test rules."""
    from hedgewatch.rules import named_rule_file
    from hedgewatch.rules.testing import run_rule_tests

    raise typer.Exit(run_rule_tests(named_rule_file(str(file), test=True)))


def _flags_take_no_metavar() -> None:
    """typer shows a flag's type (``--help <bool>``) as if it took a value; a flag takes none."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "flags_hidden", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.flags_hidden = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def main() -> None:
    """The entry point: every fatal error is one line and exit status 1 (the traceback with --debug)."""
    _flags_take_no_metavar()
    try:
        app(prog_name="hedgewatch")
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        sys.exit(_fatal(exc))

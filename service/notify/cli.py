"""``hedgewatch notify`` as a Typer sub-application: the worker when no subcommand is given, and
``silence add/list/remove``. Mount it with ``app.add_typer(notify_app, name="notify")``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hedgewatch.service.logs import setup_logging
from hedgewatch.service.notify.app import main, silence_add, silence_list, silence_remove

ConfigOpt = Annotated[Path | None, typer.Option("-c", "--config", help="config file (YAML)")]

notify_app = typer.Typer(add_completion=False, help="The alert delivery worker (Alertmanager, Slack, Telegram) "
                                                    "reading the durable alert stream, and its silences.")
silence_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="Mute alerts matching Alertmanager-style matchers until a time.")
notify_app.add_typer(silence_app, name="silence")


def _path(ctx: typer.Context, config: Path | None) -> str | None:
    chosen = config or (ctx.obj if isinstance(ctx.obj, Path) else None)
    return str(chosen) if chosen else None


@notify_app.callback(invoke_without_command=True)
def notify(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Run the worker until SIGTERM (without a subcommand)."""
    ctx.obj = config
    if ctx.invoked_subcommand is None:
        setup_logging("INFO")
        raise typer.Exit(main(str(config) if config else None))


@silence_app.command("add")
def add(
    ctx: typer.Context,
    matchers: Annotated[list[str], typer.Argument(
        help="name=value, name!=value, name=~regex or name!~regex; names: rule (alertname), index, severity, "
             "status or any label")],
    duration: Annotated[str, typer.Option("--for", help="how long, with a unit: 30m, 2h, 1h30m, 1d")] = "1h",
    comment: Annotated[str, typer.Option(help="why")] = "",
    config: ConfigOpt = None,
) -> None:
    """Add a silence; prints its id."""
    raise typer.Exit(silence_add(_path(ctx, config), matchers, duration, comment))


@silence_app.command("list")
def list_(
    ctx: typer.Context,
    expired: Annotated[bool, typer.Option(help="include silences that ended")] = False,
    config: ConfigOpt = None,
) -> None:
    """List silences, the soonest to end first."""
    raise typer.Exit(silence_list(_path(ctx, config), include_expired=expired))


@silence_app.command("remove")
def remove(ctx: typer.Context, silence_id: str, config: ConfigOpt = None) -> None:
    """Remove a silence by id."""
    raise typer.Exit(silence_remove(_path(ctx, config), silence_id))

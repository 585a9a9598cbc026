"""Entry points of ``hedgewatch notify``: the worker (``run_notifier``, ``main``) and silence management
(``silence_add``, ``silence_list``, ``silence_remove``) for the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import redis.asyncio as aredis
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from hedgewatch.service.config import Config, load_config
from hedgewatch.service.errors import ConfigError, HedgewatchError, ListenError, Problem
from hedgewatch.service.keys import Keys, keys_for
from hedgewatch.service.logs import setup_logging
from hedgewatch.service.metrics import NotifyMetrics
from hedgewatch.service.notify.alertmanager import mirror_silence
from hedgewatch.service.notify.silences import (
    Silence,
    add_silence,
    list_silences,
    parse_duration,
    parse_matchers,
    remove_silence,
)
from hedgewatch.service.notify.worker import Notifier
from hedgewatch.service.redisconn import redis_factory

log = logging.getLogger(__name__)
T = TypeVar("T")


def _redis_url(config: Config) -> str:
    url = config.redis.resolved_url()
    if not url:
        raise ConfigError([Problem("<config>", None, None, "redis.url",
                                   "hedgewatch notify reads the alert stream: a Redis URL is required "
                                   "(redis.url, redis.url_file or HEDGEWATCH__REDIS__URL)")])
    return url


def quiet_http_logs() -> None:
    """httpx logs every request URL at INFO; a webhook URL or a bot token is a secret."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # python-telegram-bot logs polling errors with tracebacks; the bot reports them itself, once per burst
    logging.getLogger("telegram").setLevel(logging.CRITICAL)


async def run_notifier(config: Config, *, stop: asyncio.Event | None = None,
                       metrics: NotifyMetrics | None = None) -> None:
    """Run the delivery worker until ``stop`` is set (forever without one). A missing secret raises
    ``SecretError`` before anything starts."""
    quiet_http_logs()
    metrics = metrics or NotifyMetrics()
    stop = stop or asyncio.Event()
    server = None
    if config.notify.metrics_port is not None:
        try:
            server, _ = start_http_server(config.notify.metrics_port, config.notify.metrics_host,
                                          registry=metrics.registry)
        except OSError as exc:
            raise ListenError(f"notify.metrics_port: cannot listen on {config.notify.metrics_host}:"
                              f"{config.notify.metrics_port}: {(exc.strerror or str(exc)).lower()}") from None
    try:
        async with httpx.AsyncClient(follow_redirects=False) as client:
            redis = redis_factory(_redis_url(config))()
            try:
                notifier = Notifier(config, redis, client, metrics)
                tg = config.notify.telegram
                bot = None
                if tg is not None and tg.bot is not None and tg.bot.enabled:
                    from hedgewatch.service.notify.bot import TelegramBot  # python-telegram-bot only when it is used
                    bot = TelegramBot(config, redis, metrics)
                if not notifier.destinations:
                    log.warning("notify: no destination configured (notify.alertmanager, notify.slack, "
                                "notify.telegram)")
                metrics.destinations_known(notifier.dests)
                metrics.up.set(1)
                async with asyncio.TaskGroup() as group:
                    group.create_task(notifier.run(stop), name="notify-worker")
                    if bot is not None:
                        group.create_task(bot.run(stop), name="notify-telegram-bot")
            finally:
                metrics.up.set(0)
                await redis.aclose()
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def main(config_path: str | None) -> int:
    """``hedgewatch notify [-c FILE]``: run until SIGTERM/SIGINT; exit 1 with the reason on a config or
    secret problem."""
    try:
        config = load_config(config_path)
    except HedgewatchError as exc:
        print(exc, file=sys.stderr)
        return 1
    setup_logging(config.log_level)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await run_notifier(config, stop=stop)

    try:
        asyncio.run(_main())
    except HedgewatchError as exc:
        print(f"hedgewatch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


# -- silences from the CLI ----------------------------------------------------------------------------


def _with_redis(config_path: str | None, op: Callable[[aredis.Redis, Keys], Awaitable[T]]) -> T:
    config = load_config(config_path)

    async def go() -> T:
        r = redis_factory(_redis_url(config))()
        try:
            return await op(r, keys_for(config.redis.prefix, config.index.name, config.bus == "redis"))
        finally:
            await r.aclose()

    return asyncio.run(go())


def _cli(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except (HedgewatchError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    except (RedisError, OSError) as exc:
        print(f"Redis unavailable ({type(exc).__name__})", file=sys.stderr)
        return 1


def silence_add(config_path: str | None, matchers: list[str], duration: str, comment: str = "") -> int:
    """``hedgewatch notify silence add name=value... --for 2h [--comment TEXT]``: prints the new id."""
    def go() -> int:
        m, secs = parse_matchers(matchers), parse_duration(duration)
        config = load_config(config_path)

        async def op(r: aredis.Redis, k: Keys) -> tuple[Silence, str | None]:
            s = await add_silence(r, k, m, secs, comment)
            return s, await mirror_silence(config.notify.alertmanager, s)

        s, mirrored = _with_redis(config_path, op)
        print(s.describe() + (f"  ({mirrored})" if mirrored else ""))
        return 0
    return _cli(go)


def silence_list(config_path: str | None, include_expired: bool = False) -> int:
    """``hedgewatch notify silence list``: one silence a line, the soonest to end first."""
    def go() -> int:
        for s in _with_redis(config_path, lambda r, k: list_silences(r, k, include_expired=include_expired)):
            print(s.describe())
        return 0
    return _cli(go)


def silence_remove(config_path: str | None, silence_id: str) -> int:
    """``hedgewatch notify silence remove ID``: exit 1 when there is no such silence."""
    def go() -> int:
        if _with_redis(config_path, lambda r, k: remove_silence(r, k, silence_id)):
            print(f"removed {silence_id}")
            return 0
        print(f"no silence {silence_id}", file=sys.stderr)
        return 1
    return _cli(go)

"""A Telegram bot the user can talk to: ``/status``, ``/hedge``, ``/ack [N]``, ``/silence RULE DURATION``,
``/help``, answered by long polling ``getUpdates`` (python-telegram-bot) with the notifier's bot token.

Only the configured chats are answered; every other update is ignored without a reply and counted in
``hedgewatch_notify_bot_ignored_total{reason}``. What the bot says comes from the daemon's Redis state
(``hedgewatch:state:<INDEX>``, the heartbeat); what it asks of the daemon goes to the command stream
(``hedgewatch:commands``, field ``json``), so it needs nothing but the Redis the notifier already reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aredis
from redis.exceptions import RedisError
from telegram import Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import HTTPXRequest

from hedgewatch.service.config import Config, TelegramBotConfig
from hedgewatch.service.errors import ConfigError, Problem
from hedgewatch.service.keys import keys_for
from hedgewatch.service.metrics import NotifyMetrics
from hedgewatch.service.notify import status as view
from hedgewatch.service.notify.alertmanager import mirror_silence
from hedgewatch.service.notify.bursts import Burst
from hedgewatch.service.notify.destinations import check_url, telegram_token
from hedgewatch.service.notify.silences import Matcher, add_silence, parse_duration, parse_matcher

log = logging.getLogger(__name__)
COMMANDS = ("status", "hedge", "ack", "silence", "help")
IGNORED = ("chat", "not_a_message", "not_a_command", "unknown_command")
COMMANDS_MAXLEN = 10_000  # the command stream is trimmed (approximately) to this many entries
HELP = """hedgewatch commands:
/status [INDEX] - index level, oracle health, hedge ratio, position and the last advice
/hedge [INDEX] - the hedge advice in full
/ack [N] - acknowledge the last advice as executed, or state that N contracts are held
/silence RULE DURATION - mute a rule's alerts, e.g. /silence BelowMA50 2h (RULE may be a matcher: rule=~Below.*)
/help - this list"""

Context = ContextTypes.DEFAULT_TYPE


def allowed_chats(cfg: TelegramBotConfig, chat_id: str | None) -> frozenset[int]:
    """The chat ids the bot answers: ``allowed_chat_ids``, else the chat alerts go to."""
    ids = cfg.allowed_chat_ids or ((chat_id,) if chat_id else ())
    try:
        out = frozenset(int(i) for i in ids)
    except ValueError:
        out = frozenset()
    if not out or len(out) != len(ids):
        raise ConfigError([Problem("<config>", None, None, "notify.telegram.bot.allowed_chat_ids",
                                   "the bot answers numeric chat ids only: list them here")])
    return out


class TelegramBot:
    """The bot of one notifier. ``run`` until ``stop``; Telegram being unreachable only delays it."""

    def __init__(self, config: Config, redis: aredis.Redis, metrics: NotifyMetrics,
                 clock: Callable[[], float] = time.time) -> None:
        tg = config.notify.telegram
        assert tg is not None and tg.bot is not None
        self.cfg = tg.bot
        self._token = telegram_token(tg)
        self._api = check_url(tg.api_url, "notify.telegram.api_url").rstrip("/")
        self._timeout = tg.timeout_s
        self.allowed = allowed_chats(tg.bot, tg.chat_id)
        self.index = tg.bot.index or config.index.name
        self.alertmanager = config.notify.alertmanager
        self.keys = keys_for(config.redis.prefix, config.index.name, config.bus == "redis")
        self.redis = redis
        self.metrics = metrics
        self.clock = clock
        self._retry_min, self._retry_max = config.notify.retry_min_s, config.notify.retry_max_s
        self._burst = Burst(log, "telegram bot")
        for c in COMMANDS:
            metrics.notify_bot_commands.labels(c)
        for r in IGNORED:
            metrics.notify_bot_ignored.labels(r)

    # -- lifecycle -----------------------------------------------------------------------------------

    def _application(self) -> Application:  # type: ignore[type-arg]
        def request(read_s: float) -> HTTPXRequest:
            return HTTPXRequest(connect_timeout=self._timeout, read_timeout=read_s, write_timeout=self._timeout,
                                pool_timeout=self._timeout)

        app = (Application.builder().token(self._token).base_url(f"{self._api}/bot")
               .base_file_url(f"{self._api}/file/bot").request(request(self._timeout))
               .get_updates_request(request(self._timeout)).build())
        app.add_handler(TypeHandler(Update, self._gate), group=-1)
        for name in COMMANDS:
            app.add_handler(CommandHandler(name, getattr(self, f"_cmd_{name}")))
        app.add_handler(MessageHandler(filters.COMMAND, self._unknown))
        app.add_handler(MessageHandler(filters.ALL, self._not_a_command))
        app.add_error_handler(self._on_error)
        return app

    async def run(self, stop: asyncio.Event) -> None:
        delay = self._retry_min
        while not stop.is_set():
            app = self._application()
            try:
                await self._serve(app, stop)
                return
            except TelegramError as exc:
                self._burst.failed(f"cannot reach the Bot API ({type(exc).__name__}), retrying")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            delay = min(delay * 2, self._retry_max)

    async def _serve(self, app: Application, stop: asyncio.Event) -> None:  # type: ignore[type-arg]
        await app.initialize()
        try:
            assert app.updater is not None
            await app.updater.start_polling(timeout=self.cfg.poll_timeout_s, allowed_updates=["message"],
                                            error_callback=self._poll_error)
            await app.start()
            self._burst.recovered()
            log.info("notify: telegram bot @%s answering %d chat%s", app.bot.username, len(self.allowed),
                     "" if len(self.allowed) == 1 else "s")
            await stop.wait()
        finally:
            with contextlib.suppress(TelegramError, RuntimeError):
                if app.updater is not None and app.updater.running:
                    await app.updater.stop()
                if app.running:
                    await app.stop()
            await app.shutdown()

    def _poll_error(self, exc: TelegramError) -> None:
        self._burst.failed(f"getUpdates failed ({type(exc).__name__}), retrying")

    async def _on_error(self, update: object, context: Context) -> None:
        log.warning("notify: telegram bot: a command failed (%s)", type(context.error).__name__)

    # -- gate and fallbacks --------------------------------------------------------------------------

    async def _gate(self, update: Update, context: Context) -> None:
        self._burst.recovered()
        chat = update.effective_chat
        if update.message is None or chat is None:
            self.metrics.notify_bot_ignored.labels("not_a_message").inc()
            raise ApplicationHandlerStop
        if chat.id not in self.allowed:
            self.metrics.notify_bot_ignored.labels("chat").inc()
            log.info("notify: telegram bot: ignored a message from chat %d (not allowed)", chat.id)
            raise ApplicationHandlerStop

    async def _unknown(self, update: Update, context: Context) -> None:
        self.metrics.notify_bot_ignored.labels("unknown_command").inc()
        await self._reply(update, "Unknown command.\n" + HELP)

    async def _not_a_command(self, update: Update, context: Context) -> None:
        self.metrics.notify_bot_ignored.labels("not_a_command").inc()

    async def _reply(self, update: Update, text: str) -> None:
        assert update.message is not None
        await update.message.reply_text(text[:4096], do_quote=False)

    def _counted(self, name: str, update: Update) -> None:
        self.metrics.notify_bot_commands.labels(name).inc()
        chat = update.effective_chat
        log.info("notify: telegram bot: /%s from chat %s", name, chat.id if chat else "?")

    # -- commands ------------------------------------------------------------------------------------

    async def _state(self, index: str) -> tuple[dict[str, Any] | None, bool]:
        """The daemon's saved state of ``index`` and whether its heartbeat is alive."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.state(index))
        pipe.exists(self.keys.heartbeat)
        raw, beat = await pipe.execute()
        state = None
        if raw:
            with contextlib.suppress(orjson.JSONDecodeError):
                loaded = orjson.loads(raw)
                state = loaded if isinstance(loaded, dict) else None
        return state, bool(beat)

    def _index_arg(self, context: Context) -> str:
        args = context.args or []
        return args[0] if args else self.index

    async def _cmd_status(self, update: Update, context: Context) -> None:
        self._counted("status", update)
        index = self._index_arg(context)
        try:
            state, alive = await self._state(index)
        except (RedisError, OSError):
            return await self._reply(update, "Redis is unavailable: no status right now.")
        await self._reply(update, view.status(index, state, alive, self.clock()))

    async def _cmd_hedge(self, update: Update, context: Context) -> None:
        self._counted("hedge", update)
        index = self._index_arg(context)
        try:
            state, alive = await self._state(index)
        except (RedisError, OSError):
            return await self._reply(update, "Redis is unavailable: no advice right now.")
        await self._reply(update, view.hedge(index, state, alive, self.clock()))

    async def _cmd_ack(self, update: Update, context: Context) -> None:
        self._counted("ack", update)
        args = context.args or []
        contracts: float | None = None
        if len(args) > 1:
            return await self._reply(update, "Usage: /ack [N] (N: the contracts now held)")
        if args:
            try:
                contracts = float(args[0])
            except ValueError:
                contracts = math.nan
            if not math.isfinite(contracts):
                return await self._reply(update, f"Not a number of contracts: {args[0][:40]!r}. Usage: /ack [N]")
        chat = update.effective_chat
        assert chat is not None
        try:
            state, _ = await self._state(self.index)
            advice = view.last_advice(state)
            advice_id = advice.get("id") if advice else None
            command = {"command": "hedge_ack", "index": self.index, "contracts": contracts,
                       "advice_id": advice_id if isinstance(advice_id, str) else None,
                       "by": f"telegram:{chat.id}"}
            await self.redis.xadd(self.keys.commands, {"json": orjson.dumps(command)}, maxlen=COMMANDS_MAXLEN,
                                  approximate=True)
        except (RedisError, OSError):
            return await self._reply(update, "Redis is unavailable: the acknowledgement was not sent.")
        what = "the last advice as executed" if contracts is None else f"{contracts:g} contracts held"
        await self._reply(update, f"Sent to the daemon: {self.index}, {what}.")

    async def _cmd_silence(self, update: Update, context: Context) -> None:
        self._counted("silence", update)
        args = context.args or []
        if len(args) != 2:
            return await self._reply(update, "Usage: /silence RULE DURATION, e.g. /silence BelowMA50 2h")
        try:
            spec, duration = args
            matcher = parse_matcher(spec) if any(c in spec for c in "=!~") else Matcher("rule", spec)
            seconds = parse_duration(duration)
        except ValueError as exc:
            return await self._reply(update, f"{exc}\nUsage: /silence RULE DURATION, e.g. /silence BelowMA50 2h")
        chat = update.effective_chat
        assert chat is not None
        try:
            s = await add_silence(self.redis, self.keys, (matcher,), seconds, "from Telegram",
                                  created_by=f"telegram:{chat.id}")
        except (RedisError, OSError):
            return await self._reply(update, "Redis is unavailable: no silence was set.")
        mirrored = await mirror_silence(self.alertmanager, s)
        await self._reply(update, f"Silenced {matcher} until {view.when(s.ends_at)} (id {s.id})."
                          + (f"\n{mirrored[:1].upper()}{mirrored[1:]}." if mirrored else ""))

    async def _cmd_help(self, update: Update, context: Context) -> None:
        self._counted("help", update)
        await self._reply(update, HELP)

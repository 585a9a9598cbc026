"""Slack incoming webhooks and the Telegram Bot API over httpx: one ``send`` per message that either
succeeds or says how to go on (retry later, or give up), plus each service's documented pacing.

Delivered means confirmed: a 2xx from Slack, ``{"ok": true}`` from Telegram. A redirect is not followed
and not a delivery; a Telegram ``200 {"ok": false}`` is an error like any other. A request that may have
reached the service without an answer (a timeout after it was sent) is retried as ``unconfirmed``: the
caller bounds those retries, since neither service can deduplicate a message.

Neither the webhook URL nor the bot token may reach a log: errors are reported by type and status only, and
a secret that could not go into a URL is refused at start, naming the setting.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx
import orjson

from hedgewatch.service.config import NotifyConfig, SlackConfig, TelegramConfig, TemplatesConfig
from hedgewatch.service.errors import HedgewatchError, SecretError
from hedgewatch.service.notify.grouping import Notification
from hedgewatch.service.notify.templates import message, slack_escape, telegram_escape, truncate

JSON = {"content-type": "application/json"}
# every reason a RetryLater carries, so the retry counters exist at 0 from the start
RETRY_REASONS = ("rate_limited", "server_error", "network", "timeout", "bad_response")
# requests that cannot have reached the service: safe to retry without a duplicate
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
TOKEN_CHARS = re.compile(r"[A-Za-z0-9:_-]+")
CHAT_ID = re.compile(r"-?\d+|@[A-Za-z0-9_]{4,}")


@dataclass
class RetryLater(HedgewatchError):
    """The message was not delivered and should be tried again: after ``delay_s`` when the service said
    so (429), else after the caller's backoff. ``unconfirmed``: it may have been delivered all the same."""

    reason: str  # one of RETRY_REASONS
    delay_s: float | None = None
    unconfirmed: bool = False


@dataclass
class GiveUp(HedgewatchError):
    """The service refused the message for good (a 4xx other than 429, a redirect): retrying cannot help."""

    reason: str


class Pacer:
    """Spaces sends at least ``1/rate`` apart and honours holds imposed by a 429 (capped by the caller)."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate_per_s
        self._clock = clock
        self._next = 0.0

    async def wait(self) -> None:
        now = self._clock()
        at = max(now, self._next)
        self._next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)

    def hold(self, delay_s: float) -> None:
        if math.isfinite(delay_s) and delay_s > 0:
            self._next = max(self._next, self._clock() + delay_s)


def retry_after(value: str | float | None, cap_s: float, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` (seconds or an HTTP date) or Telegram's ``retry_after``:
    at most ``cap_s``; None when absent, negative or not a finite time (the caller backs off instead). A
    date already past is 0."""
    if value is None or isinstance(value, bool):
        return None
    try:
        secs = float(value)
        if secs < 0:
            return None
    except ValueError:
        try:
            when = parsedate_to_datetime(str(value))
        except (TypeError, ValueError, IndexError):
            return None
        secs = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(secs):
        return None
    return min(max(0.0, secs), cap_s)


def check_url(url: str, setting: str) -> str:
    """An http(s) URL that httpx accepts; else a ``SecretError`` naming the setting, never the value."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise SecretError(f"{setting} contains a control character or a space")
    if not url.startswith(("https://", "http://")):
        raise SecretError(f"{setting} is not an http(s) URL")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise SecretError(f"{setting} is not a valid URL") from exc
    if not parsed.host:
        raise SecretError(f"{setting} has no host")
    return url


def transport_error(exc: httpx.TransportError) -> RetryLater:
    if isinstance(exc, NOT_SENT):
        return RetryLater("network")
    return RetryLater("timeout" if isinstance(exc, httpx.TimeoutException) else "network", unconfirmed=True)


def status_error(status: int) -> RetryLater | GiveUp | None:
    if 200 <= status < 300:
        return None
    if status >= 500:
        return RetryLater("server_error")
    return GiveUp(f"http_{status}")  # 3xx: a moved endpoint is a configuration to fix; 4xx: refused


class Slack:
    """An incoming webhook: POST ``{"text": ...}``; answers 200 ``ok``."""

    name = "slack"

    def __init__(self, cfg: SlackConfig, templates: TemplatesConfig, client: httpx.AsyncClient,
                 retry_after_max_s: float) -> None:
        self._url = check_url(cfg.resolved_url(), "notify.slack.webhook_url")
        self._templates = templates
        self._client = client
        self.timeout_s = cfg.timeout_s
        self._cap = retry_after_max_s
        self.pacers = [Pacer(cfg.rate_limit_per_s)]

    def render(self, n: Notification) -> str:
        t = self._templates
        return message(t.slack_title, t.slack_line, n.alerts, slack_escape)

    async def send(self, text: str, timeout_s: float | None = None) -> None:
        try:
            resp = await self._client.post(self._url, content=orjson.dumps({"text": text}), headers=JSON,
                                           timeout=timeout_s or self.timeout_s)
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        if resp.status_code == 429:
            raise RetryLater("rate_limited", retry_after(resp.headers.get("retry-after"), self._cap))
        err = status_error(resp.status_code)
        if err is not None:
            raise err


class Telegram:
    """``sendMessage`` to one chat in HTML parse mode; answers ``{"ok": true, ...}``."""

    name = "telegram"

    def __init__(self, cfg: TelegramConfig, templates: TemplatesConfig, client: httpx.AsyncClient,
                 retry_after_max_s: float) -> None:
        token = telegram_token(cfg)
        if not cfg.chat_id:
            raise SecretError("notify.telegram.chat_id is not set")
        if not CHAT_ID.fullmatch(cfg.chat_id):
            raise SecretError("notify.telegram.chat_id is neither a numeric chat id nor an @channel name")
        base = check_url(cfg.api_url, "notify.telegram.api_url").rstrip("/")
        self._url = f"{base}/bot{token}/sendMessage"
        self._chat = cfg.chat_id
        self._templates = templates
        self._client = client
        self.timeout_s = cfg.timeout_s
        self._cap = retry_after_max_s
        self.pacers = [Pacer(cfg.rate_limit_per_s), Pacer(cfg.global_rate_limit_per_s)]

    def render(self, n: Notification) -> str:
        t = self._templates
        return truncate(message(t.telegram_title, t.telegram_line, n.alerts, telegram_escape))

    async def send(self, text: str, timeout_s: float | None = None) -> None:
        body = {"chat_id": self._chat, "text": text, "parse_mode": "HTML", "disable_web_page_preview": True}
        try:
            resp = await self._client.post(self._url, content=orjson.dumps(body), headers=JSON,
                                           timeout=timeout_s or self.timeout_s)
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        if 300 <= resp.status_code < 400:
            raise GiveUp(f"http_{resp.status_code}")
        try:
            answer = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        # the Bot API states its verdict in the body: {"ok": false, "error_code": 429, ...} may come as a 200
        code = answer.get("error_code") if answer.get("ok") is not True else None
        code = code if isinstance(code, int) else (resp.status_code if resp.status_code != 200 else None)
        if code == 429:
            params = answer.get("parameters")
            after = params.get("retry_after") if isinstance(params, dict) else None
            raise RetryLater("rate_limited", retry_after(after, self._cap))
        if code is not None:
            err = status_error(code)
            if err is not None:
                raise err
        if answer.get("ok") is not True:
            raise RetryLater("bad_response")


def telegram_token(cfg: TelegramConfig) -> str:
    """The bot token, refused at start when it could not be part of a URL path."""
    token = cfg.resolved_token()
    if not TOKEN_CHARS.fullmatch(token):
        raise SecretError("notify.telegram.bot_token has characters a bot token cannot have "
                          "(expected digits, a colon, letters, '_' and '-')")
    return token


Destination = Slack | Telegram


def build_destinations(cfg_notify: NotifyConfig, client: httpx.AsyncClient) -> dict[str, Destination]:
    """The configured destinations; a missing or unusable secret raises ``SecretError`` naming the setting."""
    out: dict[str, Destination] = {}
    cap = cfg_notify.retry_after_max_s
    if cfg_notify.slack is not None:
        out["slack"] = Slack(cfg_notify.slack, cfg_notify.templates, client, cap)
    if cfg_notify.telegram is not None:
        out["telegram"] = Telegram(cfg_notify.telegram, cfg_notify.templates, client, cap)
    return out

"""Slack incoming webhooks and the Telegram Bot API over httpx: one ``send`` per message that either
succeeds or says how to go on (retry later, or give up), plus each service's documented pacing.

Neither the webhook URL nor the bot token may reach a log: errors are reported by type and status only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import orjson

from service.config import NotifyConfig, SlackConfig, TelegramConfig, TemplatesConfig
from service.errors import SecretError
from service.notify.grouping import Notification
from service.notify.templates import message, slack_escape, telegram_escape, truncate

JSON = {"content-type": "application/json"}


@dataclass
class RetryLater(Exception):
    """The message was not delivered and should be tried again: after ``delay_s`` when the service said
    so (429), else after the caller's backoff."""

    reason: str  # rate_limited, server_error, network
    delay_s: float | None = None


@dataclass
class GiveUp(Exception):
    """The service refused the message for good (a 4xx other than 429): retrying cannot help."""

    reason: str


class Pacer:
    """Spaces sends at least ``1/rate`` apart and honours holds imposed by a 429."""

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
        self._next = max(self._next, self._clock() + delay_s)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Slack:
    """An incoming webhook: POST ``{"text": ...}``; answers 200 ``ok``."""

    name = "slack"

    def __init__(self, cfg: SlackConfig, templates: TemplatesConfig, client: httpx.AsyncClient) -> None:
        self._url = cfg.resolved_url()
        if not self._url.startswith(("https://", "http://")):
            raise SecretError("notify.slack.webhook_url is not an http(s) URL")
        self._templates = templates
        self._client = client
        self._timeout = cfg.timeout_s
        self.pacers = [Pacer(cfg.rate_limit_per_s)]

    def render(self, n: Notification) -> str:
        t = self._templates
        return message(t.slack_title, t.slack_line, n.alerts, slack_escape)

    async def send(self, text: str) -> None:
        try:
            resp = await self._client.post(self._url, content=orjson.dumps({"text": text}), headers=JSON,
                                           timeout=self._timeout)
        except httpx.TransportError as exc:
            raise RetryLater("network") from exc
        if resp.status_code == 429:
            raise RetryLater("rate_limited", _retry_after(resp.headers.get("retry-after")))
        if resp.status_code >= 500:
            raise RetryLater("server_error")
        if resp.status_code >= 400:
            raise GiveUp(f"http_{resp.status_code}")


class Telegram:
    """``sendMessage`` to one chat in HTML parse mode; answers ``{"ok": true, ...}``."""

    name = "telegram"

    def __init__(self, cfg: TelegramConfig, templates: TemplatesConfig, client: httpx.AsyncClient) -> None:
        token = cfg.resolved_token()
        if not cfg.chat_id:
            raise SecretError("notify.telegram.chat_id is not set")
        if not cfg.api_url.startswith(("https://", "http://")):
            raise SecretError("notify.telegram.api_url is not an http(s) URL")
        self._url = f"{cfg.api_url.rstrip('/')}/bot{token}/sendMessage"
        self._chat = cfg.chat_id
        self._templates = templates
        self._client = client
        self._timeout = cfg.timeout_s
        self.pacers = [Pacer(cfg.rate_limit_per_s), Pacer(cfg.global_rate_limit_per_s)]

    def render(self, n: Notification) -> str:
        t = self._templates
        return truncate(message(t.telegram_title, t.telegram_line, n.alerts, telegram_escape))

    async def send(self, text: str) -> None:
        body = {"chat_id": self._chat, "text": text, "parse_mode": "HTML", "disable_web_page_preview": True}
        try:
            resp = await self._client.post(self._url, content=orjson.dumps(body), headers=JSON,
                                           timeout=self._timeout)
        except httpx.TransportError as exc:
            raise RetryLater("network") from exc
        if resp.status_code == 429:
            try:
                after = orjson.loads(resp.content).get("parameters", {}).get("retry_after")
            except (orjson.JSONDecodeError, AttributeError):
                after = None
            raise RetryLater("rate_limited", _retry_after(None if after is None else str(after)))
        if resp.status_code >= 500:
            raise RetryLater("server_error")
        if resp.status_code >= 400:
            raise GiveUp(f"http_{resp.status_code}")


Destination = Slack | Telegram


def build_destinations(cfg_notify: NotifyConfig, client: httpx.AsyncClient) -> dict[str, Destination]:
    """The configured destinations; a missing secret raises ``SecretError`` naming the setting."""
    out: dict[str, Destination] = {}
    if cfg_notify.slack is not None:
        out["slack"] = Slack(cfg_notify.slack, cfg_notify.templates, client)
    if cfg_notify.telegram is not None:
        out["telegram"] = Telegram(cfg_notify.telegram, cfg_notify.templates, client)
    return out

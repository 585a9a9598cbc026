"""Redis connections: one way to make a client, one way to name a server in a log line."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis


def redis_factory(url: str, *, timeout_s: float = 5.0) -> Callable[[], aioredis.Redis]:
    """A factory of clients for ``url`` (``redis://`` or ``rediss://`` with TLS, password included) with
    connect and socket timeouts, so an unreachable server is noticed instead of waited on forever. The URL
    (it may hold the password) goes into no log line: use ``redacted`` for that."""

    def make() -> aioredis.Redis:
        return aioredis.Redis.from_url(url, socket_connect_timeout=min(timeout_s, 2.0), socket_timeout=timeout_s,
                                       health_check_interval=30)

    return make


def redacted(url: str) -> str:
    """``url`` without its credentials, for logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<redis>"
    return f"{scheme}://{rest.rpartition('@')[2]}"

"""Redis connections: the one place a Redis URL is parsed, turned into a client, and named in a log line.

A Redis URL may hold a password in every form redis-py accepts: in the userinfo (``redis://:pw@host``,
``redis://user:pw@host``) or as a query parameter (``?password=pw``, ``?username=u``); ``rediss://`` is TLS,
``unix:///path/redis.sock`` a local socket. ``parse_redis_url`` reads all of them, and also a password
written as is with ``/``, ``#``, ``?`` or ``@`` in it (redis-py would cut it at the first one, or fail with
an error that quotes it); a percent-encoded one (``%2F``) is decoded, as redis-py does. Its errors never
quote the URL. ``redacted`` is the URL without any credential, for logs, ``/state`` and errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qsl, quote, unquote, urlencode

if TYPE_CHECKING:  # the client library loads only where a client is made, not with the config
    import redis.asyncio as aioredis

SCHEMES = ("redis", "rediss", "unix")
SECRET_PARAMS = frozenset({"password", "username"})
# host[:port][/db][?query]; a host is a name, an IPv4 address or a bracketed IPv6 one. The userinfo before
# it is taken as short as possible, so an '@' in a query value is not mistaken for the end of a userinfo,
# but a host that does not parse means the '@' belongs to the password.
_TCP = re.compile(r"(?:(?P<userinfo>.*?)@)??(?P<host>[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
                  r"(?:/(?P<db>[0-9]*))?(?:\?(?P<query>.*))?", re.DOTALL)
_UNIX = re.compile(r"(?:(?P<userinfo>.*?)@)??(?P<path>/[^?]*)(?:\?(?P<query>.*))?", re.DOTALL)
SHAPE = "redis://[[user]:password@]host[:port][/db][?password=…], rediss://… (TLS) or unix:///path[?db=N]"


@dataclass(frozen=True)
class RedisURL:
    scheme: str
    host: str  # the socket path for unix://
    port: int | None
    db: int | None
    username: str | None
    password: str | None
    options: tuple[tuple[str, str], ...]  # the other query parameters, as redis-py reads them

    def canonical(self) -> str:
        """The URL as redis-py parses it back to the same fields: credentials percent-encoded in the
        userinfo, the other options in the query."""
        auth = ""
        if self.username is not None or self.password is not None:
            auth = quote(self.username or "", safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        options = list(self.options)
        if self.scheme == "unix":
            if self.db is not None:
                options.append(("db", str(self.db)))
            where = self.host
        else:
            where = self.host + (f":{self.port}" if self.port is not None else "")
            where += f"/{self.db}" if self.db is not None else ""
        query = f"?{urlencode(options)}" if options else ""
        return f"{self.scheme}://{auth}{where}{query}"

    def redacted(self) -> str:
        """Where the server is, without any credential or option."""
        if self.scheme == "unix":
            return f"unix://{self.host}" + (f"?db={self.db}" if self.db is not None else "")
        port = f":{self.port}" if self.port is not None else ""
        db = f"/{self.db}" if self.db is not None else ""
        return f"{self.scheme}://{self.host}{port}{db}"


def parse_redis_url(url: str) -> RedisURL:
    """The parts of a Redis URL; ``ValueError`` saying what is wrong, never quoting the URL."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"not a Redis URL: expected {SHAPE}")
    m = (_UNIX if scheme == "unix" else _TCP).fullmatch(rest)
    if m is None:
        raise ValueError(f"not a Redis URL (a host, port or database number does not parse): expected {SHAPE}")
    username = password = None
    if m["userinfo"] is not None:
        user, colon, pw = m["userinfo"].partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    db: int | None = None
    options = []
    for key, value in parse_qsl(m["query"] or "", keep_blank_values=True):
        if key == "password":
            password = value
        elif key == "username":
            username = value
        elif key == "db":
            if not value.isdigit():
                raise ValueError("the db query parameter is not a database number")
            db = int(value)
        else:
            options.append((key, value))
    if scheme == "unix":
        return RedisURL(scheme, m["path"], None, db, username, password, tuple(options))
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 < port < 65536:
        raise ValueError("the port is not between 1 and 65535")
    if m["db"]:
        db = int(m["db"])
    return RedisURL(scheme, m["host"], port, db, username, password, tuple(options))


TRUE = frozenset({"1", "true", "yes", "on"})


def is_cluster(url: RedisURL) -> bool:
    """``?cluster=true``: the URL names one node of a Redis Cluster (the client learns the others)."""
    return any(k == "cluster" and v.lower() in TRUE for k, v in url.options)


def redis_factory(url: str, *, timeout_s: float = 5.0) -> Callable[[], aioredis.Redis]:
    """A factory of clients for ``url`` (any form ``parse_redis_url`` reads) with connect and socket
    timeouts, so an unreachable server is noticed instead of waited on forever. With ``?cluster=true`` the
    clients are Redis Cluster clients (``redis.asyncio.cluster.RedisCluster``), which route every command
    by its key's hash slot and follow the cluster's redirections; they take the same calls. The URL (it may
    hold the password) goes into no log line: use ``redacted`` for that."""
    import redis.asyncio as aioredis

    parsed = parse_redis_url(url)
    if is_cluster(parsed):
        from redis.asyncio.cluster import RedisCluster

        rest = tuple((k, v) for k, v in parsed.options if k != "cluster")
        node = RedisURL(parsed.scheme, parsed.host, parsed.port, None, parsed.username, parsed.password,
                        rest).canonical()

        def make_cluster() -> aioredis.Redis:
            client = RedisCluster.from_url(node, socket_connect_timeout=min(timeout_s, 2.0),
                                           socket_timeout=timeout_s)
            return cast(aioredis.Redis, client)

        return make_cluster
    canonical = parsed.canonical()

    def make() -> aioredis.Redis:
        return aioredis.Redis.from_url(canonical, socket_connect_timeout=min(timeout_s, 2.0),
                                       socket_timeout=timeout_s, health_check_interval=30)

    return make


def redacted(url: str) -> str:
    """``url`` without its credentials, for logs, ``/state`` and error messages; ``<redis>`` when it does
    not parse (then nothing of it is shown)."""
    try:
        return parse_redis_url(url).redacted()
    except ValueError:
        return "<redis>"


_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@", re.IGNORECASE)
_SECRET_PARAM = re.compile(r"(?P<name>password|username|pass|auth)=[^&\s'\"]*", re.IGNORECASE)


def error_text(exc: BaseException) -> str:
    """A Redis (or connection) error for a log line: its type and message with any URL credential or
    password parameter the message quotes masked. Every log line about a Redis error goes through here."""
    text = _SECRET_PARAM.sub(lambda m: f"{m['name']}=***", _USERINFO.sub(r"\g<scheme>***@", str(exc)))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

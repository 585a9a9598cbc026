"""The daemon's one HTTP port: ``/`` (links), ``/metrics``, ``/healthz``, ``/readyz``, ``/state``, and the
state-changing ``POST /rebalance`` and ``POST /hedge/ack``; optionally the same on a Unix socket.

Binds to loopback unless configured otherwise. The handlers only read in-memory state; none of them waits
on an exchange or on Redis, so the port answers even while every upstream is down.

A POST changes the index or the position, so neither the peer address (behind a proxy on the same host
every client is loopback) nor a browser's good manners is trusted. Over TCP a POST is served when every
check below passes, in this order, and refused with the status shown otherwise:

- the peer is on this machine's loopback (IPv4-mapped ``::ffff:127.0.0.1`` included), else 403;
- ``Host`` is a loopback name, the bound host, ``external_url``'s host or one of ``http.allowed_hosts``
  (a page on a rebinding DNS name is refused), else 403;
- an ``Origin``, when sent, is the daemon's own (a cross-site page is refused), else 403;
- the endpoint's token bucket (``control_burst``, refilled at ``control_rate_per_s``) has a token, else 429
  with ``Retry-After``;
- the body is empty or ``application/json`` (an HTML form cannot send JSON), else 415;
- ``Authorization: Bearer <token>`` (or Basic with the token as the password) matches the content of
  ``http.token_file``, else 401 (missing) or 403 (wrong). Without a token file, POSTs are served on the Unix
  socket only.

On the Unix socket (``http.unix_socket``, created 0600) the file's permissions are the credential: no
token, no Host or Origin check; the rate limit and the JSON rule still apply. Each POST, served or
refused, is one log line naming the peer (address, or pid and uid on the socket), never the token.

Every connection is bounded in time: idle, or still sending its request line and headers, for
``http.timeout_s`` and it is closed; a POST body must arrive within the same bound. A malformed request
gets a one-line 400 and one WARNING line, escaped, without a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import ipaddress
import logging
import math
import os
import socket
import stat
import struct
import time
from collections.abc import Awaitable, Callable
from html import escape
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client.aiohttp import make_aiohttp_handler

from hedgewatch.service.config import HttpConfig, read_secret
from hedgewatch.service.errors import ConfigError, HedgewatchError, Problem, SecretError
from hedgewatch.service.metrics import Metrics

log = logging.getLogger("hedgewatch.http")

MAX_BODY = 64 * 1024
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
WILDCARDS = frozenset({"", "0.0.0.0", "::"})

Reply = tuple[dict[str, Any], int]


def printable(text: str, most: int = 80) -> str:
    """``text`` for a log line: control and non-ASCII characters escaped, one line, at most ``most``."""
    out = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return out if len(out) <= most else out[:most] + "..."


def from_loopback(remote: str | None) -> bool:
    """Whether a peer address is this machine's loopback, IPv4-mapped IPv6 (``::ffff:127.0.0.1``) too."""
    try:
        addr = ipaddress.ip_address((remote or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def host_name(host: str) -> str:
    """The name in a ``Host`` header or URL authority, without port or brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.split(":")[0]
    return host.rstrip(".")


class TokenBucket:
    """``burst`` requests at once, then ``rate_per_s``; ``take`` says how long to wait when empty."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate_per_s, float(burst), clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> float | None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self.rate


def read_token(path: str | None) -> bytes | None:
    """The control token from ``http.token_file``; a ``SecretError`` naming the setting if it is unusable."""
    token = read_secret(None, path, "http.token_file")
    if token is None:
        return None
    if len(token) < MIN_TOKEN_LENGTH or any(not 0x21 <= ord(c) < 0x7F for c in token):
        raise SecretError(f"http.token_file: the token in {path} must be at least {MIN_TOKEN_LENGTH} "
                          "printable ASCII characters without spaces")
    return token.encode()


class _Handler(RequestHandler):
    """aiohttp's connection handler with our answer to a request it could not parse: one plain line back,
    one escaped log line, no traceback (that is kept for a failure of our own handlers)."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        peer = printable(str(request.remote or "unix"))
        if status >= 500 and exc is not None:
            log.error("http: %s %s from %s failed", request.method, printable(request.path), peer, exc_info=exc)
        elif status >= 500:
            log.warning("http: %s %s from %s: %d", request.method, printable(request.path), peer, status)
        else:
            what = (getattr(exc, "message", None) or message or type(exc).__name__).split("\n")[0].rstrip(": ")
            log.warning("http: malformed request from %s: %d %s", peer, status, printable(what))
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already being sent")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        resp = web.Response(status=status, text=f"{status} {phrase}\n", content_type="text/plain")
        resp.force_close()
        return resp


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        *,
        ready: Callable[[], tuple[bool, dict[str, Any]]],
        state: Callable[[], dict[str, Any]],
        alive: Callable[[], bool] = lambda: True,
        rebalance: Callable[[], dict[str, Any]] | None = None,
        hedge_ack: Callable[[dict[str, Any], str], dict[str, Any]] | None = None,
        settings: HttpConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.settings = settings or HttpConfig(host=host, port=port)
        self._metrics = metrics
        self._ready = ready
        self._state = state
        self._alive = alive
        self._clock = clock
        self._runner: web.ServerRunner | None = None
        self._unix_path: str | None = None
        self._token: bytes | None = None
        self._get: dict[str, Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]] = {
            "/": self._get_index, "/metrics": cast(Any, make_aiohttp_handler(metrics.registry)),
            "/healthz": self._get_healthz, "/readyz": self._get_readyz, "/state": self._get_state,
        }
        self._post: dict[str, Callable[[dict[str, Any], str], Reply]] = {}
        if rebalance is not None:
            def _rebalance(body: dict[str, Any], by: str) -> Reply:
                result = rebalance()
                return result, 200 if result.get("rebalanced") else 409
            self._post["/rebalance"] = _rebalance
        if hedge_ack is not None:
            def _ack(body: dict[str, Any], by: str) -> Reply:
                try:
                    return hedge_ack(body, by), 200
                except HedgewatchError as exc:
                    return {"error": str(exc)}, 409
            self._post["/hedge/ack"] = _ack
        s = self.settings
        self._buckets = {path: TokenBucket(s.control_rate_per_s, s.control_burst, clock) for path in self._post}
        self._limited = dict.fromkeys(self._post, 0)  # 429s not logged since the last one that was
        hosts = set(LOOPBACK_NAMES) | {host_name(h) for h in s.allowed_hosts}
        if host not in WILDCARDS:
            hosts.add(host_name(host))
        self._external_origin: str | None = None
        if s.external_url:
            ext = urlsplit(s.external_url)
            hosts.add(host_name(ext.netloc.rsplit("@", 1)[-1]))
            self._external_origin = f"{ext.scheme}://{ext.netloc.rsplit('@', 1)[-1]}".lower()
        self._hosts = frozenset(hosts)

    @property
    def paths(self) -> list[str]:
        return [*self._get, *self._post]

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0). A token file or a Unix socket that
        cannot be used raises ``SecretError``/``ConfigError`` before anything listens."""
        s = self.settings
        self._token = read_token(s.token_file)
        server = _Server(self._dispatch, keepalive_timeout=s.timeout_s, lingering_time=s.timeout_s, access_log=None,
                         max_line_size=8190, max_field_size=8190, max_headers=64)
        self._runner = web.ServerRunner(server, handle_signals=False)
        await self._runner.setup()
        if self.host == "::":  # every address, IPv4 too: peers show as ::ffff:a.b.c.d
            tcp = _dual_stack_socket(self.port)
            self.port = int(tcp.getsockname()[1])
            await web.SockSite(self._runner, tcp).start()
        else:
            await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()
            for addr in self._runner.addresses:  # the bound port, when 0 asked the OS for a free one
                if isinstance(addr, tuple):
                    self.port = int(addr[1])
                    break
        where = f"{self.host}:{self.port}"
        if s.unix_socket:
            await web.SockSite(self._runner, _unix_socket(s.unix_socket)).start()
            self._unix_path = s.unix_socket
            where += f" and {s.unix_socket}"
        posts = " ".join(f"POST {p}" for p in self._post)
        auth = "token" if self._token else ("Unix socket only" if s.unix_socket else "disabled: no http.token_file")
        log.info("http listening on %s (%s%s)", where, " ".join(self._get),
                 f"; {posts} ({auth})" if posts else "")
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._unix_path)
            self._unix_path = None

    # --- dispatch ------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if request.method in ("GET", "HEAD") and path in self._get:
            if not _is_unix(request) and self.host not in WILDCARDS and not self._host_ok(request):
                log.warning("http: refused %s %s from %s: Host %s is not this daemon's", request.method,
                            printable(path), _who(request), printable(request.headers.get("Host", "")))
                return _json({"error": "unknown Host"}, 403)
            return await self._get[path](request)
        if request.method == "POST" and path in self._post:
            return await self._control(request, path)
        if path in self._get or path in self._post:
            allow = "GET, HEAD" if path in self._get else "POST"
            return _json({"error": f"{path} takes {allow}"}, 405, {"Allow": allow})
        return _json({"error": "not found", "paths": self.paths}, 404)

    def _host_ok(self, request: web.BaseRequest) -> bool:
        raw = request.headers.get("Host")
        if raw is None:  # HTTP/1.0 without Host: no browser, so no rebinding
            return True
        name = host_name(raw)
        return name in self._hosts or from_loopback(name)

    def _origin_ok(self, request: web.BaseRequest) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        origin = origin.strip().lower().rstrip("/")
        own = {f"http://{request.headers.get('Host', '').strip().lower()}"}
        if self._external_origin:
            own.add(self._external_origin)
        return origin in own

    def _refusal(self, request: web.BaseRequest, path: str) -> tuple[int, str, dict[str, str]] | None:
        """Why this POST is refused (status, reason, headers), or None."""
        unix = _is_unix(request)
        if not unix:
            if not from_loopback(request.remote):
                return 403, "only clients on this machine's loopback may change state", {}
            if not self._host_ok(request):
                return 403, "Host is not this daemon's", {}
            if not self._origin_ok(request):
                return 403, "cross-origin requests are refused", {}
        wait = self._buckets[path].take()
        if wait is not None:
            return 429, "too many requests", {"Retry-After": str(max(1, math.ceil(wait)))}
        if (request.body_exists or "Content-Type" in request.headers) \
                and request.content_type != "application/json":
            return 415, "the body must be application/json", {}
        if unix:
            return None
        if self._token is None:
            return 403, "POSTs over TCP need http.token_file; or use http.unix_socket", {}
        given = _credential(request.headers.get("Authorization"))
        if given is None:
            return 401, "a token is required (Authorization: Bearer ...)", {"WWW-Authenticate": "Bearer"}
        if not hmac.compare_digest(given, self._token):
            return 403, "wrong token", {}
        return None

    async def _control(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        who = _who(request)
        refused = self._refusal(request, path)
        if refused is not None:
            status, reason, headers = refused
            if status != 429 or self._limited[path] == 0:
                log.warning("http: refused POST %s from %s: %d %s%s", path, who, status, reason,
                            " (further 429s are counted until one is served)" if status == 429 else "")
            if status == 429:
                self._limited[path] += 1
            return _json({"error": reason}, status, headers)
        body, problem = await self._body(request)
        if body is None:
            log.warning("http: refused POST %s from %s: 400 %s", path, who, problem)
            return _json({"error": problem}, 400)
        result, status = self._post[path](body, "http:unix" if _is_unix(request) else f"http:{request.remote}")
        limited, self._limited[path] = self._limited[path], 0
        log.info("http: POST %s from %s: %d%s", path, who, status,
                 f" ({limited} requests refused with 429 before)" if limited > 1 else "")
        return _json(result, status)

    async def _body(self, request: web.BaseRequest) -> tuple[dict[str, Any] | None, str]:
        if (request.content_length or 0) > MAX_BODY:
            return None, f"the body is larger than {MAX_BODY} bytes"
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                raw = await request.content.read(MAX_BODY + 1)
        except TimeoutError:
            return None, "the body did not arrive in time"
        if len(raw) > MAX_BODY:
            return None, f"the body is larger than {MAX_BODY} bytes"
        try:
            body = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            return None, "the body is not JSON"
        if not isinstance(body, dict):
            return None, "the body must be a JSON object"
        return body, ""

    # --- reads ---------------------------------------------------------------------------------------

    async def _get_index(self, request: web.BaseRequest) -> web.Response:
        links = "\n".join(f'<li><a href="{escape(p)}">{escape(p)}</a></li>' for p in self._get if p != "/")
        posts = "\n".join(f"<li><code>POST {escape(p)}</code></li>" for p in self._post)
        html = ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>hedgewatch</title></head>\n"
                f"<body><h1>hedgewatch</h1>\n<ul>\n{links}\n</ul>\n"
                + (f"<p>State changes (a token or the Unix socket):</p>\n<ul>\n{posts}\n</ul>\n" if posts else "")
                + "</body></html>\n")
        return web.Response(text=html, content_type="text/html")

    async def _get_healthz(self, request: web.BaseRequest) -> web.Response:
        ok = self._alive()
        return _json({"status": "ok" if ok else "failing"}, 200 if ok else 503)

    async def _get_readyz(self, request: web.BaseRequest) -> web.Response:
        ok, detail = self._ready()
        return _json({"ready": ok, **detail}, 200 if ok else 503)

    async def _get_state(self, request: web.BaseRequest) -> web.Response:
        return _json(self._state(), 200)


def _dual_stack_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):  # a host without IPv4 keeps the IPv6 socket
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _unix_socket(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, created 0600 (a stale socket file is replaced)."""
    def problem(msg: str) -> ConfigError:
        return ConfigError([Problem("<config>", None, None, "http.unix_socket", f"{path}: {msg}")])

    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
        else:
            raise problem("exists and is not a socket")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise problem(exc.strerror or type(exc).__name__) from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise problem(exc.strerror or type(exc).__name__) from None
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def _is_unix(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is not None and not isinstance(transport.get_extra_info("sockname"), tuple)


def _who(request: web.BaseRequest) -> str:
    """The peer, for a log line: ``127.0.0.1:50112``, or ``unix pid=4242 uid=1000`` on the socket."""
    transport = request.transport
    if transport is None:
        return "?"
    if _is_unix(request):
        sock = transport.get_extra_info("socket")
        try:
            pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
        except (AttributeError, OSError):
            return "unix"
        return f"unix pid={pid} uid={uid}"
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    return printable(str(request.remote))


def _credential(header: str | None) -> bytes | None:
    """The token in ``Bearer <token>``, or the password of ``Basic`` (a URL's ``user:token@``)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip().encode() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2] or None
    return None


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
        headers=headers,
    )

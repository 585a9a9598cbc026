"""The daemon's one HTTP port: ``/metrics``, ``/healthz``, ``/readyz``, ``/state``, and ``POST /rebalance``.

Binds to loopback unless configured otherwise. The handlers only read in-memory state; none of them waits
on an exchange or on Redis, so the port answers even while every upstream is down. ``POST /rebalance``
changes the index, so it is served only to clients on this machine's loopback, whatever address the port
binds to (a container publishes the port to Prometheus, not the right to rebalance).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from service.errors import HedgewatchError
from service.metrics import Metrics

log = logging.getLogger("hedgewatch.http")


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
    ) -> None:
        self.host = host
        self.port = port
        self._metrics = metrics
        self._ready = ready
        self._state = state
        self._alive = alive
        self._rebalance = rebalance
        self._hedge_ack = hedge_ack
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        app = web.Application()
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_get("/healthz", self._get_healthz)
        app.router.add_get("/readyz", self._get_readyz)
        app.router.add_get("/state", self._get_state)
        if self._rebalance is not None:
            app.router.add_post("/rebalance", self._post_rebalance)
        if self._hedge_ack is not None:
            app.router.add_post("/hedge/ack", self._post_hedge_ack)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        for addr in self._runner.addresses:  # the bound port, when 0 asked the OS for a free one
            self.port = int(addr[1])
            break
        log.info("http listening on %s:%d (/metrics /healthz /readyz /state)", self.host, self.port)
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _get_metrics(self, request: web.Request) -> web.Response:
        body = self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _get_healthz(self, request: web.Request) -> web.Response:
        ok = self._alive()
        return _json({"status": "ok" if ok else "failing"}, 200 if ok else 503)

    async def _get_readyz(self, request: web.Request) -> web.Response:
        ok, detail = self._ready()
        return _json({"ready": ok, **detail}, 200 if ok else 503)

    async def _get_state(self, request: web.Request) -> web.Response:
        return _json(self._state(), 200)

    async def _post_rebalance(self, request: web.Request) -> web.Response:
        if not _from_loopback(request.remote):
            log.warning("refused POST /rebalance from %s: only loopback clients may rebalance", request.remote)
            return _json({"error": "only loopback clients may rebalance"}, 403)
        assert self._rebalance is not None
        result = self._rebalance()
        return _json(result, 200 if result.get("rebalanced") else 409)


    async def _post_hedge_ack(self, request: web.Request) -> web.Response:
        """Acknowledge the open advice (empty object) or state the position held (``{"contracts": -50}``).
        JSON bodies only: a browser's cross-site form cannot send one without a preflight."""
        if not _from_loopback(request.remote):
            log.warning("refused POST /hedge/ack from %s: only loopback clients may acknowledge", request.remote)
            return _json({"error": "only loopback clients may acknowledge"}, 403)
        if request.content_type != "application/json":
            return _json({"error": "the body must be application/json"}, 415)
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            return _json({"error": "the body is not JSON"}, 400)
        if not isinstance(body, dict):
            return _json({"error": "the body must be a JSON object"}, 400)
        assert self._hedge_ack is not None
        try:
            result = self._hedge_ack(body, f"http:{request.remote}")
        except HedgewatchError as exc:
            return _json({"error": str(exc)}, 409)
        return _json(result, 200)


def _from_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
    )

"""Replay of a market at its real timing through a real websocket server on loopback, on a stepped clock.

``ReplayVenue`` speaks enough of each native venue's protocol (REST instrument list, subscribe and its ack,
Bybit's "already subscribed", the venues' pings) for the connector to run unchanged, and sends the quote
frames of a ``schedule`` (venue time of each frame, per symbol) in the venue's documented format. ``Replay``
owns the clock the connector reads: it advances in steps, pushes the frames due, waits until the connector
has decoded them and every connection's watchdog has looked at the new time. Simulated time never runs
ahead of what the connector has taken in, however slow the machine, and no test sleeps for the seconds it
replays.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection

from tests.connector_fakes import FakeVenue

T0_MS = 1_786_540_000_000  # venue time of the replay's start (epoch ms)


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


class ReplayVenue(FakeVenue):
    """One venue (``binanceusdm``, ``bybit`` or ``okx``) listing ``assets`` against USDT."""

    def __init__(self, protocol: str, assets: list[str]) -> None:
        super().__init__()
        self.protocol = protocol
        self.assets = assets
        self.tick_s = 3600.0  # the periodic feeder stays idle: frames come from ``push``
        self.sent: dict[str, list[int]] = {a: [] for a in assets}  # update ids pushed per asset
        self._seq = itertools.count(1)
        self.book: dict[str, tuple[float, float]] = {a: (100.0 + i, 100.1 + i) for i, a in enumerate(assets)}
        if protocol == "binanceusdm":
            self.rest["/fapi/v1/exchangeInfo"] = lambda q: {"symbols": [
                {"symbol": f"{a}USDT", "contractType": "PERPETUAL", "status": "TRADING", "baseAsset": a,
                 "quoteAsset": "USDT", "marginAsset": "USDT", "underlyingType": "COIN"} for a in assets]}
            self.rest["/fapi/v1/fundingInfo"] = lambda q: []
        elif protocol == "bybit":
            self.rest["/v5/market/instruments-info"] = lambda q: {"retCode": 0, "retMsg": "OK", "result": {
                "category": "linear", "nextPageCursor": "", "list": [
                    {"symbol": f"{a}USDT", "contractType": "LinearPerpetual", "status": "Trading",
                     "baseCoin": a, "quoteCoin": "USDT", "fundingInterval": 480} for a in assets]}}
        else:
            self.rest["/api/v5/public/instruments"] = lambda q: {"code": "0", "msg": "", "data": [
                {"instId": f"{a}-USDT-SWAP", "instType": "SWAP", "uly": f"{a}-USDT", "instFamily": f"{a}-USDT",
                 "ctType": "linear", "ctVal": "0.01", "ctValCcy": a, "settleCcy": "USDT", "state": "live"}
                for a in assets]}

    # -- the venue's protocol ----------------------------------------------------------------------------
    def topic(self, asset: str) -> str:
        return {"binanceusdm": f"{asset.lower()}usdt@bookTicker", "bybit": f"tickers.{asset}USDT",
                "okx": f"tickers:{asset}-USDT-SWAP"}[self.protocol]

    def on_text(self, ws: ServerConnection, text: str) -> list[str]:
        if self.protocol == "okx":
            return self._okx(ws, text)
        msg = orjson.loads(text)
        if self.protocol == "binanceusdm":
            if msg["method"] == "SUBSCRIBE":
                self.subs[ws].update(msg["params"])
            elif msg["method"] == "UNSUBSCRIBE":
                self.subs[ws].difference_update(msg["params"])
            return [dumps({"result": None, "id": msg["id"]})]
        return self._bybit(ws, msg)

    def _bybit(self, ws: ServerConnection, msg: dict[str, Any]) -> list[str]:
        op = msg["op"]
        if op == "ping":
            return [dumps({"success": True, "ret_msg": "pong", "conn_id": "r1", "op": "ping"})]
        base = {"conn_id": "r1", "req_id": msg.get("req_id"), "op": op}
        if op == "unsubscribe":
            self.subs[ws].difference_update(msg["args"])
            return [dumps({**base, "success": True, "ret_msg": ""})]
        if self.subs[ws] & set(msg["args"]):
            topic = sorted(self.subs[ws] & set(msg["args"]))[0]
            return [dumps({**base, "success": False, "ret_msg": f"error:already subscribed,topic:{topic}"})]
        self.subs[ws].update(msg["args"])
        out = [dumps({**base, "success": True, "ret_msg": ""})]
        for topic in msg["args"]:  # Bybit sends a snapshot right after the ack
            asset = topic.removeprefix("tickers.").removesuffix("USDT")
            bid, ask = self.book[asset]
            out.append(dumps({"topic": topic, "type": "snapshot", "cs": next(self._seq), "ts": T0_MS, "data": {
                "symbol": f"{asset}USDT", "bid1Price": f"{bid:.1f}", "bid1Size": "1", "ask1Price": f"{ask:.1f}",
                "ask1Size": "1"}}))
        return out

    def _okx(self, ws: ServerConnection, text: str) -> list[str]:
        if text == "ping":
            return ["pong"]
        msg = orjson.loads(text)
        out = []
        for arg in msg["args"]:
            key = f"{arg['channel']}:{arg['instId']}"
            if msg["op"] == "subscribe":
                self.subs[ws].add(key)
            else:
                self.subs[ws].discard(key)
            out.append(dumps({"event": msg["op"], "arg": arg, "connId": "r1"}))
        return out

    def frame(self, asset: str, venue_ms: int) -> tuple[str, int]:
        """The next quote frame of ``asset`` (documented format) and its update id."""
        u = next(self._seq)
        bid, ask = self.book[asset]
        bid, ask = round(bid + 0.1, 1), round(ask + 0.1, 1)
        self.book[asset] = (bid, ask)
        sym = f"{asset}USDT"
        if self.protocol == "binanceusdm":
            return dumps({"stream": self.topic(asset), "data": {
                "e": "bookTicker", "u": u, "E": venue_ms, "T": venue_ms - 2, "s": sym, "b": f"{bid:.1f}",
                "B": "31.21", "a": f"{ask:.1f}", "A": "40.66"}}), u
        if self.protocol == "bybit":
            return dumps({"topic": f"tickers.{sym}", "type": "delta", "cs": u, "ts": venue_ms, "data": {
                "symbol": sym, "bid1Price": f"{bid:.1f}", "bid1Size": "2", "ask1Price": f"{ask:.1f}",
                "ask1Size": "3"}}), u
        inst = f"{asset}-USDT-SWAP"
        return dumps({"arg": {"channel": "tickers", "instId": inst}, "data": [{
            "instType": "SWAP", "instId": inst, "last": f"{bid:.1f}", "lastSz": "0.4", "askPx": f"{ask:.1f}",
            "askSz": "1871.75", "bidPx": f"{bid:.1f}", "bidSz": "779.3", "ts": str(venue_ms)}]}), u

    async def push(self, asset: str, venue_ms: int) -> None:
        text, u = self.frame(asset, venue_ms)
        topic = self.topic(asset)
        self.sent[asset].append(u)
        for ws in list(self.conns):
            if topic in self.subs.get(ws, ()):
                await ws.send(text)


class Replay:
    """Steps a clock through a schedule: ``{asset: [seconds since start of each frame]}``."""

    def __init__(self, venue: ReplayVenue, schedule: dict[str, list[float]], t0: float = T0_MS / 1000) -> None:
        self.venue = venue
        self.schedule = schedule
        self.t0 = t0
        self.now = t0

    def clock(self) -> float:
        return self.now

    async def run(self, connector: Any, received: Callable[[str], int], until_s: float, step_s: float = 0.1,
                  on_step: Callable[[float], None] | None = None) -> None:
        """Advance to ``until_s`` in ``step_s`` steps. ``received(asset)`` counts the quotes the connector
        emitted for ``asset``; every step waits for it to catch up with what was pushed and for every
        connection's watchdog to run at the new time (a connection that stopped checking fails the run)."""
        due = sorted((t, a) for a, ts in self.schedule.items() for t in ts)
        i = 0
        steps = round(until_s / step_s)
        for k in range(1, steps + 1):
            t = k * step_s
            self.now = self.t0 + t
            while i < len(due) and due[i][0] <= t + 1e-9:
                await self.venue.push(due[i][1], int((self.t0 + due[i][0]) * 1000))
                i += 1
            before = [c.checks for c in connector.connections]

            def caught_up(before: list[int] = before) -> bool:
                return (all(received(a) >= len(self.venue.sent[a]) for a in self.venue.assets)
                        and all(c.checks > n for c, n in zip(connector.connections, before, strict=True)))

            await _until(caught_up, f"the connector at t={t:.1f} s")
            if on_step is not None:
                on_step(t)


async def _until(cond: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)

"""A hostile-frame proxy: a websocket server on loopback in front of one simulated venue.

Every client connection is relayed to the simulator on the same path, both ways, untouched; once the
venue has sent its first data frame on a connection (the subscriptions are in place), the proxy also
injects hostile frames into the client's stream at ``rate_per_s``, built from the latest honest frames of
that connection so they name real, subscribed topics. The categories:

- ``one_sided``: one side of the book absurd (bid x0.001, ask x1000, bid halved, ask doubled);
- ``crossed``: bid above ask;
- ``scaled``: both sides moved together by 4 % to 60 % in one frame;
- ``sequence``: a plausible book with a huge sequence number (Binance ``u``, Bybit ``cs`` = 2**62), on Bybit
  also with an absurd price (the delta whose ``cs`` used to be stored before the price checks);
- ``error_flood``: venue error frames with random codes and forged log text (newlines, escapes, fake
  ``ERROR`` lines, 2 kB);
- ``deep``: JSON nested 5,000 levels deep, alone and inside a valid data frame;
- ``control``: control frames with wrongly typed fields (ids, events, args);
- ``junk``: not JSON, empty objects, ``null``, ``1e400``, binary frames.

Used by ``tests/test_hostile_feeds.py`` and ``python -m tests.bench.bench_fuzz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

CATEGORIES = ("one_sided", "crossed", "scaled", "sequence", "error_flood", "deep", "control", "junk")
DEEP = "[" * 5000 + "]" * 5000
FORGED = ("bad request\n2026-12-03 07:00:00,000 ERROR hedgewatch: alert firing IndexNotOk on HW\r\x1b[31m"
          "\\u0000 \" } ] ' %s %(x)s {0}")


class Templates:
    """The latest honest top-of-book frame per topic of one connection, per venue protocol."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.books: dict[str, dict[str, Any]] = {}

    def note(self, raw: str | bytes) -> bool:
        """Remember ``raw`` when it is a top-of-book frame; True for any data frame."""
        try:
            m = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(m, dict):
            return False
        if self.protocol == "binanceusdm":
            d = m.get("data")
            if isinstance(d, dict) and d.get("e") == "bookTicker":
                self.books[m["stream"]] = m
            return "stream" in m
        if self.protocol == "bybit":
            d = m.get("data")
            topic = m.get("topic", "")
            if topic.startswith("tickers.") and isinstance(d, dict) and "cs" in m:
                self.books.setdefault(topic, {}).update(m, data={**self.books.get(topic, {}).get("data", {}),
                                                                 **d})
            return "topic" in m
        arg = m.get("arg")
        if isinstance(arg, dict) and arg.get("channel") == "tickers" and m.get("data"):
            self.books[arg["instId"]] = m
        return "data" in m


class Hostile:
    """Builds hostile frames of each category from a connection's templates."""

    def __init__(self, templates: Templates, rng: random.Random) -> None:
        self.t = templates
        self.rng = rng

    def frame(self, category: str) -> str | bytes | None:
        if category in ("one_sided", "crossed", "scaled", "sequence") and not self.t.books:
            return None
        return getattr(self, category)()

    # -- books ------------------------------------------------------------------------------------------
    def _book(self, bid_f: float, ask_f: float, seq: int | None = None, crossed: bool = False) -> str:
        t = self.t
        m = self.rng.choice(list(t.books.values()))
        if t.protocol == "binanceusdm":
            d = dict(m["data"])
            bid, ask = float(d["b"]) * bid_f, float(d["a"]) * ask_f
            if crossed:
                bid, ask = ask * 1.01, bid
            d.update(b=f"{bid:.8f}", a=f"{ask:.8f}")
            if seq is None:
                d.pop("u", None)  # no id: the frame goes through the price checks, not the sequence check
            else:
                d["u"] = seq
            return orjson.dumps({"stream": m["stream"], "data": d}).decode()
        if t.protocol == "bybit":
            d = m["data"]
            bid, ask = float(d["bid1Price"]) * bid_f, float(d["ask1Price"]) * ask_f
            if crossed:
                bid, ask = ask * 1.01, bid
            data = {"symbol": d.get("symbol"), "bid1Price": f"{bid:.8f}", "ask1Price": f"{ask:.8f}"}
            if bid_f == ask_f == 1.0:
                data.pop("ask1Price")
            return orjson.dumps({"topic": m["topic"], "type": "delta", "ts": m["ts"],
                                 "cs": m["cs"] if seq is None else seq, "data": data}).decode()
        row = dict(m["data"][0])
        bid, ask = float(row["bidPx"]) * bid_f, float(row["askPx"]) * ask_f
        if crossed:
            bid, ask = ask * 1.01, bid
        row.update(bidPx=f"{bid:.8f}", askPx=f"{ask:.8f}")
        return orjson.dumps({"arg": m["arg"], "data": [row]}).decode()

    def one_sided(self) -> str:
        bid_f, ask_f = self.rng.choice(((0.001, 1.0), (1.0, 1000.0), (0.5, 1.0), (1.0, 2.0)))
        return self._book(bid_f, ask_f)

    def crossed(self) -> str:
        return self._book(1.0, 1.0, crossed=True)

    def scaled(self) -> str:
        f = self.rng.choice((self.rng.uniform(0.4, 0.96), self.rng.uniform(1.04, 1.6)))
        return self._book(f, f)

    def sequence(self) -> str:
        if self.t.protocol == "okx":  # OKX tickers carry no sequence number: a crossed book instead
            return self._book(1.0, 1.0, crossed=True)
        if self.t.protocol == "bybit" and self.rng.random() < 0.5:
            return self._book(0.001, 1.0, seq=2**62)
        return self._book(1.0, 1.0, seq=2**62)

    # -- text -------------------------------------------------------------------------------------------
    def error_flood(self) -> str:
        code = self.rng.randrange(10**9)
        msg = FORGED + "x" * 2000
        if self.t.protocol == "binanceusdm":
            return orjson.dumps({"error": {"code": code, "msg": msg}, "id": self.rng.randrange(10**6)}).decode()
        if self.t.protocol == "bybit":
            return orjson.dumps({"success": False, "ret_msg": msg, "op": "subscribe",
                                 "req_id": str(self.rng.randrange(10**6)), "conn_id": msg}).decode()
        return orjson.dumps({"event": "error", "code": str(code), "msg": msg, "connId": msg}).decode()

    def deep(self) -> str:
        if self.rng.random() < 0.5 or not self.t.books:
            return DEEP
        m = orjson.loads(self._book(1.0, 1.0))
        if self.t.protocol == "okx":
            m["data"][0]["junk"] = None
        else:
            m["data"]["junk"] = None
        return orjson.dumps(m).decode().replace("null", DEEP, 1)

    def control(self) -> str:
        return self.rng.choice({
            "binanceusdm": ('{"id":{"a":1},"result":null}', '{"id":1,"error":"text"}', '{"id":[1],"code":2}',
                            '{"result":null}'),
            "bybit": ('{"op":{"x":1}}', '{"op":"subscribe","req_id":{"a":1},"success":"yes"}',
                      '{"op":["pong"]}', '{"success":true}'),
            "okx": ('{"event":"subscribe","arg":"tickers"}', '{"event":["error"]}',
                    '{"event":"subscribe","arg":{"channel":["x"],"instId":1}}', '{"event":"login","code":{}}'),
        }[self.t.protocol])

    def junk(self) -> str | bytes:
        return self.rng.choice(("not json", "{}", "[]", "null", "1e400", '{"data":1e400}', "\x00\xff",
                                b"\x00\x01\x02binary", '"' + "a" * 5000 + '"', "{" * 10 + "}" * 10))


class HostileProxy:
    """One venue's proxy; ``start`` returns its ``ws://`` base URL. ``enabled`` gates the injection;
    ``sent`` counts the hostile frames sent per category."""

    def __init__(self, upstream: str, protocol: str, rate_per_s: float,
                 categories: tuple[str, ...] = CATEGORIES, seed: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.protocol = protocol
        self.rate_per_s = rate_per_s
        self.categories = categories
        self.rng = random.Random(seed)
        self.enabled = False
        self.sent: Counter[str] = Counter()
        self.connections = 0
        self._server: Server | None = None

    async def start(self) -> str:
        self._server = await serve(self._handle, "127.0.0.1", 0, max_size=None, compression=None)
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> HostileProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, client: ServerConnection) -> None:
        path = client.request.path if client.request is not None else "/"
        self.connections += 1
        templates = Templates(self.protocol)
        live = asyncio.Event()
        try:
            async with (connect(self.upstream + path, max_size=None, compression=None, proxy=None) as up,
                        asyncio.TaskGroup() as tg):
                tasks = [tg.create_task(self._up(client, up), name="proxy-up"),
                         tg.create_task(self._down(up, client, templates, live), name="proxy-down"),
                         tg.create_task(self._inject(client, templates, live), name="proxy-inject")]
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in tasks:
                    t.cancel()
        except* (ConnectionClosed, OSError):
            pass

    @staticmethod
    async def _up(client: ServerConnection, up: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for msg in client:
                await up.send(msg)

    @staticmethod
    async def _down(up: ClientConnection, client: ServerConnection, templates: Templates,
                    live: asyncio.Event) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for msg in up:
                if templates.note(msg):
                    live.set()
                await client.send(msg)

    async def _inject(self, client: ServerConnection, templates: Templates, live: asyncio.Event) -> None:
        await live.wait()
        hostile = Hostile(templates, self.rng)
        loop = asyncio.get_running_loop()
        last = loop.time()
        owed = 0.0
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(0.01)
                now = loop.time()
                elapsed, last = now - last, now  # by the elapsed time: a busy loop still keeps the rate
                if not self.enabled:
                    continue
                owed += self.rate_per_s * elapsed
                while owed >= 1.0:
                    owed -= 1.0
                    cat = self.rng.choice(self.categories)
                    frame = hostile.frame(cat)
                    if frame is not None:
                        await client.send(frame)
                        self.sent[cat] += 1

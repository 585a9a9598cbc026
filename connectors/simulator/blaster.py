"""A rate-driven Binance USDⓈ-M frame pusher for benchmarks, in its own process.

It speaks enough of the Binance protocol for a connector: raw streams (``/ws/btcusdt@bookTicker/...``),
combined streams (``/stream?streams=...``, wrapped ``{"stream":..,"data":..}``), the routed ``/public`` and
``/market`` prefixes, and ``SUBSCRIBE``/``LIST_SUBSCRIPTIONS`` replies. Frames come from the seeded path
(``bookTicker`` and ``aggTrade`` for K symbols) and are pre-encoded as byte templates; at send time only the
update id and the event time are filled in and the websocket framing is written straight to the transport in
batches, so the sender is never the bottleneck. Each subscriber receives ``rate`` frames per second in total
(``0``: as fast as its socket drains) for ``seconds``, then is closed with 1000; the process prints a JSON
line ``{"sent":..,"seconds":..,"subscribers":..}``.

    python -m connectors.simulator.blaster --rate 50000 --seconds 10 --port 9443 --symbols 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, serve

from hedgewatch.connectors.simulator.market import PricePath
from hedgewatch.connectors.simulator.scenario import AssetSpec, Scenario, VenueSpec
from hedgewatch.connectors.simulator.venue import VenueModel, decimals

NAMES = ("BTC", "ETH", "SOL", "BNB", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "TRX", "LTC", "BCH", "NEAR")
PRICES = {"BTC": 65000.0, "ETH": 3200.0, "SOL": 150.0, "BNB": 600.0, "XRP": 0.6, "DOGE": 0.15}
POOL_STEPS = 512
BATCH_S = 0.001  # pacing granularity


@dataclass
class BlastResult:
    """What the blaster pushed: frames in total over all subscribers, and for how long."""

    sent: int
    seconds: float
    subscribers: int


def symbols_for(k: int) -> list[str]:
    return [NAMES[i] if i < len(NAMES) else f"A{i:03d}" for i in range(k)]


def build_pool(k: int, seed: int) -> dict[str, list[tuple[bytes, bytes]]]:
    """Byte templates per stream (``btcusdt@bookTicker``...): ``(head, tail)`` around ``u`` and the times.
    A frame is ``head + u + mid + ts + ',"E":' + ts + '}'``; ``mid`` is part of ``tail`` (split at ``|``)."""
    assets = {
        a: AssetSpec(
            price=PRICES.get(a, 10.0 * (1 + i % 7)), volatility=0.6, tick_size=0.0001, qty_step=0.001
        )
        for i, a in enumerate(symbols_for(k))
    }
    sc = Scenario(
        seed=seed,
        assets=assets,
        correlation=0.0,
        venues=(VenueSpec(name="blaster", protocol="binanceusdm", noise_bps=1.0),),
    )
    path = PricePath(sc, 1_700_000_000_000)
    model = VenueModel(sc.venues[0], path)
    pool: dict[str, list[tuple[bytes, bytes]]] = {}
    for _ in range(POOL_STEPS):
        path.step()
        model.step(1.0)
        for a, q in model.quotes.items():
            sym = f"{a}USDT"
            px, qx = decimals(0.0001), decimals(0.001)
            book = (
                f',"s":"{sym}","b":"{q.bid:.{px}f}","B":"{q.bid_qty:.{qx}f}","a":"{q.ask:.{px}f}",'
                f'"A":"{q.ask_qty:.{qx}f}","T":'
            )
            pool.setdefault(f"{sym.lower()}@bookTicker", []).append(
                (b'{"e":"bookTicker","u":', book.encode())
            )
            for _tid, price, qty, maker in q.trades:
                trade = (
                    f',"s":"{sym}","p":"{price:.{px}f}","q":"{qty:.{qx}f}","f":1,"l":1,"m":'
                    f'{"true" if maker else "false"},"T":'
                )
                pool.setdefault(f"{sym.lower()}@aggTrade", []).append(
                    (b'{"e":"aggTrade","a":', trade.encode())
                )
    return pool


def _frame_header(n: int) -> bytes:
    """Header of an unmasked, final text frame of ``n`` payload bytes (server to client)."""
    if n < 126:
        return bytes((0x81, n))
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big")
    return bytes((0x81, 127)) + n.to_bytes(8, "big")


class Blaster:
    """Serves the pool to every subscriber at ``rate`` frames/s each, for ``seconds`` each."""

    def __init__(self, rate: float, seconds: float, symbols: int = 10, seed: int = 1) -> None:
        self.rate = rate
        self.seconds = seconds
        self.pool = build_pool(symbols, seed)
        self.sent = 0
        self.subscribers = 0
        self.done = asyncio.Event()
        self._started = 0.0
        self._ended = 0.0

    async def handler(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path if ws.request else "/ws")
        parts = [p for p in url.path.split("/") if p and p not in ("public", "market")]
        combined = bool(parts) and parts[0] == "stream"
        streams = dict(parse_qsl(url.query)).get("streams", "").split("/") if combined else parts[1:]
        subs = [s for s in streams if s in self.pool]
        subscribed = asyncio.Event()
        if subs:
            subscribed.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._control(ws, subs, subscribed), name="blaster-control")
            await subscribed.wait()
            await self._push(ws, subs, combined)
            await ws.close(1000, "blast over")

    async def _control(self, ws: ServerConnection, subs: list[str], subscribed: asyncio.Event) -> None:
        """Answer SUBSCRIBE/LIST_SUBSCRIPTIONS as Binance does; other messages get an error reply."""
        with contextlib.suppress(Exception):
            async for msg in ws:
                try:
                    req = orjson.loads(msg)
                except orjson.JSONDecodeError:
                    await ws.send('{"code":3,"msg":"Invalid JSON","id":null}')
                    continue
                if req.get("method") == "SUBSCRIBE":
                    subs.extend(s for s in req.get("params", []) if s in self.pool and s not in subs)
                    await ws.send(orjson.dumps({"result": None, "id": req.get("id")}).decode())
                    if subs:
                        subscribed.set()
                elif req.get("method") == "LIST_SUBSCRIPTIONS":
                    await ws.send(orjson.dumps({"result": subs, "id": req.get("id")}).decode())

    async def _push(self, ws: ServerConnection, subs: list[str], combined: bool) -> None:
        self.subscribers += 1
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._started = self._started or time.perf_counter()
        cursors = dict.fromkeys(subs, 0)
        wraps = {
            s: (b'{"stream":"' + s.encode() + b'","data":', b"}") if combined else (b"", b"") for s in subs
        }
        transport = ws.transport
        per_batch = max(1, round(self.rate * BATCH_S)) if self.rate > 0 else 256
        u = 1
        k = 0
        order = list(subs)
        while not transport.is_closing():
            now = loop.time()
            if now - start >= self.seconds:
                break
            ts = b"%d" % int(time.time() * 1000)
            chunks = []
            for _ in range(per_batch):
                s = order[k % len(order)]
                k += 1
                templates = self.pool[s]
                i = cursors[s]
                cursors[s] = (i + 1) % len(templates)
                head, tail = templates[i]
                w0, w1 = wraps[s]
                payload = b'%b%b%d%b%b,"E":%b}%b' % (w0, head, u, tail, ts, ts, w1)
                u += 1
                chunks.append(_frame_header(len(payload)))
                chunks.append(payload)
            try:
                transport.write(b"".join(chunks))
            except RuntimeError:
                break  # the subscriber closed its side (write after EOF): its blast is over
            self.sent += per_batch
            await ws.drain()
            if self.rate > 0:
                due = start + (k / self.rate)
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
        self._ended = time.perf_counter()
        self.done.set()

    def result(self) -> BlastResult:
        return BlastResult(self.sent, max(0.0, self._ended - self._started), self.subscribers)


async def run_blaster(
    rate: float, seconds: float, port: int = 0, symbols: int = 10, seed: int = 1, on_ready: Any = None
) -> BlastResult:
    """Serve until the first subscriber's blast is over; ``on_ready(port)`` once listening."""
    blaster = Blaster(rate, seconds, symbols, seed)
    async with serve(
        blaster.handler,
        "127.0.0.1",
        port,
        compression=None,
        write_limit=1 << 20,
        ping_interval=None,
        max_queue=None,
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        if on_ready is not None:
            on_ready(bound)
        await blaster.done.wait()
    return blaster.result()


def _child(rate: float, seconds: float, port: int, symbols: int, seed: int, conn: Any) -> None:
    result = asyncio.run(run_blaster(rate, seconds, port, symbols, seed, on_ready=conn.send))
    conn.send(asdict(result))


class BlasterProcess:
    """The blaster in a separate process (``spawn``), for benchmarks: ``port`` once started, ``result()``
    after the first subscriber has been served."""

    def __init__(self, rate: float, seconds: float, symbols: int = 10, seed: int = 1, port: int = 0) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_child,
            args=(rate, seconds, port, symbols, seed, child),
            name="hedgewatch-blaster",
            daemon=True,
        )
        self.process.start()
        if not self._conn.poll(60):
            self.process.kill()
            raise RuntimeError("the blaster did not start within 60 s")
        self.port: int = self._conn.recv()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def result(self, timeout: float = 120.0) -> BlastResult:
        if not self._conn.poll(timeout):
            raise TimeoutError("the blaster did not report")
        return BlastResult(**self._conn.recv())

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--rate", type=float, default=0.0, help="frames/s to each subscriber; 0 = as fast as possible"
    )
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--symbols", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    def ready(port: int) -> None:
        sys.stderr.write(f"blaster listening on ws://127.0.0.1:{port}\n")

    result = asyncio.run(run_blaster(args.rate, args.seconds, args.port, args.symbols, args.seed, ready))
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The benchmark pusher speaks the Binance stream format and keeps its rate."""

from __future__ import annotations

import asyncio
import itertools

import orjson
import websockets

from hedgewatch.connectors.simulator.blaster import Blaster, run_blaster


async def serve(rate: float, seconds: float) -> tuple[asyncio.Task, int]:
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_blaster(rate, seconds, symbols=3, on_ready=ready.set_result), name="blaster"
    )
    return task, await asyncio.wait_for(ready, 10)


async def drain(ws: websockets.ClientConnection) -> list[dict]:
    frames = []
    try:
        async for msg in ws:
            frames.append(orjson.loads(msg))
    except websockets.ConnectionClosed:
        pass
    return frames


async def test_combined_stream_at_a_fixed_rate() -> None:
    task, port = await serve(rate=2000, seconds=0.5)
    url = f"ws://127.0.0.1:{port}/stream?streams=btcusdt@bookTicker/ethusdt@aggTrade"
    async with websockets.connect(url) as ws:
        frames = await drain(ws)
    result = await task
    assert result.sent == len(frames) and 900 <= len(frames) <= 1100
    assert {f["stream"] for f in frames} == {"btcusdt@bookTicker", "ethusdt@aggTrade"}
    books = [f["data"] for f in frames if f["stream"] == "btcusdt@bookTicker"]
    assert set(books[0]) == {"e", "u", "s", "b", "B", "a", "A", "T", "E"}
    assert all(b["u"] > a["u"] for a, b in itertools.pairwise(books))
    assert 30_000 < float(books[0]["b"]) < 100_000


async def test_raw_stream_after_subscribe() -> None:
    task, port = await serve(rate=1000, seconds=0.2)
    async with websockets.connect(f"ws://127.0.0.1:{port}/public/ws") as ws:
        await ws.send('{"method":"SUBSCRIBE","params":["solusdt@bookTicker"],"id":1}')
        frames = await drain(ws)
    await task
    assert frames[0] == {"result": None, "id": 1}
    assert all(f["e"] == "bookTicker" and f["s"] == "SOLUSDT" for f in frames[1:]) and len(frames) > 100


def test_pool_is_deterministic() -> None:
    assert Blaster(0, 0, symbols=2, seed=4).pool == Blaster(0, 0, symbols=2, seed=4).pool

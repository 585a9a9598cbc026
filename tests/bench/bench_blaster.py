"""How fast one blaster process pushes Binance frames, and how fast a bare client can take them.

    python -m tests.bench.bench_blaster [--seconds 3] [--runs 3]

Row 1: the blaster to a raw TCP reader that only counts bytes (the sender's own ceiling).
Row 2: the blaster to a bare ``websockets`` client decoding each frame with orjson (the receive floor the
pipeline benchmark compares against). Medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import orjson
import websockets

from hedgewatch.connectors.simulator.blaster import BlasterProcess

STREAMS = "/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker/solusdt@bookTicker/btcusdt@aggTrade"


async def raw_reader(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    writer.write(
        f"GET {STREAMS} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    total = 0
    while chunk := await reader.read(1 << 20):
        total += len(chunk)
    writer.close()
    return total


async def ws_client(url: str) -> tuple[int, float]:
    n = 0
    async with websockets.connect(url + STREAMS, max_size=None, compression=None) as ws:
        t0 = time.perf_counter()
        try:
            async for msg in ws:
                frame = orjson.loads(msg)["data"]
                float(frame.get("b") or frame.get("p"))
                n += 1
        except websockets.ConnectionClosed:
            pass
        return n, time.perf_counter() - t0


def run(seconds: float, raw: bool) -> float:
    blaster = BlasterProcess(rate=0, seconds=seconds, symbols=10)
    try:
        if raw:
            asyncio.run(raw_reader(blaster.port))
        else:
            asyncio.run(ws_client(blaster.ws_url))
        result = blaster.result()
    finally:
        blaster.close()
    return result.sent / result.seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for label, raw in (("blaster -> raw TCP reader", True), ("blaster -> websockets + orjson client", False)):
        rates = [run(args.seconds, raw) for _ in range(args.runs)]
        rows.append((label, statistics.median(rates), min(rates), max(rates)))
    print(f"{'path':42} {'median frames/s':>16} {'min':>12} {'max':>12}")
    for label, med, lo, hi in rows:
        print(f"{label:42} {med:16,.0f} {lo:12,.0f} {hi:12,.0f}")
    print(f"ratio client/sender: {rows[1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main()

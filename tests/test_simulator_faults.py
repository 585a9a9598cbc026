"""Each scripted fault does what the scenario format says, and the frames agree with the prices the
simulator reports. The clock is driven by hand (``Simulator.step``) so every frame is known exactly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from hedgewatch.connectors.simulator import Simulator, parse_scenario

SCENARIO = """
seed: 9
tick_interval_s: 0.1
speed: 0.0001          # the clock never ticks by itself during a test: steps are taken by hand
history_days: 2
assets:
  BTC: {price: 60000, volatility: 0.5, tick_size: 0.1, qty_step: 0.001, okx_ct_val: 0.01}
  ETH: {price: 3000, volatility: 0.7, tick_size: 0.01, qty_step: 0.001, okx_ct_val: 0.1}
venues:
  - {name: bn, protocol: binanceusdm, noise_bps: 1, rates: {bookTicker: 10, markPrice: 10, aggTrade: 10}}
  - {name: by, protocol: bybit, noise_bps: 1, rates: {tickers: 10}}
  - {name: ok, protocol: okx, noise_bps: 1, rates: {tickers: 10}}
faults:
"""


async def started(faults: str = "  []") -> Simulator:
    text = (
        SCENARIO.replace("faults:\n", "faults:\n" + faults + "\n")
        if faults.strip() != "[]"
        else SCENARIO.replace("faults:\n", "")
    )
    sim = Simulator(parse_scenario(text))
    await sim.start()
    return sim


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    s = await started()
    yield s
    await s.close()


def url(sim: Simulator, venue: str, path: str) -> str:
    return next(e.ws_url for e in sim.endpoints if e.name == venue) + path


async def recv_json(ws: websockets.ClientConnection) -> Any:
    return orjson.loads(await asyncio.wait_for(ws.recv(), 5))


async def next_book(ws: websockets.ClientConnection) -> dict[str, Any]:
    while (frame := await recv_json(ws)).get("e") != "bookTicker":
        pass
    return frame


async def test_frames_agree_with_venue_and_reference_prices(sim: Simulator) -> None:
    async with (
        websockets.connect(url(sim, "bn", "/ws/btcusdt@bookTicker")) as bn,
        websockets.connect(url(sim, "by", "/v5/public/linear")) as by,
        websockets.connect(url(sim, "ok", "/ws/v5/public")) as ok,
    ):
        await by.send('{"op":"subscribe","args":["tickers.BTCUSDT"]}')
        await ok.send('{"op":"subscribe","args":[{"channel":"tickers","instId":"BTC-USDT-SWAP"}]}')
        await recv_json(by)  # ack
        state = (await recv_json(by))["data"]
        await recv_json(ok)  # ack
        await recv_json(ok)  # the current ticker right after the ack
        for _ in range(5):
            sim.step()
            ref = sim.reference_price("BTC")
            book = await next_book(bn)
            state.update((await recv_json(by))["data"])
            okt = (await recv_json(ok))["data"][0]
            for venue, bid, ask in (
                ("bn", book["b"], book["a"]),
                ("by", state["bid1Price"], state["ask1Price"]),
                ("ok", okt["bidPx"], okt["askPx"]),
            ):
                mid = (float(bid) + float(ask)) / 2
                assert mid == pytest.approx(sim.venue_price(venue, "BTC"), rel=1e-12)
                assert abs(mid / ref - 1) < 10e-4


async def test_drop_aborts_without_a_close_frame_and_refuses_meanwhile() -> None:
    sim = await started("  - {at_s: 0.2, venue: bn, kind: drop, duration_s: 0.3}")
    try:
        async with websockets.connect(url(sim, "bn", "/ws/btcusdt@bookTicker")) as ws:
            sim.step()
            await next_book(ws)
            sim.step()  # 0.2 s: the drop fires
            with pytest.raises(websockets.ConnectionClosedError) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is None  # no close frame: the peer vanished
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(url(sim, "bn", "/ws"))
        assert refused.value.response.status_code == 503
        for _ in range(3):
            sim.step()  # 0.5 s: the fault is over
        async with websockets.connect(url(sim, "bn", "/ws/btcusdt@bookTicker")) as ws:
            sim.step()
            assert (await next_book(ws))["s"] == "BTCUSDT"
    finally:
        await sim.close()


async def test_disconnect_closes_with_1001() -> None:
    sim = await started("  - {at_s: 0.1, venue: by, kind: disconnect}")
    try:
        async with websockets.connect(url(sim, "by", "/v5/public/linear")) as ws:
            sim.step()
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    finally:
        await sim.close()


async def test_stall_keeps_the_socket_open_and_silent() -> None:
    sim = await started("  - {at_s: 0.2, venue: bn, kind: stall, duration_s: 0.5}")
    try:
        async with websockets.connect(url(sim, "bn", "/ws/btcusdt@bookTicker")) as ws:
            sim.step()
            first = await next_book(ws)
            srv = sim.servers["bn"]
            sent = srv.sent["bookTicker"]
            for _ in range(4):
                sim.step()  # 0.2 .. 0.5 s: stalled
            assert srv.sent["bookTicker"] == sent
            await asyncio.wait_for(await ws.ping(), 5)  # the socket is alive and answers pings
            for _ in range(3):
                sim.step()  # 0.7 s: data again
            after = await next_book(ws)
            assert after["u"] > first["u"] + 5
    finally:
        await sim.close()


async def test_stall_channel_silences_one_channel_only() -> None:
    sim = await started("  - {at_s: 0.1, venue: bn, kind: stall_channel, channel: bookTicker, duration_s: 5}")
    try:
        streams = "btcusdt@bookTicker/btcusdt@markPrice@1s"
        async with websockets.connect(url(sim, "bn", f"/stream?streams={streams}")) as ws:
            for _ in range(4):
                sim.step()
            kinds = [(await recv_json(ws))["stream"] for _ in range(4)]
            assert kinds == ["btcusdt@markPrice@1s"] * 4
    finally:
        await sim.close()


async def test_garbage_then_good_frames() -> None:
    sim = await started("  - {at_s: 0.1, venue: ok, kind: garbage, count: 2}")
    try:
        async with websockets.connect(url(sim, "ok", "/ws/v5/public")) as ws:
            await ws.send('{"op":"subscribe","args":[{"channel":"tickers","instId":"ETH-USDT-SWAP"}]}')
            await recv_json(ws)
            await recv_json(ws)
            sim.step()
            raw = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
            for text in raw[:2]:
                with pytest.raises(orjson.JSONDecodeError):
                    orjson.loads(text)
            assert orjson.loads(raw[2])["data"][0]["instId"] == "ETH-USDT-SWAP"
    finally:
        await sim.close()


async def test_absurd_price_for_a_given_number_of_frames() -> None:
    sim = await started("  - {at_s: 0.1, venue: bn, kind: absurd_price, asset: BTC, value: 1000, count: 1}")
    try:
        async with websockets.connect(url(sim, "bn", "/ws/btcusdt@bookTicker")) as ws:
            sim.step()
            absurd = await next_book(ws)
            sim.step()
            normal = await next_book(ws)
            assert float(absurd["b"]) > 500 * sim.reference_price("BTC")
            assert abs(float(normal["b"]) / sim.reference_price("BTC") - 1) < 0.001
    finally:
        await sim.close()


async def test_lag_quotes_the_path_as_it_was() -> None:
    sim = await started("  - {at_s: 0.1, venue: bn, kind: lag, value: 0.5, duration_s: 10}")
    try:
        async with websockets.connect(url(sim, "bn", "/ws/btcusdt@bookTicker")) as ws:
            for _ in range(10):
                sim.step()
            frames = [await next_book(ws) for _ in range(10)]
            assert sim.path is not None
            assert frames[-1]["E"] == sim.path.now_ms - 500
            then_ms, prices = sim.path.lookback(0.5)
            mid = (float(frames[-1]["b"]) + float(frames[-1]["a"])) / 2
            assert then_ms == frames[-1]["E"] and abs(mid / prices["BTC"] - 1) < 0.001
    finally:
        await sim.close()


async def test_manipulated_venue_quotes_fifty_percent_higher() -> None:
    sim = await started(
        "  - {at_s: 0.1, venue: by, kind: manipulate, asset: BTC, value: 0.5, duration_s: 10}"
    )
    try:
        sim.step()
        assert sim.venue_price("by", "BTC") / sim.reference_price("BTC") == pytest.approx(1.5, rel=0.001)
        assert sim.venue_price("bn", "BTC") / sim.reference_price("BTC") == pytest.approx(1.0, rel=0.001)
        assert sim.venue_price("by", "ETH") / sim.reference_price("ETH") == pytest.approx(1.0, rel=0.001)
    finally:
        await sim.close()


async def test_kline_closes_its_bar_with_x_true() -> None:
    text = SCENARIO.replace("faults:\n", "start_time_ms: 1790000040000\n")  # minute-aligned
    text = text.replace("tick_interval_s: 0.1", "tick_interval_s: 20")
    sim = Simulator(parse_scenario(text.replace("aggTrade: 10}", "aggTrade: 10, kline: 1}")))
    await sim.start()
    try:
        async with websockets.connect(url(sim, "bn", "/market/ws/btcusdt@kline_1m")) as ws:
            frames = []
            for _ in range(4):  # to 80 s after a minute's start: exactly one minute boundary
                sim.step()
            while len(frames) < 5:
                frames.append((await recv_json(ws))["k"])
            closed = [k for k in frames if k["x"]]
            assert len(closed) == 1
            after = frames[frames.index(closed[0]) + 1]
            assert after["t"] == closed[0]["T"] + 1 and after["x"] is False
            assert after["o"] != "" and closed[0]["c"] != ""
    finally:
        await sim.close()

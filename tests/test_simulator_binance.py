"""The simulator's Binance USDⓈ-M venue against raw websockets and HTTP clients on loopback."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
import websockets

from hedgewatch.connectors.simulator import Scenario, Simulator, parse_scenario

SCENARIO = """
seed: 3
tick_interval_s: 0.02
speed: 5
history_days: 3
assets:
  BTC: {price: 60000, volatility: 0.5, tick_size: 0.1, qty_step: 0.001}
  ETH: {price: 3000, volatility: 0.7, tick_size: 0.01, qty_step: 0.001}
composite_indexes:
  - {symbol: DEFIUSDT, weights: {BTC: 0.5, ETH: 0.5}}
venues:
  - name: bn
    protocol: binanceusdm
    noise_bps: 1
    spread_bps: 0.5
    rates: {bookTicker: 50, markPrice: 10, aggTrade: 50, kline: 10, ticker: 10, depth: 10,
            compositeIndex: 10}
"""

BOOK_TICKER_KEYS = {"e", "u", "s", "b", "B", "a", "A", "T", "E"}
MARK_KEYS = {"e", "E", "s", "p", "i", "P", "r", "T"}
AGG_KEYS = {"e", "E", "a", "s", "p", "q", "f", "l", "T", "m"}


@pytest.fixture
def scenario() -> Scenario:
    return parse_scenario(SCENARIO)


async def recv_json(ws: websockets.ClientConnection) -> dict:
    return orjson.loads(await asyncio.wait_for(ws.recv(), 5))


async def test_raw_stream_payloads_are_unwrapped(scenario: Scenario) -> None:
    async with Simulator(scenario) as sim:
        url = sim.endpoints[0].ws_url
        async with websockets.connect(f"{url}/public/ws/btcusdt@bookTicker") as ws:
            frame = await recv_json(ws)
        assert set(frame) == BOOK_TICKER_KEYS
        assert frame["e"] == "bookTicker" and frame["s"] == "BTCUSDT"
        assert float(frame["a"]) > float(frame["b"]) > 0


async def test_all_market_book_ticker(scenario: Scenario) -> None:
    async with (
        Simulator(scenario) as sim,
        websockets.connect(f"{sim.endpoints[0].ws_url}/public/ws/!bookTicker") as ws,
    ):
        symbols = set()
        while symbols != {"BTCUSDT", "ETHUSDT", "DEFIUSDT"}:
            symbols.add((await recv_json(ws))["s"])


async def test_combined_stream_wraps_and_names_the_stream(scenario: Scenario) -> None:
    async with Simulator(scenario) as sim:
        url = sim.endpoints[0].ws_url
        streams = "btcusdt@markPrice@1s/ethusdt@aggTrade"
        async with websockets.connect(f"{url}/market/stream?streams={streams}") as ws:
            seen: dict[str, dict] = {}
            while len(seen) < 2:
                frame = await recv_json(ws)
                assert set(frame) == {"stream", "data"}
                seen[frame["stream"]] = frame["data"]
        assert set(seen["btcusdt@markPrice@1s"]) == MARK_KEYS
        assert set(seen["ethusdt@aggTrade"]) == AGG_KEYS
        mark = seen["btcusdt@markPrice@1s"]
        assert mark["e"] == "markPriceUpdate" and mark["T"] % (8 * 3_600_000) == 0


async def test_subscribe_unsubscribe_list(scenario: Scenario) -> None:
    async with Simulator(scenario) as sim:
        url = sim.endpoints[0].ws_url
        async with websockets.connect(f"{url}/ws") as ws:
            params = ["ethusdt@bookTicker", "ethusdt@kline_1m"]
            await ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": params, "id": 7}).decode())
            reply = await recv_json(ws)
            while "id" not in reply:
                reply = await recv_json(ws)
            assert reply == {"result": None, "id": 7}
            kinds = set()
            while kinds != {"bookTicker", "kline"}:
                kinds.add((await recv_json(ws))["e"])
            await ws.send('{"method":"UNSUBSCRIBE","params":["ethusdt@kline_1m"],"id":8}')
            await ws.send('{"method":"LIST_SUBSCRIPTIONS","id":9}')
            replies = {}
            while 9 not in replies:
                frame = await recv_json(ws)
                if "id" in frame:
                    replies[frame["id"]] = frame
            assert replies[8] == {"result": None, "id": 8}
            assert replies[9] == {"result": ["ethusdt@bookTicker"], "id": 9}


async def test_wrong_route_and_bad_requests_are_refused(scenario: Scenario) -> None:
    async with Simulator(scenario) as sim:
        url = sim.endpoints[0].ws_url
        async with websockets.connect(f"{url}/public/ws") as ws:
            await ws.send('{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}')
            assert (await recv_json(ws))["code"] == 2
            await ws.send("not json")
            assert (await recv_json(ws))["code"] == 3


async def test_more_than_ten_messages_a_second_disconnects(scenario: Scenario) -> None:
    async with Simulator(scenario) as sim:
        url = sim.endpoints[0].ws_url
        async with websockets.connect(f"{url}/ws") as ws:
            for i in range(11):
                await ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}).decode())
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_server_pings_and_connection_lifetime(scenario: Scenario) -> None:
    venue = scenario.venues[0].model_copy(update={"ping_interval_s": 0.05, "max_connection_age_s": 0.5})
    scenario = scenario.model_copy(update={"venues": (venue,)})
    async with Simulator(scenario) as sim:
        url = sim.endpoints[0].ws_url
        # A client that never answers pings is dropped after the pong timeout; ours answers, so it lives
        # until the lifetime limit closes it with 1001.
        async with websockets.connect(f"{url}/ws", ping_interval=None) as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001


async def test_server_pings_a_raw_client_and_drops_it_without_pong(scenario: Scenario) -> None:
    venue = scenario.venues[0].model_copy(update={"ping_interval_s": 0.05, "pong_timeout_s": 0.2})
    async with Simulator(scenario.model_copy(update={"venues": (venue,)})) as sim:
        port = int(sim.endpoints[0].ws_url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        opcodes = []
        while True:  # a client that never answers: pings, then the server gives up and closes
            hdr = await asyncio.wait_for(reader.readexactly(2), 5)
            opcodes.append(hdr[0] & 0x0F)
            await reader.readexactly(hdr[1] & 0x7F)
            if opcodes[-1] == 0x8:
                break
        assert opcodes[0] == 0x9 and opcodes[-1] == 0x8
        writer.close()


async def test_rest_endpoints(scenario: Scenario) -> None:
    async with Simulator(scenario) as sim, httpx.AsyncClient(base_url=sim.endpoints[0].rest_url) as http:
        info = (await http.get("/fapi/v1/exchangeInfo")).json()
        btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
        assert (btc["baseAsset"], btc["quoteAsset"], btc["contractType"], btc["status"]) == (
            "BTC",
            "USDT",
            "PERPETUAL",
            "TRADING",
        )
        assert {f["filterType"] for f in btc["filters"]} >= {"PRICE_FILTER", "LOT_SIZE"}
        prem = (await http.get("/fapi/v1/premiumIndex", params={"symbol": "BTCUSDT"})).json()
        assert set(prem) == {
            "symbol",
            "markPrice",
            "indexPrice",
            "estimatedSettlePrice",
            "lastFundingRate",
            "interestRate",
            "nextFundingTime",
            "time",
        }
        assert len((await http.get("/fapi/v1/premiumIndex")).json()) == 3  # BTC, ETH and the composite
        oi = (await http.get("/fapi/v1/openInterest", params={"symbol": "BTCUSDT"})).json()
        assert set(oi) == {"openInterest", "symbol", "time"} and float(oi["openInterest"]) > 0
        bad = await http.get("/fapi/v1/openInterest", params={"symbol": "NOPEUSDT"})
        assert bad.status_code == 400 and bad.json()["code"] == -1121
        kl = (
            await http.get("/fapi/v1/klines", params={"symbol": "BTCUSDT", "interval": "1h", "limit": 50})
        ).json()
        assert len(kl) == 50 and all(len(row) == 12 for row in kl)
        assert all(kl[i][0] + 3_600_000 == kl[i + 1][0] for i in range(49))
        assert abs(float(kl[-1][4]) / sim.reference_price("BTC") - 1) < 0.01
        idx = (await http.get("/fapi/v1/indexInfo")).json()
        assert idx[0]["symbol"] == "DEFIUSDT"
        assert {a["baseAsset"] for a in idx[0]["baseAssetList"]} == {"BTC", "ETH"}


async def test_composite_index_perpetual_is_quoted_and_published(scenario: Scenario) -> None:
    async with Simulator(scenario) as sim, httpx.AsyncClient(base_url=sim.endpoints[0].rest_url) as http:
        info = (await http.get("/fapi/v1/exchangeInfo")).json()
        defi = next(s for s in info["symbols"] if s["symbol"] == "DEFIUSDT")
        assert (defi["baseAsset"], defi["underlyingType"], defi["contractType"]) == (
            "DEFI",
            "INDEX",
            "PERPETUAL",
        )
        idx = (await http.get("/fapi/v1/indexInfo", params={"symbol": "DEFIUSDT"})).json()[0]
        units = {a["baseAsset"]: float(a["weightInQuantity"]) for a in idx["baseAssetList"]}
        streams = "defiusdt@compositeIndex/defiusdt@bookTicker"
        async with websockets.connect(f"{sim.endpoints[0].ws_url}/stream?streams={streams}") as ws:
            seen: dict[str, dict] = {}
            while len(seen) < 2:
                frame = await recv_json(ws)
                seen[frame["stream"]] = frame["data"]
        comp = seen["defiusdt@compositeIndex"]
        value = sum(units[c["b"]] * float(c["i"]) for c in comp["c"])
        assert float(comp["p"]) == pytest.approx(value, rel=1e-6)  # units printed with 8 decimals
        book = seen["defiusdt@bookTicker"]
        assert abs((float(book["b"]) + float(book["a"])) / 2 / float(comp["p"]) - 1) < 0.002

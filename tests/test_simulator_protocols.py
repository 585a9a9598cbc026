"""The simulator's Bybit v5 and OKX v5 venues against raw websockets/HTTP clients, checked against the
recorded frames in tests/frames/ (field sets and shapes)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import orjson
import pytest
import websockets

from hedgewatch.connectors.simulator import Scenario, Simulator, parse_scenario
from tests.support import FRAMES

SCENARIO = """
seed: 5
tick_interval_s: 0.02
history_days: 3
assets:
  BTC: {price: 60000, volatility: 0.5, tick_size: 0.1, qty_step: 0.001, okx_ct_val: 0.01}
  ETH: {price: 3000, volatility: 0.7, tick_size: 0.01, qty_step: 0.001, okx_ct_val: 0.1}
venues:
  - {name: by, protocol: bybit, rates: {tickers: 50, publicTrade: 25, kline: 10}}
  - name: ok
    protocol: okx
    rates: {tickers: 50, mark-price: 10, index-tickers: 10, funding-rate: 10, open-interest: 10, trades: 25,
            candle: 10}
"""


def frames(name: str) -> dict[str, Any]:
    return json.loads((FRAMES / name).read_text())


@pytest.fixture
def scenario() -> Scenario:
    return parse_scenario(SCENARIO)


async def recv_json(ws: websockets.ClientConnection) -> Any:
    return orjson.loads(await asyncio.wait_for(ws.recv(), 5))


async def test_bybit_snapshot_then_deltas_with_only_changed_fields(scenario: Scenario) -> None:
    recorded = frames("bybit.ws.watchTicker.linear.json")
    snap_rec, delta_rec = recorded["messages"]
    async with (
        Simulator(scenario) as sim,
        websockets.connect(f"{sim.endpoints[0].ws_url}/v5/public/linear") as ws,
    ):
        await ws.send(orjson.dumps({"op": "subscribe", "args": ["tickers.BTCUSDT"], "req_id": "r1"}).decode())
        ack = await recv_json(ws)
        assert ack["success"] is True and ack["op"] == "subscribe" and ack["req_id"] == "r1"
        assert set(ack) == {"success", "ret_msg", "conn_id", "req_id", "op"} and ack["ret_msg"] == ""
        snap = await recv_json(ws)
        assert set(snap) == set(snap_rec) and snap["type"] == "snapshot"
        assert set(snap["data"]) == set(snap_rec["data"])
        state = dict(snap["data"])
        last_cs = snap["cs"]
        partial = 0
        for _ in range(20):
            delta = await recv_json(ws)
            assert set(delta) == set(delta_rec) and delta["type"] == "delta"
            assert delta["cs"] > last_cs
            last_cs = delta["cs"]
            changed = {k: v for k, v in delta["data"].items() if k != "symbol"}
            assert delta["data"]["symbol"] == "BTCUSDT" and changed
            assert all(state[k] != v for k, v in changed.items()), "a delta repeated an unchanged field"
            partial += len(delta["data"]) < len(state)
            state.update(changed)
        assert partial == 20
        # the merged state is the venue's current quote
        await ws.send('{"op":"ping"}')
        while "op" not in (msg := await recv_json(ws)):
            state.update(msg["data"])
        assert msg["ret_msg"] == "pong" and msg["op"] == "ping" and msg["success"] is True


async def test_bybit_trades_klines_and_refusals(scenario: Scenario) -> None:
    async with (
        Simulator(scenario) as sim,
        websockets.connect(f"{sim.endpoints[0].ws_url}/v5/public/linear") as ws,
    ):
        await ws.send('{"op":"subscribe","args":["publicTrade.ETHUSDT","kline.1.ETHUSDT"]}')
        assert (await recv_json(ws))["success"] is True
        seen: dict[str, Any] = {}
        while len(seen) < 2:
            msg = await recv_json(ws)
            seen[msg["topic"].split(".")[0]] = msg
        trade = seen["publicTrade"]["data"][0]
        assert {"T", "s", "S", "v", "p", "L", "i", "BT"} <= set(trade) and trade["S"] in ("Buy", "Sell")
        bar = seen["kline"]["data"][0]
        assert set(bar) == {
            "start",
            "end",
            "interval",
            "open",
            "close",
            "high",
            "low",
            "volume",
            "turnover",
            "confirm",
            "timestamp",
        }
        await ws.send('{"op":"subscribe","args":["tickers.NOPEUSDT"],"req_id":"x"}')
        while "op" not in (msg := await recv_json(ws)):
            pass
        assert msg["success"] is False and "tickers.NOPEUSDT" in msg["ret_msg"]


async def test_bybit_drops_a_client_that_does_not_ping(scenario: Scenario) -> None:
    venue = scenario.venues[0].model_copy(update={"idle_timeout_s": 0.3})
    async with Simulator(scenario.model_copy(update={"venues": (venue,)})) as sim:
        url = f"{sim.endpoints[0].ws_url}/v5/public/linear"
        async with websockets.connect(url) as pinger, websockets.connect(url) as silent:
            await pinger.send('{"op":"subscribe","args":["tickers.BTCUSDT"]}')
            # The pinger pings on every frame it receives; the silent client sends nothing at all.
            while silent.state is not websockets.State.CLOSED:
                if "topic" in await recv_json(pinger):  # one ping per data frame, every pong read too
                    await pinger.send('{"op":"ping"}')
            assert silent.close_code == 1000 and silent.close_reason == "idle timeout"
            assert pinger.state is websockets.State.OPEN


async def test_bybit_rest_shapes(scenario: Scenario) -> None:
    tick_rec = frames("bybit.fetchTicker.json")["fetchTicker"][0]["httpResponse"]
    fund_rec = frames("bybit.fetchFundingRate.json")["fetchFundingRate"][0]["httpResponse"]
    oi_rec = frames("bybit.fetchOpenInterest.json")["fetchOpenInterest"][0]["httpResponse"]
    async with Simulator(scenario) as sim, httpx.AsyncClient(base_url=sim.endpoints[0].rest_url) as http:
        tick = (
            await http.get("/v5/market/tickers", params={"category": "linear", "symbol": "BTCUSDT"})
        ).json()
        assert set(tick) == set(tick_rec) and tick["retCode"] == 0
        row = tick["result"]["list"][0]
        assert set(tick_rec["result"]["list"][0]) <= set(row) <= set(fund_rec["result"]["list"][0])
        oi = (
            await http.get(
                "/v5/market/open-interest",
                params={"category": "linear", "symbol": "BTCUSDT", "intervalTime": "5min", "limit": 3},
            )
        ).json()
        assert set(oi["result"]) == set(oi_rec["result"]) and len(oi["result"]["list"]) == 3
        assert set(oi["result"]["list"][0]) == set(oi_rec["result"]["list"][0])
        inst = (await http.get("/v5/market/instruments-info", params={"category": "linear"})).json()
        btc = inst["result"]["list"][0]
        assert (btc["symbol"], btc["baseCoin"], btc["quoteCoin"], btc["contractType"], btc["status"]) == (
            "BTCUSDT",
            "BTC",
            "USDT",
            "LinearPerpetual",
            "Trading",
        )
        kl = (
            await http.get(
                "/v5/market/kline",
                params={"category": "linear", "symbol": "BTCUSDT", "interval": "60", "limit": 5},
            )
        ).json()
        starts = [int(r[0]) for r in kl["result"]["list"]]
        assert starts == sorted(starts, reverse=True) and len(starts) == 5
        fh = (
            await http.get(
                "/v5/market/funding/history", params={"category": "linear", "symbol": "BTCUSDT", "limit": 2}
            )
        ).json()
        assert set(fh["result"]["list"][0]) == {"symbol", "fundingRate", "fundingRateTimestamp"}
        bad = (await http.get("/v5/market/tickers", params={"category": "linear", "symbol": "NOPE"})).json()
        assert bad["retCode"] == 10001


async def test_okx_subscribe_ack_channels_and_ping(scenario: Scenario) -> None:
    recorded = frames("okx.ws.watchTicker.swap.json")
    ack_rec, tick_rec = recorded["messages"][0], recorded["messages"][1]
    async with (
        Simulator(scenario) as sim,
        websockets.connect(f"{sim.endpoints[1].ws_url}/ws/v5/public") as ws,
    ):
        args = [
            {"channel": c, "instId": "BTC-USDT-SWAP"}
            for c in ("tickers", "mark-price", "funding-rate", "open-interest")
        ]
        args.append({"channel": "index-tickers", "instId": "BTC-USDT"})
        await ws.send(orjson.dumps({"op": "subscribe", "args": args}).decode())
        acks, data = [], {}
        while len(acks) < 5 or len(data) < 5:
            msg = await recv_json(ws)
            if "event" in msg:
                assert set(msg) == set(ack_rec) and msg["event"] == "subscribe"
                acks.append(msg["arg"])
            else:
                data[msg["arg"]["channel"]] = msg
        assert acks == args
        assert set(data["tickers"]) == set(tick_rec) and set(data["tickers"]["data"][0]) == set(
            tick_rec["data"][0]
        )
        assert set(data["mark-price"]["data"][0]) == {"instType", "instId", "markPx", "ts"}
        assert data["index-tickers"]["data"][0]["instId"] == "BTC-USDT"
        fr = data["funding-rate"]["data"][0]
        assert {"fundingRate", "fundingTime", "nextFundingTime", "instId"} <= set(fr)
        oi = data["open-interest"]["data"][0]
        # sizes in contracts: oi x ctVal = oiCcy
        assert float(oi["oi"]) * 0.01 == pytest.approx(float(oi["oiCcy"]), rel=1e-4)
        await ws.send("ping")
        while (raw := await asyncio.wait_for(ws.recv(), 5)) != "pong":
            assert raw.startswith("{")
        await ws.send('{"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT-SWAP"}]}')
        while (msg := await recv_json(ws)).get("event") is None:
            pass
        assert msg["event"] == "error" and msg["code"] == "60018"  # candles live on /business


async def test_okx_business_candles_and_idle_close(scenario: Scenario) -> None:
    venue = scenario.venues[1].model_copy(update={"idle_timeout_s": 0.3})
    async with Simulator(scenario.model_copy(update={"venues": (venue,)})) as sim:
        base = sim.endpoints[0].ws_url
        async with websockets.connect(f"{base}/ws/v5/business") as ws:
            await ws.send(
                '{"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT-SWAP"},'
                '{"channel":"index-candle1H","instId":"BTC-USDT"}]}'
            )
            rows: dict[str, list[str]] = {}
            while len(rows) < 2:
                msg = await recv_json(ws)
                if "data" in msg:
                    rows[msg["arg"]["channel"]] = msg["data"][0]
            assert len(rows["candle1m"]) == 9 and len(rows["index-candle1H"]) == 6
        async with websockets.connect(f"{base}/ws/v5/public") as idle:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(idle.recv(), 5)


async def test_okx_rest_shapes(scenario: Scenario) -> None:
    oi_rec = frames("okx.fetchOpenInterest.json")["fetchOpenInterest"][0]["httpResponse"]
    async with Simulator(scenario) as sim, httpx.AsyncClient(base_url=sim.endpoints[1].rest_url) as http:
        inst = (await http.get("/api/v5/public/instruments", params={"instType": "SWAP"})).json()
        btc = next(i for i in inst["data"] if i["instId"] == "BTC-USDT-SWAP")
        assert (btc["ctVal"], btc["ctValCcy"], btc["settleCcy"], btc["state"]) == (
            "0.01",
            "BTC",
            "USDT",
            "live",
        )
        oi = (
            await http.get(
                "/api/v5/public/open-interest", params={"instType": "SWAP", "instId": "BTC-USDT-SWAP"}
            )
        ).json()
        assert set(oi) == set(oi_rec) and set(oi["data"][0]) == set(oi_rec["data"][0])
        fr = (await http.get("/api/v5/public/funding-rate", params={"instId": "BTC-USDT-SWAP"})).json()
        assert fr["code"] == "0" and float(fr["data"][0]["fundingRate"]) != 0
        cd = (
            await http.get(
                "/api/v5/market/candles", params={"instId": "BTC-USDT-SWAP", "bar": "1H", "limit": 4}
            )
        ).json()
        assert len(cd["data"]) == 4 and int(cd["data"][0][0]) > int(cd["data"][1][0])
        ic = (
            await http.get("/api/v5/market/index-candles", params={"instId": "BTC-USDT", "bar": "1D"})
        ).json()
        assert len(ic["data"][0]) == 6
        bad = await http.get("/api/v5/public/funding-rate", params={"instId": "NOPE-USDT-SWAP"})
        assert bad.status_code == 400 and bad.json()["code"] == "51001"

"""Decode throughput per venue: frames/s from raw websocket text to normalized events.

Run: ``python -m tests.bench.bench_decode [--runs 5] [--seconds 0.3]``

Side by side, in one run and on the same frames:
- floor: ``orjson.loads`` plus reading the price fields as floats (nothing is built);
- hedgewatch: the connector's own ``handle`` (validation, events, counters) into a list sink, emitting what
  cryptofeed is asked for (Bybit tickers: quotes; "all ch" rows: quotes, mark, funding, open interest);
- cryptofeed: the feed's ``message_handler`` (its Decimal parsing and its objects, async callbacks);
- ccxt: the ccxt.pro client's ``handle_text_or_binary_message`` (ccxt's JSON decoding and ``handle_message``).
cryptofeed is installed only for this benchmark (``pip install cryptofeed``); a missing library shows "-".

Frame sets per venue: ``recorded`` (Bybit/OKX: the live frames in tests/frames; Binance: the frames of the
venue's documentation), ``generated`` (the same channels in the venue's format with moving prices) and, when
the bundled simulator speaks the protocol, ``simulator`` (frames captured from it). Contenders are
interleaved run by run and the medians of ``--runs`` runs are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from hedgewatch.connectors.base import FeedContext, Route, Tuning
from hedgewatch.connectors.binance.connector import BinanceProtocol
from hedgewatch.connectors.binance.decode import BOOK, MARK, TRADE
from hedgewatch.connectors.bybit.connector import BybitProtocol
from hedgewatch.connectors.bybit.decode import TICKERS
from hedgewatch.connectors.okx.connector import OkxProtocol
from hedgewatch.connectors.okx.decode import TICKERS as OKX_TICKERS
from hedgewatch.connectors.venue import CHANNELS
from hedgewatch.service.metrics import Metrics

FRAMES = Path(__file__).resolve().parents[1] / "frames"
Runner = Callable[[list[bytes], float], float]  # (frames, seconds) -> frames/s


# --- frame sets ----------------------------------------------------------------------------------------

def binance_documented() -> list[dict[str, Any]]:
    return [
        {"stream": "btcusdt@bookTicker", "data": {
            "e": "bookTicker", "u": 400900217, "E": 1568014460893, "T": 1568014460891, "s": "BTCUSDT",
            "b": "25.35190000", "B": "31.21000000", "a": "25.36520000", "A": "40.66000000"}},
        {"stream": "btcusdt@aggTrade", "data": {
            "e": "aggTrade", "E": 123456789, "s": "BTCUSDT", "a": 5933014, "p": "25.36", "q": "100", "f": 100,
            "l": 105, "T": 123456785, "m": True}},
        {"stream": "btcusdt@markPrice@1s", "data": {
            "e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "25.3600000", "ap": "25.36",
            "i": "25.35659091", "P": "25.35641265", "r": "0.00038167", "T": 1562306400000}},
    ]


def binance_generated(n: int = 3000) -> list[dict[str, Any]]:
    out = []
    ts = 1_786_540_000_000
    for i in range(n):
        px = 64000.0 + (i * 7919 % 200) / 10
        ts += 3
        k = i % 10
        if k < 7:
            d: dict[str, Any] = {"e": "bookTicker", "u": 8_000_000_000 + i, "E": ts, "T": ts - 2,
                                 "s": "BTCUSDT", "b": f"{px:.1f}", "B": f"{1 + i % 13 * 0.137:.3f}",
                                 "a": f"{px + 0.1:.1f}", "A": f"{2 + i % 7 * 0.311:.3f}"}
            out.append({"stream": "btcusdt@bookTicker", "data": d})
        elif k < 9:
            d = {"e": "aggTrade", "E": ts, "a": 2_600_000_000 + i, "s": "BTCUSDT", "p": f"{px:.1f}",
                 "q": f"{0.001 * (1 + i % 50):.3f}", "f": 5_000_000_000 + i, "l": 5_000_000_000 + i,
                 "T": ts - 1, "m": bool(i % 2)}
            out.append({"stream": "btcusdt@aggTrade", "data": d})
        else:
            d = {"e": "markPriceUpdate", "E": ts, "s": "BTCUSDT", "p": f"{px:.8f}", "ap": f"{px:.8f}",
                 "i": f"{px - 3.2:.8f}", "P": f"{px - 1:.8f}", "r": "0.00010000", "T": 1_786_550_400_000}
            out.append({"stream": "btcusdt@markPrice@1s", "data": d})
    return out


def bybit_recorded() -> list[dict[str, Any]]:
    return json.loads((FRAMES / "bybit.ws.watchTicker.linear.json").read_text())["messages"]


def bybit_generated(n: int = 3000) -> list[dict[str, Any]]:
    snap = bybit_recorded()[0]
    out = [snap]
    ts, cs = snap["ts"], snap["cs"]
    for i in range(1, n):
        px = 63958.6 + (i * 7919 % 200) / 10
        ts += 100
        cs += 7
        if i % 3:
            data = {"symbol": "BTCUSDT", "bid1Price": f"{px:.2f}", "bid1Size": f"{1 + i % 9 * 0.5:.3f}",
                    "ask1Price": f"{px + 0.1:.2f}", "ask1Size": f"{2 + i % 5 * 0.25:.3f}"}
        else:
            data = {"symbol": "BTCUSDT", "markPrice": f"{px:.2f}", "indexPrice": f"{px + 20:.2f}",
                    "lastPrice": f"{px:.2f}", "openInterest": f"{57798 + i % 100:.3f}"}
        out.append({"topic": "tickers.BTCUSDT", "type": "delta", "data": data, "cs": cs, "ts": ts})
    return out


def okx_recorded() -> list[dict[str, Any]]:
    return json.loads((FRAMES / "okx.ws.watchTicker.swap.json").read_text())["messages"][1:]


def okx_generated(n: int = 3000) -> list[dict[str, Any]]:
    base = okx_recorded()[0]
    out = []
    for i in range(n):
        px = 63921.0 + (i * 7919 % 200) / 10
        row = dict(base["data"][0], last=f"{px:.1f}", bidPx=f"{px:.1f}", askPx=f"{px + 0.1:.1f}",
                   bidSz=f"{700 + i % 97}", askSz=f"{1800 + i % 89}", ts=str(1_786_540_471_710 + 100 * i))
        out.append({"arg": base["arg"], "data": [row]})
    return out


async def simulator_frames(protocol: str, seconds: float = 1.5) -> list[dict[str, Any]]:
    """Frames captured from the bundled simulator speaking ``protocol`` (empty if it cannot)."""
    try:
        from hedgewatch.connectors.simulator import Simulator, parse_scenario
        from hedgewatch.connectors.simulator.server import _protocols
    except ImportError:
        return []
    if protocol not in _protocols():
        return []
    import websockets

    rates = {"binanceusdm": "{bookTicker: 200, aggTrade: 60, markPrice: 30}", "bybit": "{tickers: 200}",
             "okx": "{tickers: 200}"}[protocol]
    scenario = parse_scenario(f"""
seed: 5
tick_interval_s: 0.005
speed: 1
history_days: 1
assets:
  BTC: {{price: 64000, volatility: 0.6, tick_size: 0.1, qty_step: 0.001, okx_ct_val: 0.01}}
venues:
  - name: bench
    protocol: {protocol}
    noise_bps: 1
    spread_bps: 0.5
    rates: {rates}
""")
    frames: list[dict[str, Any]] = []
    async with Simulator(scenario) as sim:
        url = sim.endpoints[0].ws_url
        if protocol == "binanceusdm":
            targets = [(f"{url}/public/stream?streams=btcusdt@bookTicker", None),
                       (f"{url}/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s", None)]
        elif protocol == "bybit":
            sub = {"op": "subscribe", "req_id": "1", "args": ["tickers.BTCUSDT"]}
            targets = [(f"{url}/v5/public/linear", sub)]
        else:
            sub = {"op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT-SWAP"}]}
            targets = [(f"{url}/ws/v5/public", sub)]

        async def capture(target: str, sub: dict[str, Any] | None) -> None:
            async with websockets.connect(target) as ws:
                if sub is not None:
                    await ws.send(orjson.dumps(sub).decode())
                end = time.monotonic() + seconds
                while (left := end - time.monotonic()) > 0:
                    try:
                        msg = orjson.loads(await asyncio.wait_for(ws.recv(), left))
                    except (TimeoutError, orjson.JSONDecodeError):
                        continue
                    if "data" in msg:
                        frames.append(msg)

        await asyncio.gather(*(capture(t, s) for t, s in targets))
    return frames


# --- contenders ---------------------------------------------------------------------------------------

def timed(fn: Callable[[bytes], Any], frames: list[bytes], seconds: float,
          reset: Callable[[], None]) -> float:
    n = 0
    t0 = time.perf_counter()
    while True:
        for raw in frames:
            fn(raw)
        n += len(frames)
        reset()
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def ours(venue: str, all_channels: bool = False) -> Runner:
    out: list[Any] = []
    ctx = FeedContext(venue, out.append, Metrics(), time.time, Tuning())
    proto: Any
    if venue == "binanceusdm":
        routes = [Route("btcusdt@bookTicker", "bookTicker", BOOK, "BTC", "BTCUSDT", "USDT", 0.1),
                  Route("btcusdt@aggTrade", "aggTrade", TRADE, "BTC", "BTCUSDT", "USDT", 6.0),
                  Route("btcusdt@markPrice@1s", "markPrice", MARK, "BTC", "BTCUSDT", "USDT", 1.0)]
        proto = BinanceProtocol(ctx, "", routes, {})
    elif venue == "bybit":
        proto = BybitProtocol(ctx, "", [Route("tickers.BTCUSDT", "tickers", TICKERS, "BTC", "BTCUSDT", "USDT",
                                              0.1)], {})
        # like cryptofeed's TICKER subscription: quotes only, unless the row asks for every channel
        proto.want = frozenset(CHANNELS) if all_channels else frozenset({"quotes"})
    else:
        proto = OkxProtocol(ctx, "", [Route("tickers:BTC-USDT-SWAP", "tickers", OKX_TICKERS, "BTC",
                                            "BTC-USDT-SWAP", "USDT", 0.1,
                                            topic={"channel": "tickers", "instId": "BTC-USDT-SWAP"},
                                            scale=0.01)])
    handle = proto.receiver()  # what the connection's receive loop calls

    def reset() -> None:
        out.clear()
        for r in proto.routes:
            # the frame sets are replayed in a loop: each pass is a fresh stream, as after a reconnect
            r.ref = 0.0
            r.seq = 0

    def run(frames: list[bytes], seconds: float) -> float:
        return timed(handle, frames, seconds, reset)
    return run


def floor(venue: str) -> Runner:
    loads = orjson.loads

    def binance(raw: bytes) -> None:
        d = loads(raw)["data"]
        if "b" in d:
            float(d["b"])
            float(d["a"])
        else:
            float(d["p"])

    def bybit(raw: bytes) -> None:
        d = loads(raw)["data"]
        for k in ("bid1Price", "ask1Price", "markPrice", "indexPrice"):
            if k in d:
                float(d[k])

    def okx(raw: bytes) -> None:
        d = loads(raw)["data"][0]
        float(d["bidPx"])
        float(d["askPx"])

    fn = {"binanceusdm": binance, "bybit": bybit, "okx": okx}[venue]
    return lambda frames, seconds: timed(fn, frames, seconds, lambda: None)


def cryptofeed_runner(venue: str) -> Runner | None:
    try:
        from cryptofeed.defines import BINANCE_FUTURES, BYBIT, FUNDING, TICKER, TRADES
        from cryptofeed.defines import OKX as OKX_ID
        from cryptofeed.exchanges import OKX, BinanceFutures, Bybit
        from cryptofeed.symbols import Symbols
    except ImportError:
        return None
    out: list[Any] = []

    async def cb(obj: Any, ts: float) -> None:
        out.append(obj)

    class Conn:  # the parts of cryptofeed's AsyncConnection its handlers read
        uuid = "bench"

        def __init__(self, subscription: dict[str, list[str]], address: str) -> None:
            self.subscription = subscription
            self.address = address

    if venue == "binanceusdm":
        info = {"symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "contractType": "PERPETUAL",
                             "baseAsset": "BTC", "quoteAsset": "USDT", "filters": [{"tickSize": "0.1"}]}]}
        Symbols.set(BINANCE_FUTURES, *BinanceFutures._parse_symbol_data(info))
        feed: Any = BinanceFutures(symbols=["BTC-USDT-PERP"], channels=[TICKER, TRADES, FUNDING],
                                   callbacks={TICKER: cb, TRADES: cb, FUNDING: cb})
        conn = Conn({}, "wss://fstream.binance.com")
    elif venue == "bybit":
        row = {"symbol": "BTCUSDT", "contractType": "LinearPerpetual", "baseCoin": "BTC", "quoteCoin": "USDT",
               "priceFilter": {"tickSize": "0.1"}}
        body = [{"result": {"list": [row]}}]
        Symbols.set(BYBIT, *Bybit._parse_symbol_data(body))
        feed = Bybit(symbols=["BTC-USDT-PERP"], channels=[TICKER], callbacks={TICKER: cb})
        conn = Conn({"tickers": ["BTCUSDT"]}, "wss://stream.bybit.com/v5/public/linear")
    else:
        body = [{"data": [{"instType": "SWAP", "instId": "BTC-USDT-SWAP", "tickSz": "0.1", "lotSz": "1",
                           "ctVal": "0.01", "uly": "BTC-USDT", "settleCcy": "USDT", "ctValCcy": "BTC",
                           "ctType": "linear", "state": "live", "baseCcy": "", "quoteCcy": ""}]}]
        Symbols.set(OKX_ID, *OKX._parse_symbol_data(body))
        feed = OKX(symbols=["BTC-USDT-PERP"], channels=[TICKER], callbacks={TICKER: cb})
        conn = Conn({"tickers": ["BTC-USDT-SWAP"]}, "wss://ws.okx.com:8443/ws/v5/public")
    handler = feed.message_handler

    def run(frames: list[bytes], seconds: float) -> float:
        texts = [f.decode() for f in frames]

        async def loop() -> float:
            n = 0
            t0 = time.perf_counter()
            while True:
                for text in texts:
                    await handler(text, conn, 0.0)
                n += len(texts)
                out.clear()
                dt = time.perf_counter() - t0
                if dt >= seconds:
                    return n / dt
        return asyncio.run(loop())
    return run


def ccxt_runner(venue: str) -> Runner:
    import ccxt.pro as ccxtpro

    market = {"id": "BTC-USDT-SWAP" if venue == "okx" else "BTCUSDT", "lowercaseId": "btcusdt",
              "symbol": "BTC/USDT:USDT", "base": "BTC", "quote": "USDT", "settle": "USDT", "baseId": "BTC",
              "quoteId": "USDT", "settleId": "USDT", "type": "swap", "spot": False, "margin": False,
              "swap": True, "future": False, "option": False, "contract": True, "linear": True,
              "inverse": False,
              "contractSize": 0.01 if venue == "okx" else 1.0, "active": True,
              "precision": {"price": 0.1, "amount": 0.001}, "limits": {}, "info": {}, "expiry": None,
              "expiryDatetime": None, "strike": None, "optionType": None}

    def run(frames: list[bytes], seconds: float) -> float:
        async def go() -> float:
            ex = getattr(ccxtpro, venue)()
            ex.set_markets([market])
            client = ex.client("wss://bench")
            feed = client.handle_text_or_binary_message
            # ccxt subscribes Binance raw streams, so its frames are the payloads without the combined wrapper
            if venue == "binanceusdm":
                texts = [orjson.dumps(orjson.loads(f)["data"]).decode() for f in frames]
            else:
                texts = [f.decode() for f in frames]
            try:
                return timed(feed, texts, seconds, lambda: None)  # type: ignore[arg-type]
            finally:
                await ex.close()
        return asyncio.run(go())
    return run


# --- main ------------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.3, help="time per contender per run")
    ap.add_argument("--no-simulator", action="store_true")
    args = ap.parse_args()

    sets: list[tuple[str, str, list[dict[str, Any]]]] = [
        ("binanceusdm", "recorded*", binance_documented()), ("binanceusdm", "generated", binance_generated()),
        ("bybit", "recorded", bybit_recorded()), ("bybit", "generated", bybit_generated()),
        ("okx", "recorded", okx_recorded()), ("okx", "generated", okx_generated()),
    ]
    if not args.no_simulator:
        for venue in ("binanceusdm", "bybit", "okx"):
            frames = asyncio.run(simulator_frames(venue))
            if len(frames) >= 50:
                sets.append((venue, "simulator", frames))

    print(f"{'venue':<12} {'frames':<11} {'n':>5} {'floor':>10} {'hedgewatch':>11} {'cryptofeed':>11} "
          f"{'ccxt':>9} {'hw/floor':>8} {'hw/cf':>6} {'hw/ccxt':>7}")
    sets += [("bybit", "rec/all ch", bybit_recorded()), ("bybit", "gen/all ch", bybit_generated())]
    for venue, label, frames in sets:
        raw = [orjson.dumps(f) for f in frames]
        contenders: dict[str, Runner | None] = {
            "floor": floor(venue), "ours": ours(venue, "all" in label),
            "cryptofeed": cryptofeed_runner(venue), "ccxt": ccxt_runner(venue)}
        results: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(args.runs):
            for name, runner in contenders.items():
                if runner is not None:
                    results[name].append(runner(raw, args.seconds))
        med = {k: statistics.median(v) if v else None for k, v in results.items()}

        def fmt(v: float | None, width: int) -> str:
            return f"{v:>{width},.0f}" if v is not None else f"{'-':>{width}}"

        def ratio(a: float | None, b: float | None) -> str:
            return f"{a / b:.2f}" if a and b else "-"

        print(f"{venue:<12} {label:<11} {len(frames):>5} {fmt(med['floor'], 10)} {fmt(med['ours'], 11)} "
              f"{fmt(med['cryptofeed'], 11)} {fmt(med['ccxt'], 9)} {ratio(med['ours'], med['floor']):>8} "
              f"{ratio(med['ours'], med['cryptofeed']):>6} {ratio(med['ours'], med['ccxt']):>7}")
    print("frames/s, medians of", args.runs, "runs; * Binance frames from the venue's documentation;")
    print("Bybit rows emit quotes only, as cryptofeed's TICKER does; 'all ch' rows also emit mark, funding")
    print("and open interest from the same tickers frames (cryptofeed still emits only its ticker there).")


if __name__ == "__main__":
    main()

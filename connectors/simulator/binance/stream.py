"""Binance USDⓈ-M futures, as ``fstream.binance.com`` and ``fapi.binance.com`` speak it.

Websocket: routed paths ``/public`` (bookTicker, depth) and ``/market`` (markPrice, aggTrade, ticker, miniTicker, kline,
compositeIndex), and the plain ``/ws`` and ``/stream`` paths serving everything. Raw streams
(``/ws/btcusdt@bookTicker``, payloads as they are) and combined streams (``/stream?streams=a/b``, payloads
wrapped as ``{"stream":..,"data":..}``). ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS`` answer
``{"result":..,"id":N}``. The server pings every 3 minutes (the client must pong within 10), disconnects a
client sending more than 10 messages a second, and closes a connection after 24 hours.
REST: ``/fapi/v1/exchangeInfo``, ``premiumIndex``, ``openInterest``, ``klines``, ``indexInfo``, ``time``,
``ping``, ``ticker/bookTicker``, ``fundingRate`` and ``/futures/data/openInterestHist``.

The venue's spot market (``stream.binance.com:9443`` and ``api.binance.com``) is served on the same port:
streams under ``/spot`` (``/spot/stream?streams=btcusdt@bookTicker``, ``/spot/ws``), where ``bookTicker``
is the spot payload ``{"u","s","b","B","a","A"}`` (no event type, no event time), and REST
``/api/v3/exchangeInfo``. Spot frames go out on the channel ``spot`` (a ``stall_channel`` fault names it).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection

from hedgewatch.connectors.simulator.binance import account as binance_account
from hedgewatch.connectors.simulator.binance import rest as binance_rest
from hedgewatch.connectors.simulator.candles import INTERVALS_MS, Bar
from hedgewatch.connectors.simulator.transport import RestError, VenueServer
from hedgewatch.connectors.simulator.venue import DATED_TYPES, AssetQuote, SpotQuote, dated_price, quarterly_expiries

PUBLIC_CHANNELS = frozenset({"bookTicker", "depth"})
CHANNELS = ("bookTicker", "aggTrade", "markPrice", "kline", "ticker", "depth", "compositeIndex")
DEPTH_SPEEDS = ("", "@100ms", "@250ms", "@500ms")


def parse_stream(name: str) -> tuple[str, str, str] | None:
    """``btcusdt@kline_1m`` -> (canonical name, channel, lowercase symbol); None when not a stream."""
    if name.lower() == "!bookticker":
        return "!bookTicker", "bookTicker", ""
    sym, sep, kind = name.partition("@")
    if not sep or not sym:
        return None
    sym = sym.lower()
    low = kind.lower()
    if sym == "!markprice" and low in ("arr", "arr@1s"):
        return f"!markPrice@{low}", "markPrice", ""
    table = {
        "bookticker": "bookTicker",
        "aggtrade": "aggTrade",
        "markprice": "markPrice",
        "markprice@1s": "markPrice@1s",
        "ticker": "ticker",
        "miniticker": "miniTicker",
        "compositeindex": "compositeIndex",
    }
    if low in table:
        canon = table[low]
        return f"{sym}@{canon}", canon.split("@")[0], sym
    if low.startswith("kline_") and low[6:] in INTERVALS_MS:
        return f"{sym}@kline_{low[6:]}", "kline", sym
    levels, _, speed = low.partition("@")
    if levels in ("depth5", "depth10", "depth20") and speed in ("", "100ms", "250ms", "500ms"):
        return f"{sym}@{low}", "depth", sym
    return None


class BinanceServer(VenueServer):
    """A Binance USDⓈ-M venue on one loopback port."""

    exchange = "binanceusdm"
    default_ping_interval_s = 180.0
    spot_ws_path: str | None = "/spot"  # stream.binance.com's streams, under /spot on this port

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quote = self.model.path.scenario.quote
        self.symbols = {a: f"{a}{quote}" for a in self.model.assets}
        self.by_symbol = {s.lower(): a for a, s in self.symbols.items()}
        # the spot pairs (composite indexes have none)
        self.spot_symbols = {a: f"{a}{quote}" for a in self.model.assets if a not in self.model.path.composites}
        # composite index symbol (lowercase) -> its base name in the path (DEFIUSDT -> DEFI)
        self.composites = {f"{b}{quote}".lower(): b for b in self.model.path.composites}
        self.dated = self._list_dated(quote)
        self._subs: dict[ServerConnection, list[str]] = {}
        self._bar_start: dict[tuple[str, str], int] = {}
        self.account = binance_account.Account()

    def _list_dated(self, quote: str) -> dict[str, tuple[str, int, str]]:
        """The quarterly futures: lowercase symbol (``btcusdt_261225``) -> (asset, settlement ms,
        contractType), the next two quarterly settlements of each asset."""
        out = {}
        for a in self.model.assets:
            if a in self.model.path.composites:
                continue
            for ctype, exp in zip(DATED_TYPES, quarterly_expiries(self.now_ms()), strict=True):
                out[f"{a}{quote}_{time.strftime('%y%m%d', time.gmtime(exp / 1000))}".lower()] = (a, exp, ctype)
        return out

    # --- websocket -------------------------------------------------------------------------------------

    @staticmethod
    def _split(path: str) -> tuple[str, str, str] | None:
        """(route, kind, rest): route ``public``/``market``/``spot``/``""``, kind ``ws``/``stream``."""
        parts = path.strip("/").split("/", 2)
        route = ""
        if parts and parts[0] in ("public", "market", "spot"):
            route = parts.pop(0)
            parts = "/".join(parts).split("/", 1)
        if not parts or parts[0] not in ("ws", "stream"):
            return None
        return route, parts[0], "/".join(parts[1:])

    def accepts_path(self, path: str, query: str) -> bool:
        return self._split(path) is not None

    def _wrong_route(self, route: str, channel: str) -> bool:
        if route == "spot":
            return channel != "bookTicker"
        return bool(route) and ((channel in PUBLIC_CHANNELS) != (route == "public"))

    @staticmethod
    def _prefix(route: str, combined: bool) -> str:
        """The topic prefix of a subscription: spot or futures, combined or raw."""
        return ("s" if route == "spot" else "") + ("c:" if combined else "r:")

    async def serve_ws(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path if ws.request else "/ws")
        route, kind, rest = self._split(url.path) or ("", "ws", "")
        combined = kind == "stream"
        names = rest.split("/") if kind == "ws" and rest else []
        if combined:
            names = dict(parse_qsl(url.query)).get("streams", "").split("/")
        self._subs[ws] = []
        for name in filter(None, names):
            parsed = parse_stream(name)
            if parsed and not self._wrong_route(route, parsed[1]):
                self._add(ws, parsed[0], self._prefix(route, combined))
        window: deque[float] = deque()
        limit = self.spec.max_incoming_per_s
        while True:
            msg = await self.recv(ws)
            if msg is None:
                return
            now = time.monotonic()
            window.append(now)
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) > limit:
                await ws.close(1008, "too many requests")
                return
            reply = self._method(ws, msg, route, combined)
            if reply is not None:
                await ws.send(orjson.dumps(reply).decode())

    def _add(self, ws: ServerConnection, name: str, prefix: str) -> None:
        if name not in self._subs[ws]:
            self._subs[ws].append(name)
        self.subscribe(ws, prefix + name)

    def forget(self, ws: ServerConnection) -> None:
        self._subs.pop(ws, None)

    def _method(self, ws: ServerConnection, msg: str | bytes, route: str, combined: bool) -> dict[str, Any]:
        try:
            req = orjson.loads(msg)
        except orjson.JSONDecodeError:
            return {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1", "id": None}
        if not isinstance(req, dict):
            return {"code": 2, "msg": "Invalid request: request must be an object", "id": None}
        rid = req.get("id")
        if rid is not None and (not isinstance(rid, int) or isinstance(rid, bool) or rid < 0):
            return {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer", "id": None}
        method = req.get("method")
        params = req.get("params", [])
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": list(self._subs.get(ws, [])), "id": rid}
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return {"code": 2, "msg": "Invalid request: unknown variable", "id": rid}
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            return {"code": 1, "msg": "Invalid value type: expected array of strings", "id": rid}
        error = self._check_streams(params, route)
        if error:
            return {"code": 2, "msg": f"Invalid request: {error}", "id": rid}
        for name in params:
            canon = parse_stream(name)[0]  # type: ignore[index]
            if method == "SUBSCRIBE":
                self._add(ws, canon, self._prefix(route, combined))
                continue
            subs = self._subs.get(ws, [])
            if canon in subs:
                subs.remove(canon)
            self.unsubscribe(ws, self._prefix(route, combined) + canon)
        return {"result": None, "id": rid}

    def _check_streams(self, names: list[str], route: str) -> str | None:
        for name in names:
            parsed = parse_stream(name)
            if parsed is None:
                return f"unknown stream {name}"
            if self._wrong_route(route, parsed[1]):
                return f"{name} is not served on /{route}"
        return None

    # --- frames ----------------------------------------------------------------------------------------

    def _emit(self, channel: str, name: str, payload: Any) -> None:
        raw, comb = "r:" + name, "c:" + name
        if self.has_subscribers(raw):
            self.fanout(channel, raw, payload)
        if self.has_subscribers(comb):
            self.fanout(channel, comb, {"stream": name, "data": payload})

    def _wanted(self, name: str) -> bool:
        return self.has_subscribers("r:" + name) or self.has_subscribers("c:" + name)

    def _emit_spot(self, name: str, payload: Any) -> None:
        if self.has_subscribers("sr:" + name):
            self.fanout("spot", "sr:" + name, payload)
        if self.has_subscribers("sc:" + name):
            self.fanout("spot", "sc:" + name, {"stream": name, "data": payload})

    def spot_book_ticker(self, s: SpotQuote) -> dict[str, Any]:
        """The spot ``bookTicker`` payload: update id, symbol, best bid and ask with their sizes."""
        a = s.asset
        return {"u": s.update_id, "s": self.spot_symbols[a], "b": self._p(a, s.bid), "B": self._q(a, s.bid_qty),
                "a": self._p(a, s.ask), "A": self._q(a, s.ask_qty)}

    def publish(self, step: int) -> None:
        tick_s = self.model.path.dt_s
        due = {ch for ch in CHANNELS if self.every(ch, step, tick_s)}
        if "bookTicker" in due:
            for a, sym in self.spot_symbols.items():
                name = f"{sym.lower()}@bookTicker"
                if self.has_subscribers("sr:" + name) or self.has_subscribers("sc:" + name):
                    self._emit_spot(name, self.spot_book_ticker(self.model.spot[a]))
        if step % max(1, round(3.0 / tick_s)) == 0:
            due.add("markPrice3s")  # the plain markPrice stream: every 3 s
        marks = [self._publish_asset(a, due) for a in self.model.assets]
        if "markPrice" in due:
            self._emit("markPrice", "!markPrice@arr@1s", marks)
        if "markPrice3s" in due:
            self._emit("markPrice", "!markPrice@arr", marks)
        if "compositeIndex" in due:
            for key in self.composites:
                if self._wanted(f"{key}@compositeIndex"):
                    self._emit("compositeIndex", f"{key}@compositeIndex", self.composite(key))

    def _publish_asset(self, a: str, due: set[str]) -> dict[str, Any]:
        q = self.model.quotes[a]
        sym = self.symbols[a].lower()
        if "bookTicker" in due and (self._wanted(f"{sym}@bookTicker") or self._wanted("!bookTicker")):
            book = self.book_ticker(q)
            self._emit("bookTicker", f"{sym}@bookTicker", book)
            self._emit("bookTicker", "!bookTicker", book)
        if "bookTicker" in due:
            for dated, (asset, exp, _) in self.dated.items():
                if asset == a and self._wanted(f"{dated}@bookTicker"):
                    self._emit("bookTicker", f"{dated}@bookTicker", self.dated_book(q, dated, exp))
        if "aggTrade" in due and q.trades and self._wanted(f"{sym}@aggTrade"):
            for trade in q.trades:
                self._emit("aggTrade", f"{sym}@aggTrade", self.agg_trade(q, trade))
        mark = self.mark_price(q)
        if "markPrice" in due:
            self._emit("markPrice", f"{sym}@markPrice@1s", mark)
        if "markPrice3s" in due:
            self._emit("markPrice", f"{sym}@markPrice", mark)
        if "ticker" in due and self._wanted(f"{sym}@ticker"):
            self._emit("ticker", f"{sym}@ticker", self.ticker(q))
        if "ticker" in due and self._wanted(f"{sym}@miniTicker"):
            self._emit("ticker", f"{sym}@miniTicker", self.mini_ticker(q))
        self._publish_books(q, sym, due)
        return mark

    def _publish_books(self, q: AssetQuote, sym: str, due: set[str]) -> None:
        """Klines and partial depth: several streams per symbol, each only when subscribed."""
        if "kline" in due:
            for iv in INTERVALS_MS:
                if self._wanted(f"{sym}@kline_{iv}"):
                    for frame in self.klines_due(q, iv):
                        self._emit("kline", f"{sym}@kline_{iv}", frame)
        if "depth" in due:
            for name, levels in self._depth_streams(sym):
                self._emit("depth", name, self.depth(q, levels))

    def _depth_streams(self, sym: str) -> list[tuple[str, int]]:
        return [
            (f"{sym}@depth{lv}{sp}", lv)
            for lv in (5, 10, 20)
            for sp in DEPTH_SPEEDS
            if self._wanted(f"{sym}@depth{lv}{sp}")
        ]

    def book_ticker(self, q: AssetQuote) -> dict[str, Any]:
        a = q.asset
        bid, ask = q.bid, q.ask
        factor = self.model.take_absurd(a)
        if factor is not None:
            bid, ask = bid * factor, ask * factor
        return {
            "e": "bookTicker",
            "u": q.update_id,
            "s": self.symbols[a],
            "b": self._p(a, bid),
            "B": self._q(a, q.bid_qty),
            "a": self._p(a, ask),
            "A": self._q(a, q.ask_qty),
            "T": q.ts_ms,
            "E": q.ts_ms,
        }

    def agg_trade(self, q: AssetQuote, trade: tuple[int, float, float, bool]) -> dict[str, Any]:
        tid, price, qty, maker = trade
        a = q.asset
        return {
            "e": "aggTrade",
            "E": q.ts_ms,
            "a": tid,
            "s": self.symbols[a],
            "p": self._p(a, price),
            "q": self._q(a, qty),
            "f": tid * 3,
            "l": tid * 3 + 2,
            "T": q.ts_ms,
            "m": maker,
        }

    def dated_book(self, q: AssetQuote, symbol: str, expiry_ms: int) -> dict[str, Any]:
        """The bookTicker of a quarterly future: the perpetual's book moved to the dated fair price."""
        book = self.book_ticker(q)
        shift = dated_price(q, expiry_ms) - q.mid
        a = q.asset
        book.update(s=symbol.upper(), b=self._p(a, q.bid + shift), a=self._p(a, q.ask + shift))
        return book

    def mark_price(self, q: AssetQuote) -> dict[str, Any]:
        return {
            "e": "markPriceUpdate",
            "E": q.ts_ms,
            "s": self.symbols[q.asset],
            "p": f"{q.mark:.8f}",
            "P": f"{q.index:.8f}",
            "i": f"{q.index:.8f}",
            "r": f"{q.funding_rate:.8f}",
            "T": q.next_funding_ms,
        }

    def mini_ticker(self, q: AssetQuote) -> dict[str, Any]:
        """``<symbol>@miniTicker``: the 24 h figures without bid, ask or price change (what ccxt's
        ``watch_ticker`` subscribes on Binance by default)."""
        a = q.asset
        return {"e": "24hrMiniTicker", "E": q.ts_ms, "s": self.symbols[a], "c": self._p(a, q.last),
                "o": self._p(a, q.open_24h), "h": self._p(a, q.high_24h), "l": self._p(a, q.low_24h),
                "v": self._q(a, q.volume_24h), "q": f"{q.turnover_24h:.2f}"}

    def ticker(self, q: AssetQuote) -> dict[str, Any]:
        a, last = q.asset, q.last
        change = last - q.open_24h
        return {
            "e": "24hrTicker",
            "E": q.ts_ms,
            "s": self.symbols[a],
            "p": self._p(a, change),
            "P": f"{change / q.open_24h * 100:.3f}",
            "w": self._p(a, q.turnover_24h / q.volume_24h),
            "c": self._p(a, last),
            "Q": self._q(a, q.last_qty),
            "o": self._p(a, q.open_24h),
            "h": self._p(a, q.high_24h),
            "l": self._p(a, q.low_24h),
            "v": self._q(a, q.volume_24h),
            "q": f"{q.turnover_24h:.2f}",
            "O": q.ts_ms - 86_400_000,
            "C": q.ts_ms,
            "F": max(0, q.trade_id * 3 - 100_000),
            "L": q.trade_id * 3,
            "n": 100_000,
        }

    def _kline_body(self, a: str, bar: Bar, interval: str, closed: bool) -> dict[str, Any]:
        iv = INTERVALS_MS[interval]
        return {
            "t": int(bar[0]),
            "T": int(bar[0]) + iv - 1,
            "s": self.symbols[a],
            "i": interval,
            "f": 0,
            "L": int(bar[6]),
            "o": self._p(a, bar[1]),
            "c": self._p(a, bar[4]),
            "h": self._p(a, bar[2]),
            "l": self._p(a, bar[3]),
            "v": self._q(a, bar[5]),
            "n": int(bar[6]),
            "x": closed,
            "q": f"{bar[5] * bar[4]:.4f}",
            "V": self._q(a, bar[5] / 2),
            "Q": f"{bar[5] * bar[4] / 2:.4f}",
            "B": "0",
        }

    def klines_due(self, q: AssetQuote, interval: str) -> list[dict[str, Any]]:
        """The open bar; preceded, when a bar has just closed, by that bar with ``x: true``."""
        iv = INTERVALS_MS[interval]
        bar = self.model.candles.current(q.asset, iv, q.ts_ms)
        frames = []
        prev = self._bar_start.get((q.asset, interval))
        if prev is not None and prev != bar[0]:
            closed = self.model.candles.klines(q.asset, iv, q.ts_ms, start_ms=prev, limit=1)
            frames += [self._kline_frame(q, b, interval, True) for b in closed]
        self._bar_start[(q.asset, interval)] = int(bar[0])
        frames.append(self._kline_frame(q, bar, interval, False))
        return frames

    def _kline_frame(self, q: AssetQuote, bar: Bar, interval: str, closed: bool) -> dict[str, Any]:
        return {
            "e": "kline",
            "E": q.ts_ms,
            "s": self.symbols[q.asset],
            "k": self._kline_body(q.asset, bar, interval, closed),
        }

    def depth(self, q: AssetQuote, levels: int) -> dict[str, Any]:
        a = q.asset
        tick = self.model.path.specs[a].tick_size
        bids = [[self._p(a, q.bid - i * tick), self._q(a, q.bid_qty * (1 + i))] for i in range(levels)]
        asks = [[self._p(a, q.ask + i * tick), self._q(a, q.ask_qty * (1 + i))] for i in range(levels)]
        return {
            "e": "depthUpdate",
            "E": q.ts_ms,
            "T": q.ts_ms,
            "s": self.symbols[a],
            "U": q.update_id,
            "u": q.update_id,
            "pu": q.update_id - 1,
            "b": bids,
            "a": asks,
        }

    def _composite_parts(self, key: str) -> list[tuple[str, float, float, float]]:
        """(asset, weight in quantity, weight in percent now, price) for a composite index."""
        qty = self.model.path.composites[self.composites[key]]
        value = sum(qty[a] * self.model.path.price(a) for a in qty)
        return [(a, qty[a], qty[a] * self.model.path.price(a) / value, self.model.path.price(a)) for a in qty]

    def composite(self, key: str) -> dict[str, Any]:
        parts = self._composite_parts(key)
        value = sum(q * p for _, q, _, p in parts)
        return {
            "e": "compositeIndex",
            "E": self.now_ms(),
            "s": key.upper(),
            "p": f"{value:.8f}",
            "C": "baseAsset",
            "c": [
                {
                    "b": a,
                    "q": self.model.path.scenario.quote,
                    "w": f"{q:.8f}",
                    "W": f"{w:.8f}",
                    "i": f"{p:.8f}",
                }
                for a, q, w, p in parts
            ],
        }

    # --- REST ------------------------------------------------------------------------------------------

    def _asset(self, params: dict[str, str], required: bool = True) -> str | None:
        sym = params.get("symbol")
        if not sym:
            if required:
                raise RestError(
                    400,
                    {
                        "code": -1102,
                        "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                    },
                )
            return None
        asset = self.by_symbol.get(sym.lower())
        if asset is None:
            raise RestError(400, {"code": -1121, "msg": "Invalid symbol."})
        return asset

    def rest(self, path: str, params: dict[str, str]) -> Any:
        handler = binance_rest.ROUTES.get(path) or binance_account.ROUTES.get(path)
        if handler is None:
            raise RestError(404, {"code": -5000, "msg": f"Path {path}, Method GET is invalid"})
        return handler(self, params)


class BinanceCoinmServer(BinanceServer):
    """A Binance COIN-M venue (``dstream.binance.com``, ``dapi.binance.com``): coin-margined perpetuals
    ``<A>USD_PERP`` of 100 USD a contract for BTC and 10 USD for the others, settled in the coin.

    The stream payloads are USDⓈ-M's with the pair ``ps`` added to bookTicker; sizes (``B``/``A``,
    aggTrade ``q``, kline ``v``/``V``, open interest) are whole contracts and kline ``q``/``Q`` the base
    volume, as COIN-M's documentation shows them. Streams are served on ``/ws`` and ``/stream`` only
    (dstream has no routed paths); REST under ``/dapi/v1``.
    """

    exchange = "binancecoinm"
    spot_ws_path = None  # Binance's spot market is the USDⓈ-M venue's (``/spot``)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.quote = "USD"
        self.symbols = {a: f"{a}USD_PERP" for a in self.model.assets}
        self.pairs = {a: f"{a}USD" for a in self.model.assets}
        self.by_symbol = {s.lower(): a for a, s in self.symbols.items()}
        self.composites = {}
        self.dated = self._list_dated("USD")
        self.ct_val = {a: 100.0 if a == "BTC" else 10.0 for a in self.model.assets}

    @staticmethod
    def _split(path: str) -> tuple[str, str, str] | None:
        parts = path.strip("/").split("/", 1)
        if not parts or parts[0] not in ("ws", "stream"):
            return None
        return "", parts[0], "/".join(parts[1:])

    def contracts(self, a: str, base_qty: float, px: float) -> int:
        """A base-unit size as whole contracts of ``ct_val`` USD at ``px`` (at least one)."""
        return max(1, round(base_qty * px / self.ct_val[a]))

    def book_ticker(self, q: AssetQuote) -> dict[str, Any]:
        out = super().book_ticker(q)
        a = q.asset
        return {"e": "bookTicker", "u": out["u"], "s": out["s"], "ps": self.pairs[a], "b": out["b"],
                "B": str(self.contracts(a, q.bid_qty, q.bid)), "a": out["a"],
                "A": str(self.contracts(a, q.ask_qty, q.ask)), "T": out["T"], "E": out["E"]}

    def agg_trade(self, q: AssetQuote, trade: tuple[int, float, float, bool]) -> dict[str, Any]:
        out = super().agg_trade(q, trade)
        out["q"] = str(self.contracts(q.asset, trade[2], trade[1]))
        return out

    def mark_price(self, q: AssetQuote) -> dict[str, Any]:
        out = super().mark_price(q)
        return {"e": out["e"], "E": out["E"], "s": out["s"], "p": out["p"], "P": out["P"], "i": out["i"],
                "r": out["r"], "T": out["T"]}

    def _kline_body(self, a: str, bar: Bar, interval: str, closed: bool) -> dict[str, Any]:
        out = super()._kline_body(a, bar, interval, closed)
        vol, close = bar[5], bar[4]
        contracts = round(vol * close / self.ct_val[a]) if vol else 0
        out.update({"v": str(contracts), "q": f"{vol:.8f}", "V": str(contracts // 2), "Q": f"{vol / 2:.8f}"})
        return out

    def rest(self, path: str, params: dict[str, str]) -> Any:
        handler = binance_rest.COINM_ROUTES.get(path)
        if handler is None:
            raise RestError(404, {"code": -5000, "msg": f"Path {path}, Method GET is invalid"})
        return handler(self, params)

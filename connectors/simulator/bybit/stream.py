"""Bybit v5 linear (or inverse), as ``stream.bybit.com/v5/public/linear`` and ``api.bybit.com/v5/market`` speak it.

Websocket: ``{"op":"subscribe","args":[topics],"req_id":..}`` answered
``{"success":true,"ret_msg":"","conn_id":..,"req_id":..,"op":"subscribe"}``; ``tickers.{symbol}`` sends a
snapshot on subscribe, then every 100 ms a delta carrying only the fields that changed (plus ``symbol``),
with a cross sequence ``cs`` and ``ts``; ``publicTrade.{symbol}``; ``kline.{interval}.{symbol}``;
``orderbook.1.{symbol}`` (the top of book, every message a snapshot, as Bybit sends level 1).
``{"op":"ping"}`` is answered ``{"success":true,"ret_msg":"pong","conn_id":..,"op":"ping"}``; the server
sends no pings of its own and drops a client that has sent nothing (no ping) for ``idle_timeout_s``.

With ``inverse: true`` the venue is Bybit inverse (``/v5/public/inverse``, ``category=inverse``): coin-margined
``<A>USD`` perpetuals of 1 USD a contract, settled in the coin. Sizes (book, trades, kline ``volume``,
``volume24h``) are USD contracts, ``openInterest`` USD with the coins as ``openInterestValue``, and
``turnover``/``turnover24h`` the coins, as Bybit documents its inverse tickers and klines.

The venue's spot market is served too: ``/v5/public/spot`` with ``orderbook.1.{symbol}`` of the spot pair
(``BTCUSDT``; level 1 is snapshots only, as Bybit sends it), and ``instruments-info?category=spot``. Spot
frames go out on the channel ``spot`` (a ``stall_channel`` fault names it).
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, broadcast

from hedgewatch.connectors.simulator.bybit import rest as bybit_rest
from hedgewatch.connectors.simulator.bybit.rest import KLINE_INTERVALS
from hedgewatch.connectors.simulator.candles import INTERVALS_MS
from hedgewatch.connectors.simulator.market import HOUR_MS
from hedgewatch.connectors.simulator.transport import RestError, VenueServer
from hedgewatch.connectors.simulator.venue import AssetQuote, SpotQuote


class BybitServer(VenueServer):
    """A Bybit v5 linear (or, with ``inverse``, inverse) venue on one loopback port."""

    exchange = "bybit"
    default_ping_interval_s = None
    default_idle_timeout_s = 600.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inverse = self.spec.inverse
        self.category = "inverse" if self.inverse else "linear"
        self.symbols = {a: f"{a}{self.quote}" for a in self.model.assets}
        self.by_symbol = {s: a for a, s in self.symbols.items()}
        spot_quote = self.model.path.scenario.quote
        self.spot_symbols = {a: f"{a}{spot_quote}" for a in self.model.assets if a not in self.model.path.composites}
        self.by_spot_symbol = {s: a for a, s in self.spot_symbols.items()}
        self.state: dict[str, dict[str, str]] = {}  # the ticker fields last sent, per asset
        self._cs = itertools.count(760_580_211_302)
        self._conn_ids = itertools.count(1)
        self._subs: dict[ServerConnection, set[str]] = {}
        self._bar_start: dict[tuple[str, str], int] = {}
        self._prev_1h: dict[str, float] = {}
        for a in self.model.assets:
            self.state[a] = self.ticker_fields(self.model.quotes[a], refresh=True)

    def accepts_path(self, path: str, query: str) -> bool:
        return path.rstrip("/") in (f"/v5/public/{self.category}", "/v5/public/spot")

    # --- websocket -------------------------------------------------------------------------------------

    async def serve_ws(self, ws: ServerConnection) -> None:
        conn_id = f"sim-{next(self._conn_ids):08x}-{self.spec.name}"
        spot = (ws.request.path if ws.request else "").rstrip("/").endswith("/spot")
        self._subs[ws] = set()
        while True:
            msg = await self.recv(ws)
            if msg is None:
                return
            try:
                req = orjson.loads(msg)
            except orjson.JSONDecodeError:
                req = None
            if not isinstance(req, dict):
                self._reply(
                    ws, {"success": False, "ret_msg": "error:invalid request", "conn_id": conn_id, "op": ""}
                )
                continue
            op = req.get("op")
            base: dict[str, Any] = {"success": True, "ret_msg": "", "conn_id": conn_id}
            if "req_id" in req:
                base["req_id"] = req["req_id"]
            if op == "ping":
                self._reply(ws, {**base, "ret_msg": "pong", "op": "ping"})
            elif op in ("subscribe", "unsubscribe"):
                self._subscription(ws, op, req.get("args"), base, spot)
            else:
                self._reply(ws, {**base, "success": False, "ret_msg": f"error:unknown op {op}", "op": op})

    def _reply(self, ws: ServerConnection, body: dict[str, Any]) -> None:
        # Written synchronously, in order with the snapshot that may follow and with any later delta.
        broadcast([ws], orjson.dumps(body).decode())

    def _subscription(self, ws: ServerConnection, op: str, args: Any, base: dict[str, Any],
                      spot: bool = False) -> None:
        if not isinstance(args, list) or not all(isinstance(t, str) for t in args):
            self._reply(
                ws, {**base, "success": False, "ret_msg": "error:args must be a list of topics", "op": op}
            )
            return
        mine = self._subs.setdefault(ws, set())
        parse = self._parse_spot if spot else self._parse
        key = "spot:" if spot else ""  # a spot topic is spelt like a linear one: kept apart by its path
        for topic in args:
            if parse(topic) is None:
                self._reply(
                    ws,
                    {**base, "success": False, "ret_msg": f"error:handler not found,topic:{topic}", "op": op},
                )
                return
            if op == "subscribe" and key + topic in mine:
                self._reply(
                    ws,
                    {
                        **base,
                        "success": False,
                        "ret_msg": f"error:already subscribed,topic:{topic}",
                        "op": op,
                    },
                )
                return
        self._reply(ws, {**base, "op": op})
        for topic in args:
            if op == "unsubscribe":
                mine.discard(key + topic)
                self.unsubscribe(ws, key + topic)
                continue
            mine.add(key + topic)
            kind, asset, _ = parse(topic)  # type: ignore[misc]
            if spot:
                if not self.stalled and "spot" not in self.stalled_channels:
                    broadcast([ws], orjson.dumps(self.spot_orderbook(self.model.spot[asset])).decode())
            elif kind == "tickers":
                snap = {
                    "topic": topic,
                    "type": "snapshot",
                    "data": dict(self.state[asset]),
                    "cs": next(self._cs),
                    "ts": self.now_ms(),
                }
                broadcast([ws], orjson.dumps(snap).decode())
            elif kind == "orderbook":
                broadcast([ws], orjson.dumps(self.orderbook(self.model.quotes[asset])).decode())
            self.subscribe(ws, key + topic)

    def forget(self, ws: ServerConnection) -> None:
        self._subs.pop(ws, None)

    def _parse(self, topic: str) -> tuple[str, str, str] | None:
        """(kind, asset, interval) of a topic this venue serves, else None."""
        parts = topic.split(".")
        if len(parts) == 2 and parts[0] in ("tickers", "publicTrade") and parts[1] in self.by_symbol:
            return parts[0], self.by_symbol[parts[1]], ""
        if len(parts) == 3 and parts[0] == "orderbook" and parts[1] == "1" and parts[2] in self.by_symbol:
            return "orderbook", self.by_symbol[parts[2]], "1"
        if (
            len(parts) == 3
            and parts[0] == "kline"
            and parts[1] in KLINE_INTERVALS
            and parts[2] in self.by_symbol
        ):
            return "kline", self.by_symbol[parts[2]], parts[1]
        return None

    def _parse_spot(self, topic: str) -> tuple[str, str, str] | None:
        """(kind, asset, depth) of a spot topic this venue serves (``orderbook.1.BTCUSDT``), else None."""
        parts = topic.split(".")
        if len(parts) == 3 and parts[0] == "orderbook" and parts[1] == "1" and parts[2] in self.by_spot_symbol:
            return "orderbook", self.by_spot_symbol[parts[2]], "1"
        return None

    # --- frames ----------------------------------------------------------------------------------------

    def spot_orderbook(self, s: SpotQuote) -> dict[str, Any]:
        """Spot ``orderbook.1.{symbol}``: the top of the spot book, a snapshot every time (level 1)."""
        a, sym = s.asset, self.spot_symbols[s.asset]
        return {"topic": f"orderbook.1.{sym}", "type": "snapshot", "ts": s.ts_ms,
                "data": {"s": sym, "b": [[self._p(a, s.bid), self._q(a, s.bid_qty)]],
                         "a": [[self._p(a, s.ask), self._q(a, s.ask_qty)]], "u": s.update_id,
                         "seq": s.update_id}, "cts": s.ts_ms}

    def ticker_fields(self, q: AssetQuote, refresh: bool) -> dict[str, str]:
        """Every field of a ``tickers`` snapshot, as strings. Mark, index, funding, open interest and the
        24 h figures refresh once a second (``refresh``); the book on every call."""
        a = q.asset
        old = self.state.get(a, {})
        f = dict(old)
        f["symbol"] = self.symbols[a]
        f["bid1Price"], f["bid1Size"] = self._p(a, q.bid), self.size(a, q.bid_qty, q.bid)
        f["ask1Price"], f["ask1Size"] = self._p(a, q.ask), self.size(a, q.ask_qty, q.ask)
        last = self._p(a, q.last)
        if old.get("lastPrice") != last:
            prev = float(old.get("lastPrice", last))
            f["tickDirection"] = (
                "PlusTick"
                if q.last > prev
                else "MinusTick"
                if q.last < prev
                else old.get("tickDirection", "ZeroPlusTick")
            )
            f["lastPrice"] = last
        if refresh or not old:
            self._prev_1h[a] = self.model.candles.current(a, HOUR_MS, q.ts_ms)[1]
            oi = q.open_interest
            f.update(
                {
                    "price24hPcnt": f"{q.last / q.open_24h - 1:.6f}",
                    "prevPrice24h": self._p(a, q.open_24h),
                    "highPrice24h": self._p(a, q.high_24h),
                    "lowPrice24h": self._p(a, q.low_24h),
                    "prevPrice1h": self._p(a, self._prev_1h[a]),
                    "markPrice": self._p(a, q.mark),
                    "indexPrice": self._p(a, q.index),
                    **self._oi_fields(oi, q.mark),
                    # inverse: volume in USD contracts, turnover in coins
                    "turnover24h": f"{q.volume_24h:.8f}" if self.inverse else f"{q.turnover_24h:.4f}",
                    "volume24h": f"{round(q.turnover_24h)}" if self.inverse else f"{q.volume_24h:.4f}",
                    "fundingIntervalHour": str(q.funding_interval_h),
                    "fundingCap": "0.005",
                    **{f"single{k[0].upper()}{k[1:]}": v for k, v in self._oi_fields(oi / 2, q.mark).items()},
                    "nextFundingTime": str(q.next_funding_ms),
                    "fundingRate": f"{q.funding_rate:.7f}".rstrip("0").rstrip(".") if q.funding_rate else "0",
                }
            )
            f.setdefault("preOpenPrice", "")
            f.setdefault("preQty", "")
            f.setdefault("curPreListingPhase", "")
        return f

    def publish(self, step: int) -> None:
        tick_s = self.model.path.dt_s
        tickers = self.every("tickers", step, tick_s)
        refresh = step % max(1, round(1.0 / tick_s)) == 0
        kline = self.every("kline", step, tick_s)
        book = self.every("orderbook", step, tick_s)
        for a in self.model.assets:
            q = self.model.quotes[a]
            sym = self.symbols[a]
            if tickers:
                self._publish_ticker(q, refresh)
            if book and self.has_subscribers(f"orderbook.1.{sym}"):
                self.fanout("orderbook", f"orderbook.1.{sym}", self.orderbook(q))
            spot_topic = f"spot:orderbook.1.{self.spot_symbols.get(a)}"
            if book and self.has_subscribers(spot_topic):
                self.fanout("spot", spot_topic, self.spot_orderbook(self.model.spot[a]))
            if q.trades and self.has_subscribers(f"publicTrade.{sym}"):
                data = [
                    {
                        "T": q.ts_ms,
                        "s": sym,
                        "S": "Sell" if maker else "Buy",
                        "v": self.size(a, qty, price),
                        "p": self._p(a, price),
                        "L": self.state[a].get("tickDirection", "ZeroPlusTick"),
                        "i": f"{tid:08x}-sim-{sym}",
                        "BT": False,
                        "seq": tid,
                    }
                    for tid, price, qty, maker in q.trades
                ]
                self.fanout(
                    "publicTrade",
                    f"publicTrade.{sym}",
                    {"topic": f"publicTrade.{sym}", "type": "snapshot", "ts": q.ts_ms, "data": data},
                )
            if kline:
                for code in KLINE_INTERVALS:
                    if self.has_subscribers(f"kline.{code}.{sym}"):
                        self._publish_kline(q, code)

    def orderbook(self, q: AssetQuote) -> dict[str, Any]:
        """``orderbook.1.{symbol}``: the top of book, every message a snapshot as Bybit sends level 1."""
        a, sym = q.asset, self.symbols[q.asset]
        return {"topic": f"orderbook.1.{sym}", "type": "snapshot", "ts": q.ts_ms,
                "data": {"s": sym, "b": [[self._p(a, q.bid), self.size(a, q.bid_qty, q.bid)]],
                         "a": [[self._p(a, q.ask), self.size(a, q.ask_qty, q.ask)]], "u": q.update_id,
                         "seq": q.update_id}, "cts": q.ts_ms}

    def _publish_ticker(self, q: AssetQuote, refresh: bool) -> None:
        a = q.asset
        new = self.ticker_fields(q, refresh)
        factor = self.model.take_absurd(a)
        if factor is not None:
            for key in ("bid1Price", "ask1Price", "lastPrice", "markPrice"):
                new[key] = self._p(a, float(new[key]) * factor)
        old = self.state[a]
        delta = {k: v for k, v in new.items() if old.get(k) != v}
        self.state[a] = new
        if not delta:
            return
        topic = f"tickers.{self.symbols[a]}"
        if self.has_subscribers(topic):
            self.fanout(
                "tickers",
                topic,
                {
                    "topic": topic,
                    "type": "delta",
                    "data": {"symbol": self.symbols[a], **delta},
                    "cs": next(self._cs),
                    "ts": q.ts_ms,
                },
            )

    def _publish_kline(self, q: AssetQuote, code: str) -> None:
        a, sym = q.asset, self.symbols[q.asset]
        iv = INTERVALS_MS[KLINE_INTERVALS[code]]
        bar = self.model.candles.current(a, iv, q.ts_ms)
        frames = []
        prev_start = self._bar_start.get((a, code))
        if prev_start is not None and prev_start != bar[0]:
            done = self.model.candles.klines(a, iv, q.ts_ms, start_ms=prev_start, limit=1)
            frames += [self._kline(a, b, code, iv, True, q.ts_ms) for b in done]
        self._bar_start[(a, code)] = int(bar[0])
        frames.append(self._kline(a, bar, code, iv, False, q.ts_ms))
        topic = f"kline.{code}.{sym}"
        self.fanout("kline", topic, {"topic": topic, "data": frames, "ts": q.ts_ms, "type": "snapshot"})

    def _kline(self, a: str, bar: list[float], code: str, iv: int, confirm: bool, ts: int) -> dict[str, Any]:
        return {
            "start": int(bar[0]),
            "end": int(bar[0]) + iv - 1,
            "interval": code,
            "open": self._p(a, bar[1]),
            "close": self._p(a, bar[4]),
            "high": self._p(a, bar[2]),
            "low": self._p(a, bar[3]),
            "volume": f"{round(bar[5] * bar[4])}" if self.inverse else self._q(a, bar[5]),
            "turnover": f"{bar[5]:.8f}" if self.inverse else f"{bar[5] * bar[4]:.4f}",
            "confirm": confirm,
            "timestamp": ts,
        }

    # --- sizes: base units (linear) or USD contracts (inverse) -------------------------------------------

    def size(self, a: str, base_qty: float, px: float) -> str:
        """A base-unit size as this venue prints it: base units, or (inverse) whole contracts of 1 USD."""
        return str(max(1, round(base_qty * px))) if self.inverse else self._q(a, base_qty)

    def _oi_fields(self, oi: float, mark: float) -> dict[str, str]:
        """``openInterest`` and ``openInterestValue``: base and USD (linear), or USD and coins (inverse)."""
        if self.inverse:
            return {"openInterest": f"{round(oi * mark)}", "openInterestValue": f"{oi:.2f}"}
        return {"openInterest": f"{oi:.3f}", "openInterestValue": f"{oi * mark:.2f}"}

    # --- REST ------------------------------------------------------------------------------------------

    def rest(self, path: str, params: dict[str, str]) -> Any:
        handler = bybit_rest.ROUTES.get(path)
        if handler is None:
            raise RestError(404, {"retCode": 404, "retMsg": "Not Found"})
        try:
            result = handler(self, params)
        except bybit_rest.ParamError as exc:
            return {
                "retCode": 10001,
                "retMsg": str(exc),
                "result": {},
                "retExtInfo": {},
                "time": self.now_ms(),
            }
        return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": self.now_ms()}

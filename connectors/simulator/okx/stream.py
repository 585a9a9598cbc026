"""OKX v5, as ``ws.okx.com:8443/ws/v5/{public,business}`` and ``www.okx.com/api/v5`` speak it.

Websocket: ``{"op":"subscribe","args":[{"channel":..,"instId":..}]}`` answered per argument with
``{"event":"subscribe","arg":{..},"connId":..}``; errors ``{"event":"error","code":..,"msg":..,"connId":..}``.
Public channels ``tickers``, ``mark-price``, ``funding-rate``, ``open-interest``, ``trades`` (instId
``BTC-USDT-SWAP``) and ``index-tickers`` (instId ``BTC-USDT``); candles (``candle1m``, ``index-candle1m``...)
only on ``/ws/v5/business``. Pushes are ``{"arg":{..},"data":[{..}]}`` with string numbers, sizes in contracts
(``ctVal`` base units each). Text ``ping`` is answered ``pong``; a connection with no traffic either way for
30 s is closed, as OKX does.

The venue's spot market is served on the same paths: ``tickers`` of the spot pair (instId ``BTC-USDT``,
``instType`` SPOT, sizes in base units) and ``instruments?instType=SPOT``. Spot frames go out on the
channel ``spot`` (a ``stall_channel`` fault names it).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, broadcast

from hedgewatch.connectors.simulator.candles import INTERVALS_MS
from hedgewatch.connectors.simulator.okx import rest as okx_rest
from hedgewatch.connectors.simulator.okx.rest import BARS
from hedgewatch.connectors.simulator.transport import RestError, VenueServer
from hedgewatch.connectors.simulator.venue import AssetQuote, SpotQuote, dated_price, quarterly_expiries

SWAP_CHANNELS = ("tickers", "mark-price", "funding-rate", "open-interest", "trades")


class OkxServer(VenueServer):
    """An OKX v5 venue (perpetual swaps) on one loopback port."""

    exchange = "okx"
    default_ping_interval_s = None
    default_idle_timeout_s = 30.0
    idle_counts_pushes = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # coin-margined: <A>-USD-SWAP, a contract is ctVal USD (100 for BTC, 10 for the others), settled in <A>
        self.inverse = self.spec.inverse
        quote = "USD" if self.inverse else self.model.path.scenario.quote
        self.swaps = {a: f"{a}-{quote}-SWAP" for a in self.model.assets}
        self.indexes = {a: f"{a}-{quote}" for a in self.model.assets}
        self.by_swap = {s: a for a, s in self.swaps.items()}
        self.by_index = {s: a for a, s in self.indexes.items()}
        spot_quote = self.model.path.scenario.quote
        self.spot_pairs = {a: f"{a}-{spot_quote}" for a in self.model.assets if a not in self.model.path.composites}
        self.by_spot = {s: a for a, s in self.spot_pairs.items()}
        self.ct_val = {a: (100.0 if a == "BTC" else 10.0) if self.inverse else self.model.path.specs[a].okx_ct_val
                       for a in self.model.assets}
        # quarterly futures: instId (BTC-USDT-261225) -> (asset, settlement ms, alias)
        self.futures: dict[str, tuple[str, int, str]] = {}
        for a in self.model.assets:
            for alias, exp in zip(("this_quarter", "next_quarter"), quarterly_expiries(self.now_ms()), strict=True):
                self.futures[f"{a}-{quote}-{time.strftime('%y%m%d', time.gmtime(exp / 1000))}"] = (a, exp, alias)
        self._conn_ids = itertools.count(0x49D9B4FC)
        self._subs: dict[ServerConnection, set[tuple[str, str]]] = {}
        self._bar_start: dict[tuple[str, str], int] = {}

    def accepts_path(self, path: str, query: str) -> bool:
        return path.rstrip("/") in ("/ws/v5/public", "/ws/v5/business")

    # --- websocket -------------------------------------------------------------------------------------

    async def serve_ws(self, ws: ServerConnection) -> None:
        conn_id = f"{next(self._conn_ids):08x}"
        business = (ws.request.path if ws.request else "").rstrip("/").endswith("business")
        self._subs[ws] = set()
        while True:
            msg = await self.recv(ws)
            if msg is None:
                return
            if msg == "ping":
                broadcast([ws], "pong")
                continue
            try:
                req = orjson.loads(msg)
            except orjson.JSONDecodeError:
                req = None
            if (
                not isinstance(req, dict)
                or req.get("op") not in ("subscribe", "unsubscribe")
                or not isinstance(req.get("args"), list)
            ):
                self._send(
                    ws,
                    {
                        "event": "error",
                        "code": "60012",
                        "msg": f"Invalid request: {msg!s:.200}",
                        "connId": conn_id,
                    },
                )
                continue
            for arg in req["args"]:
                self._subscription(ws, req["op"], arg, business, conn_id, req.get("id"))

    def _send(self, ws: ServerConnection, body: Any) -> None:
        broadcast([ws], orjson.dumps(body).decode())

    def _subscription(
        self, ws: ServerConnection, op: str, arg: Any, business: bool, conn_id: str, req_id: Any
    ) -> None:
        parsed = self._parse(arg, business) if isinstance(arg, dict) else None
        extra = {"id": req_id} if req_id is not None else {}
        if parsed is None:
            desc = ",".join(f"{k}:{v}" for k, v in arg.items()) if isinstance(arg, dict) else str(arg)
            self._send(
                ws,
                {
                    **extra,
                    "event": "error",
                    "code": "60018",
                    "msg": f"Wrong URL or channel:{desc} doesn't exist. Please use the correct URL, "
                    "channel and parameters referring to API document.",
                    "connId": conn_id,
                },
            )
            return
        topic = f"{arg['channel']}:{arg['instId']}"
        clean = {"channel": arg["channel"], "instId": arg["instId"]}
        self._send(ws, {**extra, "event": op, "arg": clean, "connId": conn_id})
        if op == "unsubscribe":
            self._subs[ws].discard((arg["channel"], arg["instId"]))
            self.unsubscribe(ws, topic)
            return
        self._subs[ws].add((arg["channel"], arg["instId"]))
        first = self._frame(parsed[0], parsed[1], self.model.quotes[parsed[1]], parsed[2])
        stall = "spot" if parsed[0] == "spot-tickers" else parsed[0]
        if first is not None and not self.stalled and stall not in self.stalled_channels:
            self._send(ws, {"arg": clean, "data": first})  # the current value right away, as OKX does
        self.subscribe(ws, topic)

    def forget(self, ws: ServerConnection) -> None:
        self._subs.pop(ws, None)

    def _parse(self, arg: dict[str, Any], business: bool) -> tuple[str, str, str] | None:
        """(channel kind, asset, bar) of a subscription argument this path serves, else None."""
        channel, inst = arg.get("channel"), arg.get("instId")
        if not isinstance(channel, str) or not isinstance(inst, str):
            return None
        if channel in SWAP_CHANNELS and not business and inst in self.by_swap:
            return channel, self.by_swap[inst], ""
        if channel == "tickers" and not business and inst in self.by_spot:
            return "spot-tickers", self.by_spot[inst], ""
        if channel == "tickers" and not business and inst in self.futures:
            return "futures-tickers", self.futures[inst][0], inst
        if channel == "index-tickers" and not business and inst in self.by_index:
            return channel, self.by_index[inst], ""
        if channel.startswith("index-candle") and business and channel[12:] in BARS and inst in self.by_index:
            return "candle", self.by_index[inst], channel[12:]
        if channel.startswith("candle") and business and channel[6:] in BARS and inst in self.by_swap:
            return "candle", self.by_swap[inst], channel[6:]
        return None

    # --- frames ----------------------------------------------------------------------------------------

    def publish(self, step: int) -> None:
        tick_s = self.model.path.dt_s
        due = [ch for ch in (*SWAP_CHANNELS, "index-tickers") if self.every(ch, step, tick_s)]
        candles = self.every("candle", step, tick_s)
        for a in self.model.assets:
            q = self.model.quotes[a]
            for ch in due:
                inst = self.indexes[a] if ch == "index-tickers" else self.swaps[a]
                topic = f"{ch}:{inst}"
                if self.has_subscribers(topic):
                    data = self._frame(ch, a, q, "")
                    if data:
                        self.fanout(ch, topic, {"arg": {"channel": ch, "instId": inst}, "data": data})
            if candles:
                self._publish_candles(a, q)
        if "tickers" in due:
            for a, inst in self.spot_pairs.items():
                topic = f"tickers:{inst}"
                if self.has_subscribers(topic):
                    row = self.spot_ticker(self.model.spot[a])
                    self.fanout("spot", topic, {"arg": {"channel": "tickers", "instId": inst}, "data": [row]})
            for inst, (a, _, _) in self.futures.items():
                topic = f"tickers:{inst}"
                if self.has_subscribers(topic):
                    data = self._frame("futures-tickers", a, self.model.quotes[a], inst)
                    self.fanout("tickers", topic, {"arg": {"channel": "tickers", "instId": inst}, "data": data})

    def _frame(self, channel: str, a: str, q: AssetQuote, bar: str) -> list[dict[str, Any]] | None:
        ts = str(q.ts_ms)
        swap = self.swaps[a]
        if channel == "tickers":
            return [self.ticker(q)]
        if channel == "spot-tickers":
            return [self.spot_ticker(self.model.spot[a])]
        if channel == "futures-tickers":  # ``bar`` is the future's instId
            return [self.dated_ticker(q, bar, self.futures[bar][1])]
        if channel == "mark-price":
            return [{"instType": "SWAP", "instId": swap, "markPx": self._p(a, q.mark), "ts": ts}]
        if channel == "index-tickers":
            return [
                {
                    "instId": self.indexes[a],
                    "idxPx": self._p(a, q.index),
                    "high24h": self._p(a, q.high_24h),
                    "low24h": self._p(a, q.low_24h),
                    "open24h": self._p(a, q.open_24h),
                    "sodUtc0": self._p(a, q.open_24h),
                    "sodUtc8": self._p(a, q.open_24h),
                    "ts": ts,
                }
            ]
        if channel == "funding-rate":
            return [okx_rest.funding(self, a)]
        if channel == "open-interest":
            return [okx_rest.open_interest_row(self, a)]
        if channel == "trades":
            return [
                {
                    "instId": swap,
                    "tradeId": str(tid),
                    "px": self._p(a, px),
                    "sz": self._ct(a, qty, px),
                    "side": "sell" if maker else "buy",
                    "ts": ts,
                    "count": "1",
                }
                for tid, px, qty, maker in q.trades
            ] or None
        return None  # candles are sent by _publish_candles

    def contracts(self, a: str, base_qty: float, px: float | None = None) -> float:
        """A base-unit size in contracts: ``ctVal`` base units each, or (inverse) ``ctVal`` USD at ``px``."""
        if self.inverse:
            return base_qty * (px or self.model.quotes[a].mark) / self.ct_val[a]
        return base_qty / self.ct_val[a]

    def _ct(self, a: str, base_qty: float, px: float | None = None) -> str:
        """A base-unit size in contracts, as OKX prints sizes."""
        return f"{self.contracts(a, base_qty, px):.2f}".rstrip("0").rstrip(".")

    def ticker(self, q: AssetQuote) -> dict[str, Any]:
        a = q.asset
        bid, ask, last = q.bid, q.ask, q.last
        factor = self.model.take_absurd(a)
        if factor is not None:
            bid, ask, last = bid * factor, ask * factor, last * factor
        return {
            "instType": "SWAP",
            "instId": self.swaps[a],
            "last": self._p(a, last),
            "lastSz": self._ct(a, q.last_qty),
            "askPx": self._p(a, ask),
            "askSz": self._ct(a, q.ask_qty),
            "bidPx": self._p(a, bid),
            "bidSz": self._ct(a, q.bid_qty),
            "open24h": self._p(a, q.open_24h),
            "high24h": self._p(a, q.high_24h),
            "low24h": self._p(a, q.low_24h),
            "sodUtc0": self._p(a, q.open_24h),
            "sodUtc8": self._p(a, q.open_24h),
            "volCcy24h": f"{q.volume_24h:.4f}",
            "vol24h": self._ct(a, q.volume_24h),
            "ts": str(q.ts_ms),
        }

    def spot_ticker(self, s: SpotQuote) -> dict[str, Any]:
        """The ``tickers`` row of the spot pair (``instType`` SPOT): sizes in base units."""
        a = s.asset
        q = self.model.quotes[a]
        ratio = s.mid / q.mid if q.mid else 1.0  # the 24 h figures of the spot pair, scaled from the swap's
        return {
            "instType": "SPOT",
            "instId": self.spot_pairs[a],
            "last": self._p(a, s.bid if q.trades and q.trades[-1][3] else s.ask),
            "lastSz": self._q(a, s.bid_qty),
            "askPx": self._p(a, s.ask),
            "askSz": self._q(a, s.ask_qty),
            "bidPx": self._p(a, s.bid),
            "bidSz": self._q(a, s.bid_qty),
            "open24h": self._p(a, q.open_24h * ratio),
            "high24h": self._p(a, q.high_24h * ratio),
            "low24h": self._p(a, q.low_24h * ratio),
            "sodUtc0": self._p(a, q.open_24h * ratio),
            "sodUtc8": self._p(a, q.open_24h * ratio),
            "volCcy24h": f"{q.turnover_24h * ratio:.4f}",
            "vol24h": self._q(a, q.volume_24h),
            "ts": str(s.ts_ms),
        }

    def dated_ticker(self, q: AssetQuote, inst: str, expiry_ms: int) -> dict[str, Any]:
        """The ``tickers`` row of a quarterly future: the swap's moved to the dated fair price."""
        a = q.asset
        shift = dated_price(q, expiry_ms) - q.mid
        row = self.ticker(q)
        row.update(instType="FUTURES", instId=inst, last=self._p(a, q.last + shift),
                   askPx=self._p(a, q.ask + shift), bidPx=self._p(a, q.bid + shift))
        return row

    def _publish_candles(self, a: str, q: AssetQuote) -> None:
        for inst, prefix, index in (
            (self.swaps[a], "candle", False),
            (self.indexes[a], "index-candle", True),
        ):
            for code, name in BARS.items():
                topic = f"{prefix}{code}:{inst}"
                if not self.has_subscribers(topic):
                    continue
                iv = INTERVALS_MS[name]
                bar = self.model.candles.current(a, iv, q.ts_ms)
                rows = []
                prev = self._bar_start.get((topic, a))
                if prev is not None and prev != bar[0]:
                    rows += [
                        okx_rest.candle_row(self, a, b, True, index)
                        for b in self.model.candles.klines(a, iv, q.ts_ms, start_ms=prev, limit=1)
                    ]
                self._bar_start[(topic, a)] = int(bar[0])
                rows.append(okx_rest.candle_row(self, a, bar, False, index))
                for row in rows:
                    self.fanout(
                        "candle",
                        topic,
                        {"arg": {"channel": f"{prefix}{code}", "instId": inst}, "data": [row]},
                    )

    # --- REST ------------------------------------------------------------------------------------------

    def rest(self, path: str, params: dict[str, str]) -> Any:
        handler = okx_rest.ROUTES.get(path)
        if handler is None:
            raise RestError(404, {"code": "404", "msg": "Not Found", "data": []})
        try:
            data = handler(self, params)
        except okx_rest.ParamError as exc:
            raise RestError(400, {"code": exc.code, "msg": str(exc), "data": []}) from exc
        return {"code": "0", "msg": "", "data": data}

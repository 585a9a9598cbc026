"""Spot markets as the index's price source: each venue's spot decoder on frames in the venues' documented
shapes, the spot instrument lists, the perpetual standing in for a quiet spot feed (the market choice on
an injected clock), the simulator's spot markets through real websockets, and the whole daemon against the
simulator and a real redis-server: the index priced from spot, a realistic basis against it, a spot feed
going quiet and coming back without an alert."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from pathlib import Path
from typing import Any

import ccxt.pro as ccxtpro
import orjson
import pytest
import redis.asyncio as aioredis

from hedgewatch.connectors.base import FeedContext, Route
from hedgewatch.connectors.binance.connector import BinanceSpotProtocol, BinanceUsdmConnector
from hedgewatch.connectors.binance.decode import BOOK
from hedgewatch.connectors.binance.instruments import binance_spot
from hedgewatch.connectors.bybit.connector import BybitConnector, BybitSpotProtocol
from hedgewatch.connectors.bybit.decode import BOOK as BYBIT_BOOK
from hedgewatch.connectors.bybit.instruments import bybit_spot
from hedgewatch.connectors.ccxt import connector as ccxt_generic
from hedgewatch.connectors.ccxt.connector import CcxtConnector, spot_source
from hedgewatch.connectors.okx.connector import OkxConnector, OkxProtocol
from hedgewatch.connectors.okx.decode import TICKERS
from hedgewatch.connectors.okx.instruments import okx_spot
from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.connectors.simulator.scenario import Fault
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import SourceConfig, config_from_dict
from hedgewatch.service.errors import RejectedMessage
from hedgewatch.service.events import Market, MarkPrice, Quote
from hedgewatch.service.market import MarketState
from hedgewatch.service.market_metrics import GaugeExporter
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.oracle import OK, VALID
from tests.connector_fakes import FAST, metric, of, running
from tests.market_support import config
from tests.stepped import settle, warm_up
from tests.support import RedisServer, free_port, wait_for
from tests.test_connector_ccxt import MARKETS as CCXT_SPOT
from tests.test_connector_ccxt import SWAP as CCXT_SWAP
from tests.test_connector_ccxt import FakeBinanceUsdm

# --- decoders on the venues' documented frames ---------------------------------------------------------

# Binance spot ``<symbol>@bookTicker`` on a combined stream: the payload of Binance's spot WebSocket
# Streams documentation; unlike the futures one it has no event type ``e`` and no event time ``E``.
BINANCE_SPOT_BOOK = {"stream": "bnbusdt@bookTicker", "data": {
    "u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000", "a": "25.36520000",
    "A": "40.66000000"}}
# Bybit v5 ``orderbook.1.{symbol}`` on /v5/public/spot, in the documented shape (level 1 is snapshots only)
BYBIT_SPOT_BOOK = {"topic": "orderbook.1.BTCUSDT", "type": "snapshot", "ts": 1672304484978, "data": {
    "s": "BTCUSDT", "b": [["16493.50", "0.006"]], "a": [["16494.00", "0.029"]], "u": 18521288,
    "seq": 7961638724}, "cts": 1672304484976}
# OKX v5 ``tickers`` of a spot pair (instType SPOT), in the documented shape
OKX_SPOT_TICKER = {"arg": {"channel": "tickers", "instId": "BTC-USDT"}, "data": [{
    "instType": "SPOT", "instId": "BTC-USDT", "last": "9999.99", "lastSz": "0.1", "askPx": "10000.01",
    "askSz": "11", "bidPx": "9999.98", "bidSz": "5", "open24h": "9000", "high24h": "10000",
    "low24h": "8888.88", "volCcy24h": "2222", "vol24h": "2222", "sodUtc0": "2222", "sodUtc8": "2222",
    "ts": "1597026383085"}]}


def ctx(name: str, sink: list[Any], clock: float = 1000.0) -> FeedContext:
    return FeedContext(name, sink.append, Metrics(), lambda: clock, FAST)


def test_binance_spot_book_ticker_is_a_spot_quote_stamped_on_receipt() -> None:
    out: list[Any] = []
    p = BinanceSpotProtocol(ctx("binanceusdm", out), "ws://x/stream",
                            [Route("bnbusdt@bookTicker", "spot", BOOK, "BNB", "BNBUSDT", "USDT", 0.1)])
    p.handle(orjson.dumps(BINANCE_SPOT_BOOK))
    assert out == [Quote("binanceusdm", "BNB", "BNBUSDT", 25.3519, 25.3652, 1000.0, 1000.0, "USDT", Market.SPOT)]
    # the generic path (numbers as JSON numbers do not fit the typed schema) says the same
    p.handle(orjson.dumps({"stream": "bnbusdt@bookTicker", "data": {**BINANCE_SPOT_BOOK["data"],
                                                                     "u": 400900218, "b": 25.352}}))
    assert out[-1].bid == 25.352 and out[-1].market == Market.SPOT
    p.handle(orjson.dumps({"result": None, "id": 1}))  # a subscribe reply is no quote
    assert len(out) == 2
    with pytest.raises(RejectedMessage):  # an older update id: out of order
        p.handle(orjson.dumps(BINANCE_SPOT_BOOK))
    with pytest.raises(RejectedMessage):
        p.handle(orjson.dumps({"stream": "bnbusdt@bookTicker", "data": {"u": 400900300, "s": "BNBUSDT"}}))


def test_bybit_spot_level_one_book_snapshots_and_deltas() -> None:
    out: list[Any] = []
    p = BybitSpotProtocol(ctx("bybit", out), "ws://x/v5/public/spot",
                          [Route("orderbook.1.BTCUSDT", "spot", BYBIT_BOOK, "BTC", "BTCUSDT", "USDT", 1.0)])
    p.handle(orjson.dumps(BYBIT_SPOT_BOOK))
    assert out == [Quote("bybit", "BTC", "BTCUSDT", 16493.5, 16494.0, 1672304484.978, 1000.0, "USDT",
                         Market.SPOT)]
    # an unchanged book is re-sent every 3 s with the same update id: accepted
    p.handle(orjson.dumps({**BYBIT_SPOT_BOOK, "ts": 1672304487978}))
    assert len(out) == 2 and out[-1].ts_exchange == 1672304487.978
    # a delta naming one side replaces it; a size of 0 empties it and no quote follows
    delta = {**BYBIT_SPOT_BOOK, "type": "delta", "data": {**BYBIT_SPOT_BOOK["data"], "u": 18521289,
                                                           "b": [["16493.80", "0.1"]], "a": []}}
    p.handle(orjson.dumps(delta))
    assert (out[-1].bid, out[-1].ask) == (16493.8, 16494.0)
    gone = {**delta, "data": {**delta["data"], "u": 18521290, "b": [["16493.80", "0"]]}}
    p.handle(orjson.dumps(gone))
    assert len(out) == 3
    # the venue restarted its book: ``u`` = 1 in a snapshot starts the numbering afresh
    p.handle(orjson.dumps({**BYBIT_SPOT_BOOK, "data": {**BYBIT_SPOT_BOOK["data"], "u": 1}}))
    assert len(out) == 4
    with pytest.raises(RejectedMessage):  # a delta before any snapshot on a new connection
        p.on_connect()
        p.handle(orjson.dumps(delta))
    p.handle(orjson.dumps({"success": True, "ret_msg": "pong", "conn_id": "c", "op": "ping"}))


def test_okx_spot_tickers_row_is_a_spot_quote() -> None:
    out: list[Any] = []
    p = OkxProtocol(ctx("okx", out), "ws://x/ws/v5/public",
                    [Route("spot:BTC-USDT", "spot", TICKERS, "BTC", "BTC-USDT", "USDT", 0.1,
                           topic={"channel": "tickers", "instId": "BTC-USDT"})])
    p.market = Market.SPOT
    p.handle(orjson.dumps(OKX_SPOT_TICKER))
    assert out == [Quote("okx", "BTC", "BTC-USDT", 9999.98, 10000.01, 1597026383.085, 1000.0, "USDT",
                         Market.SPOT)]


def test_spot_instrument_lists() -> None:
    binance = {"timezone": "UTC", "symbols": [
        {"symbol": "ETHBTC", "status": "TRADING", "baseAsset": "ETH", "quoteAsset": "BTC"},
        {"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"},
        {"symbol": "LUNAUSDT", "status": "BREAK", "baseAsset": "LUNA", "quoteAsset": "USDT"}]}
    assert [i.instrument for i in binance_spot(binance, ["BTC", "ETH", "LUNA"], "USDT")] == ["BTCUSDT"]
    bybit = {"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": [
        {"symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT", "status": "Trading"},
        {"symbol": "ETHUSDC", "baseCoin": "ETH", "quoteCoin": "USDC", "status": "Trading"}]}}
    assert [i.instrument for i in bybit_spot(bybit, ["BTC", "ETH"], "USDT")] == ["BTCUSDT"]
    okx = {"code": "0", "msg": "", "data": [
        {"instType": "SPOT", "instId": "BTC-USDT", "baseCcy": "BTC", "quoteCcy": "USDT", "state": "live"},
        {"instType": "SPOT", "instId": "ETH-USDT", "baseCcy": "ETH", "quoteCcy": "USDT", "state": "suspend"}]}
    assert [i.instrument for i in okx_spot(okx, ["BTC", "ETH"], "USDT")] == ["BTC-USDT"]


def test_where_a_source_finds_its_spot_market() -> None:
    def spot(**kw: Any) -> tuple[str | None, str | None, str]:
        src = SourceConfig.model_validate({"exchange": "binanceusdm", "symbols": ["BTC"], **kw})
        return BinanceUsdmConnector(src, [].append, Metrics()).spot_endpoints()

    assert spot()[:2] == ("wss://stream.binance.com:9443", "https://api.binance.com")
    # a websocket pointing elsewhere serves what it serves: no spot market unless one is named
    assert spot(ws_url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1")[0] is None
    assert spot(ws_url="ws://127.0.0.1:1", rest_url="http://127.0.0.1:1", spot_ws_url="ws://127.0.0.1:2/spot",
                spot_rest_url="http://127.0.0.1:2")[:2] == ("ws://127.0.0.1:2/spot", "http://127.0.0.1:2")
    assert spot(market="perp")[0] is None and spot(channels=["mark"])[0] is None
    # Bybit and OKX list their spot pairs on the perpetuals' REST host
    src = SourceConfig(exchange="bybit", symbols=("BTC",), rest_url="http://127.0.0.1:3",
                       spot_ws_url="ws://127.0.0.1:3")
    assert BybitConnector(src, [].append, Metrics()).spot_endpoints()[:2] == ("ws://127.0.0.1:3",
                                                                               "http://127.0.0.1:3")
    assert OkxConnector(SourceConfig(exchange="okx", symbols=("BTC",)), [].append,
                        Metrics()).spot_endpoints()[:2] == ("wss://ws.okx.com:8443", "https://www.okx.com")


# --- the market choice on an injected clock ---------------------------------------------------------------


def q(venue: str, price: float, ts: float, market: str) -> Quote:
    return Quote(venue, "BTC", "BTCUSDT", price, price, ts, ts, "USD", market)


def source_state(m: MarketState, venue: str, now: float) -> dict[str, Any]:
    return m.state(now)["oracle"]["BTC"]["sources"][venue]


def test_spot_prices_the_venue_and_its_perpetual_stands_in_while_spot_is_quiet() -> None:
    cfg = config(assets=("BTC",))  # spot_max_age 5 s, spot_return 10 s
    m = MarketState(cfg, 0.0)
    venues = ("binanceusdm", "bybit", "okx")
    for i, v in enumerate(venues):
        m.apply(q(v, 100.3 + i * 0.01, 0.0, Market.PERP))  # perpetuals first: they price until spot comes
    assert source_state(m, "okx", 0.0)["market"] == "perp"
    for i, v in enumerate(venues):
        m.apply(q(v, 100.0 + i * 0.01, 0.5, Market.SPOT))  # the first spot quote takes over at once
    assert m.oracle("BTC").price == pytest.approx(100.01)  # type: ignore[union-attr]
    assert {source_state(m, v, 1.0)["market"] for v in venues} == {"spot"}
    m.drain_transitions()
    t = 0.5
    while t < 20.0:  # okx's spot goes quiet at 0.5 s; everything else keeps quoting
        t += 0.5
        for i, v in enumerate(venues):
            m.apply(q(v, 100.3 + i * 0.01, t, Market.PERP))
            if v != "okx":
                m.apply(q(v, 100.0 + i * 0.01, t, Market.SPOT))
        m.tick(t)
        st = source_state(m, "okx", t)
        assert st["status"] == VALID and m.oracle("BTC").status == OK  # type: ignore[union-attr]
        assert st["market"] == ("spot" if t <= 5.5 else "perp"), t
    assert st["price"] == pytest.approx(100.32) and st["spot_age_s"] == pytest.approx(19.5)
    metrics = Metrics()
    GaugeExporter().export(m, metrics, t)
    spot_gauge = {v: metric(metrics, "hedgewatch_source_spot", asset="BTC", exchange=v) for v in venues}
    assert spot_gauge == {"binanceusdm": 1.0, "bybit": 1.0, "okx": 0.0}
    switches = [tr for tr in m.drain_transitions() if tr.kind == "market"]
    assert [(s.source, s.old, s.new) for s in switches] == [("okx", "spot", "perp")]
    # spot back: it takes over again after quoting 10 s without a gap, not on its first quote
    back = t + 0.5
    while t < back + 12.0:
        t += 0.5
        for i, v in enumerate(venues):
            m.apply(q(v, 100.3 + i * 0.01, t, Market.PERP))
            m.apply(q(v, 100.0 + i * 0.01, t, Market.SPOT))
        m.tick(t)
        assert source_state(m, "okx", t)["market"] == ("perp" if t < back + 10.0 else "spot"), t
    switches = [tr for tr in m.drain_transitions() if tr.kind == "market"]
    assert [(s.source, s.old, s.new) for s in switches] == [("okx", "perp", "spot")]
    assert source_state(m, "okx", t)["market_switches"] == 2


def test_a_perp_source_and_a_venue_without_a_spot_pair() -> None:
    cfg = config(assets=("BTC",))
    cfg = cfg.model_copy(update={"sources": tuple(
        s.model_copy(update={"market": "perp"}) if s.exchange == "bybit" else s for s in cfg.sources)})
    m = MarketState(cfg, 0.0)
    for t in (0.0, 1.0):
        for v in ("binanceusdm", "bybit", "okx"):
            m.apply(q(v, 100.3, t, Market.PERP))
        m.apply(q("bybit", 100.0, t, Market.SPOT))  # ignored: bybit prices from its perpetual
        m.apply(q("binanceusdm", 100.0, t, Market.SPOT))
    st = m.state(1.0)["oracle"]["BTC"]["sources"]
    assert st["bybit"]["market"] == "perp" and st["bybit"]["price"] == pytest.approx(100.3)
    assert st["binanceusdm"]["market"] == "spot" and st["binanceusdm"]["price"] == pytest.approx(100.0)
    assert st["okx"]["market"] == "perp" and st["okx"]["market_reason"] == "no spot quote yet"


def test_basis_contango_and_backwardation_are_against_the_spot_index() -> None:
    def derivatives(spot: float, perp: float, mark: float) -> dict[str, Any]:
        m = MarketState(config(assets=("BTC",)), 0.0)
        for v in ("binanceusdm", "bybit", "okx"):
            m.apply(q(v, perp, 1.0, Market.PERP))
            m.apply(q(v, spot, 1.0, Market.SPOT))
            m.apply(MarkPrice(v, "BTC", "BTCUSDT", mark, None, 1.0, 1.0, "USD"))
        return m.snapshot(1.0)["derivatives"]

    # shorts crowding in: the perpetuals trade 0.3 % under spot
    d = derivatives(spot=100.0, perp=99.7, mark=99.7)
    assert d["basis_ratio"] == pytest.approx(-0.003) and d["state"] == "backwardation"
    d = derivatives(spot=100.0, perp=100.2, mark=100.2)
    assert d["basis_ratio"] == pytest.approx(0.002) and d["state"] == "contango"


# --- the simulator's spot markets through real websockets ---------------------------------------------


async def test_simulated_venues_serve_spot_below_the_perpetual_by_the_basis() -> None:
    sc = load_scenario("default.yaml")
    assets = {a: s.model_copy(update={"spot_basis_bps": 20.0}) for a, s in sc.assets.items()}
    async with Simulator(sc.model_copy(update={"assets": assets})) as sim:
        linear = [ep for ep in sim.endpoints if ep.quote == "USDT"]
        assert {ep.exchange for ep in linear} == {"binanceusdm", "bybit", "okx"}
        for ep in linear:
            src = SourceConfig.model_validate({**ep.source(["BTC", "ETH"]), "channels": ["quotes"]})
            async with running(src) as (conn, events, _m):
                def both() -> bool:
                    got = {(e.asset, e.market) for e in of(events, Quote)}
                    return len(got) == 4
                await wait_for(both, 10, f"{ep.name}: spot and perpetual quotes")
                await wait_for(lambda: len(of(events, Quote)) > 80, 10)
                status = conn.status()
            assert status["spot"]["state"] == "running"
            assert any(name.startswith("spot-") for name in status["connections"])
            for a in ("BTC", "ETH"):
                spot = [e.mid for e in of(events, Quote) if e.asset == a and e.market == Market.SPOT]
                perp = [e.mid for e in of(events, Quote) if e.asset == a and e.market == Market.PERP]
                ratio = statistics.median(perp) / statistics.median(spot) - 1.0
                assert ratio == pytest.approx(0.002, abs=0.0006), (ep.name, a, ratio)
                pair = next(e.instrument for e in of(events, Quote) if e.asset == a and e.market == Market.SPOT)
                assert pair == (f"{a}-USDT" if ep.exchange == "okx" else f"{a}USDT")


# --- the whole daemon ---------------------------------------------------------------------------------------

BASIS_BPS = 25.0
QUIET_AT_S, QUIET_FOR_S = 80.0, 30.0
RULES = """
groups:
  - name: g
    rules:
      - {name: SourceDown, event: [source_stale, source_excluded], action: notify}
      - {name: NotOk, expr: 'index_degraded or index_stale', action: notify}
"""


async def test_the_daemon_prices_the_index_from_spot_with_the_perpetual_standing_in(
        redis_srv: RedisServer, tmp_path: Path) -> None:
    sc = load_scenario("default.yaml")
    assets = {a: s.model_copy(update={"spot_basis_bps": BASIS_BPS, "volatility": 0.3})
              for a, s in sc.assets.items()}
    linear = tuple(v for v in sc.venues if not v.inverse and v.protocol != "binancecoinm")
    quiet = Fault(at_s=QUIET_AT_S, venue="okx", kind="stall_channel", channel="spot", duration_s=QUIET_FOR_S)
    sc = sc.model_copy(update={"assets": assets, "venues": linear, "speed": 1e-9, "faults": (quiet,)})
    (tmp_path / "rules.yaml").write_text(RULES)
    async with Simulator(sc) as sim:
        assert sim.path is not None
        path = sim.path
        names = list(sc.assets)
        sources = [{**ep.source(names), "channels": ["quotes", "mark", "funding"]} for ep in sim.endpoints]
        data = {"sources": sources,
                "index": {"name": "SPOT", "constituents": names, "weighting": "equal", "publish_interval_s": 0.5},
                "rules": {"files": [str(tmp_path / "rules.yaml")]}, "http": {"port": free_port()},
                "redis": {"url": redis_srv.url, "prefix": "spot", "outbox_dir": str(tmp_path / "outbox")}}
        daemon = Daemon(config_from_dict(data, "<spot>", {}), clock=lambda: path.now_ms / 1000.0)
        stop = asyncio.Event()
        run = asyncio.create_task(daemon.run(stop))
        seen: list[tuple[float, dict[str, str], str, float | None]] = []
        try:
            await daemon.started.wait()
            def warm() -> bool:  # every venue connected on every market: quotes, marks, spot
                m = daemon.market
                now = path.now_ms / 1000.0
                spot = all(s.get("market") == "spot" for s in m.state(now)["oracle"]["BTC"]["sources"].values())
                return m.ready and m.status == OK and spot and m.snapshot(now)["derivatives"]["futures_coverage"] == 1.0

            await warm_up(sim, daemon, warm, QUIET_AT_S - 30)
            while path.elapsed_s < QUIET_AT_S + QUIET_FOR_S + 30.0:
                sim.step()
                await settle(daemon)
                now = path.now_ms / 1000.0
                btc = daemon.market.state(now)["oracle"]["BTC"]["sources"]
                deriv = daemon.market.snapshot(now)["derivatives"]
                seen.append((path.elapsed_s, {v: s.get("market", "") for v, s in btc.items()},
                             daemon.market.status, deriv["basis_ratio"]))
            r = aioredis.Redis.from_url(redis_srv.url)
            try:
                stored = orjson.loads(await r.get("spot:state:SPOT"))
                alerts = await r.xrange("spot:alerts:stream")
            finally:
                await r.aclose()
        finally:
            stop.set()
            assert await asyncio.wait_for(run, 10) == 0
    venues = {"binanceusdm", "bybit", "okx"}
    # before the quiet spell every venue is priced from spot, and the index with it: the index level sits
    # the basis below the synthetic perpetual, so the basis is the simulator's, not zero
    before = [s for s in seen if s[0] < QUIET_AT_S]
    assert before and all(m == dict.fromkeys(venues, "spot") for _, m, _, _ in before)
    ratios = [b for *_, b in before]
    assert all(b is not None for b in ratios)
    assert statistics.median(ratios) == pytest.approx(BASIS_BPS * 1e-4, abs=0.0005)  # type: ignore[arg-type]
    assert min(ratios) > 0.0005  # type: ignore[type-var]  # contango beyond the flat band, all along
    # okx's spot goes quiet: within spot_max_age (5 s) its perpetual prices it, the others stay on spot
    during = [s for s in seen if QUIET_AT_S + 6 <= s[0] < QUIET_AT_S + QUIET_FOR_S]
    assert during and all(m == {"binanceusdm": "spot", "bybit": "spot", "okx": "perp"} for _, m, _, _ in during)
    # spot back: after 10 s of quoting without a gap it prices okx again
    after = [s for s in seen if s[0] >= QUIET_AT_S + QUIET_FOR_S + 12]
    assert after and all(m == dict.fromkeys(venues, "spot") for _, m, _, _ in after)
    # the index stayed ok throughout: no source went stale, nothing alerted, nothing flapped
    assert {st for _, _, st, _ in seen} == {OK}
    assert alerts == []
    assert stored["snapshot"]["derivatives"]["state"] == "contango"


# --- ccxt: the exchange's spot market beside its perpetual ------------------------------------------------


def test_ccxt_spot_source() -> None:
    src = SourceConfig(exchange="binanceusdm", symbols=("BTC",))
    spot = spot_source(src)
    assert spot is not None and (spot.exchange, spot.ws_url, spot.rest_url) == ("binance", None, None)
    assert spot_source(src.model_copy(update={"market": "perp"})) is None
    moved = src.model_copy(update={"ws_url": "ws://127.0.0.1:1", "rest_url": "http://127.0.0.1:1"})
    assert spot_source(moved) is None  # a stand-in serves what it serves
    named = moved.model_copy(update={"spot_rest_url": "http://127.0.0.1:2"})
    assert spot_source(named).rest_url == "http://127.0.0.1:2"  # type: ignore[union-attr]


async def test_ccxt_quotes_the_spot_market_on_the_exchanges_spot_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ccxt_generic, "TICKER_POLL_S", 0.05)
    v = await FakeBinanceUsdm().start()
    made: list[str] = []

    def make(source: SourceConfig) -> Any:
        made.append(source.exchange)
        if source.exchange == "binance":  # the spot market: api.binance.com's /api/v3
            spot = ccxtpro.binance({"enableRateLimit": False})
            spot.urls["api"]["public"] = f"{v.url}/api/v3"
            spot.has = dict(spot.has, watchTicker=False, watchBidsAsks=False)
            spot.set_markets(CCXT_SPOT)
            return spot
        ex = ccxtpro.binanceusdm({"enableRateLimit": False})
        ex.urls["api"]["fapiPublic"] = f"{v.url}/fapi/v1"
        ex.has = dict(ex.has, watchTicker=False, watchBidsAsks=False)
        ex.set_markets([CCXT_SWAP])
        return ex

    try:
        source = SourceConfig(exchange="binanceusdm", symbols=("BTC",), channels=("quotes",))
        events: list[Any] = []
        conn = CcxtConnector(source, events.append, Metrics(), tuning=FAST, exchange_factory=make)
        task = asyncio.create_task(conn.run())
        try:
            await wait_for(lambda: {q.market for q in of(events, Quote)} == {Market.SPOT, Market.PERP}, 5,
                           "spot and perpetual quotes")
            assert set(conn.status()["channels"]) == {"ticker:BTC/USDT:USDT", "spot:BTC/USDT"}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await v.stop()
    assert made == ["binanceusdm", "binance"]
    spot = next(q for q in of(events, Quote) if q.market == Market.SPOT)
    assert (spot.exchange, spot.instrument, spot.quote) == ("binanceusdm", "BTCUSDT", "USDT")

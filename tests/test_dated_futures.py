"""Dated futures quotes (the ``futures`` channel): Binance USDⓈ-M quarterly contracts (``BTCUSDT_261225``,
``contractType`` CURRENT_QUARTER/NEXT_QUARTER in exchangeInfo) and OKX ``FUTURES`` (``BTC-USDT-261225``, alias
this_quarter/next_quarter), and their coin-margined kin on Binance COIN-M (``BTCUSD_261225``) and OKX
(``BTC-USD-261225``), served by the simulator at the perpetual's price carried to expiry at its
funding rate, so the term structure and the roll cost have data through the whole daemon."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.connectors import build_connector
from hedgewatch.connectors.binance.instruments import binance_dated
from hedgewatch.connectors.okx.instruments import okx_futures
from hedgewatch.connectors.simulator import Simulator, load_scenario
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import config_from_dict
from hedgewatch.service.derivatives import expiry_from_instrument
from hedgewatch.service.events import Market, Quote
from hedgewatch.service.metrics import Metrics
from tests.connector_fakes import FAST, of
from tests.stepped import stepped_sources
from tests.support import RedisServer, free_port, wait_for
from tests.test_inverse_okx import BTC_USD_SWAP, BTC_USDT_SWAP

COINM = json.loads((Path(__file__).parent / "frames" / "binance_coinm.json").read_text())


def test_binance_quarterlies_from_exchange_info() -> None:
    # COIN-M's documented exchangeInfo lists BTCUSD_200925 (CURRENT_QUARTER) beside the perpetual
    (q,) = binance_dated(COINM["rest.exchangeInfo"], ["BTC", "ETH"], "USD")
    assert (q.instrument, q.ct_val, q.inverse) == ("BTCUSD_200925", 100.0, True)
    assert binance_dated(COINM["rest.exchangeInfo"], ["BTC"], "USDT") == []
    assert expiry_from_instrument(q.instrument) == datetime(2020, 9, 25, 8, tzinfo=UTC).timestamp()


def test_okx_quarterlies_from_the_futures_list() -> None:
    def fut(row: dict[str, Any], inst: str, alias: str) -> dict[str, Any]:
        return dict(row, instType="FUTURES", instId=inst, alias=alias, expTime="1790323200000")

    body = {"code": "0", "msg": "", "data": [
        fut(BTC_USDT_SWAP, "BTC-USDT-260925", "this_quarter"), fut(BTC_USDT_SWAP, "BTC-USDT-261225", "next_quarter"),
        fut(BTC_USDT_SWAP, "BTC-USDT-260612", "this_week"), fut(BTC_USD_SWAP, "BTC-USD-260925", "this_quarter")]}
    assert [i.instrument for i in okx_futures(body, ["BTC"], "USDT")] == ["BTC-USDT-260925", "BTC-USDT-261225"]
    (inv,) = okx_futures(body, ["BTC"], "USD")
    assert (inv.instrument, inv.ct_val, inv.inverse) == ("BTC-USD-260925", 100.0, True)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(load_scenario("default.yaml")) as s:
        yield s


@pytest.fixture
async def six() -> AsyncIterator[Simulator]:
    async with Simulator(load_scenario("coin_margined.yaml")) as s:
        yield s


@pytest.mark.parametrize("venue", ["binanceusdm", "okx", "binancecoinm", "okx-inverse"])
async def test_dated_quotes_with_a_plausible_basis(six: Simulator, venue: str) -> None:
    sim = six
    ep = next(e for e in sim.endpoints if e.name == venue)
    src = {"exchange": ep.exchange, "symbols": ["BTC", "ETH"], "ws_url": ep.ws_url, "rest_url": ep.rest_url,
           "channels": ["quotes", "futures"], "quote": ep.quote}
    events: list[Any] = []
    conn = build_connector(config_from_dict({"sources": [src], "index": {"name": "X", "constituents": ["BTC"]}},
                                            "<t>", {}).sources[0], events.append, Metrics(), tuning=FAST)

    def dated() -> dict[str, Quote]:
        return {q.instrument: q for q in of(events, Quote) if q.market == Market.FUTURE}

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(conn.run(), name="dated")
        await wait_for(lambda: len(dated()) == 4 and any(q.market == Market.PERP for q in of(events, Quote)),
                       20, "dated quotes")
        task.cancel()
    assert any(c.startswith("public-futures") for c in conn.status()["connections"])
    for inst, q in dated().items():
        assert q.quote == ep.quote and (inst.startswith(("BTCUSD_", "ETHUSD_", "BTC-USD-", "ETH-USD-"))
                                        == (ep.quote == "USD"))
        expiry = expiry_from_instrument(inst)
        assert expiry is not None and expiry > q.ts_exchange
        assert datetime.fromtimestamp(expiry, UTC).weekday() == 4  # quarterlies settle on a Friday
        perp = sim.models[ep.name].quotes[q.asset]
        days = (expiry - q.ts_exchange) / 86400
        basis = (q.mid / perp.mid - 1) * 365 / days  # annualized
        carry = perp.funding_rate * 3 * 365  # what the longs pay on the perpetual, annualized
        assert basis == pytest.approx(carry, abs=0.02) and basis > 0  # contango while funding is positive
    assert not conn.status()["rejected"]


async def test_term_structure_and_roll_cost_through_the_daemon(sim: Simulator, redis_srv: RedisServer,
                                                               tmp_path: Path) -> None:
    sources = stepped_sources(sim)
    for s in sources:
        if s["exchange"] in ("binanceusdm", "okx"):
            s["channels"] = [*s["channels"], "futures"]
    cfg = config_from_dict({
        "sources": sources,
        "index": {"name": "DATED", "constituents": list(sim.scenario.assets), "weighting": "equal",
                  "base_level": 1000.0, "publish_interval_s": 1.0},
        "redis": {"url": redis_srv.url, "prefix": "dated", "outbox_dir": str(tmp_path / "outbox")},
        "http": {"port": free_port()},
    }, "<dated>", {})
    daemon = Daemon(cfg)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(daemon.run(stop), name="daemon")
        await daemon.started.wait()

        def curve() -> Any:
            ts = daemon.market.derivatives.term_structure("BTC", sim.path.now_ms / 1000 if sim.path else 0)
            return ts if ts and len(ts["curve"]) == 4 else None  # type: ignore[arg-type]

        await wait_for(curve, 30, "a term structure of four quarterlies")
        stop.set()
        assert await run == 0
    ts = curve()
    contracts = [c["contract"] for c in ts["curve"]]
    assert {c.split(":")[0] for c in contracts} == {"binanceusdm", "okx"}
    assert ts["curve"][0]["days"] < ts["curve"][-1]["days"]
    # the roll from the front to the next contract costs the carry between them: positive in contango
    assert 0 < ts["roll_cost_annualized"] < 0.5
    oracle = daemon.market.oracle("BTC")
    assert oracle is not None  # the dated quotes are no oracle source: the three perpetuals are
    assert sorted(s.name for s in oracle.sources) == sorted(s["name"] for s in sources)

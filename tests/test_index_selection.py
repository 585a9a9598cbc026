"""Constituent selection, the file and REST providers, and tracking a venue's composite index."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hedgewatch.service.config import parse_config
from hedgewatch.service.constituents import (
    Candidate,
    load_candidates_file,
    load_index_info,
    parse_candidates,
    select,
)
from hedgewatch.service.errors import FeedError
from hedgewatch.service.events import CompositeIndex
from hedgewatch.service.market import MarketState
from hedgewatch.service.market_metrics import GaugeExporter
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.providers import RestProvider
from tests.market_support import quote

DATA = Path(__file__).parent / "data"

GECKO = [
    {"symbol": "btc", "market_cap": 1.9e12, "total_volume": 4e10, "circulating_supply": 19.8e6,
     "total_supply": 21e6},
    {"symbol": "eth", "market_cap": 4.0e11, "total_volume": 2e10},
    {"symbol": "usdt", "market_cap": 1.4e11, "total_volume": 9e10},
    {"symbol": "xrp", "market_cap": 1.3e11, "total_volume": 5e9},
    {"symbol": "bnb", "market_cap": 9.0e10, "total_volume": 2e9},
    {"symbol": "sol", "market_cap": 8.5e10, "total_volume": 4e9},
    {"symbol": "steth", "market_cap": 3e10, "total_volume": 1e8},
    {"symbol": "wbtc", "market_cap": 1.2e10, "total_volume": 3e8},
    {"symbol": "doge", "market_cap": 2.5e10, "total_volume": 1e9},
    {"symbol": "thin", "market_cap": 2.0e10, "total_volume": 1e5},
]


def test_parse_coingecko_shape() -> None:
    c = parse_candidates(GECKO)
    assert c[0] == Candidate("BTC", 1.9e12, 4e10, 19.8 / 21, ())
    assert c[2].excluded_kind == "stablecoin" and c[6].excluded_kind == "wrapped"


def test_top_n_excludes_stablecoins_wrapped_and_thin_volume() -> None:
    cands = parse_candidates(GECKO)
    assert select(cands, top_n=5, min_volume_usd=1e6) == ["BTC", "ETH", "XRP", "BNB", "SOL"]
    assert select(cands, top_n=6, min_volume_usd=1e6) == ["BTC", "ETH", "XRP", "BNB", "SOL", "DOGE"]
    assert "THIN" in select(cands, top_n=7)
    allowed = {"BTC", "ETH", "XRP", "SOL"}
    assert select(cands, top_n=3, exclude=("XRP",), allowed=allowed) == ["BTC", "ETH", "SOL"]


def test_rank_buffer_keeps_a_member_near_the_boundary() -> None:
    cands = parse_candidates(GECKO)
    current = ["BTC", "ETH", "XRP", "SOL"]  # BNB overtook SOL
    assert select(cands, top_n=4, current=current, rank_buffer=1) == ["BTC", "ETH", "XRP", "SOL"]
    assert select(cands, top_n=4, current=current, rank_buffer=0) == ["BTC", "ETH", "XRP", "BNB"]
    # DOGE is far outside the buffer: replaced however the buffer is set.
    assert select(cands, top_n=4, current=["BTC", "ETH", "XRP", "DOGE"], rank_buffer=1) == [
        "BTC", "ETH", "XRP", "BNB"]


def test_file_provider_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "caps.json").write_text(json.dumps(GECKO))
    yaml_rows = "candidates:\n  - {symbol: BTC, market_cap_usd: 10, tags: [layer-1]}\n"
    (tmp_path / "caps.yaml").write_text(yaml_rows)
    assert len(load_candidates_file(tmp_path / "caps.json")) == len(GECKO)
    assert load_candidates_file(tmp_path / "caps.yaml") == [Candidate("BTC", 10.0, 0.0, None, ("layer-1",))]


@pytest.fixture
def http_server() -> Iterator[str]:
    """A real HTTP server on loopback serving the CoinGecko-shaped list at /coins/markets."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(GECKO).encode() if self.path.startswith("/coins/markets") else b"{}"
            self.send_response(200 if self.path.startswith("/coins/markets") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


async def test_rest_provider_feeds_the_selection(http_server: str) -> None:
    cands = await RestProvider(http_server + "/coins/markets").fetch()
    assert [c.symbol for c in cands][:3] == ["BTC", "ETH", "USDT"]
    with pytest.raises(FeedError):
        await RestProvider(http_server + "/missing").fetch()
    cfg = parse_config(
        "sources:\n  - {exchange: okx, symbols: [BTC, ETH, SOL, USDT]}\n"
        f"index:\n  selection: {{top_n: 2, provider: rest, url: '{http_server}/coins/markets'}}\n"
        "  weighting: cap\n",
        env={},
    )
    m = MarketState(cfg, now=0.0)
    for a, p in {"BTC": 100_000.0, "ETH": 3_000.0, "SOL": 150.0, "USDT": 1.0}.items():
        m.apply(quote("okx", a, p, 1.0))
    assert m.level is None
    assert m.set_candidates(cands, 1.0)
    snap = m.snapshot(1.0)
    assert sorted(snap["constituents"]) == ["BTC", "ETH"]
    assert snap["constituents"]["BTC"]["weight"] == pytest.approx(1.9e12 / 2.3e12)


def test_selection_from_a_file_builds_the_index(tmp_path: Path) -> None:
    (tmp_path / "caps.json").write_text(json.dumps(GECKO))
    cfg = parse_config(
        "sources:\n  - {exchange: okx, symbols: [BTC, ETH, SOL, USDT, WBTC]}\n"
        f"index:\n  selection: {{top_n: 3, path: '{tmp_path / 'caps.json'}'}}\n  weighting: capped\n"
        "  cap_ratio: 0.5\n",
        env={},
    )
    m = MarketState(cfg, now=0.0)
    for a, p in {"BTC": 100_000.0, "ETH": 3_000.0, "SOL": 150.0, "WBTC": 100_000.0}.items():
        m.apply(quote("okx", a, p, 1.0))
    w = {a: c["weight"] for a, c in m.snapshot(1.0)["constituents"].items()}
    assert sorted(w) == ["BTC", "ETH", "SOL"]
    assert w["BTC"] == pytest.approx(0.5) and sum(w.values()) == pytest.approx(1.0)


def test_track_a_binance_composite_index_and_report_tracking_error() -> None:
    units = load_index_info(DATA / "binance_indexInfo.json", "DEFIUSDT")
    assert units == {"BAL": 1.04406228, "BAND": 3.53782729}
    cfg = parse_config(
        "sources:\n  - {exchange: binanceusdm, symbols: [BAL, BAND]}\n"
        f"index:\n  name: DEFI\n  track: DEFIUSDT\n  definition_path: '{DATA / 'binance_indexInfo.json'}'\n",
        env={},
    )
    m = MarketState(cfg, now=0.0)
    m.apply(quote("binanceusdm", "BAL", 20.0, 1.0))
    m.apply(quote("binanceusdm", "BAND", 5.0, 1.0))
    ours = 1.04406228 * 20.0 + 3.53782729 * 5.0
    assert m.level == pytest.approx(ours)
    venue = ours * 1.001
    comps = (("BAL", 1.04406228, 0.54), ("BAND", 3.53782729, 0.46))
    assert not m.apply(CompositeIndex("binanceusdm", "DEFIUSDT", venue, comps, 2.0, 2.0))
    assert m.snapshot(2.0)["tracking"]["tracking_error"] == pytest.approx(1 / 1.001 - 1)
    metrics = Metrics()
    exporter = GaugeExporter()
    exporter.export(m, metrics, 2.0)
    assert 'hedgewatch_index_tracking_error_ratio{index="DEFI"}' in metrics.render().decode()
    # The venue changes its composition: we adopt it.
    comps2 = (("BAL", 2.0, 0.6), ("BAND", 3.0, 0.4))
    assert m.apply(CompositeIndex("binanceusdm", "DEFIUSDT", 55.0, comps2, 3.0, 3.0))
    assert m.level == pytest.approx(55.0)
    assert m.snapshot(3.0)["tracking"]["tracking_error"] == pytest.approx(0.0)


def test_synthetic_dollars_tokenized_funds_and_pegged_tokens_are_never_members() -> None:
    from hedgewatch.service.constituents import Candidate

    kinds = {s: Candidate(s, 1e10).excluded_kind for s in ("SUSDE", "USDE", "BUIDL", "USYC", "USDTB", "SDAI",
                                                            "PAXG", "BTC", "ETH", "SOL")}
    assert kinds == {"SUSDE": "synthetic_dollar", "USDE": "stablecoin", "BUIDL": "pegged", "USYC": "pegged",
                     "USDTB": "stablecoin", "SDAI": "synthetic_dollar", "PAXG": "pegged", "BTC": None,
                     "ETH": None, "SOL": None}
    assert Candidate("NEWUSD2", 1e10, tags=("yield-bearing-stablecoins",)).excluded_kind == "yield-bearing-stablecoins"

"""``hedgewatch history fetch`` against the bundled simulator's Binance USDⓈ-M and CoinGecko endpoints:
the files land in the published shapes, the backtest reads them, and a second fetch is served from disk."""

from __future__ import annotations

import asyncio
import io
import itertools
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from rich.console import Console

from hedgewatch.connectors.simulator import Simulator
from hedgewatch.service.config import config_from_dict
from hedgewatch.service.history.fetch import FetchPlan, run_fetch
from hedgewatch.service.history.files import load_history, parse_date
from tests.stepped import stepped_simulator, stepped_sources
from tests.support import REPO

FROM, TO = "2025-12-20", "2026-01-01"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with stepped_simulator() as s:
        yield s


def fetch_config(sim: Simulator):  # type: ignore[no-untyped-def]
    rest = sim.endpoints[0].rest_url
    data = {"sources": stepped_sources(sim),
            "index": {"name": "FOUR", "constituents": list(sim.scenario.assets), "weighting": "cap",
                      "selection": {"top_n": 3, "provider": "rest",
                                    "url": f"{rest}/api/v3/coins/markets?vs_currency=usd"}}}
    return config_from_dict(data, "<fetch>", {})


async def test_fetch_writes_what_the_backtest_reads_and_resumes(sim: Simulator, tmp_path: Path) -> None:
    cfg = fetch_config(sim)
    plan = FetchPlan.for_config(cfg, parse_date(FROM), parse_date(TO), tmp_path, "1h", None, 50.0)
    assert plan.coingecko_url == f"{sim.endpoints[0].rest_url}/api/v3"
    written = await run_fetch(plan, show_progress=False)
    assets = sorted(sim.scenario.assets)
    days = 12
    assert written == len(assets) * (days + 1) + len(assets)  # day files, a funding month, a chart each
    klines = sorted(p.name for p in (tmp_path / "binance" / "klines").iterdir())
    assert klines[0] == "BTCUSDT-1h-2025-12-20.csv" and len(klines) == len(assets) * days
    h = load_history(tmp_path)
    for a in assets:
        bars = h.klines[a][3600]
        assert len(bars) == days * 24
        assert [b.open_ts for b in bars] == [parse_date(FROM) + i * 3600 for i in range(days * 24)]
        # funding comes in month files
        assert h.funding[a] and all(parse_date("2025-12-01") <= t < parse_date(TO) for t, _, _ in h.funding[a])
        caps = h.market_caps[a]
        assert caps and all(c > 0 for _, c in caps)
    chart = orjson.loads((tmp_path / "coingecko" / "BTC.json").read_bytes())
    assert set(chart) == {"prices", "market_caps", "total_volumes"}
    # the simulator's history and CoinGecko's hourly prices agree with the klines
    close = {b.open_ts + 3600: b.close for b in h.klines["BTC"][3600]}
    t, p = h.prices["BTC"][5]
    assert p == pytest.approx(close[t], rel=2e-3)

    # everything on disk is complete: nothing is fetched again; a lost day is fetched alone
    assert await run_fetch(plan, show_progress=False) == 0
    (tmp_path / "binance" / "klines" / "ETHUSDT-1h-2025-12-25.csv").unlink()
    assert await run_fetch(plan, show_progress=False) == 1


async def test_the_command(sim: Simulator, tmp_path: Path) -> None:
    cfg = fetch_config(sim)
    (tmp_path / "hw.yaml").write_bytes(orjson.dumps(cfg.model_dump(mode="json", exclude={"redis", "notify"})))
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "hedgewatch.service", "history", "fetch", "-c", "hw.yaml", "--from", "2025-12-30",
           "--to", TO, "--data", "data", "--rate-per-s", "100"]  # the simulator needs no pacing
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip().endswith("files written to data")
    bad = [*cmd[:7], "--from", "2026-01-01", "--to", "2025-12-30", "--data", "data"]
    proc = await asyncio.create_subprocess_exec(*bad, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and err.decode().strip() == "hedgewatch: --to must be after --from"


async def test_rate_limited_requests_wait_and_retry(tmp_path: Path) -> None:
    """A 429 answer is retried after its Retry-After; a 4xx other than 418/429 is a one-line error."""
    import httpx

    from hedgewatch.service.history.fetch import FetchError, Pacer, get_json

    answers = [(429, b"{}"), (418, b"{}"), (200, b'{"ok": 1}'), (400, b'{"code": -1121, "msg": "Invalid symbol."}')]
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n")[0])
        status, body = answers.pop(0)
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nRetry-After: 0\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(body), body))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/fapi/v1/klines"
    try:
        async with httpx.AsyncClient() as http:
            assert await get_json(http, Pacer(1000.0), url, {"symbol": "BTCUSDT"}) == {"ok": 1}
            assert len(seen) == 3
            with pytest.raises(FetchError, match=r"^GET .*/fapi/v1/klines: HTTP 400: .*Invalid symbol"):
                await get_json(http, Pacer(1000.0), url, {"symbol": "NOPE"})
    finally:
        server.close()
        await server.wait_closed()


def one_asset_config(sim: Simulator):  # type: ignore[no-untyped-def]
    """BTC from the simulator's Binance USDⓈ-M, no market caps (no CoinGecko pacing in the way)."""
    return config_from_dict({"sources": stepped_sources(sim),
                             "index": {"name": "ONE", "constituents": ["BTC"], "weighting": "equal"}}, "<fetch>", {})


class Interrupt(Exception):
    """The user pressing Ctrl-C in the middle of a fetch."""


def recording_client(log: list[tuple[float, str]], stop_at_klines: int | None = None) -> httpx.AsyncClient:
    async def seen(request: httpx.Request) -> None:
        log.append((time.monotonic(), request.url.path))
        if stop_at_klines is not None and sum(p.endswith("/klines") for _, p in log) == stop_at_klines:
            raise Interrupt

    return httpx.AsyncClient(timeout=30.0, event_hooks={"request": [seen]})


async def test_pages_within_the_published_limits_with_a_progress_bar(sim: Simulator, tmp_path: Path) -> None:
    # three days of minute bars: 4,320 bars, three pages of at most 1,500
    plan = FetchPlan.for_config(one_asset_config(sim), parse_date("2025-12-28"), parse_date("2025-12-31"), tmp_path,
                                "1m", None, None)
    log: list[tuple[float, str]] = []
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    written = await run_fetch(plan, console=console, http=recording_client(log))
    assert written == 3 + 1  # three day files, a funding month
    pages = [t for t, p in log if p.endswith("/klines")]
    assert len(pages) == 3
    # Binance: 2,400 request weight a minute, 10 a 1,500-bar page: never more than 4 pages a second
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(pages))
    bars = load_history(tmp_path).klines["BTC"][60]
    assert [b.open_ts for b in bars] == [parse_date("2025-12-28") + 60 * i for i in range(3 * 1440)]
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # the terminal's control sequences
    assert "BTC klines" in shown and "market caps" in shown
    total = re.findall(r"(\d+)/(\d+)", shown)[-1]
    assert total[0] == total[1]  # the bar ran to its end


async def test_an_interrupted_fetch_resumes_where_it_stopped(sim: Simulator, tmp_path: Path) -> None:
    plan = FetchPlan.for_config(one_asset_config(sim), parse_date("2025-12-28"), parse_date("2025-12-31"), tmp_path,
                                "1m", None, 1000.0)
    log: list[tuple[float, str]] = []
    with pytest.raises(Interrupt):
        await run_fetch(plan, show_progress=False, http=recording_client(log, stop_at_klines=3))
    # the two pages fetched completed two days, written; the third day and the funding were not reached
    days = sorted(p.name for p in (tmp_path / "binance" / "klines").iterdir())
    assert days == ["BTCUSDT-1m-2025-12-28.csv", "BTCUSDT-1m-2025-12-29.csv"]
    assert not (tmp_path / "binance" / "fundingRate").exists()
    log.clear()
    assert await run_fetch(plan, show_progress=False, http=recording_client(log)) == 2  # the last day, the month
    assert [p for _, p in log if p.endswith("/klines")] == ["/fapi/v1/klines"]  # one page: that day alone
    assert len(load_history(tmp_path).klines["BTC"][60]) == 3 * 1440

"""``hedgewatch history fetch``: klines, funding history and market caps from the venues' REST APIs, written
in the shapes Binance's public data and CoinGecko publish, so the backtest reads fetched and downloaded
files alike.

- klines: Binance USDⓈ-M ``/fapi/v1/klines`` (1,500 bars a request, paged by ``startTime``), one file per
  symbol, interval and day under ``binance/klines/``;
- funding: ``/fapi/v1/fundingRate`` (1,000 a request, paged by ``startTime``), one file per symbol and month
  under ``binance/fundingRate/``;
- market caps: CoinGecko ``/coins/markets`` (symbol to id) and ``/coins/{id}/market_chart/range``, one JSON
  per asset under ``coingecko/``.

Requests are paced within the limits the venues publish, unless ``rate_per_s`` sets one pace for every
endpoint (a local simulator needs none): Binance counts 2,400 request weight a minute per IP and a 1,500-bar
klines page weighs 10 (at most 4 pages a second), and its funding history allows 500 requests in 5 minutes
(1.67 a second); CoinGecko's keyless public API 5 to 15 calls a minute. A 429/418 answer waits its
``Retry-After``. Resumable and
cached: a day or month is written only once complete (its end is in the venue's past), and a file already
on disk is not fetched again; an interrupted fetch resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hedgewatch.service.config import Config
from hedgewatch.service.errors import HedgewatchError
from hedgewatch.service.history.files import INTERVALS_S, KLINE_HEADER, read_market_chart

BINANCE_URL = "https://fapi.binance.com"
DAY = 86400
KLINES_PER_REQUEST = 1500
FUNDING_PER_REQUEST = 1000
RETRIES = 5
# requests a second, a margin inside each venue's published limit
KLINES_RATE_PER_S = 2400 / 60 / 10 * 0.9  # 2,400 weight a minute, 10 a 1,500-bar page
FUNDING_RATE_PER_S = 500 / 300 * 0.9  # 500 requests in 5 minutes
COINGECKO_RATE_PER_S = 10 / 60  # the keyless public API: 5 to 15 calls a minute


class FetchError(HedgewatchError):
    """A venue answered what cannot be used (the message names the request, never a secret)."""


@dataclass(frozen=True)
class FetchPlan:
    assets: tuple[str, ...]
    start: float
    end: float
    folder: Path
    interval: str
    binance_url: str
    quote: str
    coingecko_url: str | None
    rate_per_s: float | None  # one pace for every endpoint; None: each venue's published limits

    @classmethod
    def for_config(cls, config: Config, start: float, end: float, folder: Path, interval: str,
                   coingecko_url: str | None, rate_per_s: float | None = None) -> FetchPlan:
        src = next((s for s in config.sources if s.enabled and s.exchange == "binanceusdm"), None)
        if src is None:
            raise FetchError("history fetch reads Binance USDⓈ-M's REST API: the config needs a binanceusdm source")
        idx = config.index
        assets = tuple(idx.constituents) if idx.selection is None else src.symbols
        assets = tuple(a for a in assets if a in src.symbols) or src.symbols
        cg = coingecko_url
        if cg is None and idx.selection is not None and idx.selection.url:
            u = urlsplit(idx.selection.url)
            cg = f"{u.scheme}://{u.netloc}{u.path.split('/coins/')[0]}"
        if end <= start:
            raise FetchError("--to must be after --from")
        return cls(assets, start, end, folder, interval, (src.rest_url or BINANCE_URL).rstrip("/"), src.quote, cg,
                   rate_per_s)


class Pacer:
    """At most ``rate_per_s`` requests a second."""

    def __init__(self, rate_per_s: float) -> None:
        self.gap = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        if now < self.next:
            await asyncio.sleep(self.next - now)
        self.next = max(now, self.next) + self.gap


async def get_json(http: httpx.AsyncClient, pacer: Pacer, url: str, params: dict[str, Any]) -> Any:
    for attempt in range(RETRIES):
        await pacer.wait()
        try:
            resp = await http.get(url, params=params)
        except httpx.HTTPError as exc:
            if attempt == RETRIES - 1:
                raise FetchError(f"GET {url}: {exc}") from exc
            await asyncio.sleep(2.0 ** attempt)
            continue
        if resp.status_code in (418, 429) or resp.status_code >= 500:
            await asyncio.sleep(float(resp.headers.get("Retry-After") or 2.0 ** attempt))
            continue
        if resp.status_code != 200:
            raise FetchError(f"GET {url}: HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise FetchError(f"GET {url}: not JSON") from exc
    raise FetchError(f"GET {url}: still rate limited after {RETRIES} attempts")


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def _runs(days: list[float]) -> list[list[float]]:
    """Consecutive days grouped."""
    out: list[list[float]] = []
    for d in days:
        if out and d - out[-1][-1] == DAY:
            out[-1].append(d)
        else:
            out.append([d])
    return out


def _complete(path: Path, day_end: float) -> bool:
    """A day file on disk whose last bar closes at the end of its day (a day fetched while it was still
    running is fetched again)."""
    if not path.exists():
        return False
    lines = path.read_text().strip().splitlines()
    try:
        return int(lines[-1].split(",")[6]) >= day_end * 1000 - 1
    except (IndexError, ValueError):
        return False


def _chart_complete(path: Path, end: float) -> bool:
    """A market chart on disk that reaches ``end`` within two of its samples."""
    if not path.exists():
        return False
    try:
        prices = read_market_chart(path)["prices"]
    except HedgewatchError:
        return False
    if len(prices) < 2:
        return False
    step = prices[-1][0] - prices[-2][0]
    return prices[-1][0] >= end - 2 * step


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(text)
    tmp.replace(path)


class Fetcher:
    def __init__(self, plan: FetchPlan, http: httpx.AsyncClient, progress: Progress | None) -> None:
        self.plan = plan
        self.http = http
        self.progress = progress
        own = plan.rate_per_s
        self.binance = Pacer(own or KLINES_RATE_PER_S)  # klines pages and the server time
        self.binance_funding = Pacer(own or FUNDING_RATE_PER_S)
        self.coingecko = Pacer(own or COINGECKO_RATE_PER_S)
        self.written = 0
        self.venue_now = time.time()

    async def server_time(self) -> None:
        body = await get_json(self.http, self.binance, f"{self.plan.binance_url}/fapi/v1/time", {})
        self.venue_now = float(body["serverTime"]) / 1000.0

    def _days(self) -> list[float]:
        t = self.plan.start - self.plan.start % DAY
        out = []
        while t < self.plan.end:
            out.append(t)
            t += DAY
        return out

    async def klines(self, asset: str, task: Any) -> None:
        """Day files of klines; the days still missing are fetched in runs of full pages and split."""
        p = self.plan
        sym = f"{asset}{p.quote}"
        iv = INTERVALS_S[p.interval]
        folder = p.folder / "binance" / "klines"
        todo = []
        for day in self._days():
            path = folder / f"{sym}-{p.interval}-{_day(day)}.csv"
            if _complete(path, day + DAY) or day >= self.venue_now:
                self._advance(task)
            else:
                todo.append(day)
        for run in _runs(todo):
            cursor, stop = int(run[0] * 1000), int(min(run[-1] + DAY, self.venue_now) * 1000) - 1
            by_day: dict[float, list[list[Any]]] = {d: [] for d in run}
            while cursor <= stop:
                page = await get_json(self.http, self.binance, f"{p.binance_url}/fapi/v1/klines", {
                    "symbol": sym, "interval": p.interval, "startTime": cursor, "endTime": stop,
                    "limit": KLINES_PER_REQUEST})
                # only closed bars: the one still forming is fetched again next time
                page = [r for r in page if cursor <= int(r[0]) and int(r[6]) < self.venue_now * 1000]
                if not page:
                    break
                for r in page:
                    by_day.setdefault(int(r[0]) // 1000 // DAY * DAY, []).append(r)
                cursor = int(page[-1][0]) + iv * 1000
                self._flush(by_day, folder, sym, cursor / 1000, task)
            self._flush(by_day, folder, sym, float("inf"), task)

    def _flush(self, by_day: dict[float, list[list[Any]]], folder: Path, sym: str, upto: float, task: Any) -> None:
        """Write the day files whose every bar has been fetched (all before ``upto``)."""
        for day in sorted(d for d in by_day if d + DAY <= upto):
            rows = by_day.pop(day)
            if rows:
                lines = [KLINE_HEADER] + [",".join(str(x) for x in r) for r in rows]
                _write(folder / f"{sym}-{self.plan.interval}-{_day(day)}.csv", "\n".join(lines) + "\n")
                self.written += 1
            self._advance(task)

    async def funding(self, asset: str, task: Any) -> None:
        p = self.plan
        sym = f"{asset}{p.quote}"
        folder = p.folder / "binance" / "fundingRate"
        month = datetime.fromtimestamp(p.start, UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        while month.timestamp() < p.end:
            nxt = (month + timedelta(days=32)).replace(day=1)
            path = folder / f"{sym}-fundingRate-{month:%Y-%m}.csv"
            complete = nxt.timestamp() <= self.venue_now
            if not (path.exists() and complete):
                rows: list[dict[str, Any]] = []
                cursor, stop = int(month.timestamp() * 1000), int(nxt.timestamp() * 1000) - 1
                while cursor <= stop:
                    page = await get_json(self.http, self.binance_funding, f"{p.binance_url}/fapi/v1/fundingRate", {
                        "symbol": sym, "startTime": cursor, "endTime": stop, "limit": FUNDING_PER_REQUEST})
                    page = [r for r in page if cursor <= int(r["fundingTime"]) <= stop]
                    if not page:
                        break
                    rows += page
                    cursor = int(page[-1]["fundingTime"]) + 1
                lines = ["calc_time,funding_interval_hours,last_funding_rate"]
                lines += [f"{r['fundingTime']},8,{r['fundingRate']}" for r in rows]
                if rows:
                    _write(path, "\n".join(lines) + "\n")
                    self.written += 1
            month = nxt
            self._advance(task)

    async def market_caps(self, task: Any) -> None:
        p = self.plan
        if p.coingecko_url is None:
            return
        rows = await get_json(self.http, self.coingecko, f"{p.coingecko_url}/coins/markets",
                              {"vs_currency": "usd", "per_page": 250, "page": 1})
        ids = {str(r["symbol"]).upper(): r["id"] for r in reversed(rows)}  # the largest cap wins a symbol
        for asset in p.assets:
            path = p.folder / "coingecko" / f"{asset}.json"
            cid = ids.get(asset)
            if cid is not None and not _chart_complete(path, min(p.end, self.venue_now)):
                body = await get_json(self.http, self.coingecko, f"{p.coingecko_url}/coins/{cid}/market_chart/range",
                                      {"vs_currency": "usd", "from": int(p.start), "to": int(p.end)})
                _write(path, orjson.dumps(body).decode())
                self.written += 1
            self._advance(task)

    def _advance(self, task: Any) -> None:
        if self.progress is not None and task is not None:
            self.progress.advance(task)


async def run_fetch(plan: FetchPlan, *, show_progress: bool = True, console: Console | None = None,
                    http: httpx.AsyncClient | None = None) -> int:
    """Fetch everything the plan names; the number of files written. The progress bar goes to ``console``
    (default: the terminal, stderr); ``http`` is the client to use (default: a new one)."""
    days = int((plan.end - plan.start) // DAY + 1)
    months = days // 28 + 2
    total = len(plan.assets) * (days + months) + (len(plan.assets) if plan.coingecko_url else 0)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        disable=not show_progress, console=console or Console(stderr=True))
    async with http or httpx.AsyncClient(timeout=30.0) as client:
        f = Fetcher(plan, client, progress)
        with progress:
            task = progress.add_task("history", total=total)
            await f.server_time()
            for a in plan.assets:
                progress.update(task, description=f"{a} klines")
                await f.klines(a, task)
                progress.update(task, description=f"{a} funding")
                await f.funding(a, task)
            progress.update(task, description="market caps")
            await f.market_caps(task)
            progress.update(task, completed=total)
    return f.written

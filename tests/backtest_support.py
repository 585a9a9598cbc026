"""Historical data files in the venues' published shapes, written for backtest tests."""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from hedgewatch.service.config import Config, config_from_dict

KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
                "taker_buy_quote_volume,ignore")
HOUR = 3600
DAY = 86400


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _write(path: Path, text: str, zipped: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if zipped:
        out = path.with_suffix(".zip")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(path.name, text)
        out.write_bytes(buf.getvalue())
        return out
    path.write_text(text)
    return path


def kline_rows(start: float, interval_s: int, closes: Sequence[float], opens: Sequence[float] | None = None,
               volume: float = 10.0) -> list[list[Any]]:
    rows = []
    prev = closes[0]
    for i, c in enumerate(closes):
        o = opens[i] if opens is not None else prev
        t = int((start + i * interval_s) * 1000)
        hi, lo = max(o, c) * 1.001, min(o, c) * 0.999
        rows.append([t, f"{o:.8f}", f"{hi:.8f}", f"{lo:.8f}", f"{c:.8f}", f"{volume:.3f}",
                     t + interval_s * 1000 - 1, f"{volume * c:.4f}", 100, f"{volume / 2:.3f}",
                     f"{volume * c / 2:.4f}", "0"])
        prev = c
    return rows


def write_klines(folder: Path, symbol: str, interval: str, rows: list[list[Any]], *, header: bool = True,
                 zipped: bool = False, daily: bool = False) -> list[Path]:
    """One file per month (or day), as data.binance.vision publishes them."""
    groups: dict[str, list[list[Any]]] = {}
    for r in rows:
        d = datetime.fromtimestamp(r[0] / 1000, UTC)
        groups.setdefault(d.strftime("%Y-%m-%d" if daily else "%Y-%m"), []).append(r)
    out = []
    for key, rs in groups.items():
        lines = ([KLINE_HEADER] if header else []) + [",".join(str(x) for x in r) for r in rs]
        out.append(_write(folder / f"{symbol}-{interval}-{key}.csv", "\n".join(lines) + "\n", zipped))
    return out


def write_funding(folder: Path, symbol: str, rows: list[tuple[float, float]], *, zipped: bool = False) -> Path:
    """(funding time, rate) rows in Binance's public-data fundingRate CSV shape."""
    month = datetime.fromtimestamp(rows[0][0], UTC).strftime("%Y-%m")
    lines = ["calc_time,funding_interval_hours,last_funding_rate"]
    lines += [f"{int(t * 1000)},8,{r:.8f}" for t, r in rows]
    return _write(folder / f"{symbol}-fundingRate-{month}.csv", "\n".join(lines) + "\n", zipped)


def write_market_chart(folder: Path, asset: str, rows: list[tuple[float, float, float]]) -> Path:
    """(ts, price, market cap) rows as CoinGecko's /coins/{id}/market_chart answers."""
    body = {"prices": [[int(t * 1000), p] for t, p, _ in rows],
            "market_caps": [[int(t * 1000), c] for t, _, c in rows],
            "total_volumes": [[int(t * 1000), c / 20] for t, _, c in rows]}
    path = folder / "coingecko" / f"{asset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(body))
    return path


def config(assets: Sequence[str], *, holdings: dict[str, float], rules: Sequence[str] = (), ratio: float = 0.0,
           multiplier: float = 1.0, lot_size: float = 0.01, index: dict[str, Any] | None = None,
           ledger: dict[str, Any] | None = None, position: float = 0.0, levels: dict[str, float] | None = None,
           tolerance: float = 0.05) -> Config:
    data: dict[str, Any] = {
        "sources": [{"exchange": v, "symbols": list(assets)} for v in ("binanceusdm", "bybit", "okx")],
        "index": {"name": "HB", "constituents": list(assets), "weighting": "equal", "base_level": 1000.0,
                  **(index or {})},
        "portfolio": {"holdings": holdings, "hedge_ratio": ratio, "multiplier": multiplier, "lot_size": lot_size,
                      "position_contracts": position, "tolerance_ratio": tolerance},
        "rules": {"files": list(rules), "levels": levels or {}},
        "ledger": ledger or {"fee_bps": 0.0, "slippage_bps": 0.0},
    }
    return config_from_dict(data, "<backtest-test>", {})


def story(folder: Path, assets: Sequence[str], start: float, days: int, *, seed: int = 7,
          warmup_days: int = 0) -> dict[str, list[float]]:
    """Hourly history with a story: a rally to new highs on rising volume and funding, a crash through the
    averages with funding turning negative, a base; per-asset noise around a shared path. Returns the
    closes per asset. Funding every 8 h, market caps daily (CoinGecko), all in the published shapes."""
    import random

    rng = random.Random(seed)
    hours = (days + warmup_days) * 24
    t0 = start - warmup_days * DAY
    # per-hour drift of the shared path, by phase of the run (fractions of the whole)
    phases = [(0.0, 0.0002), (0.25, 0.0008), (0.5, -0.0016), (0.65, -0.0002), (0.8, 0.0004)]
    scale = min(1.0, 60.0 / (days + warmup_days)) ** 0.5  # a longer run: the same story, gentler slopes
    shared, p = [], 0.0
    for h in range(hours):
        frac = h / hours
        drift = next(d for f, d in reversed(phases) if frac >= f) * scale
        p += drift + rng.gauss(0, 0.006 * max(scale, 0.7))
        shared.append(p)
    out: dict[str, list[float]] = {}
    for k, a in enumerate(assets):
        base = 100.0 * (k + 1) ** 1.5
        own, closes = 0.0, []
        for h in range(hours):
            own += rng.gauss(0, 0.004)
            closes.append(base * math.exp(shared[h] * (0.8 + 0.1 * k) + own))
        vol = [10.0 * (1 + 2 * max(0.0, closes[i] / closes[i - 24] - 1.0) * 10 if i >= 24 else 1.0)
               for i in range(hours)]
        rows = kline_rows(t0, HOUR, closes)
        for r, v in zip(rows, vol, strict=True):
            r[5] = f"{v:.3f}"
        write_klines(folder, f"{a}USDT", "1h", rows, header=k % 2 == 0, zipped=k % 3 == 1)
        fund = []
        for i in range(0, hours, 8):
            trend = closes[i] / closes[max(0, i - 72)] - 1.0
            fund.append((t0 + i * HOUR, max(-0.0005, min(0.001, 0.0001 + trend * 0.01))))
        write_funding(folder, f"{a}USDT", fund)
        supply = 1e9 / (k + 1)
        write_market_chart(folder, a, [(t0 + d * DAY, closes[d * 24], closes[d * 24] * supply)
                                       for d in range(days + warmup_days)])
        out[a] = closes
    return out

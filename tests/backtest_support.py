"""Historical data files in the venues' published shapes, written for backtest tests."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from service.config import Config, config_from_dict

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

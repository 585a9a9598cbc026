"""Readers for the historical data files a user can download without an account, as they are published.

- Binance public-data klines (``data.binance.vision``): ``<SYMBOL>-<interval>-<YYYY-MM>[.csv|.zip]`` (monthly)
  or ``<SYMBOL>-<interval>-<YYYY-MM-DD>`` (daily); 12 columns (open_time, open, high, low, close, volume,
  close_time, quote_volume, count, taker_buy_volume, taker_buy_quote_volume, ignore), with or without the
  header line; times in milliseconds (or microseconds, as the spot files are published since 2025).
- Binance public-data funding rates: ``<SYMBOL>-fundingRate-<YYYY-MM>``, columns calc_time,
  funding_interval_hours, last_funding_rate (header optional).
- Binance public-data metrics (open interest): ``<SYMBOL>-metrics-<YYYY-MM-DD>``, columns create_time, symbol,
  sum_open_interest, sum_open_interest_value, ... (optional; rules on open interest need it).
- CoinGecko ``/coins/{id}/market_chart`` JSON (``prices``, ``market_caps``, ``total_volumes`` as [ms, value]
  pairs), one file per asset named ``<SYMBOL>.json`` (or ``<SYMBOL>-market_chart.json``) in any folder.

Files are found anywhere under the data folder. A malformed row is a ``HistoryError`` naming the file and
line; rows repeated across daily and monthly files are kept once.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from hedgewatch.service.errors import HedgewatchError

INTERVALS_S = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200,
               "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400, "3d": 259200, "1w": 604800}
QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD")
_DATE = r"(?P<date>\d{4}-\d{2}(?:-\d{2})?)"
KLINE_RE = re.compile(rf"^(?P<sym>[A-Z0-9]+)-(?P<iv>\d+[mhdw])-{_DATE}\.(?:csv|zip)$")
FUNDING_RE = re.compile(rf"^(?P<sym>[A-Z0-9]+)-fundingRate-{_DATE}\.(?:csv|zip)$")
METRICS_RE = re.compile(rf"^(?P<sym>[A-Z0-9]+)-metrics-{_DATE}\.(?:csv|zip)$")
KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
                "taker_buy_quote_volume,ignore")
CHART_RE = re.compile(r"^(?P<sym>[A-Za-z0-9]+?)(?:-market_chart)?\.json$")


class HistoryError(HedgewatchError):
    """Historical data that cannot be read (the message names the file and line)."""


@dataclass(frozen=True, slots=True)
class Bar:
    open_ts: float
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass
class History:
    """Everything read from a data folder, per asset, sorted by time."""

    klines: dict[str, dict[int, list[Bar]]] = field(default_factory=dict)  # asset -> interval s -> bars
    funding: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)  # (ts, rate, interval h)
    open_interest: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)  # (ts, base, usd)
    prices: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # CoinGecko (ts, usd)
    market_caps: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    volumes: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    files: int = 0

    def assets(self) -> set[str]:
        return set(self.klines) | set(self.prices)


def asset_of(symbol: str) -> str:
    """``BTCUSDT`` -> ``BTC``."""
    for q in QUOTES:
        if symbol.endswith(q) and len(symbol) > len(q):
            return symbol[: -len(q)]
    return symbol


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a CSV, plain or the single CSV inside a zip."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith(".csv")]
                if not names:
                    raise HistoryError(f"{path}: no CSV inside the zip")
                text = z.read(names[0]).decode()
        except zipfile.BadZipFile as exc:
            raise HistoryError(f"{path}: not a zip file ({exc})") from exc
    else:
        text = path.read_text()
    for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if row and any(x.strip() for x in row):
            yield n, row


def _ms(value: str) -> float:
    t = float(value)
    return t / 1e6 if t > 1e14 else t / 1e3  # microseconds in the spot files since 2025


def read_klines(path: Path) -> list[Bar]:
    out = []
    for n, row in _lines(path):
        if n == 1 and not row[0].strip().isdigit():
            continue  # the header line
        if len(row) < 6:
            raise HistoryError(f"{path}:{n}: a kline needs 12 columns, got {len(row)}")
        try:
            o, h, lo, c, v = (float(x) for x in row[1:6])
            bar = Bar(_ms(row[0]), o, h, lo, c, v)
        except ValueError as exc:
            raise HistoryError(f"{path}:{n}: not a number in {','.join(row[:6])}") from exc
        if not (lo <= min(o, c) and max(o, c) <= h and lo > 0):
            raise HistoryError(f"{path}:{n}: high/low do not bound open/close (or a price is not positive)")
        out.append(bar)
    return out


def read_funding(path: Path) -> list[tuple[float, float, float]]:
    out = []
    for n, row in _lines(path):
        if n == 1 and not row[0].strip().isdigit():
            continue
        try:
            if len(row) >= 3:
                out.append((_ms(row[0]), float(row[2]), float(row[1] or 8)))
            else:
                out.append((_ms(row[0]), float(row[1]), 8.0))
        except (ValueError, IndexError) as exc:
            raise HistoryError(f"{path}:{n}: expected calc_time,funding_interval_hours,last_funding_rate") from exc
    return out


def _time(text: str) -> float:
    text = text.strip()
    if text.isdigit():
        return _ms(text)
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def read_metrics(path: Path) -> list[tuple[float, float, float]]:
    out = []
    for n, row in _lines(path):
        if n == 1 and row[0].strip() == "create_time":
            continue
        try:
            out.append((_time(row[0]), float(row[2]), float(row[3])))
        except (ValueError, IndexError) as exc:
            raise HistoryError(f"{path}:{n}: expected create_time,symbol,sum_open_interest,"
                               "sum_open_interest_value") from exc
    return out


def read_market_chart(path: Path) -> dict[str, list[tuple[float, float]]]:
    try:
        body = orjson.loads(path.read_bytes())
        return {k: [(float(t) / 1e3, float(v)) for t, v in body.get(k) or [] if v is not None]
                for k in ("prices", "market_caps", "total_volumes")}
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise HistoryError(f"{path}: not a CoinGecko market_chart JSON ({exc})") from exc


def _merge(rows: Sequence[Any]) -> list[Any]:
    """Sorted by time, one row per time (the last file read wins)."""
    seen: dict[float, Any] = {}
    for r in rows:
        seen[r.open_ts if isinstance(r, Bar) else r[0]] = r
    return [seen[t] for t in sorted(seen)]


def load_history(folder: str | Path, assets: set[str] | None = None) -> History:
    """Read every recognised file under ``folder`` (only those of ``assets`` when given)."""
    root = Path(folder)
    if not root.is_dir():
        raise HistoryError(f"{root}: no such data folder")
    h = History()
    raw: dict[tuple[str, str, int], list[Any]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and _read_one(path, h, raw, assets):
            h.files += 1
    for (kind, a, tf), rows in raw.items():
        if kind == "klines":
            h.klines.setdefault(a, {})[tf] = _merge(rows)
        elif kind == "funding":
            h.funding[a] = _merge(rows)
        else:
            h.open_interest[a] = _merge(rows)
    return h


def _read_one(path: Path, h: History, raw: dict[tuple[str, str, int], list[Any]], assets: set[str] | None) -> bool:
    """Read ``path`` when its name is one of the published shapes; True when read."""
    name = path.name
    if m := KLINE_RE.match(name):
        a, iv = asset_of(m["sym"]), m["iv"]
        if iv not in INTERVALS_S or (assets is not None and a not in assets):
            return False
        raw.setdefault(("klines", a, INTERVALS_S[iv]), []).extend(read_klines(path))
        return True
    for kind, regex, reader in (("funding", FUNDING_RE, read_funding), ("oi", METRICS_RE, read_metrics)):
        if m := regex.match(name):
            a = asset_of(m["sym"])
            if assets is not None and a not in assets:
                return False
            raw.setdefault((kind, a, 0), []).extend(reader(path))
            return True
    if (m := CHART_RE.match(name)) and path.suffix == ".json":
        a = m["sym"].upper()
        if assets is not None and a not in assets:
            return False
        chart = read_market_chart(path)
        h.prices[a] = _merge(chart["prices"])
        h.market_caps[a] = _merge(chart["market_caps"])
        h.volumes[a] = _merge(chart["total_volumes"])
        return True
    return False


def parse_date(text: str) -> float:
    """``YYYY-MM-DD`` (or a full ISO time) as epoch seconds, UTC."""
    try:
        d = datetime.fromisoformat(text)
    except ValueError as exc:
        raise HistoryError(f"not a date: {text!r} (expected YYYY-MM-DD)") from exc
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()

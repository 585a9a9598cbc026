"""Settlement times of dated futures: from a venue's instrument id, or from an ISO date in the config."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime

_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_YYMMDD = re.compile(r"[-_](\d{2})(\d{2})(\d{2})$")
_DDMONYY = re.compile(r"-(\d{1,2})([A-Za-z]{3})(\d{2})$")
SETTLEMENT_HOUR_UTC = 8  # Binance, OKX, Bybit and Deribit settle dated futures at 08:00 UTC


def expiry_from_instrument(instrument: str) -> float | None:
    """The settlement time of a dated future from its venue id (``BTCUSDT_250328``, ``BTC-USD-250328``,
    ``BTC-28MAR25``); None for perpetuals and unknown shapes."""
    m = _YYMMDD.search(instrument)
    if m:
        y, mo, d = (int(g) for g in m.groups())
    else:
        m = _DDMONYY.search(instrument)
        if not m or m.group(2).upper() not in _MONTHS:
            return None
        d, mo, y = int(m.group(1)), _MONTHS[m.group(2).upper()], int(m.group(3))
    try:
        return datetime(2000 + y, mo, d, SETTLEMENT_HOUR_UTC, tzinfo=UTC).timestamp()
    except ValueError:
        return None


def parse_expiry(text: str | None) -> float | None:
    """An ISO date/time (UTC when naive) as epoch seconds."""
    if not text:
        return None
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(hour=dt.hour or SETTLEMENT_HOUR_UTC, tzinfo=UTC)
    return dt.timestamp()

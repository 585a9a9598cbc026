"""Durations and timeframes as rule files spell them: ``30s``, ``5m``, ``1h30m``, ``1d``, ``1w`` or a
number of seconds; and ratios as ``0.3`` or ``"30%"``."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")

MIN_TIMEFRAME_S = 60
MAX_TIMEFRAME_S = 7 * 86400


def finite(value: int | float | str, what: str) -> float:
    """``float(value)``, or a ValueError when it is not a finite number (``1e400``, a 400-digit integer,
    ``.nan``)."""
    try:
        f = float(value)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise ValueError(f"{what} out of range (a finite number is needed)")
    return f


def parse_duration(value: object) -> float:
    """Seconds in ``value``; raises ValueError with a readable message."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = finite(value, "a duration")
        if seconds < 0:
            raise ValueError(f"a duration cannot be negative: {value}")
        return seconds
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r}")
    text = value.strip()
    pos = 0
    total = 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: '{value}' (use e.g. 30s, 5m, 1h30m, 1d)")
    return finite(total, "a duration")


def parse_timeframe(value: object) -> int:
    """A candle timeframe in whole seconds, between 1m and 1w, dividing a day or a week evenly."""
    seconds = parse_duration(value)
    tf = int(seconds)
    if tf != seconds or not MIN_TIMEFRAME_S <= tf <= MAX_TIMEFRAME_S or tf % 60:
        raise ValueError(f"timeframe '{value}' must be whole minutes between 1m and 1w")
    if 86400 % tf and tf % 86400:
        raise ValueError(f"timeframe '{value}' must divide a day evenly (1m, 5m, 15m, 1h, 4h, 1d, ...)")
    return tf


def format_timeframe(tf: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if tf % size == 0:
            return f"{tf // size}{unit}"
    return f"{tf}s"


def parse_ratio(value: object) -> float:
    """``0.3``, ``30%`` or ``"-10%"`` -> 0.3 / 0.3 / -0.1."""
    if isinstance(value, bool):
        raise ValueError(f"not a ratio: {value!r}")
    if isinstance(value, int | float):
        return finite(value, "a ratio")
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith("%"):
                return finite(text[:-1], "a ratio") / 100.0
            return finite(text, "a ratio")
        except ValueError as exc:
            if "out of range" in str(exc):
                raise
    raise ValueError(f"not a ratio: {value!r} (use 0.3 or \"30%\")")

"""Binance instrument lists (USDⓈ-M ``/fapi/v1/exchangeInfo``, COIN-M ``/dapi/v1/exchangeInfo``, spot
``/api/v3/exchangeInfo``): pure parsers, a decoded REST body in, ``Instrument``s out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hedgewatch.connectors.instruments import Instrument, by_asset, positive_float
from hedgewatch.service.errors import FeedError


def binance_usdm(info: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """``/fapi/v1/exchangeInfo``: the TRADING PERPETUAL symbol of each asset with the configured quote.
    Composite-index perpetuals (``underlyingType`` INDEX, e.g. DEFIUSDT) are flagged so their
    ``compositeIndex`` stream is subscribed."""
    out = []
    for s in info.get("symbols", ()):
        if s.get("contractType") != "PERPETUAL" or s.get("status") != "TRADING":
            continue
        if s.get("quoteAsset") != quote:
            continue
        out.append(Instrument(s["baseAsset"], s["symbol"], quote,
                              composite=s.get("underlyingType") == "INDEX"))
    return by_asset(out, assets)


DATED_TYPES = ("CURRENT_QUARTER", "NEXT_QUARTER")


def binance_dated(info: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """The quarterly (dated) futures of each asset from ``/fapi/v1/exchangeInfo`` (or COIN-M's
    ``/dapi/v1/exchangeInfo``, whose state is ``contractStatus`` and whose contracts are ``contractSize``
    USD): every TRADING ``CURRENT_QUARTER``/``NEXT_QUARTER`` symbol (``BTCUSDT_250627``) with the quote, in
    the order listed. Their quotes feed the term structure and the roll cost, not the oracle."""
    wanted = set(assets)
    out = []
    for s in info.get("symbols", ()):
        if s.get("contractType") not in DATED_TYPES or s.get("quoteAsset") != quote:
            continue
        if (s.get("status") or s.get("contractStatus")) != "TRADING" or s.get("baseAsset") not in wanted:
            continue
        inverse = "contractSize" in s
        ct_val = positive_float(s.get("contractSize")) if inverse else 1.0
        if ct_val is not None:
            out.append(Instrument(str(s["baseAsset"]), s["symbol"], quote, ct_val=ct_val, inverse=inverse))
    return out


def binance_coinm(info: dict[str, Any], assets: Iterable[str]) -> list[Instrument]:
    """``/dapi/v1/exchangeInfo`` (Binance COIN-M): the TRADING PERPETUAL ``<ASSET>USD_PERP`` of each asset, a
    coin-margined contract of ``contractSize`` USD (100 for BTC, 10 for the others) settled in the coin
    (``marginAsset``). COIN-M lists its state as ``contractStatus`` and quotes every contract in USD."""
    out = []
    for s in info.get("symbols", ()):
        if s.get("contractType") != "PERPETUAL" or s.get("contractStatus") != "TRADING":
            continue
        base = s.get("baseAsset")
        if s.get("quoteAsset") != "USD" or s.get("marginAsset") not in (None, base):
            continue
        ct_val = positive_float(s.get("contractSize"))
        if ct_val is not None:
            out.append(Instrument(str(base), s["symbol"], "USD", ct_val=ct_val, inverse=True))
    return by_asset(out, assets)



def binance_funding_intervals(rows: Any) -> dict[str, float]:
    """``/fapi/v1/fundingInfo`` lists only the symbols whose interval differs from the default 8 h."""
    out = {}
    if isinstance(rows, list):
        for row in rows:
            try:
                out[str(row["symbol"])] = float(row["fundingIntervalHours"])
            except (KeyError, TypeError, ValueError):
                continue
    return out



def binance_spot(info: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """``/api/v3/exchangeInfo`` (Binance spot): the TRADING ``<ASSET><QUOTE>`` pair of each asset."""
    if not isinstance(info.get("symbols"), list):
        raise FeedError("spot exchangeInfo: no symbols list")
    out = [Instrument(str(s["baseAsset"]), str(s["symbol"]), quote) for s in info["symbols"]
           if isinstance(s, dict) and s.get("status") == "TRADING" and s.get("quoteAsset") == quote
           and "baseAsset" in s and "symbol" in s]
    return by_asset(out, assets)



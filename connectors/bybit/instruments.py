"""Bybit v5 instrument lists (``/v5/market/instruments-info`` of category ``linear``, ``inverse`` and
``spot``): pure parsers, a decoded REST body in, ``Instrument``s out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hedgewatch.connectors.instruments import Instrument, by_asset
from hedgewatch.service.errors import FeedError


def bybit_linear(body: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """``/v5/market/instruments-info?category=linear``: the Trading LinearPerpetual of each asset."""
    _bybit_ok(body)
    out = []
    for s in body.get("result", {}).get("list", ()):
        if s.get("contractType") != "LinearPerpetual" or s.get("status") != "Trading":
            continue
        if s.get("quoteCoin") != quote:
            continue
        interval = s.get("fundingInterval")
        out.append(Instrument(s["baseCoin"], s["symbol"], quote,
                              funding_interval_h=float(interval) / 60.0 if interval else None))
    return by_asset(out, assets)


def bybit_inverse(body: dict[str, Any], assets: Iterable[str]) -> list[Instrument]:
    """``/v5/market/instruments-info?category=inverse``: the Trading InversePerpetual ``<ASSET>USD`` of each
    asset, a coin-margined contract of 1 USD (sizes and open interest in USD), settled in the coin."""
    _bybit_ok(body)
    out = []
    for s in body.get("result", {}).get("list", ()):
        if s.get("contractType") != "InversePerpetual" or s.get("status") != "Trading":
            continue
        base = s.get("baseCoin")
        if s.get("quoteCoin") != "USD" or s.get("settleCoin") not in (None, "", base):
            continue
        interval = s.get("fundingInterval")
        out.append(Instrument(str(base), s["symbol"], "USD", ct_val=1.0, inverse=True,
                              funding_interval_h=float(interval) / 60.0 if interval else None))
    return by_asset(out, assets)


def bybit_category(quote: str) -> str:
    """The Bybit v5 ``category`` of a source: ``inverse`` for quote ``USD`` (coin-margined ``BTCUSD``),
    ``linear`` otherwise."""
    return "inverse" if quote == "USD" else "linear"


def bybit_perpetuals(body: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """The perpetual of each asset from an instruments-info page of ``bybit_category(quote)``."""
    return bybit_inverse(body, assets) if quote == "USD" else bybit_linear(body, assets, quote)


def _bybit_ok(body: dict[str, Any]) -> None:
    if body.get("retCode") != 0:
        raise FeedError(f"bybit instruments-info: retCode {body.get('retCode')} {body.get('retMsg', '')}")



def bybit_spot(body: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """``/v5/market/instruments-info?category=spot``: the Trading ``<ASSET><QUOTE>`` pair of each asset."""
    _bybit_ok(body)
    out = [Instrument(str(s["baseCoin"]), str(s["symbol"]), quote)
           for s in body.get("result", {}).get("list", ())
           if isinstance(s, dict) and s.get("status") == "Trading" and s.get("quoteCoin") == quote
           and "baseCoin" in s and "symbol" in s]
    return by_asset(out, assets)



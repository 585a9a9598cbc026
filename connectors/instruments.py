"""Symbol mapping: from an asset name (``BTC``) to each venue's instrument, read from the venue's own REST
instrument list at start, never from a hand-written table.

The parsers are pure (a decoded REST body in, ``Instrument``s out) so they are tested on recorded bodies;
``get_json`` is the one place REST transport errors are translated into ``FeedError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from hedgewatch.service.errors import FeedError


@dataclass(frozen=True, slots=True)
class Instrument:
    """One venue instrument for one configured asset. ``ct_val`` is base units per contract (OKX ``ctVal``;
    1.0 where sizes are already in base units), or for an ``inverse`` (coin-margined) contract its USD face
    value (OKX ``BTC-USD-SWAP`` 100, Binance COIN-M 100 for BTC and 10 for the others, Bybit 1);
    ``funding_interval_h`` when the list states it."""

    asset: str
    instrument: str
    quote: str
    ct_val: float = 1.0
    funding_interval_h: float | None = None
    composite: bool = False
    inverse: bool = False

    def base_qty(self, contracts: float, price: float) -> float:
        """A size in contracts as base units: ``ct_val`` each, or (inverse) ``ct_val`` USD at ``price``."""
        return contracts * self.ct_val / price if self.inverse else contracts * self.ct_val


async def get_json(client: httpx.AsyncClient, path: str, params: dict[str, Any] | None = None) -> Any:
    """GET and decode JSON; every transport, status or decoding failure becomes a ``FeedError``."""
    try:
        resp = await client.get(path, params=params)
    except httpx.HTTPError as exc:
        raise FeedError(f"GET {path}: {type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        raise FeedError(f"GET {path}: HTTP {resp.status_code}")
    try:
        return orjson.loads(resp.content)
    except orjson.JSONDecodeError as exc:
        raise FeedError(f"GET {path}: invalid JSON") from exc


def _by_asset(candidates: Iterable[Instrument], assets: Iterable[str]) -> list[Instrument]:
    found: dict[str, Instrument] = {}
    for inst in candidates:
        found.setdefault(inst.asset, inst)
    return [found[a] for a in assets if a in found]


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
    return _by_asset(out, assets)


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
        ct_val = _positive_float(s.get("contractSize")) if inverse else 1.0
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
        ct_val = _positive_float(s.get("contractSize"))
        if ct_val is not None:
            out.append(Instrument(str(base), s["symbol"], "USD", ct_val=ct_val, inverse=True))
    return _by_asset(out, assets)


def _positive_float(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if 0.0 < x < 1e12 else None


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
    return _by_asset(out, assets)


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
    return _by_asset(out, assets)


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


def okx_swaps(body: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """``/api/v5/public/instruments?instType=SWAP``: the live swap ``<ASSET>-<QUOTE>-SWAP`` with its contract
    value: a linear one (``ctVal`` base units per contract), or with quote ``USD`` the coin-margined
    (inverse) one, ``ctVal`` USD per contract and settled in the coin."""
    return _by_asset([inst for inst, _ in _okx_contracts(body, quote)], assets)


OKX_QUARTERS = ("this_quarter", "next_quarter")


def okx_futures(body: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """``/api/v5/public/instruments?instType=FUTURES``: the live quarterly futures (``alias``
    ``this_quarter``/``next_quarter``, ``BTC-USDT-261225``) of each asset with the quote, linear or (quote
    USD) inverse like the swaps. Their quotes feed the term structure and the roll cost, not the oracle."""
    wanted = set(assets)
    return [inst for inst, row in _okx_contracts(body, quote)
            if row.get("alias") in OKX_QUARTERS and inst.asset in wanted]


def _okx_contracts(body: dict[str, Any], quote: str) -> list[tuple[Instrument, dict[str, Any]]]:
    """The live contracts of an OKX instruments page with the quote: linear (``ctVal`` base units a
    contract) or, with quote ``USD``, inverse (``ctVal`` USD a contract, settled in the coin)."""
    if str(body.get("code")) != "0":
        raise FeedError(f"okx instruments: code {body.get('code')} {body.get('msg', '')}")
    out = []
    for s in body.get("data", ()):
        ct_type = s.get("ctType")
        if s.get("state") != "live" or ct_type not in ("linear", "inverse"):
            continue
        base, _, q = str(s.get("uly") or s.get("instFamily") or "").partition("-")
        inverse = ct_type == "inverse"
        if q != quote or s.get("ctValCcy") != (q if inverse else base):
            continue
        if inverse and s.get("settleCcy") not in (None, "", base):
            continue
        ct_val = _positive_float(s.get("ctVal"))
        if ct_val is not None:
            out.append((Instrument(base, s["instId"], quote, ct_val=ct_val, inverse=inverse), s))
    return out


# --- spot pairs: the index's price source (``market: spot``) -------------------------------------------


def binance_spot(info: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """``/api/v3/exchangeInfo`` (Binance spot): the TRADING ``<ASSET><QUOTE>`` pair of each asset."""
    if not isinstance(info.get("symbols"), list):
        raise FeedError("spot exchangeInfo: no symbols list")
    out = [Instrument(str(s["baseAsset"]), str(s["symbol"]), quote) for s in info["symbols"]
           if isinstance(s, dict) and s.get("status") == "TRADING" and s.get("quoteAsset") == quote
           and "baseAsset" in s and "symbol" in s]
    return _by_asset(out, assets)


def bybit_spot(body: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """``/v5/market/instruments-info?category=spot``: the Trading ``<ASSET><QUOTE>`` pair of each asset."""
    _bybit_ok(body)
    out = [Instrument(str(s["baseCoin"]), str(s["symbol"]), quote)
           for s in body.get("result", {}).get("list", ())
           if isinstance(s, dict) and s.get("status") == "Trading" and s.get("quoteCoin") == quote
           and "baseCoin" in s and "symbol" in s]
    return _by_asset(out, assets)


def okx_spot(body: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """``/api/v5/public/instruments?instType=SPOT``: the live ``<ASSET>-<QUOTE>`` pair of each asset."""
    if str(body.get("code")) != "0":
        raise FeedError(f"okx instruments: code {body.get('code')} {body.get('msg', '')}")
    out = [Instrument(str(s["baseCcy"]), str(s["instId"]), quote) for s in body.get("data", ())
           if isinstance(s, dict) and s.get("state") == "live" and s.get("quoteCcy") == quote
           and "baseCcy" in s and "instId" in s]
    return _by_asset(out, assets)

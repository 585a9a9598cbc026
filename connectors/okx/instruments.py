"""OKX v5 instrument lists (``/api/v5/public/instruments`` of ``instType`` SWAP, FUTURES and SPOT): pure
parsers, a decoded REST body in, ``Instrument``s out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hedgewatch.connectors.instruments import Instrument, by_asset, positive_float
from hedgewatch.service.errors import FeedError


def okx_swaps(body: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """``/api/v5/public/instruments?instType=SWAP``: the live swap ``<ASSET>-<QUOTE>-SWAP`` with its contract
    value: a linear one (``ctVal`` base units per contract), or with quote ``USD`` the coin-margined
    (inverse) one, ``ctVal`` USD per contract and settled in the coin."""
    return by_asset([inst for inst, _ in _okx_contracts(body, quote)], assets)


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
        ct_val = positive_float(s.get("ctVal"))
        if ct_val is not None:
            out.append((Instrument(base, s["instId"], quote, ct_val=ct_val, inverse=inverse), s))
    return out



def okx_spot(body: dict[str, Any], assets: Iterable[str], quote: str) -> list[Instrument]:
    """``/api/v5/public/instruments?instType=SPOT``: the live ``<ASSET>-<QUOTE>`` pair of each asset."""
    if str(body.get("code")) != "0":
        raise FeedError(f"okx instruments: code {body.get('code')} {body.get('msg', '')}")
    out = [Instrument(str(s["baseCcy"]), str(s["instId"]), quote) for s in body.get("data", ())
           if isinstance(s, dict) and s.get("state") == "live" and s.get("quoteCcy") == quote
           and "baseCcy" in s and "instId" in s]
    return by_asset(out, assets)

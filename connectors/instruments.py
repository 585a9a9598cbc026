"""Symbol mapping: from an asset name (``BTC``) to each venue's instrument, read from the venue's own REST
instrument list at start, never from a hand-written table.

Each venue's parsers are its ``instruments.py`` (``connectors.binance.instruments`` ...): pure, a decoded
REST body in, ``Instrument``s out, so they are tested on recorded bodies. Shared here: ``Instrument``,
``get_json`` (the one place REST transport errors are translated into ``FeedError``) and the helpers.
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


def by_asset(candidates: Iterable[Instrument], assets: Iterable[str]) -> list[Instrument]:
    """The first candidate of each asset, in the order of ``assets`` (an asset without one is left out)."""
    found: dict[str, Instrument] = {}
    for inst in candidates:
        found.setdefault(inst.asset, inst)
    return [found[a] for a in assets if a in found]


def positive_float(v: Any) -> float | None:
    """``v`` as a float in (0, 1e12), else None (a contract size or value that cannot be right)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if 0.0 < x < 1e12 else None



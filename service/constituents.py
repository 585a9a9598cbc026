"""Constituent selection: market data providers and the selection rule.

A provider returns ``Candidate`` rows (symbol, market cap, 24 h volume, optional free-float ratio and
category tags). ``select`` is pure: top N by market cap among eligible candidates, excluding stablecoins,
wrapped/staked and pegged tokens, those below a minimum volume and those no source quotes, with a rank
buffer (a current member stays while it ranks within ``top_n + rank_buffer``; newcomers fill the remaining
places by rank), so members do not churn at the boundary.

What the providers (service/providers.py, at the daemon's edge) read is parsed here, purely:
- ``load_candidates_file``: JSON or YAML, either a list of our rows or CoinGecko's ``/coins/markets`` shape;
  ``parse_candidates`` the same shapes from any source.
- ``load_index_info``: a venue composite index definition (Binance ``/fapi/v1/indexInfo``).
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from hedgewatch.service.errors import ConfigError, Problem

# Known stablecoins, wrapped, staked and pegged tokens: never index members, whatever the provider says.
_STABLE = "USDT USDC DAI FDUSD TUSD BUSD USDP USDD USDE PYUSD FRAX GUSD LUSD SUSD USDS USD1 RLUSD EURC EURT"
_WRAPPED = "WBTC WETH WBNB WBETH STETH WSTETH CBETH RETH WEETH EETH METH BTCB CBBTC TBTC SOLVBTC LBTC"
_STAKED = "JITOSOL MSOL BNSOL STSOL WTRX WAVAX WMATIC WSOL"
STABLECOINS = frozenset([*_STABLE.split(" "), "EURS", "GHO", "CRVUSD", "USDB", "USDX", "USDJ"])
WRAPPED = frozenset([*_WRAPPED.split(" "), *_STAKED.split(" ")])
# synthetic and yield-bearing dollars: a dollar claim whatever the mechanism (delta-neutral, savings rate)
_SYNTHETIC = ("SUSDE USDTB USD0 USD0PP SUSDS SDAI SFRAX SCRVUSD FRXUSD SFRXUSD DOLA MIM EUSD AUSD USDM STUSD "
              "WUSDM USDL SYRUPUSDC SYRUPUSDT XUSD DEUSD SDEUSD USR AVUSD EUSDE YUSD")
SYNTHETIC_DOLLARS = frozenset(_SYNTHETIC.split(" "))
# pegged to an outside asset: tokenized treasury funds and money-market shares ($1 a unit), gold, fiat
_PEGGED = ("PAXG XAUT KAU CGO BUIDL USYC OUSG USDY USTB BENJI JTRSY JAAA TBILL STBT WTGXX XSGD EURCV EURI EUROP "
           "BRZ BRLA MXNB TRYB")
PEGGED = frozenset(_PEGGED.split(" "))
EXCLUDED_TAGS = frozenset({"stablecoin", "stablecoins", "wrapped", "wrapped-tokens", "staked", "pegged",
                           "liquid-staking-tokens", "bridged", "synthetic-dollar", "yield-bearing-stablecoins",
                           "tokenized-treasury-bills", "tokenized-treasury-bonds", "tokenized-gold",
                           "usd-stablecoin", "eur-stablecoin", "fiat-backed-stablecoin",
                           "crypto-backed-stablecoin", "algorithmic-stablecoins", "liquid-restaking-tokens"})


@dataclass(frozen=True, slots=True)
class Candidate:
    """One asset as a market-data provider describes it."""

    symbol: str
    market_cap_usd: float
    volume_24h_usd: float = 0.0
    free_float_ratio: float | None = None
    tags: tuple[str, ...] = ()

    @property
    def excluded_kind(self) -> str | None:
        """Why this asset can never be a member (``stablecoin``, ``synthetic_dollar``, ``wrapped``, ``pegged``,
        or the provider's category tag), or None."""
        s = self.symbol
        if s in STABLECOINS or s.startswith("USD") or s.endswith("USD"):
            return "stablecoin"
        if s in SYNTHETIC_DOLLARS:
            return "synthetic_dollar"
        if s in WRAPPED:
            return "wrapped"
        if s in PEGGED:
            return "pegged"
        for t in self.tags:
            if t.lower() in EXCLUDED_TAGS:
                return t.lower()
        return None


def eligible(
    candidates: Iterable[Candidate],
    min_volume_usd: float = 0.0,
    exclude: Container[str] = (),
    allowed: Container[str] | None = None,
) -> list[Candidate]:
    """Candidates that may be members, ranked by market cap (largest first)."""
    out = [
        c for c in candidates
        if c.market_cap_usd > 0
        and c.excluded_kind is None
        and c.symbol not in exclude
        and c.volume_24h_usd >= min_volume_usd
        and (allowed is None or c.symbol in allowed)
    ]
    out.sort(key=lambda c: (-c.market_cap_usd, c.symbol))
    return out


def select(
    candidates: Iterable[Candidate],
    top_n: int,
    current: Sequence[str] = (),
    rank_buffer: int = 0,
    min_volume_usd: float = 0.0,
    exclude: Container[str] = (),
    allowed: Container[str] | None = None,
) -> list[str]:
    """The members after a selection: current members ranked within ``top_n + rank_buffer`` stay (the
    best ``top_n`` of them if more), then the best-ranked newcomers fill up to ``top_n``. Ordered by rank."""
    ranked = [c.symbol for c in eligible(candidates, min_volume_usd, exclude, allowed)]
    rank = {s: i for i, s in enumerate(ranked)}
    held = set(current)
    stay = [s for s in ranked[: top_n + rank_buffer] if s in held][:top_n]
    chosen = set(stay)
    for s in ranked:
        if len(chosen) >= top_n:
            break
        chosen.add(s)
    return sorted(chosen, key=rank.__getitem__)


def unsourced(
    candidates: Iterable[Candidate],
    top_n: int,
    quotable: Container[str],
    min_volume_usd: float = 0.0,
    exclude: Container[str] = (),
) -> list[str]:
    """Assets that rank within ``top_n`` but that no source quotes: ``select`` passes over them (the
    next-ranked quotable asset takes the place), and the operator should hear about it."""
    return [c.symbol for c in eligible(candidates, min_volume_usd, exclude)[:top_n] if c.symbol not in quotable]


# --- parsing -------------------------------------------------------------------------------------------


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def parse_candidates(data: Any) -> list[Candidate]:
    """Rows in our shape (``symbol``, ``market_cap_usd``, ``volume_24h_usd``, ``free_float_ratio``,
    ``tags``) or CoinGecko's ``/coins/markets`` (``symbol``, ``market_cap``, ``total_volume``,
    ``circulating_supply``, ``total_supply``; free float = circulating / total supply). A mapping with a
    ``data`` or ``candidates`` list is unwrapped."""
    if isinstance(data, dict):
        data = data.get("candidates", data.get("data", []))
    if not isinstance(data, list):
        raise ValueError("expected a list of assets")
    out = []
    for row in data:
        if not isinstance(row, dict) or not row.get("symbol"):
            continue
        ff = row.get("free_float_ratio")
        if ff is None and _num(row.get("total_supply")) > 0 and _num(row.get("circulating_supply")) > 0:
            ff = min(1.0, _num(row["circulating_supply"]) / _num(row["total_supply"]))
        tags = row.get("tags") or row.get("categories") or ()
        out.append(
            Candidate(
                symbol=str(row["symbol"]).upper(),
                market_cap_usd=_num(row.get("market_cap_usd", row.get("market_cap"))),
                volume_24h_usd=_num(row.get("volume_24h_usd", row.get("total_volume"))),
                free_float_ratio=None if ff is None else float(ff),
                tags=tuple(str(t) for t in tags),
            )
        )
    return out


def _load_file(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text()
        if p.suffix in (".yaml", ".yml"):
            return YAML(typ="safe").load(text)
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError([Problem(str(p), None, None, "", f"cannot load: {exc}")]) from exc


def load_candidates_file(path: str | Path) -> list[Candidate]:
    """The file provider."""
    try:
        return parse_candidates(_load_file(path))
    except ValueError as exc:
        raise ConfigError([Problem(str(path), None, None, "", str(exc))]) from exc


def parse_index_info(data: Any, symbol: str) -> dict[str, float]:
    """Units (``weightInQuantity`` per base asset) of ``symbol`` from a Binance ``/fapi/v1/indexInfo``
    response (a list of indices, or one index object)."""
    rows = data if isinstance(data, list) else [data]
    for row in rows:
        if isinstance(row, dict) and row.get("symbol") == symbol:
            return {
                str(c["baseAsset"]).upper(): float(c["weightInQuantity"])
                for c in row.get("baseAssetList", [])
                if float(c.get("weightInQuantity", 0)) > 0
            }
    raise ValueError(f"index {symbol} not in the definition")


def load_index_info(path: str | Path, symbol: str) -> dict[str, float]:
    try:
        return parse_index_info(_load_file(path), symbol)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError([Problem(str(path), None, None, "index.definition_path", str(exc))]) from exc

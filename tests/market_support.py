"""Helpers shared by the oracle/index/market tests: configs and event builders."""

from __future__ import annotations

from hedgewatch.service.config import Config, parse_config
from hedgewatch.service.events import Quote

VENUES = ("binanceusdm", "bybit", "okx", "kraken", "coinbase")


def config(
    assets: tuple[str, ...] = ("BTC", "ETH"),
    venues: tuple[str, ...] = VENUES[:3],
    index: str = "",
    oracle: str = "",
    constituents: tuple[str, ...] | None = None,
) -> Config:
    """A config with every venue quoting every asset; ``index``/``oracle`` add YAML lines to the sections."""
    syms = ", ".join(assets)
    sources = "\n".join(f"  - {{exchange: {v}, symbols: [{syms}]}}" for v in venues)
    members = ", ".join(constituents if constituents is not None else assets)
    idx = f"index:\n  name: HW\n  constituents: [{members}]\n"
    idx += "".join(f"  {line}\n" for line in index.splitlines())
    orc = "oracle:\n" + "".join(f"  {line}\n" for line in oracle.splitlines()) if oracle else ""
    return parse_config(f"sources:\n{sources}\n{idx}{orc}", env={})


def quote(venue: str, asset: str, price: float, ts: float, quote_ccy: str = "USD") -> Quote:
    """A zero-spread quote at ``price`` received at ``ts``."""
    return Quote(venue, asset, f"{asset}{quote_ccy}", price, price, ts, ts, quote_ccy)

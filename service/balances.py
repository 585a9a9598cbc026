"""Optional read-only balances and hedge position from a venue, through ccxt, for hedge sizing.

The API key and secret come from environment variables named in the config (never from the file), are
handed to ccxt only, and never reach a log, a metric, an alert or an exception message: errors name the
venue and the operation, and ccxt's own exception text (which may echo request details) is not repeated.
Use a key without trading or withdrawal permissions. This is an edge module: the daemon polls it and hands
the result to the pure sizing code (``HedgeBook.set_position`` / ``set_holdings``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hedgewatch.service.config import BalancesConfig
from hedgewatch.service.errors import FeedError, SecretError


@dataclass(frozen=True)
class VenueBalances:
    """Holdings (asset -> total units, dust and zeros dropped) and the signed hedge position in contracts
    (negative: short), None when no ``position_symbol`` is configured."""

    holdings: dict[str, float]
    position_contracts: float | None


def _credentials(cfg: BalancesConfig, env: Mapping[str, str]) -> dict[str, str]:
    creds = {}
    names = (("apiKey", cfg.api_key_env), ("secret", cfg.secret_env), ("password", cfg.password_env))
    for field, var in names:
        if var is None:
            continue
        value = env.get(var)
        if not value:
            raise SecretError(f"portfolio.balances: environment variable {var} is not set")
        creds[field] = value
    return creds


def default_factory(exchange_id: str, params: dict[str, Any], rest_url: str | None = None) -> Any:
    import ccxt.async_support as ccxt_async  # imported here: only daemons that read balances need it

    cls = getattr(ccxt_async, exchange_id, None)
    if cls is None:
        raise FeedError(f"portfolio.balances: unknown ccxt exchange '{exchange_id}'")
    exchange = cls(params)
    if rest_url:
        rebase_urls(exchange.urls, rest_url)
    return exchange


def rebase_urls(urls: dict[str, Any], base: str) -> None:
    """Point every API endpoint of a ccxt exchange at ``base`` (scheme and host), keeping each endpoint's
    own path (``https://fapi.binance.com/fapi/v3`` -> ``<base>/fapi/v3``)."""
    api = urls.get("api")
    if not isinstance(api, dict):
        return
    root = base.rstrip("/")
    for name, url in api.items():
        if isinstance(url, str) and "://" in url:
            _, _, rest = url.partition("://")
            path = rest.partition("/")[2]
            api[name] = f"{root}/{path}" if path else root


async def fetch_balances(cfg: BalancesConfig, env: Mapping[str, str],
                         factory: Callable[..., Any] = default_factory) -> VenueBalances:
    """One read of balances (and the hedge position when ``position_symbol`` is set)."""
    # currencies come from the venue's wallet API, which a read-only futures key need not reach
    params: dict[str, Any] = {"enableRateLimit": True, "options": {"fetchCurrencies": False},
                              **_credentials(cfg, env)}
    exchange = factory(cfg.exchange, params, cfg.rest_url) if cfg.rest_url else factory(cfg.exchange, params)
    op = "fetch_balance"
    try:
        balance = await exchange.fetch_balance()
        totals = balance.get("total") or {}
        holdings = {str(a).upper(): float(v) for a, v in totals.items()
                    if v and float(v) > cfg.min_units and (not cfg.assets or str(a).upper() in cfg.assets)}
        position = None
        if cfg.position_symbol:
            op = "fetch_positions"
            position = 0.0
            for p in await exchange.fetch_positions([cfg.position_symbol]):
                contracts = float(p.get("contracts") or 0.0)
                position += -contracts if p.get("side") == "short" else contracts
        return VenueBalances(holdings, position)
    except (FeedError, SecretError):
        raise
    except Exception as exc:
        # ccxt's messages can carry request details; name the venue, the call and the error class only
        raise FeedError(f"{cfg.exchange}: {op} failed ({type(exc).__name__})") from None
    finally:
        await exchange.close()

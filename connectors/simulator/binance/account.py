"""Binance USDⓈ-M account endpoints (read-only, signed): what the daemon's balances poller reads through ccxt.

``/fapi/v3/account`` (wallet assets), ``/fapi/v3/positionRisk`` (open positions) and
``/fapi/v1/leverageBracket``, in the shapes ``fapi.binance.com`` answers. The account is set by the test
(``BinanceServer.account``); a request without a ``signature`` is refused as the venue refuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hedgewatch.connectors.simulator.transport import RestError

if TYPE_CHECKING:
    from hedgewatch.connectors.simulator.binance.stream import BinanceServer


@dataclass
class Account:
    """Wallet balances (asset -> units) and positions (asset -> signed base units, negative: short)."""

    balances: dict[str, float] = field(default_factory=dict)
    positions: dict[str, float] = field(default_factory=dict)
    reads: int = 0


def _signed(params: dict[str, str]) -> None:
    if "signature" not in params or "timestamp" not in params:
        raise RestError(401, {"code": -2014, "msg": "API-key format invalid."})


def account(srv: BinanceServer, params: dict[str, str]) -> Any:
    _signed(params)
    srv.account.reads += 1
    assets = []
    for asset, units in srv.account.balances.items():
        u = f"{units:.8f}"
        assets.append({"asset": asset, "walletBalance": u, "unrealizedProfit": "0.00000000", "marginBalance": u,
                       "maintMargin": "0.00000000", "initialMargin": "0.00000000",
                       "positionInitialMargin": "0.00000000", "openOrderInitialMargin": "0.00000000",
                       "crossWalletBalance": u, "crossUnPnl": "0.00000000", "availableBalance": u,
                       "maxWithdrawAmount": u, "updateTime": srv.now_ms()})
    total = sum(srv.account.balances.values())
    return {"totalInitialMargin": "0", "totalMaintMargin": "0", "totalWalletBalance": f"{total:.8f}",
            "totalUnrealizedProfit": "0", "totalMarginBalance": f"{total:.8f}", "availableBalance": f"{total:.8f}",
            "maxWithdrawAmount": f"{total:.8f}", "assets": assets, "positions": []}


def position_risk(srv: BinanceServer, params: dict[str, str]) -> Any:
    _signed(params)
    srv.account.reads += 1
    wanted = srv._asset(params, required=False)
    out = []
    for asset, amt in srv.account.positions.items():
        if wanted is not None and asset != wanted:
            continue
        mark = srv.model.quotes[asset].mark
        out.append({"symbol": srv.symbols[asset], "positionSide": "BOTH", "positionAmt": f"{amt:.3f}",
                    "entryPrice": f"{mark:.2f}", "breakEvenPrice": f"{mark:.2f}", "markPrice": f"{mark:.8f}",
                    "unRealizedProfit": "0.00000000", "liquidationPrice": "0", "isolatedMargin": "0",
                    "notional": f"{amt * mark:.8f}", "marginAsset": "USDT", "isolatedWallet": "0",
                    "initialMargin": f"{abs(amt * mark) / 10:.8f}", "maintMargin": "0",
                    "positionInitialMargin": f"{abs(amt * mark) / 10:.8f}", "openOrderInitialMargin": "0",
                    "adl": 0, "bidNotional": "0", "askNotional": "0", "updateTime": srv.now_ms()})
    return out


def leverage_bracket(srv: BinanceServer, params: dict[str, str]) -> Any:
    _signed(params)
    return [{"symbol": s, "brackets": [{"bracket": 1, "initialLeverage": 20, "notionalCap": 5_000_000,
                                        "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0}]}
            for s in srv.symbols.values()]


ROUTES: dict[str, Callable[[BinanceServer, dict[str, str]], Any]] = {
    "/fapi/v3/account": account,
    "/fapi/v3/positionRisk": position_risk,
    "/fapi/v2/positionRisk": position_risk,
    "/fapi/v1/leverageBracket": leverage_bracket,
}

"""Bybit v5 market REST endpoints (``/v5/market/...``): each returns the ``result`` object; the server wraps
it as ``{"retCode":0,"retMsg":"OK","result":..,"retExtInfo":{},"time":..}``. Bad parameters answer HTTP 200
with ``retCode`` 10001, as Bybit does."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hedgewatch.connectors.simulator.candles import INTERVALS_MS
from hedgewatch.connectors.simulator.venue import decimals

if TYPE_CHECKING:
    from hedgewatch.connectors.simulator.bybit.stream import BybitServer

KLINE_INTERVALS = {
    "1": "1m",
    "3": "3m",
    "5": "5m",
    "15": "15m",
    "30": "30m",
    "60": "1h",
    "120": "2h",
    "240": "4h",
    "360": "6h",
    "720": "12h",
    "D": "1d",
    "W": "1w",
}
OI_INTERVALS_MS = {
    "5min": 300_000,
    "15min": 900_000,
    "30min": 1_800_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}


class ParamError(Exception):
    """A request parameter is missing or invalid (``retCode`` 10001)."""


def _category(srv: BybitServer, params: dict[str, str]) -> None:
    if params.get("category") != srv.category:
        raise ParamError(f"params error: category only support {srv.category} on this venue")


def _assets(srv: BybitServer, params: dict[str, str], required: bool = False) -> list[str]:
    sym = params.get("symbol")
    if not sym:
        if required:
            raise ParamError("params error: symbol is required")
        return list(srv.model.assets)
    asset = srv.by_symbol.get(sym.upper())
    if asset is None:
        raise ParamError("params error: symbol invalid")
    return [asset]


def _limit(params: dict[str, str], default: int, most: int) -> int:
    try:
        n = int(params.get("limit") or default)
    except ValueError as exc:
        raise ParamError("params error: limit invalid") from exc
    return max(1, min(n, most))


def spot_instruments(srv: BybitServer, params: dict[str, str]) -> Any:
    """``instruments-info?category=spot``: the venue's spot pairs, in the shape Bybit lists them."""
    sym = params.get("symbol")
    out = []
    for a, pair in srv.spot_symbols.items():
        if sym and sym.upper() != pair:
            continue
        spec = srv.model.path.specs[a]
        px, qx = decimals(spec.tick_size), decimals(spec.qty_step)
        out.append({"symbol": pair, "baseCoin": a, "quoteCoin": srv.model.path.scenario.quote, "innovation": "0",
                    "status": "Trading", "marginTrading": "utaOnly", "stTag": "0",
                    "lotSizeFilter": {"basePrecision": f"{spec.qty_step:.{qx}f}", "quotePrecision": "0.00000001",
                                      "minOrderQty": f"{spec.qty_step:.{qx}f}", "maxOrderQty": "1000",
                                      "minOrderAmt": "5", "maxOrderAmt": "8000000"},
                    "priceFilter": {"tickSize": f"{spec.tick_size:.{px}f}"}})
    return {"category": "spot", "list": out}


def instruments_info(srv: BybitServer, params: dict[str, str]) -> Any:
    if params.get("category") == "spot":
        return spot_instruments(srv, params)
    _category(srv, params)
    quote = srv.quote
    out = []
    for a in _assets(srv, params):
        spec = srv.model.path.specs[a]
        px, qx = decimals(spec.tick_size), decimals(spec.qty_step)
        out.append(
            {
                "symbol": srv.symbols[a],
                "contractType": "InversePerpetual" if srv.inverse else "LinearPerpetual",
                "status": "Trading",
                "baseCoin": a,
                "quoteCoin": quote,
                "launchTime": "1585526400000",
                "deliveryTime": "0",
                "deliveryFeeRate": "",
                "priceScale": str(px),
                "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
                "priceFilter": {
                    "minPrice": f"{spec.tick_size:.{px}f}",
                    "maxPrice": f"{spec.price * 20:.{px}f}",
                    "tickSize": f"{spec.tick_size:.{px}f}",
                },
                "lotSizeFilter": {  # inverse: whole contracts of 1 USD
                    "maxOrderQty": "1000000" if srv.inverse else "1190.000",
                    "minOrderQty": "1" if srv.inverse else f"{spec.qty_step:.{qx}f}",
                    "qtyStep": "1" if srv.inverse else f"{spec.qty_step:.{qx}f}",
                    "postOnlyMaxOrderQty": "1000000" if srv.inverse else "1190.000",
                    "maxMktOrderQty": "500000" if srv.inverse else "500.000",
                    **({} if srv.inverse else {"minNotionalValue": "5"}),
                },
                "unifiedMarginTrade": True,
                "fundingInterval": spec.funding_interval_h * 60,
                "settleCoin": a if srv.inverse else quote,
                "copyTrading": "both",
                "upperFundingRate": "0.005",
                "lowerFundingRate": "-0.005",
                "isPreListing": False,
                "preListingInfo": None,
            }
        )
    return {"category": srv.category, "list": out, "nextPageCursor": ""}


TICKER_KEYS = (
    "symbol",
    "lastPrice",
    "indexPrice",
    "markPrice",
    "prevPrice24h",
    "price24hPcnt",
    "highPrice24h",
    "lowPrice24h",
    "prevPrice1h",
    "openInterest",
    "openInterestValue",
    "turnover24h",
    "volume24h",
    "fundingRate",
    "nextFundingTime",
    "predictedDeliveryPrice",
    "basisRate",
    "deliveryFeeRate",
    "deliveryTime",
    "ask1Size",
    "bid1Price",
    "ask1Price",
    "bid1Size",
    "basis",
    "preOpenPrice",
    "preQty",
    "curPreListingPhase",
)


def tickers(srv: BybitServer, params: dict[str, str]) -> Any:
    _category(srv, params)
    out = []
    for a in _assets(srv, params):
        state = srv.ticker_fields(srv.model.quotes[a], refresh=True)
        extra = {
            "predictedDeliveryPrice": "",
            "basisRate": "",
            "deliveryFeeRate": "",
            "deliveryTime": "0",
            "basis": "",
        }
        out.append({k: state.get(k, extra.get(k, "")) for k in TICKER_KEYS})
    return {"category": srv.category, "list": out}


def open_interest(srv: BybitServer, params: dict[str, str]) -> Any:
    """Newest first, one row per ``intervalTime``, from the current value and the scripted growth."""
    _category(srv, params)
    asset = _assets(srv, params, required=True)[0]
    step = OI_INTERVALS_MS.get(params.get("intervalTime", ""))
    if step is None:
        raise ParamError("params error: intervalTime invalid")
    limit = _limit(params, 50, 200)
    q = srv.model.quotes[asset]
    growth = srv.model.path.assets[asset].oi_growth_per_hour
    last = q.ts_ms - q.ts_ms % step
    scale = q.mark if srv.inverse else 1.0  # inverse: in USD, linear: in base units
    rows = [
        {
            "openInterest": f"{q.open_interest * scale * (1.0 + growth) ** (-(q.ts_ms - t) / 3_600_000):.8f}",
            "timestamp": str(t),
        }
        for t in (last - i * step for i in range(limit))
    ]
    return {"symbol": srv.symbols[asset], "category": srv.category, "list": rows, "nextPageCursor": ""}


def kline(srv: BybitServer, params: dict[str, str]) -> Any:
    """Newest first, as Bybit lists them: ``[start, open, high, low, close, volume, turnover]``."""
    _category(srv, params)
    asset = _assets(srv, params, required=True)[0]
    code = params.get("interval", "")
    if code not in KLINE_INTERVALS:
        raise ParamError("params error: interval invalid")
    iv = INTERVALS_MS[KLINE_INTERVALS[code]]
    limit = _limit(params, 200, 1000)
    start = int(params["start"]) if params.get("start") else None
    end = int(params["end"]) if params.get("end") else None
    bars = srv.model.candles.klines(asset, iv, srv.now_ms(), start, end, limit)
    if start is not None and end is None:
        bars = bars[:limit]
    rows = [
        [
            str(int(b[0])),
            srv._p(asset, b[1]),
            srv._p(asset, b[2]),
            srv._p(asset, b[3]),
            srv._p(asset, b[4]),
            *_kline_volumes(srv, asset, b[5], b[4]),
        ]
        for b in reversed(bars)
    ]
    return {"symbol": srv.symbols[asset], "category": srv.category, "list": rows}


def _kline_volumes(srv: BybitServer, asset: str, base: float, close: float) -> tuple[str, str]:
    """(volume, turnover): base units and quote (linear), or USD contracts and coins (inverse)."""
    if srv.inverse:
        return f"{round(base * close)}", f"{base:.8f}"
    return srv._q(asset, base), f"{base * close:.4f}"


def funding_history(srv: BybitServer, params: dict[str, str]) -> Any:
    """Past settlements, newest first, at each funding time."""
    _category(srv, params)
    asset = _assets(srv, params, required=True)[0]
    limit = _limit(params, 200, 200)
    q = srv.model.quotes[asset]
    period = q.funding_interval_h * 3_600_000
    rows = [
        {
            "symbol": srv.symbols[asset],
            "fundingRate": f"{q.funding_rate:.8f}",
            "fundingRateTimestamp": str(q.next_funding_ms - i * period),
        }
        for i in range(1, limit + 1)
    ]
    return {"category": srv.category, "list": rows}


ROUTES: dict[str, Callable[[BybitServer, dict[str, str]], Any]] = {
    "/v5/market/instruments-info": instruments_info,
    "/v5/market/tickers": tickers,
    "/v5/market/open-interest": open_interest,
    "/v5/market/kline": kline,
    "/v5/market/funding/history": funding_history,
}

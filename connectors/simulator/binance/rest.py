"""Binance USDⓈ-M REST endpoints (``/fapi/v1/...``), in the shapes ``fapi.binance.com`` answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from hedgewatch.connectors.simulator.candles import INTERVALS_MS
from hedgewatch.connectors.simulator.transport import RestError
from hedgewatch.connectors.simulator.venue import decimals

if TYPE_CHECKING:
    from hedgewatch.connectors.simulator.binance.stream import BinanceCoinmServer, BinanceServer

ONBOARD_MS = 1_569_398_400_000
PERIODS_MS = {
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}


def _int(params: dict[str, str], key: str, default: int | None = None) -> int | None:
    raw = params.get(key)
    if raw in (None, ""):
        return default
    try:
        return int(raw)  # type: ignore[arg-type]
    except ValueError as exc:
        msg = f"Illegal characters found in parameter '{key}'."
        raise RestError(400, {"code": -1100, "msg": msg}) from exc


def funding_info(srv: BinanceServer, params: dict[str, str]) -> Any:
    """``/fapi/v1/fundingInfo``: only the symbols whose funding interval is not the default 8 h."""
    return [
        {
            "symbol": srv.symbols[a],
            "adjustedFundingRateCap": "0.02500000",
            "adjustedFundingRateFloor": "-0.02500000",
            "fundingIntervalHours": spec.funding_interval_h,
            "disclaimer": False,
        }
        for a in srv.model.assets
        if (spec := srv.model.path.specs[a]).funding_interval_h != 8
    ]


def ping(srv: BinanceServer, params: dict[str, str]) -> Any:
    return {}


def server_time(srv: BinanceServer, params: dict[str, str]) -> Any:
    return {"serverTime": srv.now_ms()}


def _symbol_info(srv: BinanceServer, asset: str) -> dict[str, Any]:
    spec = srv.model.path.specs[asset]
    quote = srv.model.path.scenario.quote
    tick, step = spec.tick_size, spec.qty_step
    px, qx = decimals(tick), decimals(step)
    return {
        "symbol": srv.symbols[asset],
        "pair": srv.symbols[asset],
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": ONBOARD_MS,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": asset,
        "quoteAsset": quote,
        "marginAsset": quote,
        "pricePrecision": px,
        "quantityPrecision": qx,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "INDEX" if asset in srv.model.path.composites else "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": f"{tick:.{px}f}",
                "maxPrice": f"{spec.price * 20:.{px}f}",
                "tickSize": f"{tick:.{px}f}",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": f"{step:.{qx}f}",
                "maxQty": "1000000",
                "stepSize": f"{step:.{qx}f}",
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": f"{step:.{qx}f}",
                "maxQty": "100000",
                "stepSize": f"{step:.{qx}f}",
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": "5"},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def exchange_info(srv: BinanceServer, params: dict[str, str]) -> Any:
    quote = srv.model.path.scenario.quote
    symbols = [_symbol_info(srv, a) for a in srv.model.assets]
    for sym, (a, expiry, ctype) in srv.dated.items():  # the quarterly futures, as USDⓈ-M lists them
        symbols.append(dict(_symbol_info(srv, a), symbol=sym.upper(), contractType=ctype, deliveryDate=expiry))
    return {
        "timezone": "UTC",
        "serverTime": srv.now_ms(),
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [{"asset": quote, "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": symbols,
    }


def spot_exchange_info(srv: BinanceServer, params: dict[str, str]) -> Any:
    """``/api/v3/exchangeInfo`` of the spot market: one TRADING ``<A><QUOTE>`` pair per asset, in the shape
    Binance's spot API lists them (``symbols`` narrows the list, as a JSON array)."""
    quote = srv.model.path.scenario.quote
    wanted = None
    if params.get("symbols"):
        try:
            wanted = set(orjson.loads(params["symbols"]))
        except orjson.JSONDecodeError:
            raise RestError(400, {"code": -1100, "msg": "Illegal characters found in parameter 'symbols'"}) from None
    rows = []
    for a, sym in srv.spot_symbols.items():
        if wanted is not None and sym not in wanted:
            continue
        px, qx = srv._px[a], srv._qx[a]
        rows.append({
            "symbol": sym, "status": "TRADING", "baseAsset": a, "baseAssetPrecision": 8, "quoteAsset": quote,
            "quotePrecision": 8, "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "isSpotTradingAllowed": True, "isMarginTradingAllowed": True,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": f"{10 ** -px:.{px}f}", "maxPrice": "1000000.00",
                 "tickSize": f"{10 ** -px:.{px}f}"},
                {"filterType": "LOT_SIZE", "minQty": f"{10 ** -qx:.{qx}f}", "maxQty": "9000.00",
                 "stepSize": f"{10 ** -qx:.{qx}f}"},
            ],
            "permissions": [], "permissionSets": [["SPOT", "MARGIN"]],
        })
    return {"timezone": "UTC", "serverTime": srv.now_ms(), "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
        "exchangeFilters": [], "symbols": rows}


def premium_index(srv: BinanceServer, params: dict[str, str]) -> Any:
    asset = srv._asset(params, required=False)

    def one(a: str) -> dict[str, Any]:
        q = srv.model.quotes[a]
        return {
            "symbol": srv.symbols[a],
            "markPrice": f"{q.mark:.8f}",
            "indexPrice": f"{q.index:.8f}",
            "estimatedSettlePrice": f"{q.index:.8f}",
            "lastFundingRate": f"{q.funding_rate:.8f}",
            "interestRate": "0.00010000",
            "nextFundingTime": q.next_funding_ms,
            "time": q.ts_ms,
        }

    return one(asset) if asset else [one(a) for a in srv.model.assets]


def open_interest(srv: BinanceServer, params: dict[str, str]) -> Any:
    asset = srv._asset(params)
    assert asset is not None
    q = srv.model.quotes[asset]
    return {"openInterest": f"{q.open_interest:.3f}", "symbol": srv.symbols[asset], "time": q.ts_ms}


def open_interest_hist(srv: BinanceServer, params: dict[str, str]) -> Any:
    """``/futures/data/openInterestHist``: the venue's open interest sampled per period (latest 30 by
    default), derived from the current value and the scripted growth so it is consistent with the feed."""
    asset = srv._asset(params)
    assert asset is not None
    period = PERIODS_MS.get(params.get("period", ""))
    if period is None:
        raise RestError(400, {"code": -1130, "msg": "Data sent for parameter 'period' is not valid."})
    limit = min(_int(params, "limit", 30) or 30, 500)
    q = srv.model.quotes[asset]
    growth = srv.model.path.assets[asset].oi_growth_per_hour
    last = q.ts_ms - q.ts_ms % period
    rows = []
    for i in reversed(range(limit)):
        t = last - i * period
        oi = q.open_interest * (1.0 + growth) ** (-(q.ts_ms - t) / 3_600_000)
        price = srv.model.path.price(asset)
        rows.append(
            {
                "symbol": srv.symbols[asset],
                "sumOpenInterest": f"{oi:.8f}",
                "sumOpenInterestValue": f"{oi * price:.8f}",
                "timestamp": t,
            }
        )
    return rows


def klines(srv: BinanceServer, params: dict[str, str]) -> Any:
    asset = srv._asset(params)
    assert asset is not None
    interval = params.get("interval", "")
    if interval not in INTERVALS_MS:
        raise RestError(400, {"code": -1120, "msg": "Invalid interval."})
    limit = _int(params, "limit", 500) or 500
    if not 1 <= limit <= 1500:
        raise RestError(400, {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."})
    iv = INTERVALS_MS[interval]
    bars = srv.model.candles.klines(
        asset, iv, srv.now_ms(), _int(params, "startTime"), _int(params, "endTime"), limit
    )
    p, q = srv._p, srv._q
    return [
        [
            int(b[0]),
            p(asset, b[1]),
            p(asset, b[2]),
            p(asset, b[3]),
            p(asset, b[4]),
            q(asset, b[5]),
            int(b[0]) + iv - 1,
            f"{b[5] * b[4]:.4f}",
            int(b[6]),
            q(asset, b[5] / 2),
            f"{b[5] * b[4] / 2:.4f}",
            "0",
        ]
        for b in bars
    ]


def index_info(srv: BinanceServer, params: dict[str, str]) -> Any:
    wanted = params.get("symbol", "").lower()
    out = []
    for key in srv.composites:
        if wanted and wanted != key:
            continue
        out.append(
            {
                "symbol": key.upper(),
                "time": srv.now_ms(),
                "component": "baseAsset",
                "baseAssetList": [
                    {
                        "baseAsset": a,
                        "quoteAsset": srv.model.path.scenario.quote,
                        "weightInQuantity": f"{q:.8f}",
                        "weightInPercentage": f"{w:.8f}",
                    }
                    for a, q, w, _ in srv._composite_parts(key)
                ],
            }
        )
    if wanted and not out:
        raise RestError(400, {"code": -1121, "msg": "Invalid symbol."})
    return out


def book_ticker(srv: BinanceServer, params: dict[str, str]) -> Any:
    asset = srv._asset(params, required=False)

    def one(a: str) -> dict[str, Any]:
        q = srv.model.quotes[a]
        return {
            "symbol": srv.symbols[a],
            "bidPrice": srv._p(a, q.bid),
            "bidQty": srv._q(a, q.bid_qty),
            "askPrice": srv._p(a, q.ask),
            "askQty": srv._q(a, q.ask_qty),
            "time": q.ts_ms,
        }

    return one(asset) if asset else [one(a) for a in srv.model.assets]


def funding_rate(srv: BinanceServer, params: dict[str, str]) -> Any:
    """``/fapi/v1/fundingRate``: past settlements at each funding time (at the current regime's rate)."""
    assets = [a for a in [srv._asset(params, required=False)] if a] or srv.model.assets
    limit = min(_int(params, "limit", 100) or 100, 1000)
    out = []
    for a in assets:
        q = srv.model.quotes[a]
        period = q.funding_interval_h * 3_600_000
        for i in reversed(range(1, limit + 1)):
            out.append(
                {
                    "symbol": srv.symbols[a],
                    "fundingTime": q.next_funding_ms - i * period,
                    "fundingRate": f"{q.funding_rate:.8f}",
                    "markPrice": f"{q.mark:.8f}",
                }
            )
    return out[-limit:]


ROUTES: dict[str, Callable[[BinanceServer, dict[str, str]], Any]] = {
    "/fapi/v1/ping": ping,
    "/fapi/v1/time": server_time,
    "/fapi/v1/exchangeInfo": exchange_info,
    "/fapi/v1/premiumIndex": premium_index,
    "/fapi/v1/openInterest": open_interest,
    "/futures/data/openInterestHist": open_interest_hist,
    "/fapi/v1/klines": klines,
    "/fapi/v1/indexInfo": index_info,
    "/fapi/v1/ticker/bookTicker": book_ticker,
    "/fapi/v1/fundingRate": funding_rate,
    "/fapi/v1/fundingInfo": funding_info,
    "/api/v3/exchangeInfo": spot_exchange_info,
}


# --- COIN-M (``/dapi/v1``): the shapes of Binance's COIN-M documentation --------------------------------


def coinm_exchange_info(srv: BinanceCoinmServer, params: dict[str, str]) -> Any:
    """``/dapi/v1/exchangeInfo``: ``contractStatus`` (not ``status``), ``contractSize`` in USD, the coin as
    ``marginAsset``, sizes in whole contracts."""
    symbols = []
    for a in srv.model.assets:
        row = _symbol_info(srv, a)
        del row["status"]
        for f in row["filters"]:
            if f["filterType"] in ("LOT_SIZE", "MARKET_LOT_SIZE"):
                f.update(minQty="1", stepSize="1")
        row.update(pair=srv.pairs[a], contractStatus="TRADING", contractSize=int(srv.ct_val[a]), quoteAsset="USD",
                   marginAsset=a, quantityPrecision=0, equalQtyPrecision=4, liquidationFee="0.010000",
                   marketTakeBound="0.30")
        symbols.append(row)
    for sym, (a, expiry, ctype) in srv.dated.items():  # the quarterly futures (BTCUSD_261225)
        perp = next(r for r in symbols if r["symbol"] == srv.symbols[a])
        symbols.append(dict(perp, symbol=sym.upper(), contractType=ctype, deliveryDate=expiry))
    return {
        "exchangeFilters": [],
        "rateLimits": [
            {"interval": "MINUTE", "intervalNum": 1, "limit": 6000, "rateLimitType": "REQUEST_WEIGHT"},
            {"interval": "MINUTE", "intervalNum": 1, "limit": 6000, "rateLimitType": "ORDERS"},
        ],
        "serverTime": srv.now_ms(),
        "symbols": symbols,
        "timezone": "UTC",
    }


def coinm_premium_index(srv: BinanceCoinmServer, params: dict[str, str]) -> Any:
    """``/dapi/v1/premiumIndex``: a list, also for one symbol, each row with its ``pair``."""
    rows = premium_index(srv, params)
    return [dict(r, pair=srv.pairs[srv.by_symbol[r["symbol"].lower()]]) for r in (rows if isinstance(rows, list)
                                                                                 else [rows])]


def coinm_open_interest(srv: BinanceCoinmServer, params: dict[str, str]) -> Any:
    """``/dapi/v1/openInterest``: whole contracts of ``contractSize`` USD."""
    asset = srv._asset(params)
    assert asset is not None
    q = srv.model.quotes[asset]
    return {"symbol": srv.symbols[asset], "pair": srv.pairs[asset],
            "openInterest": str(srv.contracts(asset, q.open_interest, q.mark)), "contractType": "PERPETUAL",
            "time": q.ts_ms}


def coinm_klines(srv: BinanceCoinmServer, params: dict[str, str]) -> Any:
    """``/dapi/v1/klines``: volume and taker buy volume in contracts, the base volumes in columns 7 and 10."""
    rows = klines(srv, params)
    asset = srv._asset(params)
    assert asset is not None
    ct = srv.ct_val[asset]
    out = []
    for r in rows:
        base, close = float(r[5]), float(r[4])
        contracts = round(base * close / ct)
        out.append([r[0], r[1], r[2], r[3], r[4], str(contracts), r[6], f"{base:.8f}", r[8],
                    str(contracts // 2), f"{base / 2:.8f}", "0"])
    return out


def coinm_funding_rate(srv: BinanceCoinmServer, params: dict[str, str]) -> Any:
    """``/dapi/v1/fundingRate``: symbol, fundingTime, fundingRate."""
    return [{k: r[k] for k in ("symbol", "fundingTime", "fundingRate")} for r in funding_rate(srv, params)]


COINM_ROUTES: dict[str, Callable[[BinanceCoinmServer, dict[str, str]], Any]] = {
    "/dapi/v1/ping": ping,
    "/dapi/v1/time": server_time,
    "/dapi/v1/exchangeInfo": coinm_exchange_info,
    "/dapi/v1/premiumIndex": coinm_premium_index,
    "/dapi/v1/openInterest": coinm_open_interest,
    "/dapi/v1/klines": coinm_klines,
    "/dapi/v1/fundingRate": coinm_funding_rate,
    "/dapi/v1/fundingInfo": funding_info,
}

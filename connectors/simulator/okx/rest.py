"""OKX v5 REST endpoints (``/api/v5/...``): each returns the ``data`` list; the server wraps it as
``{"code":"0","msg":"","data":[..]}``. Bad parameters answer HTTP 400 with OKX's error codes. Numbers are
strings; sizes in contracts (``ctVal`` base units each)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hedgewatch.connectors.simulator.candles import INTERVALS_MS, Bar
from hedgewatch.connectors.simulator.venue import decimals

if TYPE_CHECKING:
    from hedgewatch.connectors.simulator.okx.stream import OkxServer

BARS = {
    "1m": "1m",
    "3m": "3m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1H": "1h",
    "2H": "2h",
    "4H": "4h",
    "6H": "6h",
    "12H": "12h",
    "1D": "1d",
    "1W": "1w",
    # OKX's UTC-aligned bars (the plain 6H and longer ones open on Hong Kong time); the simulator's bars are
    # UTC-aligned either way
    "6Hutc": "6h",
    "12Hutc": "12h",
    "1Dutc": "1d",
    "1Wutc": "1w",
}


class ParamError(Exception):
    """A request parameter is missing or invalid; ``code`` is OKX's."""

    def __init__(self, code: str, msg: str) -> None:
        self.code = code
        super().__init__(msg)


def _swap_type(params: dict[str, str]) -> None:
    if params.get("instType", "SWAP") != "SWAP":
        raise ParamError("51000", "Parameter instType error")


def _swaps(srv: OkxServer, params: dict[str, str], required: bool = False) -> list[str]:
    inst = params.get("instId")
    if not inst:
        if required:
            raise ParamError("50014", "Parameter instId can not be empty")
        return list(srv.model.assets)
    if inst not in srv.by_swap:
        raise ParamError("51001", "Instrument ID does not exist")
    return [srv.by_swap[inst]]


def _index(srv: OkxServer, params: dict[str, str]) -> str:
    inst = params.get("instId", "")
    if inst not in srv.by_index:
        raise ParamError("51001", "Instrument ID does not exist")
    return srv.by_index[inst]


def instruments(srv: OkxServer, params: dict[str, str]) -> Any:
    if "instType" not in params:
        raise ParamError("50014", "Parameter instType can not be empty")
    if params["instType"] == "FUTURES":
        return dated_instruments(srv, params)
    if params["instType"] == "SPOT":
        return spot_instruments(srv, params)
    _swap_type(params)
    quote = srv.model.path.scenario.quote
    out = []
    for a in _swaps(srv, params):
        spec = srv.model.path.specs[a]
        ct = srv.ct_val[a]
        out.append(
            {
                "instType": "SWAP",
                "instId": srv.swaps[a],
                "uly": srv.indexes[a],
                "instFamily": srv.indexes[a],
                "baseCcy": "",
                "quoteCcy": "",
                "settleCcy": a if srv.inverse else quote,
                "ctVal": f"{ct:g}",
                "ctMult": "1",
                "ctValCcy": "USD" if srv.inverse else a,
                "optType": "",
                "stk": "",
                "listTime": "1573557408000",
                "expTime": "",
                "lever": "100",
                "tickSz": f"{spec.tick_size:.{decimals(spec.tick_size)}f}",
                "lotSz": "0.01",
                "minSz": "0.01",
                "ctType": "inverse" if srv.inverse else "linear",
                "alias": "",
                "state": "live",
                "maxLmtSz": "100000000",
                "maxMktSz": "12000",
                "maxTwapSz": "100000000",
                "maxIcebergSz": "100000000",
                "maxTriggerSz": "100000000",
                "maxStopSz": "12000",
                "ruleType": "normal",
            }
        )
    return out


def spot_instruments(srv: OkxServer, params: dict[str, str]) -> Any:
    """``instType=SPOT``: the spot pairs (``BTC-USDT``), sizes in base units, in the shape OKX lists them."""
    wanted = params.get("instId")
    quote = srv.model.path.scenario.quote
    out = []
    for a, inst in srv.spot_pairs.items():
        if wanted and inst != wanted:
            continue
        spec = srv.model.path.specs[a]
        out.append({"instType": "SPOT", "instId": inst, "uly": "", "instFamily": "", "baseCcy": a,
                    "quoteCcy": quote, "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "", "optType": "",
                    "stk": "", "listTime": "1548133413000", "expTime": "", "lever": "10",
                    "tickSz": f"{spec.tick_size:.{decimals(spec.tick_size)}f}",
                    "lotSz": f"{spec.qty_step:.{decimals(spec.qty_step)}f}",
                    "minSz": f"{spec.qty_step:.{decimals(spec.qty_step)}f}", "ctType": "", "alias": "",
                    "state": "live", "ruleType": "normal"})
    if wanted and not out:
        raise ParamError("51001", "Instrument ID does not exist")
    return out


def dated_instruments(srv: OkxServer, params: dict[str, str]) -> Any:
    """``instType=FUTURES``: the quarterly futures, in the swaps' shape with ``expTime`` and ``alias``."""
    wanted = params.get("instId")
    out = []
    for inst, (a, expiry, alias) in srv.futures.items():
        if wanted and inst != wanted:
            continue
        (row,) = instruments(srv, {"instType": "SWAP", "instId": srv.swaps[a]})
        out.append(dict(row, instType="FUTURES", instId=inst, expTime=str(expiry), alias=alias))
    if wanted and not out:
        raise ParamError("51001", "Instrument ID does not exist")
    return out


def open_interest_row(srv: OkxServer, a: str) -> dict[str, str]:
    q = srv.model.quotes[a]
    oi = q.open_interest
    return {
        "instId": srv.swaps[a],
        "instType": "SWAP",
        "oi": f"{srv.contracts(a, oi, q.mark):.2f}",
        "oiCcy": f"{oi:.4f}",
        "oiUsd": f"{oi * q.mark:.2f}",
        "ts": str(q.ts_ms),
    }


def open_interest(srv: OkxServer, params: dict[str, str]) -> Any:
    if "instType" not in params:
        raise ParamError("50014", "Parameter instType can not be empty")
    _swap_type(params)
    return [open_interest_row(srv, a) for a in _swaps(srv, params)]


def funding(srv: OkxServer, a: str) -> dict[str, str]:
    q = srv.model.quotes[a]
    period = q.funding_interval_h * 3_600_000
    rate = f"{q.funding_rate:.8f}"
    return {
        "formulaType": "withRate",
        "fundingRate": rate,
        "fundingTime": str(q.next_funding_ms),
        "impactValue": "",
        "instId": srv.swaps[a],
        "instType": "SWAP",
        "interestRate": "0.0001",
        "maxFundingRate": "0.00375",
        "method": "current_period",
        "minFundingRate": "-0.00375",
        "nextFundingRate": "",
        "nextFundingTime": str(q.next_funding_ms + period),
        "premium": f"{q.funding_rate - 0.0001:.8f}",
        "settFundingRate": rate,
        "settState": "settled",
        "ts": str(q.ts_ms),
    }


def funding_rate(srv: OkxServer, params: dict[str, str]) -> Any:
    return [funding(srv, a) for a in _swaps(srv, params, required=True)]


def funding_rate_history(srv: OkxServer, params: dict[str, str]) -> Any:
    a = _swaps(srv, params, required=True)[0]
    q = srv.model.quotes[a]
    period = q.funding_interval_h * 3_600_000
    limit = max(1, min(int(params.get("limit") or 100), 100))
    rate = f"{q.funding_rate:.8f}"
    return [
        {
            "instType": "SWAP",
            "instId": srv.swaps[a],
            "formulaType": "withRate",
            "fundingRate": rate,
            "realizedRate": rate,
            "fundingTime": str(q.next_funding_ms - i * period),
            "method": "current_period",
        }
        for i in range(1, limit + 1)
    ]


def mark_price(srv: OkxServer, params: dict[str, str]) -> Any:
    _swap_type(params)
    return [
        {
            "instType": "SWAP",
            "instId": srv.swaps[a],
            "markPx": srv._p(a, srv.model.quotes[a].mark),
            "ts": str(srv.model.quotes[a].ts_ms),
        }
        for a in _swaps(srv, params)
    ]


def ticker(srv: OkxServer, params: dict[str, str]) -> Any:
    return [srv.ticker(srv.model.quotes[a]) for a in _swaps(srv, params, required=True)]


def tickers(srv: OkxServer, params: dict[str, str]) -> Any:
    _swap_type(params)
    return [srv.ticker(srv.model.quotes[a]) for a in srv.model.assets]


def index_tickers(srv: OkxServer, params: dict[str, str]) -> Any:
    assets = [_index(srv, params)] if params.get("instId") else list(srv.model.assets)
    return [srv._frame("index-tickers", a, srv.model.quotes[a], "")[0] for a in assets]  # type: ignore[index]


def candle_row(srv: OkxServer, a: str, b: Bar, confirm: bool, index: bool) -> list[str]:
    """A candle row: ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``.

    Index candles have no volumes: ``[ts, o, h, l, c, confirm]``."""
    row = [str(int(b[0])), srv._p(a, b[1]), srv._p(a, b[2]), srv._p(a, b[3]), srv._p(a, b[4])]
    if not index:
        row += [srv._ct(a, b[5], b[4]), f"{b[5]:.4f}", f"{b[5] * b[4]:.2f}"]
    return [*row, "1" if confirm else "0"]


RECENT_CANDLES = 1440  # /market/candles serves the latest 1,440 bars; older ones are history-candles


def _candles(srv: OkxServer, params: dict[str, str], a: str, index: bool, history: bool = False) -> Any:
    """Newest first; ``after``: older than that time, ``before``: newer than that time. Like OKX, the
    candles endpoint serves only the latest ``RECENT_CANDLES`` bars (up to 300 a page), history-candles
    all of them (up to 100 a page)."""
    bar = params.get("bar", "1m")
    if bar not in BARS:
        raise ParamError("51000", "Parameter bar error")
    iv = INTERVALS_MS[BARS[bar]]
    limit = max(1, min(int(params.get("limit") or 100), 100 if history else 300))
    now = srv.now_ms()
    after = int(params["after"]) if params.get("after") else None
    before = int(params["before"]) if params.get("before") else None
    bars = srv.model.candles.klines(a, iv, now, None, after - 1 if after else None, limit)
    if not history:
        oldest = now - now % iv - (RECENT_CANDLES - 1) * iv
        bars = [b for b in bars if b[0] >= oldest]
    if before is not None:
        bars = [b for b in bars if b[0] > before]
    open_start = now - now % iv
    return [candle_row(srv, a, b, b[0] < open_start, index) for b in reversed(bars)]


def candles(srv: OkxServer, params: dict[str, str]) -> Any:
    return _candles(srv, params, _swaps(srv, params, required=True)[0], False)


def history_candles(srv: OkxServer, params: dict[str, str]) -> Any:
    return _candles(srv, params, _swaps(srv, params, required=True)[0], False, history=True)


def index_candles(srv: OkxServer, params: dict[str, str]) -> Any:
    return _candles(srv, params, _index(srv, params), True)


ROUTES: dict[str, Callable[[OkxServer, dict[str, str]], Any]] = {
    "/api/v5/public/instruments": instruments,
    "/api/v5/public/open-interest": open_interest,
    "/api/v5/public/funding-rate": funding_rate,
    "/api/v5/public/funding-rate-history": funding_rate_history,
    "/api/v5/public/mark-price": mark_price,
    "/api/v5/market/ticker": ticker,
    "/api/v5/market/tickers": tickers,
    "/api/v5/market/index-tickers": index_tickers,
    "/api/v5/market/candles": candles,
    "/api/v5/market/history-candles": history_candles,
    "/api/v5/market/index-candles": index_candles,
}

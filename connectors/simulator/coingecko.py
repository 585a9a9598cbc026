"""A CoinGecko-style market-cap endpoint, ``GET /api/v3/coins/markets``, served from the scenario's assets.

Every figure follows the simulation: ``current_price`` is the shared path's price now, ``market_cap`` that
price times the asset's circulating supply (scenario ``circulating_supply``, ``total_supply``,
``max_supply``), ``total_volume`` the venues' 24 h turnover summed, the 24 h open/high/low the first
quoting venue's. ``market_cap_rank`` ranks every asset by market cap, whatever the filters.

Query parameters as CoinGecko reads them: ``vs_currency`` is required (422 ``Missing parameter
vs_currency`` without it; only ``usd`` is priced, anything else answers 400 ``invalid vs_currency``);
``ids``, ``symbols`` and ``names`` filter (comma-separated, case-insensitive); ``order`` is
``market_cap_desc`` (default), ``market_cap_asc``, ``volume_desc``, ``volume_asc``, ``id_asc`` or
``id_desc``; ``per_page`` (1..250, default 100) and ``page`` (from 1) paginate. Every other parameter
(``sparkline``, ``price_change_percentage``, ``precision``, ``locale``, ``category``, unknown names) is
ignored, as CoinGecko ignores what it does not know; the scenario has no categories to filter by.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hedgewatch.connectors.simulator.market import PricePath
from hedgewatch.connectors.simulator.transport import RestError
from hedgewatch.connectors.simulator.venue import VenueModel

COINS_MARKETS = "/api/v3/coins/markets"
MARKET_CHART = "/api/v3/coins/{id}/market_chart"
MARKET_CHART_RANGE = "/api/v3/coins/{id}/market_chart/range"
DAY_MS, HOUR_MS, FIVE_MIN_MS = 86_400_000, 3_600_000, 300_000
MAX_PER_PAGE = 250
ORDERS = ("market_cap_desc", "market_cap_asc", "volume_desc", "volume_asc", "id_asc", "id_desc")


class CoinMarkets:
    """The market-cap view of the simulated market. Supplies start from the scenario and may be changed
    (``set_supply``: an unlock, a burn), so a test can move the ranking without moving prices."""

    def __init__(self, path: PricePath, models: Mapping[str, VenueModel]) -> None:
        self.path = path
        self.models = models
        self.supply: dict[str, tuple[float, float, float | None]] = {
            a: (s.circulating_supply, s.total_supply or s.circulating_supply, s.max_supply)
            for a, s in path.scenario.assets.items()
        }

    def set_supply(self, asset: str, circulating: float, total: float | None = None) -> None:
        """Change an asset's circulating (and total) supply from now on."""
        _, old_total, cap = self.supply[asset]
        self.supply[asset] = (circulating, max(total or old_total, circulating), cap)

    def _volume_usd(self, asset: str) -> float:
        return sum(m.quotes[asset].turnover_24h for m in self.models.values() if asset in m.quotes)

    def rows(self) -> list[dict[str, Any]]:
        """Every asset as ``/coins/markets`` describes it, largest market cap first."""
        updated = datetime.fromtimestamp(self.path.now_ms / 1000, UTC).isoformat(timespec="milliseconds")
        out: list[dict[str, Any]] = []
        for a, (circ, total, cap) in self.supply.items():
            price = self.path.price(a)
            q = next((m.quotes[a] for m in self.models.values() if a in m.quotes), None)
            opened = q.open_24h if q is not None else price
            out.append({
                "id": a.lower(),
                "symbol": a.lower(),
                "name": a,
                "current_price": price,
                "market_cap": round(price * circ),
                "market_cap_rank": 0,
                "fully_diluted_valuation": round(price * (cap or total)),
                "total_volume": round(self._volume_usd(a)),
                "high_24h": max(q.high_24h, price) if q is not None else price,
                "low_24h": min(q.low_24h, price) if q is not None else price,
                "price_change_24h": price - opened,
                "price_change_percentage_24h": (price / opened - 1.0) * 100.0 if opened else 0.0,
                "circulating_supply": circ,
                "total_supply": total,
                "max_supply": cap,
                "last_updated": updated.replace("+00:00", "Z"),
            })
        out.sort(key=lambda r: (-r["market_cap"], r["id"]))
        for i, r in enumerate(out, 1):
            r["market_cap_rank"] = i
        return out

    def rest(self, params: dict[str, str]) -> Any:
        """Answer ``GET /api/v3/coins/markets`` with ``params`` (the query string)."""
        vs = params.get("vs_currency", "").strip().lower()
        if not vs:
            raise RestError(422, {"error": "Missing parameter vs_currency"})
        if vs != "usd":
            raise RestError(400, {"error": "invalid vs_currency"})
        rows = self.rows()
        for key in ("ids", "symbols", "names"):
            wanted = {x.strip().lower() for x in params.get(key, "").split(",") if x.strip()}
            if wanted:
                field = key[:-1] if key != "ids" else "id"
                rows = [r for r in rows if str(r[field]).lower() in wanted]
        order = params.get("order") or "market_cap_desc"
        if order not in ORDERS:
            raise RestError(400, {"error": "invalid order"})
        field = {"market_cap": "market_cap", "volume": "total_volume", "id": "id"}[order.rsplit("_", 1)[0]]
        rows.sort(key=lambda r: r[field], reverse=order.endswith("_desc"))
        per_page = _int(params, "per_page", 100, 1, MAX_PER_PAGE)
        page = _int(params, "page", 1, 1, None)
        return rows[(page - 1) * per_page: page * per_page]


    def market_chart(self, asset: str, params: dict[str, str], *, ranged: bool) -> Any:
        """``/coins/{id}/market_chart`` (``days``) and ``/market_chart/range`` (``from``, ``to`` in seconds):
        ``prices``, ``market_caps`` and ``total_volumes`` as [ms, value] pairs from the simulated history, at
        CoinGecko's automatic granularity (5-minutely within a day, hourly within 90 days, daily beyond).
        Market caps use today's supply, as the scenario has no supply history."""
        vs = params.get("vs_currency", "").strip().lower()
        if not vs:
            raise RestError(422, {"error": "Missing parameter vs_currency"})
        if vs != "usd":
            raise RestError(400, {"error": "invalid vs_currency"})
        now = self.path.now_ms
        try:
            if ranged:
                start, end = int(float(params["from"]) * 1000), min(int(float(params["to"]) * 1000), now)
            else:
                days = params.get("days", "1")
                start = 0 if days == "max" else now - int(float(days) * DAY_MS)
                end = now
        except (KeyError, ValueError) as exc:
            raise RestError(400, {"error": "invalid from/to or days"}) from exc
        span = end - start
        step = FIVE_MIN_MS if span <= DAY_MS else HOUR_MS if span <= 90 * DAY_MS else DAY_MS
        model = next((m for m in self.models.values() if asset in m.quotes), None)
        if model is None or end <= start:
            return {"prices": [], "market_caps": [], "total_volumes": []}
        circ = self.supply[asset][0]
        prices, caps, volumes = [], [], []
        t = max(start - start % step, 0)
        while t < end:
            bars = model.candles.klines(asset, step, now, t, min(t + 1000 * step, end), 1000)
            for b in bars:
                ts, close = int(b[0]) + step, float(b[4])
                if ts > end:
                    continue
                prices.append([ts, close])
                caps.append([ts, round(close * circ)])
                volumes.append([ts, float(b[5]) * close * DAY_MS / step])
            t += 1000 * step
        return {"prices": prices, "market_caps": caps, "total_volumes": volumes}


def _int(params: dict[str, str], key: str, default: int, low: int, high: int | None) -> int:
    """An integer parameter; an unreadable one falls back to the default and one out of range is clipped,
    as CoinGecko treats ``per_page`` and ``page``."""
    try:
        v = int(params.get(key) or default)
    except ValueError:
        v = default
    v = max(low, v)
    return v if high is None else min(high, v)

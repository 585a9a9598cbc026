"""Rebalancing: when the composition changes (schedules), what it changes to (selection + weighting), and
how the basket is rebuilt (new units, rescaled divisor, continuous level).

Schedules follow the index providers' habit: ``monthly`` or ``quarterly`` (March, June, September,
December) on the last business day (Monday to Friday) at 16:00 UTC by default, or on a fixed day of the
month (clipped to the month's length), at a configurable UTC time; ``manual`` rebalances only on demand.
``preview_s`` before a scheduled rebalance the next composition and its weights are published.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hedgewatch.service import weights as weighting
from hedgewatch.service.config import Config, RebalanceConfig
from hedgewatch.service.constituents import Candidate, load_candidates_file, load_index_info, select
from hedgewatch.service.events import CompositeIndex
from hedgewatch.service.index import Basket, IndexError_

QUARTER_MONTHS = (3, 6, 9, 12)


def _at(year: int, month: int, day: int | str, time_utc: str) -> datetime:
    hh, mm = (int(x) for x in time_utc.split(":"))
    last = calendar.monthrange(year, month)[1]
    if day == "last_business":
        d = datetime(year, month, last, hh, mm, tzinfo=UTC)
        while d.weekday() >= 5:
            d -= timedelta(days=1)
        return d
    return datetime(year, month, min(int(day), last), hh, mm, tzinfo=UTC)


def next_rebalance(after: float, cfg: RebalanceConfig) -> float | None:
    """The first scheduled rebalance strictly after ``after`` (epoch seconds); None for ``manual``."""
    if cfg.schedule == "manual":
        return None
    months = QUARTER_MONTHS if cfg.schedule == "quarterly" else tuple(range(1, 13))
    start = datetime.fromtimestamp(after, UTC)
    year, month = start.year, start.month
    for _ in range(14):
        if month in months:
            t = _at(year, month, cfg.day, cfg.time_utc).timestamp()
            if t > after:
                return t
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return None  # pragma: no cover - 14 months always contain a scheduled month


class Rebalancer:
    """Holds the index's composition inputs (members, market data, target weights) and applies them."""

    def __init__(self, config: Config, quotable: Mapping[str, Any], now: float) -> None:
        self.cfg = config.index
        self._quotable = quotable
        self.members: list[str] = list(self.cfg.constituents)
        self.targets: dict[str, float] = {}
        self.market_caps: dict[str, float] = dict(self.cfg.market_caps)
        self.float_ratios: dict[str, float] = dict(self.cfg.free_float)
        self.candidates: list[Candidate] | None = None
        self.definition: dict[str, float] | None = None
        self.next_ts = next_rebalance(now, self.cfg.rebalance)
        self.last_ts: float | None = None
        self.pending_reason = ""
        self._announced: float | None = None
        self.history: list[dict[str, Any]] = []
        sel = self.cfg.selection
        if sel is not None and sel.provider == "file" and sel.path:
            self.set_candidates(load_candidates_file(sel.path))
        if self.cfg.track and self.cfg.definition_path:
            self.definition = load_index_info(self.cfg.definition_path, self.cfg.track)

    # --- inputs ------------------------------------------------------------------------------------

    def set_candidates(self, candidates: list[Candidate]) -> None:
        """New market-cap data from a provider; used at the next (re)build."""
        self.candidates = candidates
        for c in candidates:
            if c.market_cap_usd > 0:
                self.market_caps[c.symbol] = c.market_cap_usd
            if c.free_float_ratio is not None:
                self.float_ratios[c.symbol] = c.free_float_ratio

    def compose(self, current: list[str] | None = None) -> tuple[list[str], dict[str, float]]:
        """The composition the index would have now: members and target weights."""
        members = list(self.members)
        sel = self.cfg.selection
        if sel is not None and self.candidates is not None:
            members = select(
                self.candidates,
                top_n=sel.top_n,
                current=current if current is not None else self.members,
                rank_buffer=sel.rank_buffer,
                min_volume_usd=sel.min_volume_usd,
                exclude=sel.exclude,
                allowed=self._quotable,
            )
        if not members:
            return [], {}
        w = weighting.compute(
            self.cfg.weighting,
            members,
            market_caps=self.market_caps,
            float_ratios=self.float_ratios,
            weights=self.cfg.weights,
            cap_ratio=self.cfg.cap_ratio,
        )
        return members, w

    # --- applying ----------------------------------------------------------------------------------

    def initial(self, basket: Basket, now: float) -> dict[str, float] | None:
        """Build the basket for the first time when every member has a price; the weights, or None."""
        if self.definition is not None:
            basket.set_units(self.definition)
            self.members = list(self.definition)
            self.targets = basket.weights()
            return self.targets
        members, w = self.compose([])
        if not members or basket.missing_prices(members):
            return None
        basket.rebalance(w, self.cfg.base_level)
        self.members, self.targets, self.last_ts = members, w, now
        return w

    def due(self, now: float) -> bool:
        return self.next_ts is not None and now >= self.next_ts

    def run(self, basket: Basket, now: float, manual: bool = False) -> bool:
        """Rebalance to the current composition; deferred (False) while a new member has no price."""
        if self.definition is not None:
            return False
        members, w = self.compose()
        missing = basket.missing_prices(members)
        if missing or not members:
            self.pending_reason = "waiting for prices of " + ", ".join(missing) if missing else "no members"
            return False
        level_before = basket.level
        try:
            old_div, new_div = basket.rebalance(w, self.cfg.base_level)
        except IndexError_ as exc:
            self.pending_reason = str(exc)
            return False
        self.history.append(
            {
                "ts": now,
                "manual": manual,
                "added": sorted(set(members) - set(self.members)),
                "removed": sorted(set(self.members) - set(members)),
                "level": level_before,
                "divisor_before": old_div,
                "divisor_after": new_div,
            }
        )
        del self.history[:-20]
        self.members, self.targets, self.last_ts, self.pending_reason = members, w, now, ""
        if not manual or self.due(now):
            self.next_ts = next_rebalance(now, self.cfg.rebalance)
        return True

    def on_composite(self, ev: CompositeIndex, basket: Basket) -> bool:
        """Adopt a venue composite index's published quantities as our units (divisor 1), so our level is
        directly comparable with the venue's value. True when the definition changed."""
        units = {asset: qty for asset, qty, _ in ev.components if qty > 0}
        if not units or units == self.definition:
            return False
        self.definition = units
        basket.set_units(units)
        self.members = list(units)
        self.targets = {asset: pct for asset, _, pct in ev.components}
        return True

    def announce(self, now: float) -> dict[str, Any] | None:
        """The preview, once per scheduled rebalance, when its preview window opens (for an alert)."""
        if self.next_ts is None or self._announced == self.next_ts:
            return None
        preview = self.info(now).get("preview")
        if preview is not None:
            self._announced = self.next_ts
        return preview

    def info(self, now: float) -> dict[str, Any]:
        """Schedule, last rebalance and, within ``preview_s`` of the next one, the coming composition."""
        rb = self.cfg.rebalance
        out: dict[str, Any] = {
            "schedule": rb.schedule,
            "next_ts": self.next_ts,
            "last_ts": self.last_ts,
            "pending": self.pending_reason or None,
        }
        if self.next_ts is not None and self.definition is None and now >= self.next_ts - rb.preview_s:
            members, w = self.compose()
            out["preview"] = {
                "effective_ts": self.next_ts,
                "weights": w,
                "added": sorted(set(members) - set(self.members)),
                "removed": sorted(set(self.members) - set(members)),
            }
        return out

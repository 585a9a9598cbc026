"""The rule stage of one index, as the daemon drives it: candles in, snapshots evaluated (throttled by the
daemon), transitions notified, state persisted and restored, metrics exported. Pure and synchronous: the
daemon owns the clock and the I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from hedgewatch.rules.engine import STATE_CODE, Engine
from hedgewatch.rules.events import EventRules
from hedgewatch.rules.loader import load_rules
from hedgewatch.rules.signals import SignalBook
from hedgewatch.rules.synth import divisor_from, index_candles, volume_venues
from hedgewatch.service.alerts import Alert, HedgeChange
from hedgewatch.service.config import Config, RulesConfig
from hedgewatch.service.errors import ConfigError, Problem
from hedgewatch.service.events import Candle
from hedgewatch.service.hedge import HedgeBook, Sizing

if TYPE_CHECKING:  # the exporter's registry is handed in; the stage loads no metrics library
    from hedgewatch.service.metrics import Metrics

STATE_VERSION = 1
# An index status that is not ok for less than this is a momentary flip: rules that do not opt in to it are
# paused (not evaluated, nothing fires) but their ``for`` is not restarted; after it they are held.
STATUS_GRACE_S = 30.0


@dataclass
class StageResult:
    alerts: list[Alert] = field(default_factory=list)
    hedge: dict[str, Any] | None = None


def known_assets(config: Config) -> tuple[str, ...]:
    """The assets a rule may name: the index constituents, or, when they are chosen at run time (a selection,
    a tracked index), every asset a source watches."""
    if config.index.constituents:
        return tuple(config.index.constituents)
    return tuple(dict.fromkeys(s for src in config.sources for s in src.symbols))


def make_book(index: str, rc: RulesConfig, assets: tuple[str, ...] = ()) -> SignalBook:
    trendlines = {k: v.model_dump() for k, v in rc.trendlines.items()}
    return SignalBook(index, rc.levels, trendlines, rc.pivot_strength, assets)


class RuleStage:
    """Rules, indicators and hedge sizing for the configured index."""

    def __init__(self, config: Config, now: float) -> None:
        self.index = config.index.name
        self.book = make_book(self.index, config.rules, known_assets(config))
        self.book.volume_venue.update(volume_venues(config))
        rules = load_rules(config.rules.files, self.book)
        p = config.portfolio
        self.engine = Engine(self.index, rules, p.hedge_ratio, p.hedge_ratio_min, p.hedge_ratio_max)
        self.events = EventRules(self.index, rules)
        self.hedge = HedgeBook(self.index, p, config.index.futures)
        self.env: dict[str, Any] = {}
        self.status: str | None = None
        self.sizing: Sizing | None = None
        self._generator_url = f"{config.http.base_url()}/state?" + urlencode({"index": self.index})
        self.evaluated_at: float | None = None
        self._seen_ok = False
        # no rule acts on a not-ok index until every source has had its chance to connect (``end_grace``),
        # at most ``rules.startup_grace_s`` after the start
        self.grace_until: float | None = now + config.rules.startup_grace_s
        self._not_ok_since: float | None = None
        self._constituent_klines: list[Candle] = []

    # --- inputs -----------------------------------------------------------------------------------------

    def bootstrap(self, candles: Iterable[Candle]) -> None:
        """History from venue klines. Ordered by close time, finer first, so a coarser kline replaces what
        finer ones aggregated for the same bucket. The venue that supplied an asset's klines becomes its
        volume venue. Without klines of the index itself, the constituents'
        klines are kept and back-cast into index bars at the first snapshot (``rules.synth``)."""
        ordered = sorted(candles, key=lambda c: (c.open_ts + c.timeframe_s, c.timeframe_s))
        # the venue that supplied an asset's history is its volume venue from now on, live too
        self.book.volume_venue.update({c.asset: c.exchange for c in ordered if c.asset != self.index})
        has_index = False
        for c in ordered:
            has_index = has_index or c.asset == self.index
            self.book.on_candle(c)
        if not has_index:
            self._constituent_klines = [c for c in ordered if c.asset != self.index]

    def _backcast(self, snapshot: dict[str, Any]) -> None:
        divisor = divisor_from(snapshot)
        if divisor is None:
            return
        units = {a: float(c["units"]) for a, c in (snapshot.get("constituents") or {}).items()}
        for c in index_candles(self._constituent_klines, units, divisor, self.index):
            self.book.on_candle(c)
        self._constituent_klines = []

    def history_needed(self) -> dict[str, dict[int, int]]:
        """What ``bootstrap`` should be given: bars per asset ("" = the index, or all its constituents)
        and timeframe (seconds); a rule reading the all-time high or low asks for the whole daily history."""
        return self.book.history_needed()

    def on_candle(self, candle: Candle) -> None:
        self.book.on_candle(candle)

    def evaluate(self, snapshot: dict[str, Any], now: float) -> StageResult:
        status = str(snapshot.get("status") or "stale")
        self.status = status
        if self._constituent_klines:
            self._backcast(snapshot)
        self.env = self.book.update(snapshot, now)
        self.hedge.observe(snapshot, now)
        # until the index is first ok after a start, its status is the start-up's, not an observed outage
        self._seen_ok = self._seen_ok or status == "ok"
        if status == "ok":
            self._not_ok_since = None
        elif self._not_ok_since is None:
            self._not_ok_since = now
        momentary = self._not_ok_since is not None and now - self._not_ok_since < STATUS_GRACE_S
        if self.grace_until is not None and now >= self.grace_until:
            self.grace_until = None
        # start-up grace: while the venues are still connecting one by one a degraded or stale index is the
        # start-up's, so no rule acts on it, whatever its act_on says; an ok index is acted on as always
        acting = status if status == "ok" or self.grace_until is None else "starting"
        out = self.engine.evaluate(self.env, acting, now, warming=not self._seen_ok or momentary)
        self.book.commit()
        self.evaluated_at = now
        changed = out.ratio != out.previous_ratio
        sizing = self.hedge.size(snapshot, out.ratio, now)
        self.sizing = sizing or self.sizing
        hedge = None
        if sizing is not None and (changed or status == "ok"):
            hedge = self.hedge.recommend(sizing, changed, now)
            if hedge is not None:
                hedge["from_ratio"] = out.previous_ratio
                hedge["rules"] = out.acted
        alerts = out.alerts
        if out.acted:
            adv = self.hedge.positions.open if hedge is not None else None
            target = sizing.target_contracts if sizing else 0.0
            held = adv.held_contracts if adv is not None else self.hedge.position
            trade = -target - held
            lot = self.hedge.config.lot_size
            change = HedgeChange(
                from_ratio=out.previous_ratio, to_ratio=out.ratio,
                notional_usd=sizing.target_notional_usd if sizing else 0.0, contracts=target,
                side="none" if abs(trade) < lot / 2 else "sell" if trade < 0 else "buy",
                id=None if adv is None else adv.id, position=held,
                trade_contracts=round(abs(trade), 10) if sizing else None,
            )
            acted = set(out.acted)
            alerts = [dataclasses.replace(a, hedge=change) if a.rule in acted else a for a in alerts]
        alerts = self._linked(alerts)
        return StageResult(alerts, hedge)

    def end_grace(self) -> None:
        """Every configured source has priced its assets: the start-up grace is over."""
        self.grace_until = None

    def on_transitions(self, transitions: list[dict[str, Any]], now: float) -> list[Alert]:
        return self._linked(self.events.on_transitions(transitions, now))

    def _linked(self, alerts: list[Alert]) -> list[Alert]:
        """Each alert's ``generatorURL``: this daemon's state of the index, where the rule is shown."""
        return [dataclasses.replace(a, generator_url=f"{self._generator_url}&{urlencode({'rule': a.rule})}")
                for a in alerts]

    # --- state ------------------------------------------------------------------------------------------

    def dump_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "index": self.index, "engine": self.engine.dump(),
                "events": self.events.dump(), "signals": self.book.dump(), "hedge": self.hedge.dump()}

    def restore_state(self, state: dict[str, Any], now: float) -> None:
        """Restore what ``dump_state`` saved: rule states (nothing re-fires), the target ratio, crossing
        memory, extremes and funding/OI history. A state of another version or index is ignored."""
        if not state or state.get("version") != STATE_VERSION or state.get("index") not in (None, self.index):
            return
        self.engine.load(state.get("engine") or {})
        self.events.load(state.get("events") or {})
        self.book.load(state.get("signals") or {})
        self.hedge.load(state.get("hedge") or {}, now)

    def state(self) -> dict[str, Any]:
        rules = []
        for r in self.engine.rules:
            st = self.engine.states[r.name]
            rules.append({"name": r.name, "group": r.group, "state": st.state, "health": st.health,
                          "since": st.since, "fired_at": st.fired_at, "resolved_at": st.resolved_at,
                          "value": st.value, "severity": r.severity, "priority": r.priority,
                          "action": r.action.describe()})
        return {
            "index": self.index, "status": self.status, "evaluated_at": self.evaluated_at,
            "hedge_ratio": self.engine.ratio, "rules": rules, "event_rules": self.events.firing(),
            "signals": dict(self.env), "hedge": self.sizing.to_dict() if self.sizing else None,
        }

    def export(self, metrics: Metrics) -> None:
        """Rule states, the hedge, and the price-level signals the rules watch (moving averages, levels,
        trendlines, extremes), so dashboards draw the index against them."""
        for r in self.engine.rules:
            code = STATE_CODE[self.engine.states[r.name].state]
            metrics.rule_state.labels(index=self.index, rule=r.name).set(code)
        metrics.hedge_ratio.labels(index=self.index).set(self.engine.ratio)
        for name, value in self.env.items():
            if is_price_level(name) and isinstance(value, int | float) and not isinstance(value, bool):
                metrics.index_indicator.labels(index=self.index, indicator=name).set(value)
        if self.sizing is not None:
            metrics.hedge_contracts.labels(index=self.index).set(self.sizing.target_contracts)
            metrics.hedge_notional_usd.labels(index=self.index).set(self.sizing.target_notional_usd)


PRICE_LEVEL_PREFIXES = ("sma_", "ema_", "level_", "trendline_", "fib_", "swing_", "highest_", "lowest_")
PRICE_LEVEL_NAMES = frozenset({"ath", "atl"})


def is_price_level(signal: str) -> bool:
    """Signals in index points (drawn on the index's own axis), as opposed to rates, volumes or flags."""
    return signal in PRICE_LEVEL_NAMES or signal.startswith(PRICE_LEVEL_PREFIXES)


def check_rules(paths: Iterable[str], config: RulesConfig | None = None,
                assets: tuple[str, ...] = ()) -> list[Problem]:
    """Every problem in the rule files (empty when they load), for ``hedgewatch check``; with ``assets``, a
    function naming any other asset is one (see ``check_config_rules``)."""
    book = make_book("HW", config or RulesConfig(), assets)
    try:
        load_rules(list(paths), book)
    except ConfigError as exc:
        return exc.problems
    return []


def check_config_rules(config: Config) -> list[Problem]:
    """Every problem in a config's rule files, assets named checked against the config's."""
    return check_rules(list(config.rules.files), config.rules, known_assets(config))

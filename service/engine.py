"""The synchronous engine of one index: events and the time in; snapshots, alerts, hedge recommendations
and the hedge ledger out. The daemon drives it from its async shell (live feeds, wall clock); the backtest
drives it over historical bars on a simulated clock. Both call the same methods in the same order per
step, so what the backtest shows is what the daemon would have done:

    apply_batch(events)      oracle, index and derivatives take the events; candles feed the indicators
    tick(now)                staleness, re-admission, scheduled rebalances
    transitions(now)         source/oracle/index transitions, to the event rules
    evaluate(now)            rules on the snapshot, hedge sizing, and each overlay's ledger

One engine holds one market (``MarketState``) and one or more overlays: a rule set with its hedge sizing
and its ledger. The daemon runs one; a backtest runs several side by side on the same market (the
configured rules, the unhedged and static baselines, and rule sets to compare). Pure and synchronous.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hedgewatch.rules.events import from_market
from hedgewatch.rules.model import MOMENTARY_KINDS
from hedgewatch.rules.stage import RuleStage, StageResult
from hedgewatch.service.alerts import Alert
from hedgewatch.service.config import Config
from hedgewatch.service.events import Candle, Event
from hedgewatch.service.market import MarketState
from hedgewatch.service.overlay import Overlay


@dataclass(frozen=True)
class Batch:
    """What one batch of events changed: the receive times of its first and newest index-changing event
    (None when nothing changed)."""

    first_change: float | None
    newest_change: float


class Engine:
    """Market + overlays for one configured index."""

    def __init__(self, config: Config, now: float, *, overlays: Sequence[tuple[str, Config]] | None = None,
                 follow_advice: bool = False) -> None:
        self.config = config
        self.index = config.index.name
        self.market = MarketState(config, now)
        runs = overlays if overlays is not None else [("configured", config)]
        self.overlays = [Overlay(name, cfg, now, follow_advice=follow_advice) for name, cfg in runs]
        self._stages = [o.rules for o in self.overlays]
        self._warm: set[str] = set()  # assets whose oracle has been ok at least once

    @property
    def primary(self) -> Overlay:
        return self.overlays[0]

    @property
    def rules(self) -> RuleStage:
        return self.overlays[0].rules

    # --- the step ---------------------------------------------------------------------------------

    def apply_batch(self, batch: Iterable[Event]) -> Batch:
        """Feed a batch of normalized events in order."""
        apply = self.market.apply
        stages = self._stages
        first: float | None = None
        newest = 0.0
        for ev in batch:
            if apply(ev):
                ts = ev.ts_recv
                if first is None:
                    first = ts
                newest = ts
            if type(ev) is Candle:
                for s in stages:
                    s.on_candle(ev)
        return Batch(first, newest)

    def end_grace(self) -> None:
        """Every configured source has priced its assets: rules may act on a not-ok index from now on."""
        for s in self._stages:
            s.end_grace()

    @property
    def in_grace(self) -> bool:
        return self.rules.grace_until is not None

    def tick(self, now: float) -> bool:
        """Staleness and scheduled work at ``now``; True when the index changed."""
        return self.market.tick(now)

    def transitions(self, now: float) -> tuple[list[dict[str, Any]], list[Alert]]:
        """The transitions since the last call (for the log) and the alerts the event rules raised on them.
        An asset's transitions reach the rules once it has been priced normally: sources arriving one by
        one at start-up are not an outage. Rebalances (previews and done) always do."""
        logged, events = [], []
        for t in self.market.drain_transitions():
            d = t.to_dict()
            logged.append(d)
            if d["kind"] == "oracle" and d["new"] == "ok":
                self._warm.add(str(d["asset"]))
            e = from_market(d)
            if e is not None and (d["asset"] in self._warm or e["kind"] in MOMENTARY_KINDS):
                events.append(e)
        alerts: list[Alert] = []
        # called with no transitions too: an event rule's ``for`` and hold-down count on the clock
        for i, o in enumerate(self.overlays):
            raised = o.rules.on_transitions(events, now)
            if i == 0:
                alerts = raised
            else:
                o.note_alerts(raised)
        return logged, alerts

    def evaluate(self, now: float) -> list[StageResult]:
        """Every overlay on the snapshot at ``now``; results in overlay order (the daemon's is the first)."""
        snap = self.market.snapshot(now)
        return [o.evaluate(snap, now) for o in self.overlays]

    # --- state ------------------------------------------------------------------------------------

    def bootstrap(self, candles: Sequence[Candle]) -> None:
        """Kline history for every overlay's indicators, and the assets' 24 h volume: the venue that
        supplied an asset's history is its volume venue from now on."""
        d = self.market.derivatives
        d.volume_venue.update({c.asset: c.exchange for c in candles if c.asset != self.index})
        for c in candles:
            self.market.apply(c)
        for o in self.overlays:
            o.rules.bootstrap(candles)

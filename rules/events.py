"""Event rules: notifications on oracle and source transitions (``source_excluded``, ``source_readmitted``,
``source_stale``, ``oracle_status``) and on the index's rebalances (``rebalance_preview`` when a scheduled
rebalance's preview window opens, ``rebalance`` when one is done).

A rebalance event happens at a moment: each one (after ``for``, outside ``cooldown``) is one firing alert,
and nothing resolves it; the next one fires again.

A transition that matches a rule's ``event`` and ``match`` starts the condition for its series (the rule plus
the transition's asset and exchange); a ``resolve_event`` for the same series, or a transition of the same
kind that no longer matches (an ``oracle_status`` back to ``ok``), ends it. Alerts are dampened as for
expression rules, so one bad frame or one flapping venue is one alert, not hundreds:

- ``for``: the condition must last this long before the series fires (a venue excluded for an instant is
  not news); it counts on the clock, so ``on_transitions`` is called on every tick, with or without
  transitions, to promote series whose time has come.
- ``keep_firing_for``: the resolve must last this long before the resolve is sent; the condition returning
  meanwhile keeps the series firing with no new alert.
- ``cooldown``: no new firing sooner than this after the last one started (the series waits, pending).
- ``flap_limit`` / ``flap_window``: a series whose condition started ``flap_limit`` times within the last
  ``flap_window`` is flapping: it stays firing (one alert) until it has calmed down (fewer starts within
  the window) and the resolve has held ``keep_firing_for``.
"""

from __future__ import annotations

from typing import Any

from hedgewatch.rules.engine import make_alert
from hedgewatch.rules.model import EVENT_FIELDS, MOMENTARY_KINDS, Rule
from hedgewatch.service.alerts import Alert

_SOURCE_KINDS = {"excluded": "source_excluded", "rejected": "source_excluded", "stale": "source_stale"}
_UNHEALTHY = ("excluded", "rejected", "stale")


def from_market(t: dict[str, Any]) -> dict[str, Any] | None:
    """The pricing core's transition (``service.oracle.SourceTransition.to_dict``) in the vocabulary of
    event rules; None for transitions no event rule watches (the index status)."""
    kind, new, old = t.get("kind"), t.get("new"), t.get("old")
    base = {"asset": t.get("asset"), "status": new, "reason": t.get("reason"), "ts": t.get("ts")}
    if kind == "source":
        if new in _SOURCE_KINDS:
            return {"kind": _SOURCE_KINDS[str(new)], "exchange": t.get("source"), **base}
        if new == "ok" and old in _UNHEALTHY:
            return {"kind": "source_readmitted", "exchange": t.get("source"), **base}
        return None
    if kind == "oracle":
        return {"kind": "oracle_status", **base}
    if kind in MOMENTARY_KINDS:  # ``asset`` is the index
        return {"kind": kind, **base}
    return None


INACTIVE, PENDING, FIRING, CLEARING = "inactive", "pending", "firing", "clearing"


class EventRules:
    def __init__(self, index: str, rules: list[Rule]) -> None:
        self.index = index
        self.rules = [r for r in rules if r.events]
        # rule name -> series key ("asset/exchange") -> state: "state", "since" (when the current state
        # began), "fired_at" (start of the current or last firing), "starts" (when the condition started,
        # within the flap window), "values" (the fields of the transition that started the condition)
        self.series: dict[str, dict[str, dict[str, Any]]] = {r.name: {} for r in self.rules}
        self._by_name = {r.name: r for r in self.rules}

    @staticmethod
    def _matches(rule: Rule, t: dict[str, Any]) -> bool:
        return all(str(t.get(k)) in allowed for k, allowed in rule.match.items())

    def on_transitions(self, transitions: list[dict[str, Any]], now: float) -> list[Alert]:
        """Feed the transitions since the last call (possibly none) and return the alerts due at ``now``."""
        for t in transitions:
            kind = t.get("kind")
            for rule in self.rules:
                if kind in rule.events or kind in rule.resolve_events:
                    self._one(rule, t, str(kind), now)
        return self._due(now)

    def _one(self, rule: Rule, t: dict[str, Any], kind: str, now: float) -> None:
        asset, exchange = str(t.get("asset") or ""), str(t.get("exchange") or "")
        ser = self.series[rule.name]
        key = f"{asset}/{exchange}"
        s = ser.get(key)
        if s is None:
            s = ser[key] = {"state": INACTIVE, "since": None, "fired_at": None, "starts": [], "values": {}}
        values: dict[str, Any] = {k: t.get(k) for k in EVENT_FIELDS if k in t}
        if kind in rule.events and self._matches(rule, t):
            if s["state"] in (INACTIVE, CLEARING):  # the condition starts (again): counted for the flap limit
                window = now - rule.flap_window_s
                s["starts"] = [*[ts for ts in s.get("starts") or [] if ts > window][-1000:], now]
            if s["state"] == INACTIVE:
                s.update(state=PENDING, since=now, values=values)
            elif s["state"] == CLEARING:
                s.update(state=FIRING, since=s["fired_at"])  # back before the resolve was due: no alert
            if s["state"] == PENDING:
                s["values"] = values  # the latest reason is the one to report
        elif s["state"] == PENDING:
            s.update(state=INACTIVE, since=None)  # over before it lasted ``for``: never news
        elif s["state"] == FIRING:
            s.update(state=CLEARING, since=now, resolve_values=values)

    def _due(self, now: float) -> list[Alert]:
        alerts: list[Alert] = []
        for name, ser in self.series.items():
            rule = self._by_name[name]
            for key, s in ser.items():
                state = s["state"]
                if state == PENDING and now - s["since"] >= rule.for_s:
                    fired_at = s["fired_at"]
                    if fired_at is not None and now < fired_at + rule.cooldown_s:
                        continue
                    s.update(state=FIRING, since=now, fired_at=now)
                    alerts.append(self._alert(rule, key, s, "firing", now))
                    if all(k in MOMENTARY_KINDS for k in rule.events):  # told once; the next one fires again
                        s.update(state=INACTIVE, since=None)
                elif state == CLEARING and now - s["since"] >= self._hold(rule, s, now):
                    s.update(state=INACTIVE, since=None)
                    alerts.append(self._alert(rule, key, s, "resolved", now))
        return alerts

    @staticmethod
    def _hold(rule: Rule, s: dict[str, Any], now: float) -> float:
        """How long the resolve must hold: ``keep_firing_for``, or for ever while the series is flapping
        (its condition started ``flap_limit`` times within the last ``flap_window``)."""
        if rule.flap_limit:
            window = now - rule.flap_window_s
            if sum(1 for ts in s.get("starts") or () if ts > window) >= rule.flap_limit:
                return float("inf")
        return rule.keep_firing_for_s

    def _alert(self, rule: Rule, key: str, s: dict[str, Any], status: str, now: float) -> Alert:
        asset, _, exchange = key.partition("/")
        labels = {k: v for k, v in (("asset", asset), ("exchange", exchange)) if v}
        values = dict(s["values"] if status == "firing" else s.get("resolve_values") or s["values"])
        starts = now if s["fired_at"] is None else s["fired_at"]
        return make_alert(rule, self.index, status, starts, None if status == "firing" else now,
                          values.get("status"), values, labels)

    def firing(self) -> dict[str, list[str]]:
        return {name: sorted(k for k, s in ser.items() if s["state"] in (FIRING, CLEARING))
                for name, ser in self.series.items()}

    def dump(self) -> dict[str, Any]:
        return {name: {k: {**s, "firing": s["state"] in (FIRING, CLEARING)} for k, s in ser.items()}
                for name, ser in self.series.items()}

    def load(self, state: dict[str, Any]) -> None:
        """Take saved series (also the older form with only ``fired_at`` and ``firing``)."""
        for name, ser in (state or {}).items():
            if name not in self.series or not isinstance(ser, dict):
                continue
            loaded: dict[str, dict[str, Any]] = {}
            for k, v in ser.items():
                if not isinstance(v, dict):
                    continue
                st = v.get("state")
                if st not in (INACTIVE, PENDING, FIRING, CLEARING):
                    st = FIRING if v.get("firing") else INACTIVE
                since = v.get("since")
                loaded[str(k)] = {
                    "state": st, "since": since if isinstance(since, int | float) else None,
                    "fired_at": v.get("fired_at") if isinstance(v.get("fired_at"), int | float) else None,
                    "starts": [x for x in v.get("starts") or [] if isinstance(x, int | float)][-1000:],
                    "values": v.get("values") if isinstance(v.get("values"), dict) else {},
                }
                if st in (PENDING, CLEARING) and loaded[str(k)]["since"] is None:
                    loaded[str(k)]["state"] = FIRING if st == CLEARING else INACTIVE
            self.series[name] = loaded

"""Event rules: notifications on oracle and source transitions (``source_excluded``, ``source_readmitted``,
``source_stale``, ``oracle_status``).

A transition that matches a rule's ``event`` and ``match`` fires an alert for its series (the rule plus the
transition's asset and exchange); a ``resolve_event`` for the same series, or a transition of the same
kind that no longer matches (an ``oracle_status`` back to ``ok``), resolves it. ``cooldown`` is per series.
"""

from __future__ import annotations

from typing import Any

from rules.engine import make_alert
from rules.model import EVENT_FIELDS, Rule
from service.alerts import Alert

_SOURCE_KINDS = {"excluded": "source_excluded", "rejected": "source_excluded", "stale": "source_stale"}
_UNHEALTHY = ("excluded", "rejected", "stale")


def from_market(t: dict[str, Any]) -> dict[str, Any] | None:
    """The pricing core's transition (``service.oracle.SourceTransition.to_dict``) in the vocabulary of
    event rules; None for transitions no event rule watches (index status, rebalances)."""
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
    return None


class EventRules:
    def __init__(self, index: str, rules: list[Rule]) -> None:
        self.index = index
        self.rules = [r for r in rules if r.events]
        # rule name -> series key ("asset/exchange") -> {"fired_at": ts, "firing": bool}
        self.series: dict[str, dict[str, dict[str, Any]]] = {r.name: {} for r in self.rules}

    @staticmethod
    def _matches(rule: Rule, t: dict[str, Any]) -> bool:
        return all(str(t.get(k)) in allowed for k, allowed in rule.match.items())

    def on_transitions(self, transitions: list[dict[str, Any]], now: float) -> list[Alert]:
        alerts: list[Alert] = []
        for t in transitions:
            kind = t.get("kind")
            for rule in self.rules:
                if kind not in rule.events and kind not in rule.resolve_events:
                    continue
                alert = self._one(rule, t, str(kind), now)
                if alert is not None:
                    alerts.append(alert)
        return alerts

    def _one(self, rule: Rule, t: dict[str, Any], kind: str, now: float) -> Alert | None:
        asset, exchange = str(t.get("asset") or ""), str(t.get("exchange") or "")
        key = f"{asset}/{exchange}"
        series = self.series[rule.name].setdefault(key, {"fired_at": None, "firing": False})
        labels = {k: v for k, v in (("asset", asset), ("exchange", exchange)) if v}
        values: dict[str, Any] = {k: t.get(k) for k in EVENT_FIELDS if k in t}
        fires = kind in rule.events and self._matches(rule, t)
        if fires:
            fired_at = series["fired_at"]
            if series["firing"] or (fired_at is not None and now < fired_at + rule.cooldown_s):
                return None
            series.update(fired_at=now, firing=True)
            return make_alert(rule, self.index, "firing", now, None, t.get("status"), values, labels)
        if series["firing"]:
            series["firing"] = False
            starts = now if series["fired_at"] is None else series["fired_at"]
            return make_alert(rule, self.index, "resolved", starts, now, t.get("status"), values, labels)
        return None

    def firing(self) -> dict[str, list[str]]:
        return {name: sorted(k for k, s in ser.items() if s["firing"]) for name, ser in self.series.items()}

    def dump(self) -> dict[str, Any]:
        return self.series

    def load(self, state: dict[str, Any]) -> None:
        for name, ser in (state or {}).items():
            if name in self.series and isinstance(ser, dict):
                self.series[name] = {k: {"fired_at": v.get("fired_at"), "firing": bool(v.get("firing"))}
                                     for k, v in ser.items()}

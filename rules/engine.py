"""Rule states and hedge actions, for one index.

States: ``inactive`` -> ``pending`` (the condition holds, waiting out ``for``) -> ``firing`` -> ``resolved``
(the resolve condition, ``resolve`` or else "not expr", held for ``keep_firing_for``) -> ``pending`` again
when the condition returns. ``cooldown`` keeps a rule from firing again sooner than that after its last
firing started (it waits in pending). A rule whose inputs are not all available, or whose index status is
not in its ``act_on``, is not evaluated: its state is held (a pending rule on an index it may not act on
starts over, except while the index warms up after a start) and its ``health`` says why.

Two kinds of hedge action. A one-shot action (the default) applies once, when its rule starts firing, to the
base ratio (the baseline as moved by one-shot actions; a restart that restores the states re-applies
nothing, and ``adjust_hedge`` applies exactly once per firing). A holding action (``hold: true``) holds while
its rule fires and is released when it resolves: at every evaluation the target is the base ratio with
the holding actions of the rules firing now applied on top. In both, actions are applied in ascending
priority (ties: file order), so the highest priority has the last word, and the result is clamped to the
portfolio's range. That is the one target hedge ratio of the index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hedgewatch.rules.model import Rule
from hedgewatch.service.alerts import Alert, fingerprint

STATE_CODE = {"inactive": 0, "resolved": 0, "pending": 1, "firing": 2}


@dataclass
class RuleState:
    state: str = "inactive"
    health: str = "ok"
    since: float | None = None  # when the condition started holding (pending/firing)
    fired_at: float | None = None  # start of the current (or last) firing
    clearing_since: float | None = None  # when the resolve condition started holding while firing
    resolved_at: float | None = None
    value: float | None = None  # $value at the last alert
    values: dict[str, Any] = field(default_factory=dict)  # the inputs at the last alert

    def dump(self) -> dict[str, Any]:
        return {"state": self.state, "since": self.since, "fired_at": self.fired_at,
                "clearing_since": self.clearing_since, "resolved_at": self.resolved_at, "value": self.value,
                "values": self.values}

    def restore(self, d: dict[str, Any]) -> None:
        """Take the saved fields in place (the engine's evaluation plan holds this object)."""
        for k in ("state", "since", "fired_at", "clearing_since", "resolved_at", "value", "values"):
            if k in d:
                setattr(self, k, d[k])
        if self.state not in STATE_CODE:
            self.state = "inactive"


@dataclass
class Outcome:
    """What one evaluation produced: alerts (hedge not yet attached), the new target ratio, and the rules
    whose hedge action took part."""

    alerts: list[Alert]
    ratio: float
    previous_ratio: float
    acted: list[str]


class Engine:
    """Runs expression rules against envs and keeps their states and the target hedge ratio."""

    def __init__(self, index: str, rules: list[Rule], ratio: float, ratio_min: float,
                 ratio_max: float) -> None:
        self.index = index
        self.rules = [r for r in rules if r.expr is not None]
        self.states: dict[str, RuleState] = {r.name: RuleState() for r in self.rules}
        # per rule, precomputed for the hot path: state, inputs getter, input keys
        self._plan = [(r, self.states[r.name], r.inputs_getter(), r.keys) for r in self.rules]
        self.ratio_min = ratio_min
        self.ratio_max = ratio_max
        self.base = self.clamp(ratio)  # the baseline as moved by one-shot actions
        self.ratio = self.base  # the target: the base with the firing rules' holding actions on top
        self._holding = sorted((r for r in self.rules if r.action.is_hedge and r.action.hold),
                               key=lambda r: (r.priority, r.order))

    def clamp(self, ratio: float) -> float:
        return min(max(ratio, self.ratio_min), self.ratio_max)

    def evaluate(self, env: dict[str, Any], status: str, now: float, warming: bool = False) -> Outcome:
        """One evaluation. ``warming``: the index has not been seen yet since this start (its status is
        the start-up's, not an observed outage), so a pending rule restored from before waits instead of
        starting over."""
        alerts: list[Alert] = []
        started: list[Rule] = []
        released: list[Rule] = []
        for rule, st, inputs, keys in self._plan:
            if status not in rule.act_on:
                st.health = f"skipped: index {status}"
                if st.state == "pending" and not warming:  # `for` counts what a trustworthy index showed
                    st.state, st.since = "inactive", None
                continue
            if None in inputs(env):
                st.health = "unavailable: " + ", ".join(k for k in keys if env.get(k) is None)
                continue
            change = self._step(rule, st, env, now)
            if change is None:
                continue
            self._capture(rule, st, env)
            alerts.append(self._alert(rule, st, change, now))
            if change == "firing" and rule.action.is_hedge:
                started.append(rule)
            elif change == "resolved" and rule.action.is_hedge and rule.action.hold:
                released.append(rule)
        previous = self.ratio
        one_shot = [r for r in started if not r.action.hold]
        if one_shot:
            base = self.base
            for rule in sorted(one_shot, key=lambda r: (r.priority, r.order)):
                base = rule.action.apply(base)
            self.base = self.clamp(base)
        self.ratio = self.target()
        acted = [r.name for r in started + released]
        return Outcome(alerts, self.ratio, previous, acted)

    def target(self) -> float:
        """The base ratio with the holding actions of the rules firing now applied on top."""
        ratio = self.base
        for rule in self._holding:
            if self.states[rule.name].state == "firing":
                ratio = rule.action.apply(ratio)
        return self.clamp(ratio)

    def set_base(self, ratio: float) -> None:
        """The baseline (the configured ratio, or a restored base)."""
        self.base = self.clamp(ratio)
        self.ratio = self.target()

    @staticmethod
    def _capture(rule: Rule, st: RuleState, env: dict[str, Any]) -> None:
        """The inputs and ``$value`` an alert reports (only computed when there is an alert)."""
        st.values = {k: env[k] for k in rule.keys}
        st.value = None
        if rule.expr is not None and rule.expr.value_fn is not None:
            try:
                st.value = float(rule.expr.value_fn(env))
            except (ArithmeticError, TypeError, ValueError):
                st.value = None

    def _step(self, rule: Rule, st: RuleState, env: dict[str, Any], now: float) -> str | None:
        assert rule.expr is not None
        try:
            cond = bool(rule.expr.fn(env))
            cleared = (bool(rule.resolve.fn(env)) if rule.resolve is not None else not cond) \
                if st.state == "firing" else False
        except (ArithmeticError, TypeError, ValueError) as exc:
            # a malformed input (a string where a number belongs) holds the rule, never the daemon
            st.health = f"error: {exc}"
            return None
        st.health = "ok"
        if st.state == "firing":
            return self._while_firing(rule, st, cleared, now)
        if not cond:
            if st.state == "pending":
                st.state, st.since = "inactive", None
            return None
        if st.state != "pending":
            st.state, st.since = "pending", now
        if st.since is not None and now - st.since < rule.for_s:
            return None
        if st.fired_at is not None and now < st.fired_at + rule.cooldown_s:
            st.health = f"cooldown until {st.fired_at + rule.cooldown_s:.0f}"
            return None
        st.state, st.fired_at, st.clearing_since, st.resolved_at = "firing", now, None, None
        return "firing"

    @staticmethod
    def _while_firing(rule: Rule, st: RuleState, cleared: bool, now: float) -> str | None:
        if not cleared:
            st.clearing_since = None
            return None
        if st.clearing_since is None:
            st.clearing_since = now
        if now - st.clearing_since < rule.keep_firing_for_s:
            return None
        st.state, st.since, st.clearing_since, st.resolved_at = "resolved", None, None, now
        return "resolved"

    def _alert(self, rule: Rule, st: RuleState, status: str, now: float) -> Alert:
        starts = now if st.fired_at is None else st.fired_at
        ends = now if status == "resolved" else None
        return make_alert(rule, self.index, status, starts, ends, st.value, dict(st.values))

    # --- persistence ------------------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        rules = {}
        for r in self.rules:
            d = self.states[r.name].dump()
            d["memory"] = list(r.expr.memory) if r.expr else []
            d["resolve_memory"] = list(r.resolve.memory) if r.resolve else []
            rules[r.name] = d
        return {"ratio": self.ratio, "base": self.base, "rules": rules}

    def load(self, state: dict[str, Any]) -> None:
        base = state.get("base", state.get("ratio"))
        saved = state.get("rules") or {}
        for r in self.rules:
            d = saved.get(r.name)
            if not d:
                continue
            self.states[r.name].restore(d)
            for compiled, mem in ((r.expr, d.get("memory")), (r.resolve, d.get("resolve_memory"))):
                if compiled is not None and mem and len(mem) == len(compiled.memory):
                    compiled.memory[:] = mem
        if base is not None:
            self.set_base(float(base))


def make_alert(rule: Rule, index: str, status: str, starts_at: float, ends_at: float | None,
               value: Any, values: dict[str, Any], extra_labels: dict[str, str] | None = None) -> Alert:
    """An Alertmanager-shaped alert for ``rule``, with its annotations rendered."""
    labels = {"alertname": rule.name, "index": index, "severity": rule.severity, **rule.labels,
              **(extra_labels or {})}
    fp = fingerprint(rule.name, index, labels)
    annotations = {k: t.render(value, index, labels, values) for k, t in rule.annotations.items()}
    summary = annotations.get("summary") or f"{rule.name} {status} on {index}"
    clean = {k: (v if isinstance(v, int | float | str | bool) or v is None else str(v))
             for k, v in values.items()}
    # a firing and its resolve are both identified by the firing's start (the rule state persists it)
    return Alert(id=Alert.make_id(fp, status, starts_at),
                 fingerprint=fp, rule=rule.name, index=index, status=status,  # type: ignore[arg-type]
                 severity=rule.severity, summary=summary, starts_at=starts_at, ends_at=ends_at, labels=labels,
                 annotations=annotations, values=clean)

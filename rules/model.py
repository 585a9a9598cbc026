"""A loaded rule: what the loader produces and the engine runs."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hedgewatch.rules.expr import Compiled
from hedgewatch.rules.templates import Template

HEDGE_ACTIONS = ("set_hedge", "raise_hedge_to", "lower_hedge_to", "adjust_hedge")
ACTIONS = (*HEDGE_ACTIONS, "notify")
SEVERITIES = ("critical", "warning", "info")
INDEX_STATUSES = ("ok", "degraded", "stale")
EVENT_KINDS = ("source_excluded", "source_readmitted", "source_stale", "oracle_status", "rebalance_preview",
               "rebalance")
# events that happen at a moment rather than start a condition: each one is one firing, and nothing resolves
MOMENTARY_KINDS = ("rebalance_preview", "rebalance")
EVENT_FIELDS = ("kind", "asset", "exchange", "status", "reason", "ts")


@dataclass(frozen=True)
class Action:
    """``kind`` is one of ACTIONS; ``value`` the ratio (target, or the signed step of ``adjust_hedge``).
    ``hold``: the action holds only while the rule fires and is released when it resolves (the target falls
    back to what the baseline, the one-shot actions and the still-firing holding rules make it); without it
    the action applies once, when the rule starts firing, and stays."""

    kind: str
    value: float | None = None
    hold: bool = False

    @property
    def is_hedge(self) -> bool:
        return self.kind in HEDGE_ACTIONS

    def apply(self, ratio: float) -> float:
        """The hedge ratio after this action, from ``ratio``."""
        v = self.value if self.value is not None else 0.0
        if self.kind == "set_hedge":
            return v
        if self.kind == "raise_hedge_to":
            return max(ratio, v)
        if self.kind == "lower_hedge_to":
            return min(ratio, v)
        if self.kind == "adjust_hedge":
            return ratio + v
        return ratio

    def describe(self) -> str:
        if self.value is None:
            return self.kind
        fmt = "+.4g" if self.kind == "adjust_hedge" else ".4g"
        return f"{self.kind} {self.value:{fmt}}" + (" while firing" if self.hold else "")


@dataclass
class Rule:
    """One rule. Expression rules have ``expr``; event rules (oracle/source transitions) have ``events``."""

    name: str
    group: str
    file: str
    line: int
    order: int
    action: Action
    column: int = 0
    expr: Compiled | None = None
    resolve: Compiled | None = None
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    cooldown_s: float = 0.0
    severity: str = "warning"
    priority: int = 0
    act_on: frozenset[str] = frozenset({"ok"})
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, Template] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    match: dict[str, tuple[str, ...]] = field(default_factory=dict)
    resolve_events: tuple[str, ...] = ()
    # event rules: a series whose condition started flap_limit times within flap_window_s is flapping and
    # is not resolved until it calmed down (0 = no limit)
    flap_limit: int = 0
    flap_window_s: float = 3600.0

    @property
    def keys(self) -> tuple[str, ...]:
        """Every signal key the rule needs to evaluate."""
        keys = dict.fromkeys(self.expr.keys if self.expr else ())
        if self.resolve is not None:
            keys.update(dict.fromkeys(self.resolve.keys))
        return tuple(keys)

    def inputs_getter(self) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
        """A C-level getter of all the rule's inputs as one tuple: ``None in getter(env)`` is the
        availability check on the hot path."""
        keys = self.keys
        if not keys:
            return lambda env: ()
        return operator.itemgetter(*keys, keys[0])

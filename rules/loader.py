"""Rule files, shaped like Prometheus rule files, loaded with every problem's file, line and column.

```yaml
groups:
  - name: hedge
    rules:
      - name: BelowMA50            # or `alert:` as in Prometheus
        expr: price < sma(50, "1d")
        for: 15m
        resolve: price > sma(50, "1d") * 1.01
        keep_firing_for: 1h
        cooldown: 12h
        severity: warning
        priority: 20
        act_on: [ok]                # index statuses the rule may act on (opt in to degraded / stale)
        labels: {team: desk}
        annotations: {summary: "{{ $index }} below its 50-day MA at {{ $value }}"}
        action: {raise_hedge_to: 30%}
      - name: SourceExcluded       # event rules react to oracle/source transitions
        event: source_excluded
        resolve_event: source_readmitted
        action: notify
```
The whole file is checked and every problem reported, not only the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from hedgewatch.rules.durations import parse_duration, parse_ratio
from hedgewatch.rules.expr import ExprError, compile_expr
from hedgewatch.rules.model import ACTIONS, EVENT_FIELDS, EVENT_KINDS, INDEX_STATUSES, SEVERITIES, Action, Rule
from hedgewatch.rules.signals import SignalBook
from hedgewatch.rules.templates import TemplateError, parse_template
from hedgewatch.service.errors import ConfigError, Problem
from hedgewatch.service.yamlfile import load_yaml

BUILTIN_PREFIX = "builtin:"
RULESETS = Path(__file__).parent / "rulesets"
RULE_KEYS = frozenset({
    "name", "alert", "expr", "for", "resolve", "keep_firing_for", "cooldown", "severity", "priority",
    "act_on", "labels", "annotations", "action", "event", "match", "resolve_event", "flap_limit", "flap_window",
})


def resolve_path(path: str) -> Path:
    """``builtin:default`` names a bundled rule set; anything else is a file path."""
    if BUILTIN_PREFIX in path:  # also when a caller joined it to a directory
        name = path[path.index(BUILTIN_PREFIX) + len(BUILTIN_PREFIX):]
        return RULESETS / f"{name}.yaml"
    return Path(path)


class _FileLoader:
    def __init__(self, file: str, text: str, book: SignalBook, order_base: int) -> None:
        self.file = file
        self.lines = text.split("\n")
        self.text = text
        self.book = book
        self.problems: list[Problem] = []
        self.rules: list[Rule] = []
        self.order = order_base

    # --- positions --------------------------------------------------------------------------------------

    def problem(self, pos: tuple[int, int] | None, field: str, message: str) -> None:
        line, col = pos if pos else (None, None)
        self.problems.append(Problem(self.file, line, col, field, message))

    @staticmethod
    def key_pos(node: Any, key: Any) -> tuple[int, int] | None:
        try:
            ln, cl = node.lc.key(key) if isinstance(node, CommentedMap) else node.lc.item(key)
        except (AttributeError, KeyError, IndexError, TypeError):
            return None
        return ln + 1, cl + 1

    @staticmethod
    def value_pos(node: Any, key: Any) -> tuple[int, int] | None:
        try:
            ln, cl = node.lc.value(key) if isinstance(node, CommentedMap) else node.lc.item(key)
        except (AttributeError, KeyError, IndexError, TypeError):
            return None
        return ln + 1, cl + 1

    def text_pos(self, start: tuple[int, int] | None, line: int, col: int) -> tuple[int, int] | None:
        """File position of ``line:col`` (1-based) inside the scalar that starts at ``start``: block scalars
        keep their lines; flow scalars were folded onto one line, so walk the source lines."""
        if start is None:
            return None
        ln, cl = start
        raw = self.lines[ln - 1] if ln - 1 < len(self.lines) else ""
        lead = raw[cl - 1:cl] if cl - 1 < len(raw) else ""
        if lead in ("|", ">"):
            body = self.lines[ln + line - 1] if ln + line - 1 < len(self.lines) else ""
            return ln + line, len(body) - len(body.lstrip()) + col
        start_col = cl + (1 if lead in ("'", '"') else 0)
        remaining = col - 1
        segment = raw[start_col - 1:].rstrip()
        while remaining >= len(segment) + 1 and ln < len(self.lines):
            remaining -= len(segment) + 1  # the newline folded into one space
            ln += 1
            raw = self.lines[ln - 1]
            start_col = len(raw) - len(raw.lstrip()) + 1
            segment = raw[start_col - 1:].rstrip()
        return ln, start_col + remaining

    # --- file -------------------------------------------------------------------------------------------

    def load(self) -> None:
        try:
            root = load_yaml(self.text, self.file)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return
        if not isinstance(root, CommentedMap) or "groups" not in root:
            self.problem((1, 1), "", "a rule file is a mapping with a 'groups' list")
            return
        for key in root:
            if key != "groups":
                self.problem(self.key_pos(root, key), str(key), "unknown key")
        groups = root["groups"]
        if not isinstance(groups, CommentedSeq):
            self.problem(self.value_pos(root, "groups"), "groups", "must be a list of groups")
            return
        for gi, group in enumerate(groups):
            self.group(group, f"groups.{gi}", self.key_pos(groups, gi))

    def group(self, g: Any, where: str, pos: tuple[int, int] | None) -> None:
        if not isinstance(g, CommentedMap):
            self.problem(pos, where, "a group is a mapping with 'name' and 'rules'")
            return
        for key in g:
            if key not in ("name", "rules", "interval"):
                self.problem(self.key_pos(g, key), f"{where}.{key}", "unknown key")
        name = g.get("name")
        if not isinstance(name, str) or not name:
            self.problem(pos, f"{where}.name", "a group needs a name")
            name = "?"
        rules = g.get("rules")
        if not isinstance(rules, CommentedSeq):
            self.problem(self.value_pos(g, "rules") if "rules" in g else pos, f"{where}.rules",
                         "a group needs a list of rules")
            return
        for ri, r in enumerate(rules):
            self.rule(r, name, f"{where}.rules.{ri}", self.key_pos(rules, ri))

    # --- rule -------------------------------------------------------------------------------------------

    def rule(self, r: Any, group: str, where: str, pos: tuple[int, int] | None) -> None:  # noqa: C901
        if not isinstance(r, CommentedMap):
            self.problem(pos, where, "a rule is a mapping")
            return
        before = len(self.problems)
        name = r.get("name", r.get("alert"))
        if not isinstance(name, str) or not name.strip():
            self.problem(pos, f"{where}.name", "a rule needs a name")
            name = "?"
        where = f"{where} ({name})"
        for key in r:
            if key not in RULE_KEYS:
                self.problem(self.key_pos(r, key), f"{where}.{key}", "unknown key")
        rule = Rule(name=name, group=group, file=self.file, line=pos[0] if pos else 0, order=self.order,
                    action=Action("notify"), column=pos[1] if pos else 0)
        self.order += 1
        if ("expr" in r) == ("event" in r):
            self.problem(pos, where, "a rule needs exactly one of 'expr' (a condition) or 'event'")
        if "expr" in r:
            rule.expr = self.expression(r, "expr", where)
            if "resolve" in r:
                rule.resolve = self.expression(r, "resolve", where)
        elif "event" in r:
            self.event_fields(r, rule, where)
        durations = (("for", "for_s"), ("keep_firing_for", "keep_firing_for_s"), ("cooldown", "cooldown_s"),
                     ("flap_window", "flap_window_s"))
        for key, attr in durations:
            if key in r:
                try:
                    setattr(rule, attr, parse_duration(r[key]))
                except ValueError as exc:
                    self.problem(self.value_pos(r, key), f"{where}.{key}", str(exc))
        self.scalars(r, rule, where)
        if "action" in r:
            rule.action = self.action(r, where)
        self.annotations(r, rule, where)
        if len(self.problems) == before:
            self.rules.append(rule)

    def expression(self, r: CommentedMap, key: str, where: str) -> Any:
        src = r[key]
        if not isinstance(src, str):
            src = str(src) if isinstance(src, int | float | bool) else None
        if src is None:
            self.problem(self.value_pos(r, key), f"{where}.{key}", "must be an expression string")
            return None
        try:
            return compile_expr(src, self.book)
        except ExprError as exc:
            self.problem(self.text_pos(self.value_pos(r, key), exc.line, exc.column), f"{where}.{key}",
                         exc.message)
            return None

    def event_fields(self, r: CommentedMap, rule: Rule, where: str) -> None:
        for key in ("event", "resolve_event"):
            if key not in r:
                continue
            raw = r[key]
            kinds = tuple(raw) if isinstance(raw, CommentedSeq) else (raw,)
            bad = [k for k in kinds if k not in EVENT_KINDS]
            if bad:
                self.problem(self.value_pos(r, key), f"{where}.{key}",
                             f"unknown event '{bad[0]}' (one of {', '.join(EVENT_KINDS)})")
            setattr(rule, "events" if key == "event" else "resolve_events", tuple(str(k) for k in kinds))
        m = r.get("match")
        if m is None:
            return
        if not isinstance(m, CommentedMap):
            self.problem(self.value_pos(r, "match"), f"{where}.match", "must map fields to values")
            return
        for k, v in m.items():
            if k not in EVENT_FIELDS:
                self.problem(self.key_pos(m, k), f"{where}.match.{k}",
                             f"unknown field (one of {', '.join(EVENT_FIELDS)})")
            rule.match[str(k)] = tuple(str(x) for x in v) if isinstance(v, CommentedSeq) else (str(v),)

    def scalars(self, r: CommentedMap, rule: Rule, where: str) -> None:
        if "severity" in r:
            if r["severity"] not in SEVERITIES:
                self.problem(self.value_pos(r, "severity"), f"{where}.severity",
                             f"must be one of {', '.join(SEVERITIES)}")
            rule.severity = str(r["severity"])
        if "flap_limit" in r:
            n = r["flap_limit"]
            if "event" not in r:
                self.problem(self.key_pos(r, "flap_limit"), f"{where}.flap_limit", "only event rules flap-limit")
            elif isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1000:
                self.problem(self.value_pos(r, "flap_limit"), f"{where}.flap_limit",
                             "must be a whole number from 0 to 1000")
            else:
                rule.flap_limit = n
        if "priority" in r:
            p = r["priority"]
            if isinstance(p, bool) or not isinstance(p, int) or not -1_000_000 <= p <= 1_000_000:
                self.problem(self.value_pos(r, "priority"), f"{where}.priority",
                             "must be a whole number from -1000000 to 1000000")
            else:
                rule.priority = p
        if "act_on" in r:
            raw = r["act_on"]
            statuses = list(raw) if isinstance(raw, CommentedSeq) else [raw]
            bad = [s for s in statuses if s not in INDEX_STATUSES]
            if bad:
                self.problem(self.value_pos(r, "act_on"), f"{where}.act_on",
                             f"unknown index status '{bad[0]}' (one of {', '.join(INDEX_STATUSES)})")
            rule.act_on = frozenset(str(s) for s in statuses)
        if "labels" in r:
            labels = r["labels"]
            if not isinstance(labels, CommentedMap):
                self.problem(self.value_pos(r, "labels"), f"{where}.labels", "must map names to strings")
            else:
                rule.labels = {str(k): str(v) for k, v in labels.items()}

    def action(self, r: CommentedMap, where: str) -> Action:
        raw = r["action"]
        pos = self.value_pos(r, "action")
        if raw == "notify":
            return Action("notify")
        kinds = [k for k in raw if k != "hold"] if isinstance(raw, CommentedMap) else []
        if not isinstance(raw, CommentedMap) or len(kinds) != 1:
            self.problem(pos, f"{where}.action",
                         f"must be 'notify' or {{kind: ratio}} (with 'hold: true' to hold it only while firing), "
                         f"kind one of {', '.join(ACTIONS[:-1])}")
            return Action("notify")
        kind = kinds[0]
        value = raw[kind]
        hold = raw.get("hold", False)
        if not isinstance(hold, bool):
            self.problem(self.value_pos(raw, "hold"), f"{where}.action.hold", "must be true or false")
            hold = False
        if kind not in ACTIONS[:-1]:
            self.problem(self.key_pos(raw, kind), f"{where}.action.{kind}",
                         f"unknown action (one of {', '.join(ACTIONS)})")
            return Action("notify")
        try:
            ratio = parse_ratio(value)
        except ValueError as exc:
            self.problem(self.value_pos(raw, kind), f"{where}.action.{kind}", str(exc))
            return Action("notify")
        lo = -1.5 if kind == "adjust_hedge" else 0.0
        if not lo <= ratio <= 1.5:
            self.problem(self.value_pos(raw, kind), f"{where}.action.{kind}",
                         f"ratio {ratio:g} out of range [{lo:g}, 1.5]")
        return Action(str(kind), ratio, hold)

    def annotations(self, r: CommentedMap, rule: Rule, where: str) -> None:
        ann = r.get("annotations")
        if ann is None:
            return
        if not isinstance(ann, CommentedMap):
            self.problem(self.value_pos(r, "annotations"), f"{where}.annotations", "must map names to text")
            return
        for k, text in ann.items():
            field = f"{where}.annotations.{k}"
            try:
                tpl = parse_template(str(text))
            except TemplateError as exc:
                self.problem(self.text_pos(self.value_pos(ann, k), 1, exc.offset + 1), field, str(exc))
                continue
            for ref in tpl.refs:
                if ref.startswith(".") and not self.known_ref(rule, ref[1:]):
                    off = str(text).find(ref)
                    self.problem(self.text_pos(self.value_pos(ann, k), 1, off + 1), field,
                                 f"unknown template variable '{ref}'")
            rule.annotations[str(k)] = tpl

    def known_ref(self, rule: Rule, name: str) -> bool:
        if rule.events:
            return name in EVENT_FIELDS
        return name in rule.keys or self.book.name(name) is not None or name in self.book.getters


def load_rules(paths: Iterable[str], book: SignalBook) -> list[Rule]:
    """Load rule files into ``book``; raises ConfigError with every problem of every file."""
    problems: list[Problem] = []
    rules: list[Rule] = []
    seen: dict[str, Rule] = {}
    for path in paths:
        p = resolve_path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            problems.append(Problem(str(p), None, None, "", f"cannot read rule file: {exc.strerror}"))
            continue
        fl = _FileLoader(str(p), text, book, len(rules))
        fl.load()
        problems.extend(fl.problems)
        for rule in fl.rules:
            if rule.name in seen:
                first = seen[rule.name]
                problems.append(Problem(rule.file, rule.line, rule.column or None, rule.name,
                                        f"duplicate rule name (first at {first.file}:{first.line})"))
                continue
            seen[rule.name] = rule
            rules.append(rule)
    if problems:
        raise ConfigError(problems)
    return rules

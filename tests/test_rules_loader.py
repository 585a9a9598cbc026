"""Every load-time error class of a rule file, each with its message at file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgewatch.rules.loader import load_rules
from hedgewatch.rules.signals import SignalBook
from hedgewatch.rules.stage import RuleStage, check_config_rules, check_rules
from hedgewatch.service.config import parse_config
from hedgewatch.service.errors import ConfigError

GOOD = """\
groups:
  - name: g
    rules:
      - name: A
        expr: price < sma(50, "1d")
        action: {raise_hedge_to: 30%}
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    f = tmp_path / "r.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rules([str(f)], SignalBook("HW"))
    return [str(p).replace(str(f), "r.yaml") for p in info.value.problems]


def test_good_file_loads(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(GOOD)
    (rule,) = load_rules([str(f)], SignalBook("HW"))
    assert (rule.name, rule.action.kind, rule.action.value, rule.line) == ("A", "raise_hedge_to", 0.3, 4)
    assert check_rules([str(f)]) == []
    assert check_rules(["builtin:default"]) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # YAML syntax
        ("groups:\n  - name: g\n    rules: [\n", "r.yaml:4:1: invalid YAML"),
        # shape
        ("rules: []\n", "r.yaml:1:1: a rule file is a mapping with a 'groups' list"),
        ("groups: 3\n", "r.yaml:1:9: groups: must be a list of groups"),
        ("groups:\n  - rules: []\n", "r.yaml:2:5: groups.0.name: a group needs a name"),
        # unknown key
        (GOOD + "        severty: info\n", "r.yaml:7:9: groups.0.rules.0 (A).severty: unknown key"),
        # missing name / expr
        ("groups:\n  - name: g\n    rules:\n      - expr: price > 1\n",
         "r.yaml:4:9: groups.0.rules.0.name: a rule needs a name"),
        ("groups:\n  - name: g\n    rules:\n      - name: B\n        action: notify\n",
         "r.yaml:4:9: groups.0.rules.0 (B): a rule needs exactly one of 'expr' (a condition) or 'event'"),
        # expressions: syntax, unknown signal, type, bad indicator argument, forbidden construct
        (GOOD.replace('price < sma(50, "1d")', "price <"),
         "r.yaml:5:22: groups.0.rules.0 (A).expr: syntax error: invalid syntax"),
        (GOOD.replace('price < sma(50, "1d")', "price < smaa(50)"),
         "r.yaml:5:23: groups.0.rules.0 (A).expr: unknown function 'smaa' (did you mean 'sma'?)"),
        (GOOD.replace('price < sma(50, "1d")', "prise > 1"),
         "r.yaml:5:15: groups.0.rules.0 (A).expr: unknown signal 'prise' (did you mean 'price'?)"),
        (GOOD.replace('price < sma(50, "1d")', "price > 1 and funding"),
         "r.yaml:5:29: groups.0.rules.0 (A).expr: 'and' needs a bool, got number 'funding'"),
        (GOOD.replace('price < sma(50, "1d")', "'price < sma(50, \"3x\")'"),
         "r.yaml:5:24: groups.0.rules.0 (A).expr: sma(): not a duration: '3x'"),
        (GOOD.replace('price < sma(50, "1d")', "price.__class__ > 1"),
         "r.yaml:5:15: groups.0.rules.0 (A).expr: 'price.__class__' is not allowed in a rule expression"),
        (GOOD.replace('expr: price < sma(50, "1d")',
                      'expr: |\n          price > 1 and\n          sma(5) > "x"'),
         "r.yaml:7:20: groups.0.rules.0 (A).expr: a string ('x') is only allowed"),
        # durations, severities, priorities, statuses
        (GOOD + "        for: 5 minutes\n",
         "r.yaml:7:14: groups.0.rules.0 (A).for: not a duration: '5 minutes'"),
        (GOOD + "        severity: loud\n",
         "r.yaml:7:19: groups.0.rules.0 (A).severity: must be one of critical, warning, info"),
        (GOOD + "        priority: high\n",
         "r.yaml:7:19: groups.0.rules.0 (A).priority: must be a whole number"),
        (GOOD + "        act_on: [ok, broken]\n",
         "r.yaml:7:17: groups.0.rules.0 (A).act_on: unknown index status 'broken'"),
        # actions
        (GOOD.replace("raise_hedge_to: 30%", "hedge_to: 30%"),
         "r.yaml:6:18: groups.0.rules.0 (A).action.hedge_to: unknown action"),
        (GOOD.replace("30%", "300%"),
         "r.yaml:6:34: groups.0.rules.0 (A).action.raise_hedge_to: ratio 3 out of range [0, 1.5]"),
        (GOOD.replace("30%", "lots"), "r.yaml:6:34: groups.0.rules.0 (A).action.raise_hedge_to: not a ratio"),
        # templates
        (GOOD + '        annotations: {summary: "at {{ .nope }}"}\n',
         "r.yaml:7:39: groups.0.rules.0 (A).annotations.summary: unknown template variable '.nope'"),
        (GOOD + '        annotations: {summary: "at {{ $value | shout }}"}\n',
         "r.yaml:7:36: groups.0.rules.0 (A).annotations.summary: unknown filter 'shout'"),
        # events
        ("groups:\n  - name: g\n    rules:\n      - {name: E, event: source_gone, action: notify}\n",
         "r.yaml:4:26: groups.0.rules.0 (E).event: unknown event 'source_gone'"),
    ],
)
def test_each_error_class(tmp_path: Path, text: str, expected: str) -> None:
    got = problems(tmp_path, text)
    assert any(p.startswith(expected) for p in got), got


def test_duplicate_names_and_all_problems_at_once(tmp_path: Path) -> None:
    text = GOOD + "      - name: A\n        expr: price > 1\n      - name: C\n        expr: nope > 1\n" \
                  "        for: soon\n"
    got = problems(tmp_path, text)
    assert len(got) == 3, got
    assert got[0].startswith("r.yaml:10:15: groups.0.rules.2 (C).expr: unknown signal 'nope'")
    assert got[1].startswith("r.yaml:11:14: groups.0.rules.2 (C).for: not a duration")
    assert got[2] == "r.yaml:7:9: A: duplicate rule name (first at r.yaml:4)"


def test_missing_file(tmp_path: Path) -> None:
    (p,) = check_rules([str(tmp_path / "absent.yaml")])
    assert "cannot read rule file" in p.message


def test_unknown_level_is_reported_with_known_names(tmp_path: Path) -> None:
    got = problems(tmp_path, GOOD.replace('sma(50, "1d")', 'level("R7")'))
    assert "level(): unknown level 'R7' (known: P, R1, R2, R3, S1, S2, S3" in got[0]


def test_check_sees_configured_levels_and_builtin_names(tmp_path: Path) -> None:
    from hedgewatch.service.config import RulesConfig

    f = tmp_path / "r.yaml"
    f.write_text(GOOD.replace('sma(50, "1d")', 'level("big")'))
    assert "unknown level 'big'" in check_rules([str(f)])[0].message
    assert check_rules([str(f)], RulesConfig(levels={"big": 5.0})) == []
    assert check_rules([str(tmp_path / "builtin:default")]) == []


@pytest.mark.parametrize(("expr", "col"), [
    ("price > " + "9" * 400, 23),
    ("price > 1e400", 23),
    ("price < -1e400", 24),
    ('price < asset_sma("BTC", ' + "9" * 400 + ', "1d")', 40),
    ("price > 1 and funding > 1e999 * 2", 39),
])
def test_a_number_out_of_range_is_one_line_at_its_position(tmp_path: Path, expr: str, col: int) -> None:
    (got,) = problems(tmp_path, GOOD.replace('price < sma(50, "1d")', expr))
    assert got == f"r.yaml:5:{col}: groups.0.rules.0 (A).expr: a number out of range (the largest is about 1.8e308)"


@pytest.mark.parametrize(("line", "expected"), [
    ("        for: 1e400\n", "r.yaml:7:14: groups.0.rules.0 (A).for: a duration out of range"),
    ("        for: " + "9" * 400 + "\n", "r.yaml:7:14: groups.0.rules.0 (A).for: a duration out of range"),
    ("        keep_firing_for: .nan\n", "r.yaml:7:26: groups.0.rules.0 (A).keep_firing_for: a duration out of range"),
    ("        priority: " + "9" * 400 + "\n", "r.yaml:7:19: groups.0.rules.0 (A).priority: must be a whole number"),
])
def test_a_rule_setting_out_of_range_is_one_line(tmp_path: Path, line: str, expected: str) -> None:
    (got,) = problems(tmp_path, GOOD + line)
    assert got.startswith(expected), got


def test_a_ratio_out_of_range_is_one_line(tmp_path: Path) -> None:
    (got,) = problems(tmp_path, GOOD.replace("30%", "1e400%"))
    assert got == "r.yaml:6:34: groups.0.rules.0 (A).action.raise_hedge_to: a ratio out of range (a finite number " \
                  "is needed)"


@pytest.mark.parametrize(("call", "col"), [
    ("asset_price('NOPE')", 15),
    ("asset_funding('nope')", 15),
    ('asset_sma("DOGE", 20, "1d")', 15),
])
def test_an_asset_the_config_does_not_know_is_refused_at_load(tmp_path: Path, call: str, col: int) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(GOOD.replace('price < sma(50, "1d")', f"{call} > 1"))
    cfg = parse_config(f"""
sources: [{{exchange: binanceusdm, symbols: [BTC, ETH]}}]
index: {{name: HW, constituents: [BTC, ETH]}}
portfolio: {{holdings: {{BTC: 5}}, hedge_ratio: 0.2}}
rules: {{files: ["{f}"]}}
""", env={})
    (p,) = check_config_rules(cfg)
    assert str(p).replace(str(f), "r.yaml").startswith(f"r.yaml:5:{col}: groups.0.rules.0 (A).expr: ")
    assert "unknown asset" in p.message and "(the config's assets: BTC, ETH)" in p.message
    with pytest.raises(ConfigError) as err:  # and the daemon does not start with it
        RuleStage(cfg, 0.0)
    assert err.value.problems == [p]
    ok = f.read_text().replace(call, call.replace("NOPE", "BTC").replace("nope", "eth").replace("DOGE", "ETH"))
    f.write_text(ok)
    assert check_config_rules(cfg) == []


def test_with_a_selection_the_assets_are_those_the_sources_watch(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(GOOD.replace('price < sma(50, "1d")', "asset_price('SOL') > 1 and asset_price('XRP') > 1"))
    (tmp_path / "caps.json").write_text("{}")
    cfg = parse_config(f"""
sources: [{{exchange: binanceusdm, symbols: [BTC, ETH, SOL]}}, {{exchange: bybit, symbols: [BTC, SOL]}}]
index: {{name: HW, selection: {{top_n: 2, path: "{tmp_path / 'caps.json'}"}}}}
portfolio: {{holdings: {{HW: 5}}, hedge_ratio: 0.2}}
rules: {{files: ["{f}"]}}
""", env={})
    (p,) = check_config_rules(cfg)
    assert "unknown asset 'XRP' (the config's assets: BTC, ETH, SOL)" in p.message

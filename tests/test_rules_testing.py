"""`hedgewatch rules test`: the bundled sample passes; wrong expectations fail with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgewatch.rules.loader import RULESETS
from hedgewatch.rules.testing import expand, run_rule_tests


def test_bundled_sample_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_rule_tests(str(RULESETS / "default.test.yaml")) == 0
    out = capsys.readouterr().out
    assert "PASS  a break below the 50-day MA raises the hedge to 30%" in out and "4/4 passed" in out


def test_wrong_expectations_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.yaml").write_text("""
groups:
  - name: g
    rules:
      - {name: Hot, expr: funding > 0.001, for: 2m, action: {set_hedge: 0.4},
         annotations: {summary: "funding {{ $value | pct }}"}}
""")
    (tmp_path / "t.yaml").write_text("""
rule_files: [r.yaml]
tests:
  - name: fires after two minutes
    input_series: {price: "100x10", funding: "0.0005 0.002x9"}
    alert_rule_test:
      - {eval_time: 2m, alertname: Hot}
      - eval_time: 3m
        alertname: Hot
        exp_alerts: [{annotations: {summary: "funding 0.20%"}, hedge: {to_ratio: 0.4}}]
    hedge_test: [{eval_time: 3m, ratio: 0.4}]
  - name: wrong on purpose
    input_series: {price: "100x10", funding: "0.002x10"}
    alert_rule_test:
      - {eval_time: 1m, alertname: Hot, exp_alerts: [{labels: {severity: warning}}]}
      - eval_time: 5m
        alertname: Hot
        exp_alerts: [{annotations: {summary: "funding 9%"}}]
    hedge_test: [{eval_time: 5m, ratio: 0.5}]
""")
    assert run_rule_tests(str(tmp_path / "t.yaml")) == 1
    out = capsys.readouterr().out
    assert "PASS  fires after two minutes" in out
    assert "FAIL  wrong on purpose" in out
    assert "Hot at 60s: expected 1 firing, got 0" in out
    assert "Hot at 300s: annotations.summary = 'funding 0.20%', expected 'funding 9%'" in out
    assert "hedge at 300s: ratio = 0.4, expected 0.5" in out


def test_rule_file_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.yaml").write_text("groups:\n  - name: g\n    rules:\n      - {name: X, expr: nope > 1}\n")
    (tmp_path / "t.yaml").write_text(
        "rule_files: [r.yaml]\ntests:\n  - {name: t, input_series: {price: '1'}}\n")
    assert run_rule_tests(str(tmp_path / "t.yaml")) == 2
    assert "r.yaml:4:25: groups.0.rules.0 (X).expr: unknown signal 'nope'" in capsys.readouterr().out


def test_series_notation() -> None:
    assert expand("1+2x3 _ 4-1x1") == [1, 3, 5, 7, None, 4, 3]
    assert expand("ok x1 stale") == ["ok", "ok", "stale"]
    with pytest.raises(ValueError):
        expand("1+2y3")


def test_an_alert_name_no_rule_defines_fails_the_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.yaml").write_text("""
groups:
  - name: g
    rules:
      - {name: Hot, expr: funding > 0.001, action: notify}
""")
    (tmp_path / "t.yaml").write_text("""
rule_files: [r.yaml]
tests:
  - name: a typo expects nothing and would pass silently
    input_series: {price: "100x3", funding: "0.0005x3"}
    alert_rule_test: [{eval_time: 2m, alertname: Hto}]
""")
    assert run_rule_tests(str(tmp_path / "t.yaml")) == 1
    assert "alert_rule_test names 'Hto', which no rule file defines" in capsys.readouterr().out

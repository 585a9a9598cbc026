"""Rule states, hysteresis, cooldown, priorities, clamping and restart restore, through RuleStage."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hedgewatch.rules.stage import STATUS_GRACE_S
from tests.rules_support import snap, stage_for

ONE = """
groups:
  - name: g
    rules:
      - name: High
        expr: price > 110
        for: {for_}
        resolve: {resolve}
        keep_firing_for: {keep}
        cooldown: {cooldown}
        action: {action}
        annotations: {{summary: "price {{{{ $value }}}} above 110"}}
"""


def one(tmp_path: Path, for_: str = "0s", resolve: str = "price < 100", keep: str = "0s",
        cooldown: str = "0s", action: str = "{raise_hedge_to: 0.5}", **kw):
    return stage_for(tmp_path, ONE.format(for_=for_, resolve=resolve, keep=keep, cooldown=cooldown,
                                          action=action), **kw)


def run(stage, series):
    """Evaluate (t, level) pairs; returns [(t, state, [alert statuses], ratio)]."""
    out = []
    for t, level in series:
        res = stage.evaluate(snap(level, t), t)
        out.append((t, stage.engine.states["High"].state, [a.status for a in res.alerts], stage.engine.ratio))
    return out


def test_every_transition_with_for_and_resolve_hysteresis(tmp_path: Path) -> None:
    s = one(tmp_path, for_="60s")
    got = run(s, [(0, 100), (10, 111), (40, 112), (50, 105), (60, 111), (119, 111), (120, 111),
                  (130, 105), (140, 99), (150, 111)])
    assert [(t, st, al) for t, st, al, _ in got] == [
        (0, "inactive", []),
        (10, "pending", []),
        (40, "pending", []),
        (50, "inactive", []),        # fell back before `for` elapsed: no alert
        (60, "pending", []),
        (119, "pending", []),
        (120, "firing", ["firing"]),
        (130, "firing", []),         # 105 is below the trigger but above the resolve threshold (hysteresis)
        (140, "resolved", ["resolved"]),
        (150, "pending", []),
    ]
    assert got[6][3] == 0.5


def test_firing_alert_carries_values_summary_and_hedge(tmp_path: Path) -> None:
    s = one(tmp_path)
    res = s.evaluate(snap(111, 5), 5)
    (a,) = res.alerts
    assert a.status == "firing" and a.rule == "High" and a.index == "HW"
    assert a.summary == "price 111 above 110"
    assert a.values == {"price": 111.0}
    assert a.hedge is not None and (a.hedge.from_ratio, a.hedge.to_ratio, a.hedge.side) == (0.2, 0.5, "sell")
    assert a.hedge.notional_usd == 111 * 1000 * 0.5 and a.hedge.contracts == 500.0
    assert res.hedge is not None and res.hedge["reason"] == "target_changed" and res.hedge["ratio"] == 0.5
    resolved = s.evaluate(snap(90, 9), 9).alerts[0]
    assert resolved.status == "resolved" and resolved.fingerprint == a.fingerprint and resolved.id != a.id
    assert resolved.starts_at == 5 and resolved.ends_at == 9 and resolved.hedge is None
    json.loads(a.to_json())


def test_keep_firing_for(tmp_path: Path) -> None:
    s = one(tmp_path, keep="30s", resolve="price < 100")
    got = run(s, [(0, 111), (10, 99), (30, 105), (35, 99), (64, 99), (65, 99)])
    assert [(st, al) for _, st, al, _ in got] == [
        ("firing", ["firing"]), ("firing", []), ("firing", []),  # back above 100: the clock restarts
        ("firing", []), ("firing", []), ("resolved", ["resolved"]),
    ]


def test_cooldown_delays_the_next_firing(tmp_path: Path) -> None:
    s = one(tmp_path, cooldown="100s", action="{adjust_hedge: 0.1}")
    got = run(s, [(0, 111), (10, 90), (20, 111), (99, 111), (100, 111), (110, 90), (120, 111)])
    assert [(st, al) for _, st, al, _ in got] == [
        ("firing", ["firing"]), ("resolved", ["resolved"]), ("pending", []), ("pending", []),
        ("firing", ["firing"]), ("resolved", ["resolved"]), ("pending", []),
    ]
    assert "cooldown until 200" in s.engine.states["High"].health
    assert [round(r, 6) for *_, r in got] == [0.3, 0.3, 0.3, 0.3, 0.4, 0.4, 0.4]


def test_adjust_applies_once_per_firing(tmp_path: Path) -> None:
    s = one(tmp_path, action="{adjust_hedge: 10%}")
    got = run(s, [(0, 111), (1, 112), (2, 113), (3, 90), (4, 111), (5, 111)])
    assert [round(r, 6) for *_, r in got] == [0.3, 0.3, 0.3, 0.3, 0.4, 0.4]


def test_clamped_to_the_portfolio_range(tmp_path: Path) -> None:
    s = one(tmp_path, action="{adjust_hedge: 0.5}", portfolio=", hedge_ratio_max: 0.6")
    run(s, [(0, 111), (1, 90), (2, 111)])
    assert s.engine.ratio == 0.6
    s2 = one(tmp_path, action="{set_hedge: 0}", portfolio=", hedge_ratio_min: 0.1")
    run(s2, [(0, 111)])
    assert s2.engine.ratio == 0.1


CONFLICT = """
groups:
  - name: g
    rules:
      - {name: Up, expr: price > 110, priority: PU, action: {raise_hedge_to: 0.8}}
      - {name: Down, expr: price > 105, priority: PD, action: {lower_hedge_to: 0.1}}
      - {name: Nudge, expr: price > 100, priority: 0, action: {adjust_hedge: 0.05}}
"""


def test_priority_resolves_conflicts_into_one_target(tmp_path: Path) -> None:
    s = stage_for(tmp_path, CONFLICT.replace("PU", "20").replace("PD", "10"))
    res = s.evaluate(snap(111, 0), 0)
    assert s.engine.ratio == 0.8  # Nudge (0) then Down (10) then Up (20): the highest has the last word
    assert {a.rule: a.hedge.to_ratio for a in res.alerts if a.hedge} == {"Up": 0.8, "Down": 0.8, "Nudge": 0.8}
    s = stage_for(tmp_path, CONFLICT.replace("PU", "10").replace("PD", "20"))
    s.evaluate(snap(111, 0), 0)
    assert s.engine.ratio == 0.1


def test_degraded_index_holds_rules_unless_they_opt_in(tmp_path: Path) -> None:
    rules = ONE.format(for_="0s", resolve="price < 100", keep="0s", cooldown="0s", action="{set_hedge: 0.9}")
    rules += """      - {name: Brave, expr: price > 110, act_on: [ok, degraded], action: notify}
"""
    s = stage_for(tmp_path, rules)
    s.end_grace()  # past the start-up (see test_rules_stage: no rule acts on a not-ok index before)
    res = s.evaluate(snap(111, 0, status="degraded"), 0)
    assert [a.rule for a in res.alerts] == ["Brave"]
    assert s.engine.states["High"].health == "skipped: index degraded"
    assert s.engine.states["High"].state == "inactive" and s.engine.ratio == 0.2
    assert s.evaluate(snap(111, 1, status="stale"), 1).alerts == []


def test_pending_starts_over_after_a_degraded_spell(tmp_path: Path) -> None:
    s = one(tmp_path, for_="60s")
    s.evaluate(snap(111, 0), 0)
    assert s.engine.states["High"].state == "pending"
    s.evaluate(snap(111, 30, status="degraded"), 30)
    assert s.engine.states["High"].state == "pending"  # a momentary flip pauses, it does not restart
    s.evaluate(snap(111, 30 + STATUS_GRACE_S, status="degraded"), 30 + STATUS_GRACE_S)
    assert s.engine.states["High"].state == "inactive"  # a lasting spell does
    back = 31 + STATUS_GRACE_S
    assert s.evaluate(snap(111, back), back).alerts == []  # counts again from here
    assert [a.status for a in s.evaluate(snap(111, back + 60), back + 60).alerts] == ["firing"]


def test_missing_signal_holds_the_rule_and_says_so(tmp_path: Path) -> None:
    s = stage_for(tmp_path, """
groups:
  - name: g
    rules:
      - {name: F, expr: funding > 0.001 and price > 1, action: notify}
""")
    s.evaluate(snap(100, 0), 0)
    st = s.state()["rules"][0]
    assert st["health"] == "unavailable: funding_rate_8h" and st["state"] == "inactive"
    assert [a.status for a in s.evaluate(snap(100, 1, funding_rate_8h=0.002), 1).alerts] == ["firing"]


def test_restart_neither_refires_nor_forgets(tmp_path: Path) -> None:
    s = one(tmp_path, action="{adjust_hedge: 0.1}")
    s.evaluate(snap(111, 0), 0)
    saved = json.loads(json.dumps(s.dump_state()))
    s2 = one(tmp_path, action="{adjust_hedge: 0.1}")
    s2.restore_state(saved, 50)
    res = s2.evaluate(snap(112, 60), 60)
    assert res.alerts == [] and round(s2.engine.ratio, 6) == 0.3
    assert s2.engine.states["High"].state == "firing" and s2.engine.states["High"].fired_at == 0
    resolved = s2.evaluate(snap(90, 70), 70).alerts
    assert [a.status for a in resolved] == ["resolved"] and resolved[0].starts_at == 0


def test_restart_keeps_crossing_memory(tmp_path: Path) -> None:
    rules = """
groups:
  - name: g
    rules:
      - {name: X, expr: 'crossed_above(price, 110)', keep_firing_for: 1h, action: notify}
"""
    s = stage_for(tmp_path, rules)
    s.evaluate(snap(105, 0), 0)
    s2 = stage_for(tmp_path, rules)
    s2.restore_state(s.dump_state(), 10)
    assert [a.status for a in s2.evaluate(snap(111, 20), 20).alerts] == ["firing"]


def test_event_rules_fire_and_resolve_per_source(tmp_path: Path) -> None:
    s = stage_for(tmp_path, """
groups:
  - name: oracle
    rules:
      - name: Excluded
        event: source_excluded
        resolve_event: source_readmitted
        cooldown: 60s
        action: notify
        annotations: {summary: "{{ .exchange }} out of {{ .asset }}: {{ .reason }}"}
      - {name: Degraded, event: oracle_status, match: {status: [degraded, stale]}, severity: critical,
         action: notify}
""")
    ex = {"kind": "source_excluded", "asset": "BTC", "exchange": "okx", "reason": "deviation", "ts": 1.0}
    a = s.on_transitions([ex], 1.0)
    assert [(x.rule, x.status, x.summary, x.labels["exchange"]) for x in a] == [
        ("Excluded", "firing", "okx out of BTC: deviation", "okx")]
    assert s.on_transitions([ex], 2.0) == []  # already firing
    assert [x.status for x in s.on_transitions([{**ex, "exchange": "bybit"}], 2.0)] == ["firing"]
    back = s.on_transitions([{"kind": "source_readmitted", "asset": "BTC", "exchange": "okx"}], 3.0)
    assert [(x.status, x.fingerprint) for x in back] == [("resolved", a[0].fingerprint)]
    assert s.on_transitions([ex], 30.0) == []  # cooldown
    deg = {"kind": "oracle_status", "asset": "ETH", "status": "degraded", "reason": "2 sources disagree"}
    assert [(x.rule, x.severity) for x in s.on_transitions([deg], 5.0)] == [("Degraded", "critical")]
    ok = s.on_transitions([{**deg, "status": "ok"}], 6.0)
    assert [(x.rule, x.status) for x in ok] == [("Degraded", "resolved")]
    saved = s.dump_state()
    s2 = stage_for(tmp_path, Path(tmp_path / "rules.yaml").read_text())
    s2.restore_state(saved, 7.0)
    assert s2.on_transitions([{**ex, "exchange": "bybit"}], 8.0) == []


def test_malformed_input_holds_the_rule_not_the_daemon(tmp_path: Path) -> None:
    s = one(tmp_path)
    bad = snap(111, 0)
    bad["level"] = "111"
    assert s.evaluate(bad, 0).alerts == []
    assert s.engine.states["High"].health.startswith("error: ")
    assert [a.status for a in s.evaluate(snap(111, 1), 1).alerts] == ["firing"]


@given(st.lists(st.tuples(st.integers(80, 130), st.sampled_from(["ok", "ok", "degraded"])), max_size=60),
       st.sampled_from(["0s", "2m"]), st.sampled_from(["0s", "3m"]), st.sampled_from(["0s", "5m"]))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_alerts_alternate_and_the_ratio_stays_in_range(tmp_path: Path, steps, for_, keep, cooldown) -> None:
    s = one(tmp_path, for_=for_, keep=keep, cooldown=cooldown, action="{adjust_hedge: 0.3}",
            portfolio=", hedge_ratio_max: 0.9")
    statuses = []
    for i, (level, status) in enumerate(steps):
        res = s.evaluate(snap(float(level), i * 60.0, status=status), i * 60.0)
        statuses += [a.status for a in res.alerts]
        assert 0.0 <= s.engine.ratio <= 0.9
    assert statuses == ["firing", "resolved"] * (len(statuses) // 2) + ["firing"] * (len(statuses) % 2)
    fired = statuses.count("firing")
    assert round(s.engine.ratio, 9) == round(min(0.2 + 0.3 * fired, 0.9), 9)  # adjust: once per firing


HOLDING = """
groups:
  - name: g
    rules:
      - {name: Break, expr: price < 100, resolve: price > 101, priority: 20, action: {raise_hedge_to: 0.3, hold: true}}
      - {name: Test, expr: price > 120, resolve: price < 118, priority: 10, action: {adjust_hedge: -0.1, hold: true}}
      - {name: Lever, expr: price > 125, resolve: price < 123, priority: 15, action: {adjust_hedge: 0.1, hold: true}}
      - {name: Once, expr: price > 200, priority: 5, action: {adjust_hedge: 0.05}}
"""


def test_a_holding_action_is_released_when_its_rule_resolves(tmp_path: Path) -> None:
    s = stage_for(tmp_path, HOLDING)  # baseline 0.2
    ratios = []
    for t, level in enumerate([110, 99, 99, 105, 122, 126, 124, 119, 117, 110]):
        res = s.evaluate(snap(level, t), t)
        ratios.append(round(s.engine.ratio, 9))
        if t == 3:  # the rally: the break's resolve carries the release
            (released,) = [a for a in res.alerts if a.rule == "Break"]
            assert released.status == "resolved" and released.hedge is not None
            assert (released.hedge.from_ratio, released.hedge.to_ratio) == (0.3, 0.2)
    assert ratios == [0.2, 0.3, 0.3, 0.2, 0.1, 0.2, 0.2, 0.1, 0.2, 0.2]
    # 122: the test takes 10 points; 126: leverage adds them back; 119: leverage released, the test held;
    # 117: both released: back at the baseline
    assert [s.engine.states[n].state for n in ("Break", "Test", "Lever")] == ["resolved"] * 3


def test_one_shot_actions_move_the_base_under_the_holds(tmp_path: Path) -> None:
    s = stage_for(tmp_path, HOLDING)
    for t, level in enumerate([99, 201, 99, 102]):  # the break holds 30%, a one-shot +5 points underneath
        s.evaluate(snap(level, t), t)
    assert round(s.engine.base, 9) == 0.25 and round(s.engine.ratio, 9) == 0.25
    # a restart while a holding rule fires keeps it held, and releases it when it resolves
    s.evaluate(snap(99, 10), 10)
    assert round(s.engine.ratio, 9) == 0.3
    saved = json.loads(json.dumps(s.dump_state()))
    s2 = stage_for(tmp_path, HOLDING)
    s2.restore_state(saved, 11)
    assert round(s2.engine.ratio, 9) == 0.3 and round(s2.engine.base, 9) == 0.25
    s2.evaluate(snap(105, 12), 12)
    assert round(s2.engine.ratio, 9) == 0.25

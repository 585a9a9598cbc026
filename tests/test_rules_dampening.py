"""Alert dampening: event rules get ``for``, a resolve hold-down and a flap limit, so one bad frame or one
flapping venue is one alert, not hundreds; the critical oracle alert fires on sustained degradation; rules
that do not opt in to a degraded index are paused, not restarted, by a momentary flip. Driven through the
real ``RuleStage`` with the bundled rule set, on an injected clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hedgewatch.rules.stage import STATUS_GRACE_S, RuleStage
from hedgewatch.service.config import parse_config
from tests.rules_support import snap, stage_for


def default_stage() -> RuleStage:
    cfg = parse_config("""
sources: [{exchange: binanceusdm, symbols: [BTC, ETH]}]
index: {name: HW, constituents: [BTC, ETH]}
rules: {files: ["builtin:default"]}
""", env={})
    return RuleStage(cfg, 0.0)


def excluded(ts: float) -> dict[str, Any]:
    return {"kind": "source_excluded", "asset": "BTC", "exchange": "okx", "status": "excluded",
            "reason": "outlier: 6% from median", "ts": ts}


def readmitted(ts: float) -> dict[str, Any]:
    return {"kind": "source_readmitted", "asset": "BTC", "exchange": "okx", "status": "ok", "reason": "fresh",
            "ts": ts}


def oracle(status: str, ts: float) -> dict[str, Any]:
    return {"kind": "oracle_status", "asset": "BTC", "status": status, "reason": "single source", "ts": ts}


def run(stage: RuleStage, script: dict[float, list[dict[str, Any]]], until: float,
        step: float = 0.25) -> list[tuple[float, str, str]]:
    """Tick every ``step`` seconds as the daemon does, feeding the scripted transitions at their time."""
    out = []
    now = 0.0
    pending = sorted(script.items())
    while now <= until:
        batch: list[dict[str, Any]] = []
        while pending and pending[0][0] <= now:
            batch += pending.pop(0)[1]
        out += [(now, a.rule, a.status) for a in stage.on_transitions(batch, now)]
        now = round(now + step, 6)
    return out


def test_one_bad_frame_raises_no_alert() -> None:
    stage = default_stage()
    # excluded for a moment (one frame) and back: shorter than `for`, so not news
    assert run(stage, {1.0: [excluded(1.0)], 2.0: [readmitted(2.0)]}, 120.0) == []
    assert run(stage, {1.0: [oracle("degraded", 1.0)], 3.0: [oracle("ok", 3.0)]}, 120.0) == []


def test_a_flapping_venue_is_one_alert_and_one_resolve() -> None:
    stage = default_stage()
    script: dict[float, list[dict[str, Any]]] = {}
    for k in range(40):  # excluded for 40 s, back for 20 s, for 40 minutes
        script[60.0 * k] = [excluded(60.0 * k)]
        script[60.0 * k + 40.0] = [readmitted(60.0 * k + 40.0)]
    alerts = run(stage, script, 60.0 * 40 + 3600.0, step=1.0)
    assert [(rule, status) for _, rule, status in alerts] == [("SourceExcluded", "firing"),
                                                              ("SourceExcluded", "resolved")]
    assert alerts[0][0] == 30.0  # after `for`
    # flapping: resolved once fewer than 3 exclusions fall within the last hour (the 38th one is an hour old)
    assert alerts[1][0] == 60.0 * 37 + 3600.0


def test_a_slowly_flapping_venue_hits_the_flap_limit() -> None:
    stage = default_stage()
    script: dict[float, list[dict[str, Any]]] = {}
    for k in range(10):  # excluded 1 min, back 4 min: each cycle would be one firing and one resolve
        script[300.0 * k] = [excluded(300.0 * k)]
        script[300.0 * k + 60.0] = [readmitted(300.0 * k + 60.0)]
    alerts = run(stage, script, 300.0 * 10 + 3600.0 + 60.0, step=5.0)
    firings = [a for a in alerts if a[2] == "firing"]
    assert len(firings) == 3  # the flap limit: then held firing until it calmed down
    resolves = [a for a in alerts if a[2] == "resolved"]
    assert len(resolves) == 3 and resolves[-1][0] == 300.0 * 7 + 3600.0


def test_sustained_oracle_degradation_fires_the_critical_alert_once() -> None:
    stage = default_stage()
    alerts = run(stage, {10.0: [oracle("degraded", 10.0)], 40.0: [oracle("stale", 40.0)],
                         300.0: [oracle("ok", 300.0)]}, 600.0)
    assert [(t, r, s) for t, r, s in alerts] == [(70.0, "OracleDegraded", "firing"),
                                                 (420.0, "OracleDegraded", "resolved")]


def test_dampening_state_survives_a_restart(tmp_path: Path) -> None:
    stage = default_stage()
    run(stage, {1.0: [excluded(1.0)]}, 20.0)
    saved = stage.dump_state()
    again = default_stage()
    again.restore_state(saved, 20.0)
    alerts = [(a.rule, a.status) for a in again.on_transitions([], 31.0)]
    assert alerts == [("SourceExcluded", "firing")]  # the condition's `for` counted on across the restart


RULES = """
groups:
  - name: g
    rules:
      - name: Low
        expr: price < 100
        for: 5m
        action: notify
"""


def test_a_momentary_flip_pauses_rules_without_restarting_their_for(tmp_path: Path) -> None:
    stage = stage_for(tmp_path, RULES)
    stage.evaluate(snap(110.0, 0.0), 0.0)
    fired = []
    for t in range(1, 400):
        status = "degraded" if t % 60 == 0 else "ok"  # a one-second flip every minute
        res = stage.evaluate(snap(90.0, float(t), status), float(t))
        fired += [(t, a.status) for a in res.alerts]
    assert fired == [(301, "firing")]  # `for` (5 min) counted straight through the flips


def test_a_lasting_degradation_holds_rules_that_do_not_opt_in(tmp_path: Path) -> None:
    stage = stage_for(tmp_path, RULES)
    stage.evaluate(snap(110.0, 0.0), 0.0)
    fired = []
    for t in range(1, 700):
        status = "degraded" if 100 <= t < 100 + STATUS_GRACE_S + 10 else "ok"
        res = stage.evaluate(snap(90.0, float(t), status), float(t))
        fired += [(t, a.status) for a in res.alerts]
    assert fired == [(140 + 300, "firing")]  # `for` started over once the index was back


def test_flap_limit_is_validated_with_file_and_line(tmp_path: Path) -> None:
    from hedgewatch.rules.stage import check_rules

    f = tmp_path / "bad.yaml"
    f.write_text("""groups:
  - name: g
    rules:
      - {name: A, expr: price > 1, flap_limit: 3, action: notify}
      - {name: B, event: source_excluded, flap_limit: many, action: notify}
      - {name: C, event: source_excluded, flap_limit: 3, flap_window: soon, action: notify}
""")
    problems = [str(p) for p in check_rules([str(f)])]
    assert len(problems) == 3, problems
    assert any("bad.yaml:4" in p and "flap_limit" in p for p in problems), problems
    assert any("bad.yaml:5" in p and "whole number" in p for p in problems), problems
    assert any("bad.yaml:6" in p and "flap_window" in p for p in problems), problems

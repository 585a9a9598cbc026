"""The alert's wire shape: Alertmanager's field names, deterministic ids, and what a reader refuses."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from hedgewatch.rules.engine import make_alert
from hedgewatch.rules.model import Action, Rule
from hedgewatch.service.alerts import Alert, HedgeChange, fingerprint, parse_time

T0 = 1_717_430_400.0  # 2024-06-03T16:00:00Z


def rule(**kw: object) -> Rule:
    r = Rule(name="BelowMA50d", group="g", file="r.yaml", line=1, order=0, action=Action("notify"),
             severity="critical", labels={"team": "desk"})
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_firing_json_uses_alertmanager_names_and_has_no_end() -> None:
    a = make_alert(rule(), "HW", "firing", T0, None, 1.0, {"price": 60110.2})
    d = orjson.loads(a.to_json())
    assert set(d) == {"id", "fingerprint", "status", "labels", "annotations", "startsAt", "generatorURL",
                      "values"}
    assert d["labels"] == {"alertname": "BelowMA50d", "index": "HW", "severity": "critical", "team": "desk"}
    assert d["annotations"]["summary"] == "BelowMA50d firing on HW"
    assert d["startsAt"] == "2024-06-03T16:00:00.000Z" and d["status"] == "firing"
    assert d["values"] == {"price": 60110.2}
    assert not any(k in d for k in ("starts_at", "ends_at", "endsAt", "rule", "summary"))


def test_resolve_keeps_the_start_and_ids_are_deterministic() -> None:
    r = rule()
    firing = make_alert(r, "HW", "firing", T0, None, 1.0, {})
    resolved = make_alert(r, "HW", "resolved", T0, T0 + 90, 1.0, {})
    d = resolved.to_dict()
    assert d["startsAt"] == "2024-06-03T16:00:00.000Z" and d["endsAt"] == "2024-06-03T16:01:30.000Z"
    assert resolved.fingerprint == firing.fingerprint and resolved.id != firing.id
    # emitted again (a restart, a failover): the same ids
    assert make_alert(r, "HW", "firing", T0, None, 2.0, {}).id == firing.id
    assert make_alert(r, "HW", "resolved", T0, T0 + 95, 2.0, {}).id == resolved.id
    # another firing, another index, another label: other ids
    assert make_alert(r, "HW", "firing", T0 + 1, None, 1.0, {}).id != firing.id
    assert make_alert(r, "HX", "firing", T0, None, 1.0, {}).id != firing.id
    assert make_alert(r, "HW", "firing", T0, None, 1.0, {}, {"asset": "BTC"}).fingerprint != firing.fingerprint


def test_round_trip_with_hedge_and_generator_url() -> None:
    a = make_alert(rule(), "HW", "firing", T0, None, 1.0, {"price": 1.5, "ok": True, "none": None})
    a = dataclasses.replace(a, hedge=HedgeChange(0.2, 0.3, 150000.0, 0.75, "sell", "HW-3", -0.25, 0.5),
                            generator_url="http://127.0.0.1:9108/state?index=HW&rule=BelowMA50d")
    d = orjson.loads(a.to_json())
    assert d["hedge"] == {"from_ratio": 0.2, "to_ratio": 0.3, "notional_usd": 150000.0, "contracts": 0.75,
                          "side": "sell", "id": "HW-3", "position": -0.25, "trade_contracts": 0.5}
    assert d["generatorURL"] == "http://127.0.0.1:9108/state?index=HW&rule=BelowMA50d"
    assert Alert.from_json(a.to_json()) == a


def test_attributes_fill_the_reserved_labels_and_win() -> None:
    fp = fingerprint("r", "HW", {})
    a = Alert(id=Alert.make_id(fp, "firing", T0), fingerprint=fp, rule="r", index="HW", status="firing",
              severity="info", summary="s", starts_at=T0, labels={"severity": "critical", "x": "1"})
    assert a.labels == {"alertname": "r", "index": "HW", "severity": "info", "x": "1"}
    assert a.annotations == {"summary": "s"}


def test_an_alert_of_the_earlier_shape_is_still_read() -> None:
    old = {"id": "f-firing-1", "fingerprint": "f", "rule": "r", "index": "HW", "status": "firing",
           "severity": "warning", "summary": "s", "starts_at": "2024-06-03T16:00:00.000Z", "ends_at": None,
           "labels": {"alertname": "r"}, "annotations": {}, "values": {}}
    a = Alert.from_dict(old)
    assert (a.rule, a.index, a.severity, a.summary, a.starts_at, a.ends_at) == ("r", "HW", "warning", "s", T0,
                                                                                  None)
    assert "starts_at" not in a.to_dict()


@pytest.mark.parametrize("broken", [
    {"status": "pending"}, {"startsAt": None}, {"startsAt": "yesterday"}, {"labels": {"index": "HW"}},
    {"startsAt": float("nan")},
])
def test_unreadable_alerts_are_refused(broken: dict[str, object]) -> None:
    d = {**make_alert(rule(), "HW", "firing", T0, None, 1.0, {}).to_dict(), **broken}
    with pytest.raises((KeyError, ValueError, TypeError)):
        Alert.from_dict(d)


def test_go_zero_time_means_not_set() -> None:
    assert parse_time("0001-01-01T00:00:00Z") is None and parse_time(None) is None
    assert parse_time("2024-06-03T16:00:00Z") == T0

"""The notifier's pure parts with a fake clock: grouping, routing, templates, silences, pacing, and the
outbox's crash recovery at every byte."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgewatch.service.alerts import Alert, fingerprint
from hedgewatch.service.config import NotifyConfig, RouteConfig
from hedgewatch.service.errors import SecretError
from hedgewatch.service.notify.destinations import Pacer, check_url, retry_after
from hedgewatch.service.notify.grouping import Grouper, Item
from hedgewatch.service.notify.routing import build_routes, route
from hedgewatch.service.notify.silences import Matcher, Silence, parse_duration, parse_matcher, parse_matchers
from hedgewatch.service.notify.templates import message, slack_escape, telegram_escape, truncate
from hedgewatch.service.outbox import Outbox, Record


def alert(i: int, status: str = "firing", rule: str = "r1", severity: str = "warning") -> Alert:
    fp = fingerprint(rule, "HW", {"n": str(i)})
    return Alert(id=Alert.make_id(fp, status, 1000.0 + i), fingerprint=fp, rule=rule, index="HW", status=status,
                 severity=severity, summary=f"s{i}", starts_at=1000.0 + i, labels={"n": str(i), "team": "a"})


def routes(**kw: object) -> list:
    return build_routes(NotifyConfig.model_validate({"slack": {"webhook_url": "http://127.0.0.1:9/x"}, **kw}))


def item(a: Alert, n: int = 0) -> Item:
    return Item(a, f"{n}-0", 0.0)


def test_group_wait_collects_then_group_interval_spaces_changes() -> None:
    (r,) = routes(group_wait_s=30, group_interval_s=300, repeat_interval_s=0)
    g = Grouper()
    g.add(r, item(alert(1)), now=0)
    g.add(r, item(alert(2)), now=10)
    assert g.due(29.9) == [] and g.next_deadline() == 30
    (n,) = g.due(30)
    assert [a.id for a in n.alerts] == [alert(1).id, alert(2).id] and len(n.items) == 2
    g.add(r, item(alert(1, "resolved")), now=40)
    assert g.next_deadline() == 330 and g.due(329) == []
    (n,) = g.due(330)
    assert [a.status for a in n.alerts] == ["resolved"]
    assert len(g) == 1  # alert 2 still fires


def test_latest_state_per_series_and_group_forgotten_when_all_resolved() -> None:
    (r,) = routes()
    g = Grouper()
    g.add(r, item(alert(1)), 0)
    g.add(r, item(alert(1, "resolved")), 0)
    (n,) = g.due(0)
    assert [a.status for a in n.alerts] == ["resolved"] and len(n.items) == 2
    assert len(g) == 0 and g.next_deadline() is None


def test_repeat_interval_renotifies_firing_alerts_only() -> None:
    (r,) = routes(repeat_interval_s=100)
    g = Grouper()
    g.add(r, item(alert(1)), 0)
    g.add(r, item(alert(2)), 0)
    g.due(0)
    g.add(r, item(alert(2, "resolved")), 5)
    g.due(5)
    assert g.next_deadline() == 105
    (n,) = g.due(105)
    assert n.repeat and n.items == () and [a.id for a in n.alerts] == [alert(1).id]


def test_group_by_splits_groups() -> None:
    (r,) = routes(routes=[{"destination": "slack", "group_by": ["n"]}])
    g = Grouper()
    g.add(r, item(alert(1)), 0)
    g.add(r, item(alert(2)), 0)
    assert len(g.due(0)) == 2


def test_routing_by_severity_labels_and_first_match_per_destination() -> None:
    rs = routes(routes=[RouteConfig(destination="slack", severities=("critical",)).model_dump(),
                        {"destination": "slack", "match": {"team": "a"}, "group_wait_s": 7},
                        {"destination": "telegram"}])  # telegram is not configured: ignored
    assert [r.group_wait_s for r in route(alert(1, severity="critical"), rs)] == [0.0]
    assert [r.group_wait_s for r in route(alert(1), rs)] == [7]
    assert route(Alert(**_no_team()), rs) == []


def _no_team() -> dict:
    a = alert(1)
    return {"id": a.id, "fingerprint": a.fingerprint, "rule": a.rule, "index": a.index, "status": a.status,
            "severity": a.severity, "summary": a.summary, "starts_at": a.starts_at, "labels": {"team": "b"}}


def test_default_routes_follow_each_destination_severities() -> None:
    rs = build_routes(NotifyConfig.model_validate({
        "slack": {"webhook_url": "http://127.0.0.1:9/x", "severities": ["warning"]},
        "telegram": {"bot_token": "t", "chat_id": "1", "severities": ["critical"]}}))
    assert [r.destination for r in route(alert(1), rs)] == ["slack"]
    assert [r.destination for r in route(alert(1, severity="critical"), rs)] == ["telegram"]


def test_templates_escape_values_not_markup() -> None:
    a = Alert(**{**_no_team(), "summary": "<script>&\"x\""})
    tg = message("<b>{rule}</b> {label_team} {nope}", "{summary}", [a], telegram_escape)
    assert tg == "<b>r1</b> b \n&lt;script&gt;&amp;&quot;x&quot;"
    assert slack_escape("<@here> & co") == "&lt;@here&gt; &amp; co"
    two = message("[{STATUS}] {rule}", "{summary}", [alert(1, "resolved"), alert(2)], slack_escape)
    assert two.splitlines()[0] == "[FIRING] r1 — 2 alerts" and two.splitlines()[1] == "• [RESOLVED] s1"


def test_truncate_cuts_at_a_line() -> None:
    text = "\n".join(f"<b>{i}</b>" for i in range(2000))
    out = truncate(text, 4096)
    assert len(out) <= 4096 and out.endswith("\n…") and out.count("<b>") == out.count("</b>")


def test_silences_match_until_they_end() -> None:
    s = Silence("x", parse_matchers(["rule=r1", "team=a"]), ends_at=100.0, starts_at=0.0)
    assert s.mutes(alert(1), 99.9) and not s.mutes(alert(1), 100.0)
    assert not s.mutes(alert(1, rule="r2"), 50)
    assert Silence.from_json(s.to_json()) == s
    stored = orjson.loads(s.to_json())  # Alertmanager's silence shape
    assert stored["matchers"][0] == {"name": "rule", "value": "r1", "isRegex": False, "isEqual": True}
    assert stored["endsAt"] == "1970-01-01T00:01:40.000Z"


def test_matchers_are_alertmanagers() -> None:
    below, above = alert(1, rule="BelowMA50"), alert(2, rule="AboveR1")
    regex = parse_matcher("rule=~Below.*")
    assert regex == Matcher("rule", "Below.*", is_regex=True) and regex.matches(below)
    assert not regex.matches(above)
    assert not parse_matcher("rule=~Below").matches(below)  # anchored: the whole value
    assert parse_matcher("rule!~Below.*").matches(above) and not parse_matcher("rule!~Below.*").matches(below)
    assert parse_matcher("severity!=critical").matches(below)
    assert parse_matcher('alertname=~"Below.*|Above.*"').matches(above)
    assert parse_matcher("missing=").matches(below) and parse_matcher("missing!~.+").matches(below)
    assert str(regex) == 'rule=~"Below.*"'
    s = Silence("x", (regex,), ends_at=100.0, starts_at=0.0)
    assert s.mutes(below, 1) and not s.mutes(above, 1) and Silence.from_json(s.to_json()) == s
    with pytest.raises(ValueError, match="not a regular expression"):
        parse_matcher("rule=~Below(")
    with pytest.raises(ValueError, match="not a matcher"):
        parse_matcher("rule")
    with pytest.raises(ValueError, match="at least one matcher"):
        parse_matchers([])


def test_a_silence_of_the_earlier_shape_is_still_read() -> None:
    s = Silence.from_json(b'{"id": "old", "matchers": {"rule": "r1"}, "ends_at": 100.0, "created_at": 5.0}')
    assert s.matchers == (Matcher("rule", "r1"),) and s.ends_at == 100.0 and s.mutes(alert(1), 50)


def test_durations_need_a_unit() -> None:
    assert parse_duration("15m") == 900 and parse_duration("1.5h") == 5400 and parse_duration("2h") == 7200
    assert parse_duration("1h30m") == 5400 and parse_duration("1d") == 86400 and parse_duration("1w") == 604800
    with pytest.raises(ValueError, match=r"has no unit: write e\.g\. 2m, 2h or 2d"):
        parse_duration("2")
    for bad in ("soon", "", "2x", "0s", "2y"):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize(("value", "expected"), [
    ("5", 5.0), ("0.4", 0.4), ("-3", None), ("-inf", None), ("inf", None), ("Infinity", None), ("nan", None),
    ("1e309", None),
    ("86400", 300.0), ("soon", None), (None, None), (7, 7.0), (float("inf"), None),
    ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0), ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
])
def test_retry_after_is_finite_and_capped(value: object, expected: float | None) -> None:
    now = 1445412480.0  # 07:28:00 that day
    assert retry_after(value, 300.0, now=now) == expected  # type: ignore[arg-type]


def test_a_pacer_ignores_a_hold_that_is_not_a_finite_time() -> None:
    p = Pacer(1.0, clock=lambda: 0.0)
    p.hold(float("inf"))
    p.hold(float("nan"))
    assert p._next == 0.0


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook\n", "http://127.0.0.1:9/a b", "http://\x00x/",
                                 "ftp://127.0.0.1/x", "http:///path", "http://[::1/x"])
def test_unusable_urls_are_refused_naming_the_setting(url: str) -> None:
    url = url.encode().decode("unicode_escape")
    with pytest.raises(SecretError) as err:
        check_url(url, "notify.slack.webhook_url")
    assert str(err.value).startswith("notify.slack.webhook_url ") and url not in str(err.value)


async def test_pacer_spaces_and_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(d: float) -> None:
        slept.append(d)
        now[0] += d

    p = Pacer(2.0, clock=lambda: now[0])
    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    await p.wait()
    await p.wait()
    p.hold(3.0)
    await p.wait()
    assert slept == [0.5, 3.0]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=8), st.data())
def test_outbox_recovers_a_prefix_after_a_crash_at_any_byte(n: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as d:
        box = Outbox(Path(d))
        recs = [Record(i, float(i), f"id{i}", b'{"id":"id%d","x":"%s"}' % (i, b"y" * i)) for i in range(1, n + 1)]
        box.append(recs)
        box.close()
        seg = next(Path(d).glob("seg-*.log"))
        raw = seg.read_bytes()
        cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
        seg.write_bytes(raw[:cut])
        again = Outbox(Path(d))
        got = again.load()
        assert [r.seq for r in got] == list(range(1, len(got) + 1))
        assert all(r.payload == recs[r.seq - 1].payload for r in got)
        assert len(got) == raw[:cut].count(b"\n")
        again.close()


async def test_a_malformed_webhook_url_is_refused_without_showing_it() -> None:
    import httpx

    from hedgewatch.service.errors import SecretError
    from hedgewatch.service.notify.destinations import build_destinations

    cfg = NotifyConfig.model_validate({"slack": {"webhook_url": "hooks.example/T/B/secret-part"}})
    async with httpx.AsyncClient() as client:
        with pytest.raises(SecretError) as err:
            build_destinations(cfg, client)
    assert "secret-part" not in str(err.value) and "notify.slack.webhook_url" in str(err.value)

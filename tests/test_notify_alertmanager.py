"""The notifier feeding a real Alertmanager (Debian's prometheus-alertmanager) from the daemon's real alert
path (a rule stage, the outbox, the stream in a real redis-server): a firing rule arrives with its own start
time, stays active while it fires beyond Alertmanager's resolve_timeout (re-sent with endsAt ahead, across a
notifier restart), and resolves when the rule resolves; Alertmanager's own webhook shows what a receiver
would get."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis

from hedgewatch.service.alerts import Alert, parse_time
from hedgewatch.service.config import AlertmanagerConfig, Config
from hedgewatch.service.notify import silence_add
from hedgewatch.service.notify.alertmanager import postable
from tests.alertmanager_support import Alertmanager, alertmanager, alertmanager_binary
from tests.chat_fakes import FakeChat, fake_bot_api, fake_chat
from tests.rules_support import snap, stage_for
from tests.support import RedisServer, free_port, wait_for
from tests.test_notify import KEYS, TOKEN, Worker, config_dict, make_config, publish, write_yaml
from tests.test_notify_bot import CHAT, bot_config

pytestmark = pytest.mark.skipif(alertmanager_binary() is None,
                                reason="prometheus-alertmanager is not installed (.ci/run installs it)")

RESOLVE_TIMEOUT_S = 1.0
RULE = """
groups:
  - name: g
    rules:
      - name: Above110
        expr: price > 110
        resolve: price < 100
        severity: critical
        labels: {team: desk}
        action: {raise_hedge_to: 0.5}
        annotations: {summary: "price {{ $value }} above 110"}
"""


def am_config(hook: str) -> str:
    return f"""
global:
  resolve_timeout: {RESOLVE_TIMEOUT_S:g}s
route:
  receiver: hook
  group_by: [alertname, index]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {hook}
        send_resolved: true
"""


@pytest.fixture
def hook() -> Iterator[FakeChat]:
    with fake_chat() as c:
        yield c


@pytest.fixture
def am(hook: FakeChat) -> Iterator[Alertmanager]:
    with alertmanager(am_config(f"{hook.url}/am-hook")) as a:
        yield a


def notifications(hook: FakeChat) -> list[dict[str, Any]]:
    """What Alertmanager sent its webhook receiver: one entry per alert per notification."""
    return [a for r in hook.received if r.path == "/am-hook" for a in r.body["alerts"]]


def ours(am: Alertmanager) -> list[dict[str, Any]]:
    return [a for a in am.alerts() if a["labels"].get("alertname") == "Above110"]


async def test_a_firing_rule_stays_active_beyond_resolve_timeout_and_resolves_with_the_rule(
        redis_srv: RedisServer, am: Alertmanager, hook: FakeChat, tmp_path: Path) -> None:
    stage = stage_for(tmp_path, RULE)
    started = round(time.time() - 600.0, 3)  # the rule started firing ten minutes ago
    (firing,) = stage.evaluate(snap(111, started), started).alerts
    cfg = make_config(redis_srv.url, None, alertmanager={"urls": [am.url], "resend_interval_s": 0.5})
    w = Worker(cfg)
    await publish(redis_srv, tmp_path, [firing])

    await wait_for(lambda: len(ours(am)) == 1, what="the alert in Alertmanager")
    (held,) = ours(am)
    assert held["labels"] == {"alertname": "Above110", "index": "HW", "severity": "critical", "team": "desk"}
    assert parse_time(held["startsAt"]) == pytest.approx(started, abs=0.001)  # its own start, not receipt
    assert held["annotations"]["summary"] == "price 111 above 110"
    assert held["annotations"]["hedge"].startswith("hedge 20% -> 50%: sell")
    assert held["generatorURL"] == firing.generator_url and "/state?index=HW&rule=Above110" in held["generatorURL"]
    assert held["status"]["state"] == "active"

    # longer than resolve_timeout and than one endsAt window (4 x 0.5 s): still active thanks to re-sends,
    # and the notifier restarting on the way changes nothing
    await _still_active_for(am, 2.5)
    await w.close()
    w = Worker(cfg)
    await _still_active_for(am, 2.5)
    amtool = shutil.which("amtool")
    if amtool is not None:
        listed = json.loads(am.amtool("alert", "query", "alertname=Above110", "-o", "json"))
        assert [a["labels"]["alertname"] for a in listed] == ["Above110"]
    await wait_for(lambda: len(notifications(hook)) >= 1, what="Alertmanager's firing notification")
    assert [n["status"] for n in notifications(hook)] == ["firing"]  # never resolved on its own
    assert parse_time(notifications(hook)[0]["startsAt"]) == pytest.approx(started, abs=0.001)

    ended = round(time.time(), 3)
    (resolved,) = stage.evaluate(snap(90, ended), ended).alerts
    assert resolved.status == "resolved"
    await publish(redis_srv, tmp_path, [resolved])
    await wait_for(lambda: ours(am) == [], what="the alert resolved in Alertmanager")
    await wait_for(lambda: [n["status"] for n in notifications(hook)] == ["firing", "resolved"],
                   what="Alertmanager's resolved notification")
    last = notifications(hook)[-1]
    assert parse_time(last["endsAt"]) == pytest.approx(ended, abs=0.001)
    assert parse_time(last["startsAt"]) == pytest.approx(started, abs=0.001)
    # the resolve keeps being re-sent for a while, and never brings the alert back
    await _never(lambda: bool(ours(am)), 1.5)
    await w.close()
    assert w.metrics.notify_sent.labels("alertmanager")._value.get() >= 2


async def test_only_the_newest_state_of_a_series_is_pushed(redis_srv: RedisServer, am: Alertmanager,
                                                          tmp_path: Path) -> None:
    """A resolve of an earlier firing, read after a newer firing (two workers, a slow reader), does not end
    the newer one."""
    stage = stage_for(tmp_path, RULE)
    t0 = round(time.time() - 900.0, 3)
    (first,) = stage.evaluate(snap(111, t0), t0).alerts
    (first_end,) = stage.evaluate(snap(90, t0 + 60), t0 + 60).alerts
    (second,) = stage.evaluate(snap(111, t0 + 120), t0 + 120).alerts
    w = Worker(make_config(redis_srv.url, None, alertmanager={"urls": [am.url], "resend_interval_s": 0.5}))
    await publish(redis_srv, tmp_path, [first, second, first_end])
    await wait_for(lambda: len(ours(am)) == 1, what="the newer firing")
    await _still_active_for(am, 1.0)
    await w.close()
    r = aredis.Redis.from_url(redis_srv.url)
    stored = await r.hgetall(KEYS.alertmanager_alerts)
    await r.aclose()
    assert [Alert.from_json(v).id for v in stored.values()] == [second.id]


async def test_an_unreachable_alertmanager_gets_the_alerts_once_it_is_up(
        redis_srv: RedisServer, hook: FakeChat, tmp_path: Path) -> None:
    stage = stage_for(tmp_path, RULE)
    t0 = round(time.time() - 60.0, 3)
    (firing,) = stage.evaluate(snap(111, t0), t0).alerts
    port = free_port()
    w = Worker(make_config(redis_srv.url, None, alertmanager={"urls": [f"http://127.0.0.1:{port}"],
                                                               "resend_interval_s": 0.5}))
    await publish(redis_srv, tmp_path, [firing])
    await wait_for(lambda: w.metrics.notify_retries.labels("alertmanager", "network")._value.get() >= 1,
                   what="a refused push")
    with tempfile.TemporaryDirectory(prefix="hw-am-") as d:
        late = Alertmanager(port, Path(d))
        late.start(am_config(f"{hook.url}/am-hook"))
        try:
            await wait_for(lambda: len(ours(late)) == 1, what="the alert once Alertmanager is up")
            assert parse_time(ours(late)[0]["startsAt"]) == pytest.approx(t0, abs=0.001)
        finally:
            await w.close()
            late.stop()


async def _still_active_for(am: Alertmanager, seconds: float) -> None:
    """Assert the alert stays active for ``seconds`` (checked every 100 ms): elapsed time is the point."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got = ours(am)
        assert len(got) == 1 and got[0]["status"]["state"] == "active", got
        await _tick()


async def _never(cond: Any, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert not cond()
        await _tick()


async def _tick() -> None:
    await asyncio.sleep(0.1)


def test_postable_alert_shape() -> None:
    a = Alert(id="f-firing-1", fingerprint="f", rule="R", index="HW", status="firing", severity="info",
              summary="s", starts_at=1000.0, labels={"asset": ""})
    p = postable(a, now=2000.0, valid_for_s=240.0)
    assert p == {"labels": {"alertname": "R", "index": "HW", "severity": "info"}, "annotations": {"summary": "s"},
                 "startsAt": "1970-01-01T00:16:40.000Z", "endsAt": "1970-01-01T00:37:20.000Z"}


async def test_a_notifier_silence_is_also_set_in_alertmanager(
        redis_srv: RedisServer, am: Alertmanager, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stage = stage_for(tmp_path, RULE)
    t0 = round(time.time() - 60.0, 3)
    (firing,) = stage.evaluate(snap(111, t0), t0).alerts
    cfg = config_dict(redis_srv.url, None, alertmanager={"urls": [am.url], "resend_interval_s": 0.5})
    path = write_yaml(tmp_path / "c.yaml", cfg)
    assert await asyncio.to_thread(silence_add, str(path), ["rule=~Above.*", "index=HW"], "2h", "deploy") == 0
    out = capsys.readouterr().out
    assert "(Alertmanager silence " in out
    (silence,) = am.silences()
    assert silence["matchers"] == [{"name": "alertname", "value": "Above.*", "isRegex": True, "isEqual": True},
                                   {"name": "index", "value": "HW", "isRegex": False, "isEqual": True}]
    assert silence["comment"] == "deploy" and silence["createdBy"] == "cli"
    assert silence["id"] in out
    # and Alertmanager applies it to what the notifier pushes
    w = Worker(Config.model_validate(cfg))
    await publish(redis_srv, tmp_path, [firing])
    await wait_for(lambda: [a["status"]["state"] for a in ours(am)] == ["suppressed"],
                   what="the alert silenced in Alertmanager")
    await w.close()
    assert ours(am)[0]["status"]["silencedBy"] == [silence["id"]]


async def test_the_bots_silence_is_also_set_in_alertmanager(redis_srv: RedisServer, am: Alertmanager) -> None:
    with fake_bot_api(TOKEN) as api:
        cfg = bot_config(redis_srv.url, api)
        cfg = cfg.model_copy(update={"notify": cfg.notify.model_copy(update={
            "alertmanager": AlertmanagerConfig(urls=(am.url,))})})
        w = Worker(cfg)
        try:
            api.say(CHAT, "/silence Above110 1h")
            await wait_for(lambda: len(api.replies_to(CHAT)) == 1, what="the answer")
        finally:
            await w.close()
    (silence,) = am.silences()
    assert silence["matchers"] == [{"name": "alertname", "value": "Above110", "isRegex": False, "isEqual": True}]
    assert silence["createdBy"] == f"telegram:{CHAT}"
    assert api.replies_to(CHAT)[0].splitlines()[1] == f"Alertmanager silence {silence['id']}."

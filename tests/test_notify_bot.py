"""The Telegram bot against a Bot API stand-in on loopback (long-polled getUpdates, sendMessage) and a real
redis-server holding the daemon's state as the daemon saves it: commands are answered for the configured
chat, and everything from another chat is ignored and counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aredis

from hedgewatch.service.config import Config
from hedgewatch.service.errors import ConfigError
from hedgewatch.service.notify import run_notifier
from hedgewatch.service.notify.silences import list_silences
from tests.chat_fakes import FakeBotApi, fake_bot_api
from tests.rules_support import snap, stage_for
from tests.support import RedisServer, wait_for
from tests.test_notify import KEYS, TOKEN, Worker, config_dict

CHAT, OTHER = -100123, 777
RULE = """
groups:
  - name: g
    rules:
      - name: Above110
        expr: price > 110
        action: {raise_hedge_to: 0.5}
"""


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    with fake_bot_api(TOKEN) as a:
        yield a


def bot_config(redis_url: str, api: FakeBotApi, **bot: Any) -> Config:
    cfg = config_dict(redis_url, None)
    cfg["index"]["name"] = "HW"
    cfg["notify"]["telegram"] = {"bot_token": TOKEN, "chat_id": str(CHAT), "api_url": api.url,
                                 "rate_limit_per_s": 50.0, "bot": {"poll_timeout_s": 1, **bot}}
    return Config.model_validate(cfg)


async def save_daemon_state(r: aredis.Redis, tmp_path: Path) -> dict[str, Any]:
    """The state key as the daemon writes it: snapshot, rule stage state (ratio, hedge, advice), saved_at."""
    stage = stage_for(tmp_path, RULE)
    now = time.time()
    stage.evaluate(snap(100, now - 60), now - 60)
    s = snap(111, now)
    stage.evaluate(s, now)
    s["constituents"] = {"BTC": {"status": "ok", "sources": 3}, "ETH": {"status": "degraded", "sources": 1}}
    state = {"snapshot": s, "rules": stage.dump_state(), "saved_at": now}
    await r.set(KEYS.state("HW"), orjson.dumps(state))
    await r.set(KEYS.heartbeat, b"1", ex=60)
    return state


async def commands(r: aredis.Redis) -> list[dict[str, Any]]:
    return [orjson.loads(f[b"json"]) for _, f in await r.xrange(KEYS.commands)]


async def test_status_and_ack_are_answered_for_the_configured_chat_only(
        redis_srv: RedisServer, api: FakeBotApi, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    r = aredis.Redis.from_url(redis_srv.url)
    state = await save_daemon_state(r, tmp_path)
    w = Worker(bot_config(redis_srv.url, api))
    try:
        api.say(OTHER, "/status")
        api.say(OTHER, "/ack 5")
        api.say(CHAT, "/status")
        await wait_for(lambda: len(api.replies_to(CHAT)) == 1, what="the /status answer")
        (status,) = api.replies_to(CHAT)
        lines = status.splitlines()
        assert lines[0] == "HW 111.00, ok"
        assert lines[1] == "oracle: BTC ok (3 src), ETH degraded (1 src)"
        assert lines[2] == "hedge ratio: 50%, position: 0 contracts (config)"
        advice = state["rules"]["hedge"]["advice"]
        assert lines[3].startswith(f"advice: sell {advice['trade_contracts']:g} contracts from 0 to a short of "
                                   f"{advice['target_contracts']:g} (target_changed, advised")

        api.say(CHAT, "/ack")
        api.say(CHAT, "/ack 2.5")
        await wait_for(lambda: len(api.replies_to(CHAT)) == 3, what="the /ack answers")
        assert api.replies_to(CHAT)[1:] == ["Sent to the daemon: HW, the last advice as executed.",
                                            "Sent to the daemon: HW, 2.5 contracts held."]
        assert await commands(r) == [
            {"command": "hedge_ack", "index": "HW", "contracts": None, "advice_id": advice.get("id"),
             "by": f"telegram:{CHAT}"},
            {"command": "hedge_ack", "index": "HW", "contracts": 2.5, "advice_id": advice.get("id"),
             "by": f"telegram:{CHAT}"},
        ]
        # the other chat's updates came first and were processed in order: ignored, counted, unanswered
        assert api.replies_to(OTHER) == []
        assert w.metrics.notify_bot_ignored.labels("chat")._value.get() == 2
        assert w.metrics.notify_bot_commands.labels("status")._value.get() == 1
        assert w.metrics.notify_bot_commands.labels("ack")._value.get() == 2
    finally:
        await w.close()
        await r.aclose()
    assert TOKEN not in caplog.text


async def test_hedge_silence_help_and_mistakes(redis_srv: RedisServer, api: FakeBotApi, tmp_path: Path) -> None:
    r = aredis.Redis.from_url(redis_srv.url)
    await save_daemon_state(r, tmp_path)
    w = Worker(bot_config(redis_srv.url, api))
    said = ["/hedge", "/silence Above110 2h", "/silence rule=~Above.* 30m", "/silence Above110 2", "/ack many",
            "/frobnicate", "just chatting", "/help"]
    try:
        for text in said:
            api.say(CHAT, text)
        await wait_for(lambda: len(api.replies_to(CHAT)) == len(said) - 1, what="every answer")
        hedge, s1, s2, bad_duration, bad_ack, unknown, help_ = api.replies_to(CHAT)
        assert hedge.splitlines()[0] == "HW hedge" and "ratio: 50%" in hedge and "target short:" in hedge
        assert s1.startswith("Silenced rule=Above110 until ") and s2.startswith('Silenced rule=~"Above.*" until ')
        assert "has no unit" in bad_duration and "Not a number of contracts" in bad_ack
        assert unknown.startswith("Unknown command.") and help_.startswith("hedgewatch commands:")
        silences = await list_silences(r, KEYS)
        assert sorted(str(m) for s in silences for m in s.matchers) == ['rule=Above110', 'rule=~"Above.*"']
        assert {s.created_by for s in silences} == {f"telegram:{CHAT}"}
        assert 7000 < silences[-1].ends_at - time.time() <= 7200
        assert await commands(r) == []
        assert w.metrics.notify_bot_ignored.labels("unknown_command")._value.get() == 1
        assert w.metrics.notify_bot_ignored.labels("not_a_command")._value.get() == 1
    finally:
        await w.close()
        await r.aclose()


async def test_status_says_when_the_daemon_is_not_there(redis_srv: RedisServer, api: FakeBotApi) -> None:
    w = Worker(bot_config(redis_srv.url, api))
    try:
        api.say(CHAT, "/status")
        await wait_for(lambda: len(api.replies_to(CHAT)) == 1, what="the answer")
    finally:
        await w.close()
    assert api.replies_to(CHAT)[0].splitlines() == [
        "The daemon's heartbeat is missing: it may be down.",
        "No state saved for index HW: is the daemon running with this Redis?"]


async def test_allowed_chats_can_be_listed_and_must_be_numeric(redis_srv: RedisServer, api: FakeBotApi) -> None:
    w = Worker(bot_config(redis_srv.url, api, allowed_chat_ids=[str(OTHER)]))
    try:
        api.say(CHAT, "/help")
        api.say(OTHER, "/help")
        await wait_for(lambda: len(api.replies_to(OTHER)) == 1, what="the listed chat's answer")
        assert api.replies_to(CHAT) == []
    finally:
        await w.close()
    with pytest.raises(ConfigError, match="allowed_chat_ids"):
        await run_notifier(bot_config(redis_srv.url, api, allowed_chat_ids=["@desk"]))

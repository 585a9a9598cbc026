"""What counts as delivered, and what a service can make the notifier do, against real loopback HTTP servers:
Retry-After bounded, slow answers re-sent a bounded number of times, Telegram's ``{"ok": false}`` and
redirects not taken for a delivery, unusable secrets refused at start."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis.asyncio as aredis

from hedgewatch.service.config import Config
from hedgewatch.service.errors import SecretError
from hedgewatch.service.notify import main, run_notifier
from tests.chat_fakes import FakeChat
from tests.support import RedisServer, wait_for
from tests.test_notify import (
    Worker,
    _zero_pending,
    alert,
    chat,
    config_dict,
    ids_in,
    make_config,
    publish,
    r,
    write_yaml,
)

__all__ = ["chat", "r"]  # fixtures


@pytest.mark.parametrize("header", ["inf", "Infinity", "nan", "1e400"])
async def test_a_retry_after_that_is_not_a_finite_time_does_not_stop_a_destination(
        header: str, redis_srv: RedisServer, chat: FakeChat, r: aredis.Redis, tmp_path: Path) -> None:
    chat.script.append((429, {"Retry-After": header}, b"rate_limited"))
    w = Worker(make_config(redis_srv.url, chat, telegram=False))
    await publish(redis_srv, tmp_path, [alert(i) for i in range(3)])
    await wait_for(lambda: len(ids_in(chat.ok(), "/services/")) == 3, what="delivery after the 429")
    await wait_for(lambda: _zero_pending(r), what="ack")
    await w.close()
    assert w.metrics.notify_retries.labels("slack", "rate_limited")._value.get() == 1
    assert chat.received[1].at - chat.received[0].at < 2.0  # the notifier's own backoff (0.05..0.2 s)


@pytest.mark.parametrize("destination", ["slack", "telegram", "alertmanager"])
@pytest.mark.parametrize("header", ["inf", "nan", "-5"])
async def test_every_destination_delivers_promptly_after_a_retry_after_that_is_no_time(
        destination: str, header: str, redis_srv: RedisServer, chat: FakeChat, r: aredis.Redis,
        tmp_path: Path) -> None:
    body = (b'{"ok":false,"error_code":429,"parameters":{"retry_after":"' + header.encode() + b'"}}'
            if destination == "telegram" else b"rate limited")
    chat.script.append((429, {"Retry-After": header}, body))
    extra = {"alertmanager": {"urls": [chat.url]}} if destination == "alertmanager" else {}
    w = Worker(make_config(redis_srv.url, chat, slack=destination == "slack",
                           telegram=destination == "telegram", **extra))
    alerts = [alert(i) for i in range(3)]
    await publish(redis_srv, tmp_path, alerts)
    if destination == "alertmanager":
        def delivered() -> bool:
            pushed = [x.body for x in chat.ok()]
            return bool(pushed) and {a["labels"]["n"] for a in pushed[-1]} == {"0", "1", "2"}  # type: ignore[index]
    else:
        path = "/services/" if destination == "slack" else "/bot"

        def delivered() -> bool:
            return sorted(ids_in(chat.ok(), path)) == sorted(a.id for a in alerts)
    await wait_for(delivered, what="every alert delivered after the 429")
    await wait_for(lambda: _zero_pending(r), what="ack")
    await w.close()
    assert chat.received[0].status == 429
    assert chat.received[1].at - chat.received[0].at < 2.0  # the notifier's own backoff, not the header
    assert w.metrics.notify_retries.labels(destination, "rate_limited")._value.get() == 1


@pytest.mark.parametrize("destination", ["slack", "telegram", "alertmanager"])
async def test_a_huge_retry_after_is_capped(destination: str, redis_srv: RedisServer, chat: FakeChat,
                                            tmp_path: Path) -> None:
    if destination == "telegram":
        chat.script.append((429, {}, b'{"ok":false,"error_code":429,"parameters":{"retry_after":86400}}'))
    else:
        chat.script.append((429, {"Retry-After": "86400"}, b"slow down"))
    extra = {"alertmanager": {"urls": [chat.url]}} if destination == "alertmanager" else {}
    w = Worker(make_config(redis_srv.url, chat, slack=destination == "slack", telegram=destination == "telegram",
                           retry_after_max_s=0.5, **extra))
    await publish(redis_srv, tmp_path, [alert(0)])
    await wait_for(lambda: len(chat.ok()) >= 1, what="delivery after the capped wait")
    await w.close()
    assert 0.45 <= chat.received[1].at - chat.received[0].at < 5


async def test_a_slow_answer_costs_one_duplicate_and_is_counted(redis_srv: RedisServer, chat: FakeChat,
                                                                r: aredis.Redis, tmp_path: Path) -> None:
    chat.delays.append(0.6)  # answers the first send after the 0.3 s timeout, the second at once
    w = Worker(make_config(redis_srv.url, chat, telegram=False, slack_extra={"timeout_s": 0.3}))
    await publish(redis_srv, tmp_path, [alert(0)])
    await wait_for(lambda: len(chat.received) == 2, what="the re-send")
    await wait_for(lambda: _zero_pending(r), what="ack")
    await w.close()
    assert ids_in(chat.received, "/services/") == [alert(0).id] * 2  # one duplicate, no more
    assert w.metrics.notify_retries.labels("slack", "timeout")._value.get() == 1
    assert w.metrics.notify_sent.labels("slack")._value.get() == 1


async def test_a_service_that_never_answers_in_time_gets_a_bounded_number_of_copies(
        redis_srv: RedisServer, chat: FakeChat, r: aredis.Redis, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    chat.delays.extend([5.0] * 10)
    cfg = make_config(redis_srv.url, chat, telegram=False, slack_extra={"timeout_s": 0.1})  # the default: 1
    w = Worker(cfg)
    await publish(redis_srv, tmp_path, [alert(0)])
    await wait_for(lambda: w.metrics.notify_failed.labels("slack", "unconfirmed")._value.get() == 1,
                   what="the message given up")
    await wait_for(lambda: _zero_pending(r), what="the entry settled")
    await w.close()
    assert len(chat.received) == 2  # the send and one re-send waiting twice as long: one duplicate at most
    assert w.metrics.notify_retries.labels("slack", "timeout")._value.get() == 1
    assert w.metrics.notify_sent.labels("slack")._value.get() == 0
    failures = [rec for rec in caplog.records if "slack" in rec.getMessage() and rec.levelno >= logging.WARNING]
    assert len(failures) == 1, [f.getMessage() for f in failures]  # once per burst


@pytest.mark.parametrize(("status", "payload", "reason"), [
    (200, b'{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}', "http_400"),
    (200, b'{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}', "http_403"),
    (302, b'{"ok":true,"result":{}}', "http_302"),
])
async def test_telegram_errors_in_a_200_and_redirects_are_not_deliveries(
        status: int, payload: bytes, reason: str, redis_srv: RedisServer, chat: FakeChat, r: aredis.Redis,
        tmp_path: Path) -> None:
    chat.script.append((status, {"location": "http://127.0.0.1:9/elsewhere"}, payload))
    w = Worker(make_config(redis_srv.url, chat, slack=False))
    await publish(redis_srv, tmp_path, [alert(0)])
    await wait_for(lambda: w.metrics.notify_failed.labels("telegram", reason)._value.get() == 1,
                   what="the refusal counted")
    await wait_for(lambda: _zero_pending(r), what="settled")
    await w.close()
    assert w.metrics.notify_sent.labels("telegram")._value.get() == 0
    assert await r.hlen("hedgewatch:notify:delivered") == 0  # not recorded as delivered


async def test_telegram_ok_false_with_a_server_error_or_a_page_is_retried(
        redis_srv: RedisServer, chat: FakeChat, tmp_path: Path) -> None:
    chat.script.extend([(200, {}, b'{"ok":false,"error_code":502,"description":"Bad Gateway"}'),
                        (200, {}, b"<html>captive portal</html>")])
    w = Worker(make_config(redis_srv.url, chat, slack=False))
    await publish(redis_srv, tmp_path, [alert(0)])
    await wait_for(lambda: w.metrics.notify_sent.labels("telegram")._value.get() == 1, what="delivery")
    await w.close()
    assert len(chat.received) == 3
    assert w.metrics.notify_retries.labels("telegram", "server_error")._value.get() == 1
    assert w.metrics.notify_retries.labels("telegram", "bad_response")._value.get() == 1


async def test_slack_redirect_is_refused_not_followed(redis_srv: RedisServer, chat: FakeChat,
                                                      tmp_path: Path) -> None:
    chat.script.append((301, {"location": f"{chat.url}/services/moved"}, b""))
    w = Worker(make_config(redis_srv.url, chat, telegram=False))
    await publish(redis_srv, tmp_path, [alert(0)])
    await wait_for(lambda: w.metrics.notify_failed.labels("slack", "http_301")._value.get() == 1,
                   what="the refusal")
    await w.close()
    assert [x.path for x in chat.received] == ["/services/T0/B0/XYZ"]  # never followed
    assert w.metrics.notify_sent.labels("slack")._value.get() == 0


@pytest.mark.parametrize(("section", "value", "setting"), [
    ("slack", {"webhook_url": "http://127.0.0.1:9/services/T0/B0/XY\nZ"}, "notify.slack.webhook_url"),
    ("slack", {"webhook_url": "http://127.0.0.1:9/services/T0\x7f/B0"}, "notify.slack.webhook_url"),
    ("telegram", {"bot_token": "123:abc\x01def", "chat_id": "-100"}, "notify.telegram.bot_token"),
    ("telegram", {"bot_token": "123:abc/../x", "chat_id": "-100"}, "notify.telegram.bot_token"),
    ("telegram", {"bot_token": "123:abc", "chat_id": "-100\n1"}, "notify.telegram.chat_id"),
])
async def test_a_secret_that_cannot_go_into_a_url_fails_at_start(
        section: str, value: dict[str, str], setting: str, redis_srv: RedisServer) -> None:
    cfg = config_dict(redis_srv.url, None)
    cfg["notify"][section] = value
    with pytest.raises(SecretError) as err:
        await run_notifier(Config.model_validate(cfg))
    assert str(err.value).startswith(setting)
    secret = next(iter(value.values()))
    assert secret not in str(err.value) and "\n" not in str(err.value)


def test_a_control_character_in_a_secret_file_is_one_line_and_exit_1(
        redis_srv: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "hook"
    secret.write_text("http://127.0.0.1:9/services/T0/B0/XY\x00Z\n")
    cfg = config_dict(redis_srv.url, None)
    cfg["notify"]["slack"] = {"webhook_url_file": str(secret)}
    assert main(str(write_yaml(tmp_path / "c.yaml", cfg))) == 1
    err = capsys.readouterr().err
    assert err.strip() == "hedgewatch: notify.slack.webhook_url contains a control character or a space"


async def test_the_log_tells_start_each_delivery_and_each_failure_burst_once(
        redis_srv: RedisServer, chat: FakeChat, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hedgewatch.service.notify")
    chat.script.extend([(500, {}, b"x")] * 4)
    w = Worker(make_config(redis_srv.url, chat, telegram=False, consumer_name="w1",
                           routes=[{"destination": "slack", "group_by": ["n"]}]))
    await publish(redis_srv, tmp_path, [alert(0), alert(1)])
    await wait_for(lambda: len(chat.ok()) == 2, what="both delivered")
    await w.close()
    lines = [(rec.levelno, rec.getMessage()) for rec in caplog.records]
    assert any(m.startswith("notify: started as w1 in group notify") and "slack" in m for _, m in lines)
    delivered = [m for lvl, m in lines if lvl == logging.INFO and "delivered" in m]
    assert delivered == ["notify: slack: delivered r1 firing on HW"] * 2
    warnings = [m for lvl, m in lines if lvl >= logging.WARNING]
    assert warnings == ["notify: slack: server_error, retrying (further failures are counted, not logged, "
                        "until it recovers)"]
    assert sum("slack recovered after 4 failed attempts" in m for _, m in lines) == 1

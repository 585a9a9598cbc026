"""The notifier against a real redis-server and real loopback HTTP servers playing Slack and Telegram."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aredis
from ruamel.yaml import YAML

from hedgewatch.service.alerts import Alert, HedgeChange, fingerprint
from hedgewatch.service.config import Config, parse_config
from hedgewatch.service.errors import SecretError
from hedgewatch.service.keys import Keys
from hedgewatch.service.metrics import Metrics, NotifyMetrics
from hedgewatch.service.notify import main, run_notifier, silence_add, silence_list, silence_remove
from hedgewatch.service.notify.silences import add_silence, parse_matchers
from hedgewatch.service.outbox import AlertSink
from hedgewatch.service.redisconn import redis_factory
from tests.chat_fakes import FakeChat, fake_chat
from tests.support import REPO, RedisServer, free_port, wait_for

KEYS = Keys()
TOKEN = "123456:TEST-bot-token-never-logged"
ID_LINE = "{id} {summary}"


def alert(i: int, status: str = "firing", rule: str = "r1", severity: str = "warning",
          starts: float = 1_700_000_000.0) -> Alert:
    fp = fingerprint(rule, "HW", {"n": str(i)})
    return Alert(id=Alert.make_id(fp, status, starts + i), fingerprint=fp, rule=rule, index="HW",
                 status=status, severity=severity, summary=f"alert {i} <b>&", starts_at=starts + i,
                 labels={"n": str(i)})


def config_dict(redis_url: str, chat: FakeChat | None, *, slack: bool = True, telegram: bool = True,
                **notify: Any) -> dict[str, Any]:
    n: dict[str, Any] = {"retry_min_s": 0.05, "retry_max_s": 0.2, **notify}
    slack_extra, telegram_extra = n.pop("slack_extra", {}), n.pop("telegram_extra", {})
    n.setdefault("templates", {"slack_line": ID_LINE, "telegram_line": ID_LINE})
    if chat is not None and slack:
        n["slack"] = {"webhook_url": f"{chat.url}/services/T0/B0/XYZ", "rate_limit_per_s": 50.0,
                      **slack_extra}
    if chat is not None and telegram:
        n["telegram"] = {"bot_token": TOKEN, "chat_id": "-100123", "api_url": chat.url,
                         "rate_limit_per_s": 50.0, **telegram_extra}
    return {"sources": [{"exchange": "binance", "symbols": ["BTC"]}], "index": {"constituents": ["BTC"]},
            "redis": {"url": redis_url}, "notify": n}


def make_config(*args: Any, **kw: Any) -> Config:
    return Config.model_validate(config_dict(*args, **kw))


async def publish(srv: RedisServer, tmp: Path, alerts: list[Alert]) -> None:
    """Through the daemon's real alert path: the outbox into the stream."""
    sink = AlertSink(redis_factory(srv.url), KEYS, tmp / "outbox", 10_000, Metrics())
    for a in alerts:
        sink.submit(a)
    assert await sink.flush(5.0) == len(alerts)


def ids_in(received: list[Any], path_part: str) -> list[str]:
    return [m for r in received if path_part in r.path for m in re.findall(r"[0-9a-f]{16}-\w+-\d+", r.text)]


class Worker:
    """run_notifier as a task, stoppable gracefully or killed (cancelled) abruptly."""

    def __init__(self, config: Config) -> None:
        self.stop = asyncio.Event()
        self.metrics = NotifyMetrics()
        self.task = asyncio.create_task(run_notifier(config, stop=self.stop, metrics=self.metrics),
                                        name="notifier")

    async def close(self) -> None:
        self.stop.set()
        done, _ = await asyncio.wait([self.task], timeout=5)
        if not done:
            for t in asyncio.all_tasks():
                t.print_stack()
        await asyncio.wait_for(self.task, 5)

    async def kill(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
def chat() -> Iterator[FakeChat]:
    with fake_chat() as c:
        yield c


@pytest.fixture
async def r(redis_srv: RedisServer) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(redis_srv.url)
    yield client
    await client.aclose()


async def pending_count(r: aredis.Redis, group: str = "notify") -> int:
    info = await r.xpending(KEYS.alerts_stream, group)
    return int(info["pending"])


async def test_every_alert_is_delivered_once_to_each_destination(redis_srv: RedisServer, chat: FakeChat,
                                                                 r: aredis.Redis, tmp_path: Path) -> None:
    alerts = [alert(i) for i in range(12)]
    await publish(redis_srv, tmp_path, alerts[:6])  # before the worker ever started: not lost
    w = Worker(make_config(redis_srv.url, chat))
    await publish(redis_srv, tmp_path, alerts[6:])
    await wait_for(lambda: len(ids_in(chat.ok(), "/services/")) >= 12 <= len(ids_in(chat.ok(), "/bot")),
                   what="12 alerts on each destination")
    await wait_for(lambda: _zero_pending(r), what="all entries acknowledged")
    await w.close()
    want = sorted(a.id for a in alerts)
    assert sorted(ids_in(chat.ok(), "/services/")) == want
    assert sorted(ids_in(chat.ok(), "/bot")) == want
    assert await r.hlen(KEYS.delivered) == 24
    tg = next(x for x in chat.ok() if "/bot" in x.path)
    assert tg.path == f"/bot{TOKEN}/sendMessage"
    assert tg.body["parse_mode"] == "HTML" and tg.body["chat_id"] == "-100123"
    assert "&lt;b&gt;&amp;" in tg.text and "<b>[FIRING] r1</b>" in tg.text  # values escaped, template kept
    slack = next(x for x in chat.ok() if "/services/" in x.path)
    assert "&lt;b&gt;&amp;" in slack.text and slack.text.startswith("*[FIRING] r1*")


async def _zero_pending(r: aredis.Redis) -> bool:
    return await pending_count(r) == 0


async def test_429_and_500_are_retried_as_each_service_says(redis_srv: RedisServer, chat: FakeChat,
                                                            r: aredis.Redis, tmp_path: Path) -> None:
    chat.script.extend([
        (429, {"Retry-After": "0.4"}, b"rate_limited"),
        (500, {}, b"oops"),
        (503, {}, b"oops"),
    ])
    cfg = make_config(redis_srv.url, chat, telegram=False)
    await publish(redis_srv, tmp_path, [alert(0)])
    w = Worker(cfg)
    await wait_for(lambda: len(chat.ok()) == 1, what="delivery after the failures")
    await wait_for(lambda: _zero_pending(r), what="ack")
    await w.close()
    got = chat.received
    assert [x.status for x in got] == [429, 500, 503, 200]
    assert got[1].at - got[0].at >= 0.39  # Retry-After honoured
    assert w.metrics.notify_retries.labels("slack", "rate_limited")._value.get() == 1
    assert w.metrics.notify_retries.labels("slack", "server_error")._value.get() == 2
    assert ids_in(chat.ok(), "/services/") == [alert(0).id]


async def test_telegram_retry_after_parameter_is_honoured(redis_srv: RedisServer, chat: FakeChat,
                                                          r: aredis.Redis, tmp_path: Path) -> None:
    chat.script.append((429, {}, b'{"ok":false,"error_code":429,"description":"Too Many Requests: retry '
                                 b'after 1","parameters":{"retry_after":1}}'))
    await publish(redis_srv, tmp_path, [alert(0)])
    w = Worker(make_config(redis_srv.url, chat, slack=False))
    await wait_for(lambda: len(chat.ok()) == 1, what="delivery after the 429")
    await w.close()
    assert chat.received[1].at - chat.received[0].at >= 0.99
    assert ids_in(chat.ok(), "/bot") == [alert(0).id]


async def test_rate_limits_space_the_messages(redis_srv: RedisServer, chat: FakeChat, tmp_path: Path) -> None:
    # one group per alert so each alert is one message; 10 per second on Slack, 5 per second on Telegram
    route = {"group_by": ["n"]}
    cfg = make_config(redis_srv.url, chat, slack_extra={"rate_limit_per_s": 10.0},
                      telegram_extra={"rate_limit_per_s": 50.0, "global_rate_limit_per_s": 5.0},
                      routes=[{"destination": "slack", **route}, {"destination": "telegram", **route}])
    await publish(redis_srv, tmp_path, [alert(i) for i in range(6)])
    w = Worker(cfg)
    await wait_for(lambda: len(chat.ok()) == 12, what="12 messages")
    await w.close()
    # sends are paced on an absolute schedule, so the span is exact; single gaps seen at the stand-in also
    # carry its thread scheduling jitter, hence the looser bound on them
    for part, interval in (("/services/", 0.1), ("/bot", 0.2)):
        times = [x.at for x in chat.ok() if part in x.path]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert times[-1] - times[0] >= interval * (len(times) - 1) - 0.02, (part, gaps)
        assert min(gaps) >= interval * 0.5, (part, gaps)


async def test_grouping_waits_then_sends_changes_and_resolves(redis_srv: RedisServer, chat: FakeChat,
                                                               tmp_path: Path) -> None:
    cfg = make_config(redis_srv.url, chat, telegram=False, group_wait_s=0.3, group_interval_s=0.2,
                      repeat_interval_s=0.0)
    w = Worker(cfg)
    for i in range(3):
        await publish(redis_srv, tmp_path, [alert(i)])  # three separate stream writes
    await wait_for(lambda: len(chat.ok()) == 1, what="the grouped message")
    first = chat.ok()[0]
    assert "3 alerts" in first.text and len(ids_in([first], "/")) == 3
    await publish(redis_srv, tmp_path, [alert(0, "resolved", starts=1_700_000_100.0)])
    await wait_for(lambda: len(chat.ok()) == 2, what="the resolve")
    second = chat.ok()[1]
    assert second.text.startswith("*[RESOLVED] r1*")
    # group_interval counts from the first flush; its send may have lagged the flush a little
    assert second.at - first.at >= 0.15
    await w.close()


async def test_repeat_interval_renotifies_what_still_fires(redis_srv: RedisServer, chat: FakeChat,
                                                           tmp_path: Path) -> None:
    cfg = make_config(redis_srv.url, chat, telegram=False, repeat_interval_s=0.3)
    w = Worker(cfg)
    await publish(redis_srv, tmp_path, [alert(0)])
    await wait_for(lambda: len(chat.ok()) >= 2, what="a repeat")
    await w.close()
    a, b = chat.ok()[:2]
    assert a.text == b.text and b.at - a.at >= 0.25  # counted from the flush, which the send may lag


async def test_routes_by_severity_and_label(redis_srv: RedisServer, chat: FakeChat, tmp_path: Path) -> None:
    cfg = make_config(redis_srv.url, chat, routes=[
        {"destination": "telegram", "severities": ["critical"]},
        {"destination": "slack", "match": {"rule": "r2"}},
    ])
    w = Worker(cfg)
    await publish(redis_srv, tmp_path, [alert(0, severity="critical"), alert(1, rule="r2"),
                                        alert(2, rule="r3")])
    await wait_for(lambda: len(chat.ok()) == 2, what="two routed messages")
    await w.close()
    assert ids_in(chat.ok(), "/bot") == [alert(0, severity="critical").id]
    assert ids_in(chat.ok(), "/services/") == [alert(1, rule="r2").id]


async def test_silences_mute_and_expire(redis_srv: RedisServer, chat: FakeChat, r: aredis.Redis,
                                        tmp_path: Path) -> None:
    await add_silence(r, KEYS, parse_matchers(["rule=~r1|r9"]), 3600, "maintenance")
    w = Worker(make_config(redis_srv.url, chat, telegram=False))
    await publish(redis_srv, tmp_path, [alert(0), alert(1, rule="r2")])
    await wait_for(lambda: len(chat.ok()) == 1, what="the unsilenced alert")
    await wait_for(lambda: _zero_pending(r), what="the silenced alert acknowledged")
    await w.close()
    assert ids_in(chat.ok(), "/services/") == [alert(1, rule="r2").id]
    assert w.metrics.notify_silenced._value.get() == 1


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    with path.open("w") as f:
        YAML().dump(data, f)
    return path


def test_silence_cli_functions(redis_srv: RedisServer, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    write_yaml(cfg, config_dict(redis_srv.url, None))
    assert silence_add(str(cfg), ["rule=r1", "index=HW"], "2h", "deploy") == 0
    sid = capsys.readouterr().out.split()[0]
    assert silence_list(str(cfg)) == 0
    listed = capsys.readouterr().out
    assert sid in listed and "rule=r1, index=HW" in listed and "# deploy" in listed
    assert silence_remove(str(cfg), sid) == 0
    assert silence_remove(str(cfg), sid) == 1
    assert silence_add(str(cfg), ["rule"], "2h") == 1
    assert "not a matcher" in capsys.readouterr().err
    # a regular expression is stored as one, not as a literal value
    assert silence_add(str(cfg), ["rule=~Below.*"], "90m") == 0
    capsys.readouterr()
    assert silence_list(str(cfg)) == 0
    assert 'rule=~"Below.*"' in capsys.readouterr().out
    stored = [orjson.loads(v) for v in redis.Redis.from_url(redis_srv.url).hgetall(KEYS.silences).values()]
    assert stored[0]["matchers"] == [{"name": "rule", "value": "Below.*", "isRegex": True, "isEqual": True}]
    # a number alone is not a duration
    assert silence_add(str(cfg), ["rule=r1"], "2") == 1
    assert "has no unit" in capsys.readouterr().err


async def test_missing_secret_is_a_clear_error(redis_srv: RedisServer, tmp_path: Path) -> None:
    cfg = config_dict(redis_srv.url, None)
    cfg["notify"]["slack"] = {"severities": ["critical"]}
    with pytest.raises(SecretError, match=r"notify\.slack\.webhook_url is not set"):
        await run_notifier(Config.model_validate(cfg))
    cfg["notify"]["slack"] = {"webhook_url_file": str(tmp_path / "absent")}
    with pytest.raises(SecretError, match=r"notify\.slack\.webhook_url: cannot read secret file"):
        await run_notifier(Config.model_validate(cfg))


def test_main_reports_a_missing_secret_and_exits_1(redis_srv: RedisServer, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config_dict(redis_srv.url, None)
    cfg["notify"]["telegram"] = {"chat_id": "1"}
    path = tmp_path / "c.yaml"
    write_yaml(path, cfg)
    assert main(str(path)) == 1
    assert "notify.telegram.bot_token is not set" in capsys.readouterr().err


async def test_secrets_never_reach_the_log(redis_srv: RedisServer, chat: FakeChat, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    chat.script.extend([(500, {}, b"x"), (404, {}, b"no_service")])
    w = Worker(make_config(redis_srv.url, chat))
    await publish(redis_srv, tmp_path, [alert(0)])
    await wait_for(lambda: len(chat.ok()) == 1 and len(chat.received) == 3, what="delivery and refusal")
    await w.close()
    assert TOKEN not in caplog.text and "XYZ" not in caplog.text
    assert "refused a message (http_404)" in caplog.text
    assert sum(w.metrics.notify_failed.labels(d, "http_404")._value.get() for d in ("slack", "telegram")) == 1


async def test_crashed_worker_entries_are_taken_over(redis_srv: RedisServer, chat: FakeChat, r: aredis.Redis,
                                                     tmp_path: Path) -> None:
    chat.hold_request = 1
    base = {"telegram": False, "reclaim_idle_s": 0.3}
    a = Worker(make_config(redis_srv.url, chat, consumer_name="a", **base))
    await publish(redis_srv, tmp_path, [alert(i) for i in range(3)])
    await asyncio.to_thread(chat.held.wait, 10)
    await a.kill()  # mid-delivery: the message may have been posted, its entries are still pending
    chat.release.set()
    assert await pending_count(r) == 3
    b = Worker(make_config(redis_srv.url, chat, consumer_name="b", **base))
    await wait_for(lambda: _zero_pending(r), what="worker b took over and delivered")
    await b.close()
    counts = collections.Counter(ids_in(chat.received, "/services/"))
    assert set(counts) == {alert(i).id for i in range(3)}
    in_flight = set(ids_in(chat.received[:1], "/services/"))
    # only what was in the message in flight at the crash may arrive twice
    assert all(n == 1 or (n == 2 and k in in_flight) for k, n in counts.items()), counts


async def test_notifier_process_killed_mid_delivery_loses_nothing(redis_srv: RedisServer, chat: FakeChat,
                                                                  r: aredis.Redis, tmp_path: Path) -> None:
    cfg = config_dict(redis_srv.url, chat, telegram=False, consumer_name="proc",
                      routes=[{"destination": "slack", "group_by": ["n"]}])
    path = tmp_path / "notify.yaml"
    write_yaml(path, cfg)
    alerts = [alert(i) for i in range(10)]
    await publish(redis_srv, tmp_path, alerts)
    chat.hold_request = 4
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", "import sys; from service.notify import main; sys.exit(main(sys.argv[1]))",
           str(path)]
    err_path = tmp_path / "stderr.log"
    with err_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                                    stderr=err)
        try:
            assert await asyncio.to_thread(chat.held.wait, 20), "the fourth message never arrived"
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 10)
            chat.release.set()
            proc = await asyncio.create_subprocess_exec(*cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                                        stderr=err)
            await wait_for(lambda: set(ids_in(chat.received, "/")) == {a.id for a in alerts}, timeout=20,
                           what="every alert delivered after the restart")
            await wait_for(lambda: _zero_pending(r), what="all acknowledged")
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
    log_text = err_path.read_text()
    assert proc.returncode == 0, log_text
    assert TOKEN not in log_text and "XYZ" not in log_text
    counts = collections.Counter(ids_in(chat.received, "/"))
    dupes = [k for k, v in counts.items() if v > 1]
    assert len(dupes) <= 1 and all(counts[k] == 2 for k in dupes)


def test_config_from_yaml_with_env_secret(redis_srv: RedisServer) -> None:
    text = ("sources: [{exchange: binance, symbols: [BTC]}]\nindex: {constituents: [BTC]}\n"
            "notify:\n  slack: {}\n")
    cfg = parse_config(text, env={"HEDGEWATCH__NOTIFY__SLACK__WEBHOOK_URL": "http://127.0.0.1:1/hook"})
    assert cfg.notify.slack is not None and cfg.notify.slack.resolved_url() == "http://127.0.0.1:1/hook"
    assert "127.0.0.1:1/hook" not in repr(cfg)


def test_hedge_fields_render() -> None:
    from hedgewatch.service.notify.templates import fields
    h = dataclasses.replace(alert(0), hedge=HedgeChange(0.3, 0.5, 250000.0, 1.25, "sell"))
    assert fields(h)["hedge_text"] == " — hedge 30% → 50%: sell 1.25 contracts ($250,000)"


async def test_notifier_survives_a_redis_restart(redis_srv: RedisServer, chat: FakeChat,
                                                 tmp_path: Path) -> None:
    """This Redis keeps nothing across a restart: the worker must recreate its consumer group and go on."""
    w = Worker(make_config(redis_srv.url, chat, telegram=False))
    await publish(redis_srv, tmp_path, [alert(0)])
    await wait_for(lambda: len(chat.ok()) == 1, what="the first alert")
    redis_srv.stop()
    await wait_for(lambda: w.metrics.redis_errors._value.get() >= 1, what="the worker noticing the outage")
    redis_srv.start()
    await publish(redis_srv, tmp_path, [alert(1)])
    await wait_for(lambda: len(chat.ok()) == 2, what="an alert after the restart")
    await w.close()
    assert ids_in(chat.ok(), "/services/") == [alert(0).id, alert(1).id]


async def test_graceful_stop_lets_the_message_in_flight_finish(redis_srv: RedisServer, chat: FakeChat,
                                                               r: aredis.Redis, tmp_path: Path) -> None:
    chat.hold_request = 1
    w = Worker(make_config(redis_srv.url, chat, telegram=False))
    await publish(redis_srv, tmp_path, [alert(0)])
    await asyncio.to_thread(chat.held.wait, 10)
    w.stop.set()
    await asyncio.sleep(0.1)  # the worker is now stopping with the message in flight
    assert not w.task.done()
    chat.release.set()
    await w.close()
    assert await _zero_pending(r)  # confirmed and acknowledged: a restart sends nothing again
    assert await r.hlen(KEYS.delivered) == 1


async def test_network_errors_are_retried_until_the_service_answers(redis_srv: RedisServer,
                                                                    tmp_path: Path) -> None:
    late = FakeChat(free_port())  # nothing listens on its port yet: connections are refused
    cfg = config_dict(redis_srv.url, None)
    cfg["notify"]["slack"] = {"webhook_url": f"http://127.0.0.1:{late.port}/services/T0/B0/XYZ",
                              "rate_limit_per_s": 50.0}
    w = Worker(Config.model_validate(cfg))
    await publish(redis_srv, tmp_path, [alert(0)])
    await wait_for(lambda: w.metrics.notify_retries.labels("slack", "network")._value.get() >= 2,
                   what="retries on refused connections")
    late.start()
    try:
        await wait_for(lambda: len(late.ok()) == 1, what="delivery once the service is up")
        await w.close()
    finally:
        late.stop()
    assert ids_in(late.ok(), "/services/") == [alert(0).id]


def test_notify_cli_silence_commands(redis_srv: RedisServer, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hedgewatch.service.notify.cli import notify_app

    cfg = str(write_yaml(tmp_path / "c.yaml", config_dict(redis_srv.url, None)))
    runner = CliRunner()
    added = runner.invoke(notify_app, ["-c", cfg, "silence", "add", "rule=r1", "--for", "30m",
                                       "--comment", "deploy"])
    assert added.exit_code == 0, added.output
    sid = added.output.split()[0]
    listed = runner.invoke(notify_app, ["silence", "list", "-c", cfg])
    assert listed.exit_code == 0 and sid in listed.output and "rule=r1" in listed.output
    assert runner.invoke(notify_app, ["silence", "remove", sid, "-c", cfg]).exit_code == 0
    assert runner.invoke(notify_app, ["silence", "remove", sid, "-c", cfg]).exit_code == 1

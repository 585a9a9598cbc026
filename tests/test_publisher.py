from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
import redis.asyncio as aioredis

from hedgewatch.service.keys import Keys
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.publisher import RedisPublisher
from hedgewatch.service.redisconn import error_text, parse_redis_url, redacted, redis_factory
from tests.support import REPO, RedisServer, wait_for

# a password with every character that ends a part of a URL
AWKWARD = "pa/ss#w?rd@x:y"


def test_redacted_hides_credentials() -> None:
    assert redacted("redis://:s3cret@10.0.0.1:6379/0") == "redis://10.0.0.1:6379/0"
    assert redacted("rediss://user:pw@host:6380") == "rediss://host:6380"
    assert "pw" not in redacted("garbage-pw")


@pytest.mark.parametrize(("url", "user", "password", "shown"), [
    ("redis://:s3cret@10.0.0.1:6379/0", None, "s3cret", "redis://10.0.0.1:6379/0"),
    ("redis://user:s3cret@host", "user", "s3cret", "redis://host"),
    ("redis://10.0.0.1:6379/0?password=s3cret", None, "s3cret", "redis://10.0.0.1:6379/0"),
    ("redis://h/0?username=u&password=s3cret&socket_timeout=3", "u", "s3cret", "redis://h/0"),
    ("rediss://:s3%2Fcret@host:6380/2", None, "s3/cret", "rediss://host:6380/2"),
    ("unix:///run/redis.sock?db=1&password=s3cret", None, "s3cret", "unix:///run/redis.sock?db=1"),
    ("unix://:s3cret@/run/redis.sock", None, "s3cret", "unix:///run/redis.sock"),
    (f"redis://:{AWKWARD}@[::1]:6379/0", None, AWKWARD, "redis://[::1]:6379/0"),
    (f"redis://127.0.0.1:6379/0?password={AWKWARD}", None, AWKWARD, "redis://127.0.0.1:6379/0"),
])
def test_every_url_form_parsed_and_redacted(url: str, user: str | None, password: str, shown: str) -> None:
    parsed = parse_redis_url(url)
    assert (parsed.username, parsed.password) == (user, password)
    assert redacted(url) == shown and "cret" not in shown and "pa/ss" not in shown


@pytest.mark.parametrize("url", ["http://h/0", "redis://:s3cret@h:99999/0", "redis://:s3cret@h:port/0",
                                 "redis://h/notadb?password=s3cret", "s3cret"])
def test_a_bad_url_is_an_error_that_never_quotes_it(url: str) -> None:
    with pytest.raises(ValueError) as ei:
        parse_redis_url(url)
    assert "s3cret" not in str(ei.value)
    assert redacted(url) == "<redis>"


async def test_a_password_with_url_delimiters_connects_in_every_form(
        redis_srv: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    admin = aioredis.Redis.from_url(redis_srv.url)
    await admin.config_set("requirepass", AWKWARD)
    await admin.aclose()
    caplog.set_level(logging.DEBUG)
    base = f"127.0.0.1:{redis_srv.port}/0"
    for url in (f"redis://:{AWKWARD}@{base}", f"redis://{base}?password={AWKWARD}",
                f"redis://default:{quote(AWKWARD, safe='')}@{base}"):
        pub = RedisPublisher(redis_factory(url), Keys("t"), Metrics(), where=redacted(url))
        task = asyncio.create_task(pub.run())
        try:
            pub.save_state("HW", {"n": 1})
            await wait_for(lambda: pub.connected, 5, "connected with the password")  # noqa: B023
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await pub.close()
    assert f"connected to redis://{base}" in caplog.text
    assert "pa/ss" not in caplog.text and "rd@x" not in caplog.text


def test_the_notifier_and_check_read_such_a_password(redis_srv: RedisServer, tmp_path: Path) -> None:
    cfg = tmp_path / "hw.yaml"
    cfg.write_text("sources: [{exchange: binanceusdm, symbols: [BTC]}]\nindex: {constituents: [BTC]}\n"
                   f"redis: {{outbox_dir: {tmp_path / 'outbox'}}}\n")
    subprocess.run(["redis-cli", "-p", str(redis_srv.port), "config", "set", "requirepass", AWKWARD],
                   check=True, capture_output=True)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "HEDGEWATCH__REDIS__URL": f"redis://:{AWKWARD}@127.0.0.1:{redis_srv.port}/0"}
    for args in (["check", str(cfg)], ["notify", "silence", "list", "-c", str(cfg)]):
        r = subprocess.run([sys.executable, "-m", "hedgewatch.service", *args], env=env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert "pa/ss" not in r.stdout + r.stderr


async def test_publishes_snapshots_state_hedges_and_heartbeat(redis_srv: RedisServer) -> None:
    keys = Keys("t")
    metrics = Metrics()
    pub = RedisPublisher(redis_factory(redis_srv.url), keys, metrics, heartbeat_ttl_s=30)
    sub_client = aioredis.Redis.from_url(redis_srv.url)
    ps = sub_client.pubsub()
    await ps.subscribe(keys.index_channel("HW"), keys.hedge_channel("HW"))
    for _ in range(2):
        await ps.get_message(timeout=1)  # subscribe confirmations
    task = asyncio.create_task(pub.run())
    try:
        pub.publish_snapshot("HW", {"level": 1.0}, None)
        pub.publish_snapshot("HW", {"level": 2.0}, None)  # latest wins: 1.0 is superseded
        pub.save_state("HW", {"snapshot": {"level": 2.0}})
        pub.publish_hedge("HW", {"to_ratio": 0.5})
        msgs = []
        async def two() -> bool:
            m = await ps.get_message(timeout=0.1)
            if m and m["type"] == "message":
                msgs.append((m["channel"].decode(), orjson.loads(m["data"])))
            return len(msgs) >= 2
        await wait_for(two, 5, "two pub/sub messages")
        assert (keys.index_channel("HW"), {"level": 2.0}) in msgs
        assert (keys.hedge_channel("HW"), {"to_ratio": 0.5}) in msgs
        assert pub.dropped == 1
        assert orjson.loads(await sub_client.get(keys.state("HW"))) == {"snapshot": {"level": 2.0}}
        assert 0 < await sub_client.pttl(keys.heartbeat) <= 30_000
        assert await pub.load_state("HW") == {"snapshot": {"level": 2.0}}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pub.close()
        await ps.aclose()
        await sub_client.aclose()


async def test_survives_redis_outage_and_delivers_latest(redis_srv: RedisServer) -> None:
    keys = Keys("t")
    metrics = Metrics()
    pub = RedisPublisher(redis_factory(redis_srv.url), keys, metrics)
    task = asyncio.create_task(pub.run())
    try:
        pub.save_state("HW", {"n": 0})
        await wait_for(lambda: pub.connected, 5, "first write")
        redis_srv.stop()
        for n in range(1, 50):
            pub.save_state("HW", {"n": n})
            await asyncio.sleep(0)
        await wait_for(lambda: not pub.connected, 5, "outage noticed")
        assert metrics.registry.get_sample_value("hedgewatch_redis_up") == 0
        assert pub.pending == 1  # only the latest state is kept while Redis is away
        redis_srv.start()
        await wait_for(lambda: pub.connected and pub.pending == 0, 15, "reconnect and flush")
        client = aioredis.Redis.from_url(redis_srv.url)
        assert orjson.loads(await client.get(keys.state("HW"))) == {"n": 49}
        await client.aclose()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pub.close()


@pytest.mark.parametrize("message", [
    "Error connecting to redis://:hunter2@10.0.0.5:6379/0.",
    "Error 111 connecting to rediss://admin:hunter2@cache:6380. Connection refused.",
    "bad option password=hunter2&db=1",
])
def test_a_redis_error_is_told_without_the_secret_it_quotes(message: str) -> None:
    text = error_text(ConnectionError(message))
    assert "hunter2" not in text and text.startswith("ConnectionError: ") and "***" in text
    assert error_text(TimeoutError()) == "TimeoutError"


async def test_redis_up_is_one_only_while_every_client_of_the_process_gets_through(
        redis_srv: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """The publisher and the alert outbox report to one writer of hedgewatch_redis_up: a publisher that
    reconnected must not claim Redis is up while the outbox still fails, and the reverse."""
    metrics = Metrics()
    up = lambda: metrics.registry.get_sample_value("hedgewatch_redis_up")  # noqa: E731
    metrics.redis_answers("publisher", True)
    assert up() == 1
    metrics.redis_answers("outbox", False)
    assert up() == 0
    metrics.redis_answers("publisher", True)  # the other client's success does not hide the failure
    assert up() == 0
    metrics.redis_answers("outbox", True)
    assert up() == 1

    # through the real publisher against a real server that goes away, with a password in the URL
    redis_srv.stop()
    metrics = Metrics()
    url = redis_srv.url.replace("redis://", "redis://:hunter2@")
    pub = RedisPublisher(redis_factory(url), Keys("t"), metrics)
    metrics.redis_answers("outbox", True)
    caplog.set_level(logging.WARNING)
    task = asyncio.create_task(pub.run())
    try:
        pub.save_state("HW", {"n": 1})
        await wait_for(lambda: pub.errors > 0, 10, "the publisher to see Redis down")
        assert metrics.registry.get_sample_value("hedgewatch_redis_up") == 0
        assert "hunter2" not in caplog.text
        redis_srv.start()
        await wait_for(lambda: pub.connected, 15, "the publisher to reconnect")
        assert metrics.registry.get_sample_value("hedgewatch_redis_up") == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pub.close()


async def test_flush_gives_up_within_deadline_when_redis_is_gone() -> None:
    from tests.support import free_port

    pub = RedisPublisher(redis_factory(f"redis://127.0.0.1:{free_port()}"), Keys(), Metrics())
    pub.save_state("HW", {"n": 1})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await pub.flush(1.0) is False
    assert loop.time() - t0 < 2.5
    assert pub.pending == 1
    await pub.close()


async def test_unhealthy_daemon_stops_heartbeat_without_spinning(redis_srv: RedisServer) -> None:
    healthy = True
    writes = 0
    pub = RedisPublisher(redis_factory(redis_srv.url), Keys("t"), Metrics(),
                         heartbeat_interval_s=0.05, heartbeat_ttl_s=0.2, healthy=lambda: healthy)
    orig = pub._send

    async def counting(*a: object) -> None:
        nonlocal writes
        writes += 1
        await orig(*a)  # type: ignore[arg-type]

    pub._send = counting  # type: ignore[method-assign]
    task = asyncio.create_task(pub.run())
    client = aioredis.Redis.from_url(redis_srv.url)
    try:
        await wait_for(lambda: pub.connected, 5, "first heartbeat")
        healthy = False
        await wait_for(lambda: client.exists("t:heartbeat"), 1, "heartbeat present")
        await wait_for(lambda: _not(client.exists("t:heartbeat")), 2, "heartbeat TTL lapsing")
        before = writes
        await asyncio.sleep(0.3)  # a spinning loop would write thousands of times here
        assert writes - before < 15
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2)
        assert done, "publisher ignored cancellation"
    finally:
        task.cancel()
        await client.aclose()
        await pub.close()


async def _not(aw: object) -> bool:
    return not await aw  # type: ignore[misc]

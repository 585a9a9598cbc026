from __future__ import annotations

import asyncio
import contextlib

import orjson
import redis.asyncio as aioredis

from service.keys import Keys
from service.metrics import Metrics
from service.publisher import RedisPublisher
from service.redisconn import redacted, redis_factory
from tests.support import RedisServer, wait_for


def test_redacted_hides_credentials() -> None:
    assert redacted("redis://:s3cret@10.0.0.1:6379/0") == "redis://10.0.0.1:6379/0"
    assert redacted("rediss://user:pw@host:6380") == "rediss://host:6380"
    assert "pw" not in redacted("garbage-pw")


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

"""The scaled layout's pieces on their own: the shard assignment, the hash-tagged names, the lease and the
fenced writes against a real redis-server, the CLI's errors, the compose profile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from redis.crc import key_slot
from ruamel.yaml import YAML

from hedgewatch.service.config import config_from_dict
from hedgewatch.service.ingest import assignment, parse_shard
from hedgewatch.service.keys import ScaledKeys
from hedgewatch.service.lease import Lease, LeaseLost
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.publisher import RedisPublisher
from hedgewatch.service.redisconn import redis_factory
from tests.support import REPO, RedisServer


def cfg(**extra: object):  # type: ignore[no-untyped-def]
    return config_from_dict({
        "sources": [{"exchange": "binanceusdm", "symbols": ["BTC", "ETH", "SOL"]},
                    {"exchange": "bybit", "symbols": ["BTC", "ETH"]},
                    {"exchange": "okx", "symbols": ["SOL"]}],
        "index": {"name": "HW", "constituents": ["BTC", "ETH", "SOL"]},
        **extra,
    }, "<t>", {})


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7])
def test_every_pair_is_in_exactly_one_shard(shards: int) -> None:
    c = cfg()
    pairs = [(s.source_id, a) for k in range(1, shards + 1) for s in assignment(c, k, shards) for a in s.symbols]
    expected = sorted((s.source_id, a) for s in c.sources for a in s.symbols)
    assert sorted(pairs) == expected  # complete, and no pair twice
    assert assignment(c, 1, shards) == assignment(cfg(), 1, shards)  # the same from the same config


def test_two_shards_deal_the_sorted_pairs_round_robin() -> None:
    c = cfg()
    one = {s.source_id: s.symbols for s in assignment(c, 1, 2)}
    two = {s.source_id: s.symbols for s in assignment(c, 2, 2)}
    # sorted: (binanceusdm,BTC) (binanceusdm,ETH) (binanceusdm,SOL) (bybit,BTC) (bybit,ETH) (okx,SOL)
    assert one == {"binanceusdm": ("BTC", "SOL"), "bybit": ("ETH",)}
    assert two == {"binanceusdm": ("ETH",), "bybit": ("BTC",), "okx": ("SOL",)}


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0", ""])
def test_a_bad_shard_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def test_the_cli_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(orjson.dumps({"sources": [{"exchange": "okx", "symbols": ["BTC"]}],
                                   "index": {"name": "HW", "constituents": ["BTC"]}}))
    for args, said in ((["ingest", "-c", str(path), "--shard", "3/2"], "K must be between 1 and N"),
                       (["ingest", "-c", str(path)], "redis.url is required")):
        proc = subprocess.run([sys.executable, "-m", "hedgewatch.service", *args], capture_output=True, text=True,
                              cwd=REPO, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, timeout=60)
        assert proc.returncode == 1 and said in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_every_key_of_an_index_is_in_one_slot() -> None:
    k = ScaledKeys("hedgewatch", "HW")
    names = [k.state("HW"), k.state_at("HW"), k.lease("HW"), k.fence("HW"), k.alerts_stream, k.outbox_marker,
             k.alert_ids, k.commands, k.command_result("1-0"), k.delivered, k.silences, k.alertmanager_alerts]
    assert len({key_slot(n.encode()) for n in names}) == 1
    assert len({key_slot(k.events(a).encode()) for a in ("BTC", "ETH", "SOL", "BNB", "XRP")}) > 1


async def test_a_lost_lease_refuses_the_old_owners_writes(redis_srv: RedisServer) -> None:
    factory = redis_factory(redis_srv.url)
    keys = ScaledKeys("t", "HW")
    now = [0.0]
    first = Lease(factory, keys, "HW", "a", 0.3, monotonic=lambda: now[0])
    second = Lease(factory, keys, "HW", "b", 0.3)
    token_a = await first.acquire(lambda e: None)
    metrics = Metrics()
    pub = RedisPublisher(factory, keys, metrics)
    pub.fenced, pub.fence_token = True, token_a
    refused: list[int] = []
    pub.on_fenced = lambda: refused.append(1)
    pub.save_state("HW", {"saved_at": 1.0, "x": 1})
    await pub.flush(2.0)
    r = factory()
    assert orjson.loads(await r.get(keys.state("HW")))["x"] == 1
    # a paused owner: its lease runs out, the other process takes it with a higher token
    await r.delete(keys.lease("HW"))
    token_b = await second.acquire(lambda e: None)
    assert token_b == token_a + 1
    pub.save_state("HW", {"saved_at": 2.0, "x": 2})
    await pub.flush(2.0)
    assert refused == [1] and pub.fence_token is None
    assert orjson.loads(await r.get(keys.state("HW")))["x"] == 1, "the old owner's write went through"
    with pytest.raises(LeaseLost):
        await first.keep(lambda e: None)
    await first.release()  # not its lease any more: releasing it leaves the new owner's in place
    assert (await r.get(keys.lease("HW"))) == b"b"
    await second.release()
    assert await r.get(keys.lease("HW")) is None
    await pub.close()
    await r.aclose()


def test_the_compose_profile_runs_the_scaled_layout() -> None:
    compose = YAML(typ="safe").load((REPO / "deploy" / "docker-compose.scale.yml").read_text())
    services = compose["services"]
    assert {"redis", "ingest-1", "ingest-2", "engine-1", "engine-2", "notify", "prometheus", "grafana"} <= set(services)
    assert services["ingest-2"]["command"][-3] == "2/2"
    prom = YAML(typ="safe").load((REPO / "deploy" / "prometheus.scale.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert {"engine-1:9108", "engine-2:9108", "ingest-1:9110", "ingest-2:9110", "notify:9109"} <= targets


async def test_two_notifiers_share_the_index_stream_of_the_scaled_layout(redis_srv: RedisServer,
                                                                        tmp_path: Path) -> None:
    """Alerts written through the fenced outbox into the index's own stream reach Slack once each, with two
    notifier processes in one consumer group (their config says bus: redis)."""
    from hedgewatch.service.config import Config
    from hedgewatch.service.outbox import AlertSink
    from tests.chat_fakes import fake_chat
    from tests.support import wait_for
    from tests.test_notify import Worker, alert, config_dict, ids_in

    keys = ScaledKeys("hedgewatch", "HW")
    factory = redis_factory(redis_srv.url)
    lease = Lease(factory, keys, "HW", "engine-a", 5.0)
    token = await lease.acquire(lambda e: None)
    with fake_chat() as chat:
        workers = []
        for name in ("n1", "n2"):
            d = config_dict(redis_srv.url, chat, telegram=False, consumer_name=name)
            workers.append(Worker(Config.model_validate({**d, "bus": "redis", "index": {"name": "HW",
                                                                                          "constituents": ["BTC"]}})))
        sink = AlertSink(factory, keys, tmp_path / "outbox", 10_000, Metrics())
        sink.fenced, sink.fence_index = True, "HW"
        sink.set_fence(token)
        alerts = [alert(i) for i in range(10)]
        for a in alerts:
            sink.submit(a)
        sink.submit(alerts[3])  # the same alert again (a new owner re-emitting it): not added twice
        assert await sink.flush(5.0) == 10
        await wait_for(lambda: len(ids_in(chat.ok(), "/services/")) >= 10, what="10 alerts on Slack")
        for w in workers:
            await w.close()
        assert sorted(ids_in(chat.ok(), "/services/")) == sorted(a.id for a in alerts)
    r = factory()
    assert await r.xlen(keys.alerts_stream) == 10
    await r.aclose()
    await lease.release()

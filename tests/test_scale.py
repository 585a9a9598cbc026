"""The scaled layout end to end: two ``hedgewatch ingest`` shards and two ``hedgewatch run --bus redis``
engines (real subprocesses) against the stepped simulator and a real redis-server, beside the one-process
daemon on the same simulated prices.

The test steps the simulator; every process takes in the same frames. What the basket shows (level,
divisor, units, prices) must be the same in both layouts after each step, across a ``kill -9`` of the
owning engine (the standby takes over within two lease periods, restores the basket and the rule states,
and the alert stream holds each alert once), and across a SIGSTOP of the owner past its lease (the paused
owner publishes nothing when it wakes and steps down)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hedgewatch.connectors.simulator import Simulator
from hedgewatch.service.keys import Keys, ScaledKeys
from hedgewatch.service.redisconn import redis_factory
from tests.scale_support import INDEX, LEASE_S, Layout, Proc, basket, redis_cluster, same_basket, subscribed
from tests.stepped import stepped_simulator
from tests.support import RedisServer, wait_for

pytestmark = pytest.mark.slow

ONE, DIST = Keys("one"), ScaledKeys("hw", INDEX)
TAKEOVER_BOUND_S = 2 * LEASE_S + 1.5  # two lease periods, plus a process's poll and the test's own


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with stepped_simulator() as s:
        yield s


@pytest.fixture
async def layout(tmp_path: Path, sim: Simulator, redis_srv: RedisServer) -> AsyncIterator[Layout]:
    lay = Layout(tmp_path, sim, redis_srv.url)
    try:
        yield lay
    finally:
        await lay.close()


async def owner_of(*engines: Proc) -> Proc | None:
    for e in engines:
        st = await asyncio.to_thread(e.state)
        if st and (st.get("scale") or {}).get("role") == "owner":
            return e
    return None


class Harness:
    def __init__(self, lay: Layout, sim: Simulator, url: str) -> None:
        self.lay, self.sim = lay, sim
        self.redis = redis_factory(url)()
        self.one = redis_factory(lay.one_url or url)()

    async def both(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        return (basket(await self.one.get(ONE.state(INDEX))), basket(await self.redis.get(DIST.state(INDEX))))

    async def step_and_compare(self, steps: int) -> None:
        """Step; after each step both layouts show the same basket, moved from the last step's."""
        last = await self.both()
        for _ in range(steps):
            self.sim.step()

            async def moved_and_equal(prev: Any = last) -> bool:
                one, dist = await self.both()
                return one is not None and one != prev[0] and same_basket(one, dist)

            await until(self.lay, self.stepping(moved_and_equal), 10, "both layouts to show the same new basket",
                        self.both)
            last = await self.both()

    def stepping(self, predicate: Any, every_s: float = 0.7) -> Any:
        """``predicate``, with one more step whenever it has stayed false for ``every_s``: a step whose frames
        met a connection reconnecting after a quiet spell is followed by another."""
        loop = asyncio.get_running_loop()
        last = [loop.time()]

        async def check() -> bool:
            if await predicate():
                return True
            if loop.time() - last[0] >= every_s:
                self.sim.step()
                last[0] = loop.time()
            return False

        return check

    async def close(self) -> None:
        await self.redis.aclose()
        await self.one.aclose()

    async def alerts(self) -> list[str]:
        entries = await self.redis.xrange(DIST.alerts_stream)
        return [f[b"id"].decode() for _, f in entries]


async def start_layout(lay: Layout, sim: Simulator, url: str) -> tuple[Harness, list[Proc], list[Proc]]:
    """The one-process daemon builds the basket; the distributed layout starts from that basket (the state
    key, as a previous owner would have left it, without rule states), so both hold the same units and
    divisor and from then on must show the same level at the same prices."""
    lay.one_process()
    shards = [lay.ingest("1/2"), lay.ingest("2/2")]
    h = lay.harness = Harness(lay, sim, url)

    async def one_built() -> bool:
        sim.step()
        await asyncio.sleep(0.2)
        return (await h.both())[0] is not None

    await until(lay, one_built, 30, "the one-process daemon to build the index")
    raw = await h.one.get(ONE.state(INDEX))
    assert raw is not None
    saved = orjson.loads(raw)
    await h.redis.set(DIST.state(INDEX), orjson.dumps({"snapshot": saved["snapshot"], "saved_at": saved["saved_at"]}))
    engines = [lay.engine("e1"), lay.engine("e2")]

    async def feeds_up() -> bool:
        states = [await asyncio.to_thread(p.state) for p in shards]
        return all(s is not None and subscribed(s.get("feeds")) for s in states)

    await until(lay, feeds_up, 20, "every feed of the shards subscribed")
    await until(lay, lambda: owner_of(*engines), 10, "an engine to own the index")
    sim.step()  # prices every shard has subscribed to

    async def same() -> bool:
        one_b, dist_b = await h.both()
        return same_basket(one_b, dist_b)

    await until(lay, h.stepping(same), 10, "the owner to restore the basket and price it",
                lambda: h.both())
    return h, shards, engines


async def until(lay: Layout, predicate: Any, timeout: float, what: str,  # noqa: ASYNC109
                seen: Any = None) -> None:
    try:
        await wait_for(predicate, timeout, what)
    except AssertionError as exc:
        shown = "" if seen is None else f"\nlast seen: {await seen()}"
        raise AssertionError(f"{exc}{shown}\n{lay.logs()}") from None


async def test_shards_and_engines_match_one_process_through_kill_and_pause(
        layout: Layout, sim: Simulator, redis_srv: RedisServer) -> None:
    h, shards, engines = await start_layout(layout, sim, redis_srv.url)
    await h.step_and_compare(3)
    state = await asyncio.to_thread(shards[0].state)
    assert state is not None and state["shard"]["k"] == 1 and state["shard"]["sources"]
    await until(layout, lambda: h.alerts(), 5, "the owner to fire IndexUp")
    assert len(await h.alerts()) == 1

    # kill -9 of the owner: the standby takes over within two lease periods, continues the same basket
    owner = await owner_of(*engines)
    assert owner is not None
    standby = engines[1] if owner is engines[0] else engines[0]
    owner.kill9()
    t0 = time.monotonic()
    await until(layout, lambda: owner_of(standby), TAKEOVER_BOUND_S, "the standby to take over")
    took = time.monotonic() - t0
    assert took < TAKEOVER_BOUND_S
    await h.step_and_compare(3)
    ids = await h.alerts()
    assert len(ids) == len(set(ids)) == 1, f"an alert re-fired across the takeover: {ids}"

    # SIGSTOP of the new owner past its lease; a fresh standby takes over; SIGCONT: the old owner writes
    # nothing (its writes are fenced) and steps down
    fresh = layout.engine("e3")
    await wait_for(lambda: fresh.state(), 10, "the new engine to answer")
    paused = standby
    before = await asyncio.to_thread(paused.state)
    assert before is not None
    published = before["pipeline"]["redis"]["published"]
    paused.signal(signal.SIGSTOP)
    await until(layout, lambda: owner_of(fresh), TAKEOVER_BOUND_S, "takeover from the paused owner")
    sim.step()  # events the paused owner will find queued when it wakes
    paused.signal(signal.SIGCONT)

    async def stepped_down() -> bool:
        st = await asyncio.to_thread(paused.state)
        return st is not None and st["scale"]["role"] == "standby"

    await until(layout, stepped_down, 2 * LEASE_S, "the paused owner to step down")
    after = await asyncio.to_thread(paused.state)
    assert after is not None
    assert after["pipeline"]["redis"]["published"] == published, "the paused owner published after its lease"
    assert after["scale"]["losses"] == 1
    await h.step_and_compare(2)
    ids = await h.alerts()
    assert len(ids) == len(set(ids)) == 1, f"an alert re-fired across the takeovers: {ids}"


async def test_ingest_shard_restart_marks_sources_stale_and_recovers(
        layout: Layout, sim: Simulator, redis_srv: RedisServer) -> None:
    _, shards, engines = await start_layout(layout, sim, redis_srv.url)
    owner = await owner_of(*engines)
    assert owner is not None
    st = await asyncio.to_thread(shards[1].state)
    assert st is not None
    lost = {a for syms in st["shard"]["sources"].values() for a in syms}
    shards[1].kill9()
    t0 = time.monotonic()

    async def stale() -> bool:
        sim.step()
        s = await asyncio.to_thread(owner.state)
        oracle = (s or {}).get("market", {}).get("oracle", {})
        return bool(oracle) and all(oracle[a]["status"] == "stale" for a in lost)

    await until(layout, stale, 5.0 + 3.0, "the engine to mark the dead shard's sources stale")
    assert time.monotonic() - t0 < 5.0 + 3.0  # oracle.max_age_s and a tick
    layout.ingest("2/2")

    async def recovered() -> bool:
        sim.step()
        s = await asyncio.to_thread(owner.state)
        oracle = (s or {}).get("market", {}).get("oracle", {})
        return bool(oracle) and all(oracle[a]["status"] != "stale" for a in lost)

    await until(layout, recovered, 20, "the sources to recover when the shard returns")
    assert owner.proc is not None and owner.proc.poll() is None


async def test_on_a_redis_cluster(tmp_path: Path, sim: Simulator, redis_srv: RedisServer) -> None:
    with redis_cluster(tmp_path) as cluster:
        lay = Layout(tmp_path, sim, cluster.url, one_url=redis_srv.url)
        try:
            h, _, engines = await start_layout(lay, sim, cluster.url)
            await h.step_and_compare(2)
            await until(lay, lambda: h.alerts(), 5, "the owner to fire IndexUp")
            owner = await owner_of(*engines)
            assert owner is not None
            owner.kill9()
            standby = engines[1] if owner is engines[0] else engines[0]
            await until(lay, lambda: owner_of(standby), TAKEOVER_BOUND_S, "takeover on the cluster")
            await h.step_and_compare(2)
            ids = await h.alerts()
            assert len(ids) == len(set(ids)) == 1, ids
            # every key of the index in one slot
            slots = {await h.redis.cluster_keyslot(k) for k in (DIST.state(INDEX), DIST.fence(INDEX),
                                                                  DIST.alerts_stream, DIST.alert_ids)}
            assert len(slots) == 1
        finally:
            await lay.close()


def test_events_round_trip_in_one_entry() -> None:
    from hedgewatch.service.events import CompositeIndex, FeedStatus, MarkPrice, Quote
    from hedgewatch.service.scale import decode, encode

    evs = [Quote("binanceusdm", "BTC", "BTCUSDT", 1.0, 2.0, 3.0, 4.0),
           CompositeIndex("binanceusdm", "DEFIUSDT", 1.0, (("AAVE", 1.5, 0.5),), 1.0, 2.0),
           FeedStatus("okx", "", "connected", "", 1.0), MarkPrice("bybit", "ETH", "ETHUSDT", 1.0, None, 2.0, 3.0)]
    assert decode(encode(evs)) == evs
    with pytest.raises(ValueError, match="not an event batch"):
        decode(orjson.dumps([1, 2]))


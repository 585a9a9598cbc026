"""A crash right after a rule fired, with Redis unable to take the state: the restart neither loses the
firing nor repeats it or its hedge action.

Redis is stopped before ``FundingHot`` fires, so the state the daemon saves at the transition cannot reach
Redis; the daemon is then killed (its task cancelled mid-run: no shutdown, no final state, no local copy)
and Redis comes back empty. What survives is the outbox, where the alert and the state it was raised with
are one fsynced record. Before state was persisted with each transition, the restart found no state,
fired ``FundingHot`` a second time and applied its +30 points again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from hedgewatch.connectors.simulator import Simulator
from hedgewatch.service.outbox import Outbox
from hedgewatch.service.statefile import state_path
from tests.support import RedisServer, wait_for
from tests.test_restart_daemon import FIRES, INDEX, KEYS, Running, daemon_config, firing, stream_alerts
from tests.test_restart_daemon import sim as sim  # the fixture


async def test_a_crash_after_a_firing_neither_loses_nor_repeats_it(sim: Simulator, redis_srv: RedisServer,
                                                                   tmp_path: Path) -> None:
    cfg = daemon_config(sim, redis_srv.url, tmp_path)
    outbox = Path(cfg.redis.outbox_dir)
    one = Running(sim, cfg)
    await one.__aenter__()
    await one.warm_up()
    assert one.rule(FIRES).state == "pending"
    redis_srv.stop()
    await one.step_until(lambda: one.rule(FIRES).state == "firing", 300, f"{FIRES} firing")
    assert one.daemon.rules.engine.ratio == pytest.approx(0.5)  # 20% + 30 points
    fired_at = one.rule(FIRES).fired_at
    await wait_for(lambda: one.daemon.alerts is not None and one.daemon.alerts._outbox.written >= 1,
                   what="the alert fsynced in the outbox")
    # the crash: the process dies here, before any snapshot or stop could save the state
    assert one.task is not None
    one.task.cancel()
    await asyncio.gather(one.task, return_exceptions=True)
    assert not state_path(outbox, INDEX).exists()
    kept = Outbox(outbox).load()
    assert [orjson.loads(r.payload)["labels"]["alertname"] for r in kept] == [FIRES]

    redis_srv.start()  # same port, empty: it keeps nothing
    r = aioredis.Redis.from_url(redis_srv.url)
    try:
        async with Running(sim, cfg) as two:
            # restored from the outbox before anything was evaluated
            assert two.rule(FIRES).state == "firing" and two.rule(FIRES).fired_at == fired_at
            assert two.daemon.rules.engine.ratio == pytest.approx(0.5)
            await two.warm_up()
            await two.step_until(lambda: two.now - fired_at >= 180, 300, "three minutes after the firing")
            assert two.rule(FIRES).state == "firing" and two.rule(FIRES).fired_at == fired_at
            assert two.daemon.rules.engine.ratio == pytest.approx(0.5)  # +30 points applied once
            await wait_for(lambda: two.daemon.alerts is not None and two.daemon.alerts.pending == 0,
                           what="the outbox delivered")
            await two.stop()
        alerts = await stream_alerts(r)
        assert len(firing(alerts, FIRES)) == 1, [(a["labels"]["alertname"], a["status"]) for a in alerts]
        saved = orjson.loads(await r.get(KEYS.state(INDEX)))
        assert saved["rules"]["engine"]["ratio"] == pytest.approx(0.5)
    finally:
        await r.aclose()

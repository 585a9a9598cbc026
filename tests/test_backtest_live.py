"""The backtest and the live daemon on the same data give the same advice at the same bar.

The four-phase story's history (fetched from the simulator) is replayed twice: by ``run_backtest``, and
into a running ``Daemon`` (its bus fed with the very events of each bar, its clock at the bar's close,
Redis real), whose hedge recommendations and alerts are read back from Redis. The rules here read the
price, configured levels, funding and open interest (no kline history, which the daemon would fetch from
the venues at start instead of reading the files). The daemon's own scheduled tick is held off so that
both evaluate once per bar after its events, as the backtest does.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

import hedgewatch.service.app as app
from hedgewatch.service.app import Daemon
from hedgewatch.service.backtest.replay import Replay
from hedgewatch.service.backtest.run import backtest_config, run_backtest, venues_of
from hedgewatch.service.history.files import load_history
from hedgewatch.service.keys import Keys
from tests.stepped import settle
from tests.support import RedisServer, free_port, wait_for
from tests.test_backtest_four_phase import END_S, play_and_fetch
from tests.test_four_phase_daemon import Collector

PREFIX = "hwbt"
RULES = """
groups:
  - name: same
    rules:
      - name: HotIntoResistance
        expr: price >= level("R1") * 0.98 and funding >= 0.0004 and oi_change("15m") > 0.01
        for: 5m
        resolve: funding < 0.0002
        action: {adjust_hedge: +30%}
      - name: BelowStart
        expr: price < level("B")
        for: 2m
        resolve: price > level("B") * 1.01
        action: {raise_hedge_to: 30%}
      - name: NegativeAtSupport
        expr: funding < 0 and price <= level("S1") * 1.02
        for: 5m
        action: {lower_hedge_to: 10%}
"""


def iso_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_backtest_and_daemon_advise_alike(tmp_path: Path, redis_srv: RedisServer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data"
    cfg, start = await play_and_fetch(folder)
    (tmp_path / "rules.yaml").write_text(RULES)
    rules = cfg.rules.model_copy(update={"files": (str(tmp_path / "rules.yaml"),),
                                         "levels": {**cfg.rules.levels, "B": 1000.0}})
    cfg = cfg.model_copy(update={"rules": rules})
    history = load_history(folder)
    end = start + END_S
    res = run_backtest(cfg, history, start, end)
    tr = res.tracks["configured"]

    # the same config, its oracle on the bars' resolution, with Redis, into the daemon
    live = backtest_config(cfg, 60)
    live = live.model_copy(update={
        "redis": live.redis.model_copy(update={"url": SecretStr(redis_srv.url), "prefix": PREFIX,
                                               "outbox_dir": str(tmp_path / "outbox")}),
        "http": live.http.model_copy(update={"port": free_port()}),
        "index": live.index.model_copy(update={"publish_interval_s": 0.0}),
        # the backtest takes every advice as done: so does this live user
        "portfolio": live.portfolio.model_copy(update={"assume_executed": True})})
    monkeypatch.setattr(app, "TICK_INTERVAL_S", 3600.0)
    now = [start]
    daemon = Daemon(live, clock=lambda: now[0])
    daemon.connectors = []  # the test is the feed: each bar's events go straight onto the bus
    keys = Keys(PREFIX)
    collector = Collector(redis_srv.url, [keys.hedge_channel(live.index.name)])
    replay = Replay(history, venues_of(live, sorted(history.assets())), 60, start, end)
    stop, subscribed = asyncio.Event(), asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(collector.run(subscribed), name="collector")
            await subscribed.wait()
            run = tg.create_task(daemon.run(stop), name="daemon")
            await daemon.started.wait()
            for t in replay.times():
                now[0] = t
                for ev in replay.events(t):
                    daemon.bus.put(ev)
                await settle(daemon)
            # the alerts reach the durable stream through the sink's own task: let it deliver them all
            for _ in range(400):
                if await collector.redis.xlen(keys.alerts_stream) >= len(tr.firings):
                    break
                await asyncio.sleep(0.05)
            stop.set()
            assert await run == 0
            hedges = collector.messages[keys.hedge_channel(live.index.name)]
            await wait_for(lambda: len(hedges) >= len(tr.advice), 20, "the recommendations over Redis")
            listener.cancel()
        entries = await collector.redis.xrange(keys.alerts_stream)
    finally:
        await collector.close()
    alerts = [orjson.loads(fields[b"alert"]) for _, fields in entries]

    # the same advice at the same bar: time, reason, ratio, contracts
    def advice(rows: list[dict]) -> list[tuple]:  # type: ignore[type-arg]
        return [(r["ts"], r["reason"], round(r["ratio"], 9), r["target_contracts"]) for r in rows]

    assert len(tr.advice) == 3
    assert advice(hedges) == advice(tr.advice)
    # the same alerts at the same bars
    def when(a: dict) -> float:  # type: ignore[type-arg]
        keys_ = ("endsAt", "ends_at") if a["status"] == "resolved" else ("startsAt", "starts_at")
        return iso_ts(next(a[k] for k in keys_ if a.get(k)))

    rule = [(a.get("labels", {}).get("alertname") or a.get("rule"), a["status"], when(a)) for a in alerts]
    assert rule == [(f["rule"], f["status"], f["ts"]) for f in tr.firings]
    assert [f["rule"] for f in tr.firings if f["status"] == "firing"] == [
        "HotIntoResistance", "BelowStart", "NegativeAtSupport"]

    # the daemon's ledger took the advice as executed at the same bars and prices: the same account
    led = daemon.engine.primary.ledger
    assert led.position == -10 == res.ledgers["configured"]["position_contracts"]
    assert led.pnl_usd == pytest.approx(res.ledgers["configured"]["pnl_usd"])
    daemon.engine.primary.export(daemon.metrics)  # the daemon's scheduled export was held off with its tick
    metrics = daemon.metrics.render().decode()
    assert 'hedgewatch_hedge_position_contracts{index="FOUR"} -10.0' in metrics
    assert 'hedgewatch_portfolio_value_usd{index="FOUR",view="hedged"}' in metrics
    state = daemon.state()["ledger"]
    assert state["position_contracts"] == -10 and state["changes"] == 2

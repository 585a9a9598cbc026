"""The daemon: wiring of connectors → bus → pricing core → outputs, its tasks, readiness and shutdown.

Every task lives in one ``asyncio.TaskGroup`` and has a name. Shutdown (SIGTERM/SIGINT or ``stop``):
intake stops (connector tasks cancelled, the bus closed), the pipeline drains what is queued under a
deadline, the last snapshot and state are flushed to Redis under a deadline, the remaining tasks are
cancelled, stragglers are named, and one summary line is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hedgewatch.connectors import Connector, build_connector
from hedgewatch.connectors.klines import fetch_history, plan, supports
from hedgewatch.service import statefile
from hedgewatch.service.alerts import Alert
from hedgewatch.service.balances import fetch_balances
from hedgewatch.service.bus import MemoryBus
from hedgewatch.service.clock import SteadyClock
from hedgewatch.service.commands import CommandError, CommandReader
from hedgewatch.service.config import Config
from hedgewatch.service.engine import Engine
from hedgewatch.service.errors import ClosedError, ConfigError, FeedError, Problem, RejectedMessage, SecretError
from hedgewatch.service.events import Event
from hedgewatch.service.http import HttpServer
from hedgewatch.service.keys import keys_for
from hedgewatch.service.market_metrics import GaugeExporter
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.outbox import AlertSink
from hedgewatch.service.ownership import Ownership
from hedgewatch.service.position import AckError
from hedgewatch.service.publisher import RedisPublisher
from hedgewatch.service.redisconn import is_cluster, parse_redis_url, redacted, redis_factory
from hedgewatch.service.scale import StreamReader, streams_for
from hedgewatch.service.selection import SelectionFeed

log = logging.getLogger("hedgewatch")

TICK_INTERVAL_S = 0.25
EXPORT_INTERVAL_S = 1.0
BATCH_MAX = 4096


@dataclass
class Deadlines:
    """Shutdown budget. The phases run one after another, the final writes to Redis and to the outbox side
    by side, each bounded by its own deadline and by what is left of ``total_s``; every Redis client is then
    closed within 0.5 s, which ends any call still in flight on a Redis that does not answer. So a stop takes
    at most ``total_s`` plus that close, inside the 5 s a stop may take, whatever Redis does."""

    feeds_s: float = 0.5
    drain_s: float = 1.0
    flush_s: float = 1.5
    cancel_s: float = 0.5
    total_s: float = 4.0


@dataclass
class Stats:
    started: float = field(default_factory=time.time)
    events: int = 0
    index_updates: int = 0
    snapshots: int = 0


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        # ages, silences, "for" and cooldowns are differences of this clock: by default one that a step of
        # the wall clock cannot move (service/clock.py); tests and the backtest inject their own
        self.steady: SteadyClock | None = clock if isinstance(clock, SteadyClock) else None
        if clock is None:
            clock = self.steady = SteadyClock()
        self.clock = clock
        self.deadlines = deadlines or Deadlines()
        self.index_name = config.index.name
        # the scaled layout: events from the Redis streams of `hedgewatch ingest` shards, the index owned
        # through a lease (service/ownership.py), every Redis name hash-tagged by index
        self.scaled = config.bus == "redis"
        self.keys = keys_for(config.redis.prefix, self.index_name, self.scaled)
        self.bus: MemoryBus[Event] = MemoryBus(config.ingest_queue_size, name="ingest")
        # the synchronous engine (market, rules, hedge sizing, ledger) the backtest drives too
        self.engine = Engine(config, clock())
        self.market = self.engine.market
        self.market_exporter = GaugeExporter()
        self.rules = self.engine.rules
        self.selection = SelectionFeed.for_config(config, self.market, clock=clock, on_change=self._touched)
        self.connectors: list[Connector] = [] if self.scaled else [
            build_connector(src, self.bus.put, self.metrics, clock=clock) for src in config.sources if src.enabled
        ]
        url = config.redis.resolved_url()
        if self.scaled and not url:
            raise ConfigError([Problem("<config>", None, None, "redis.url",
                                       "bus: redis (run --bus redis) reads the events from Redis: redis.url is "
                                       "required")])
        self.metrics.redis_known(bool(url))
        self.metrics.scaled_known(self.index_name if self.scaled else None)
        self.metrics.rules_known(r.name for r in self.rules.engine.rules)
        self.publisher: RedisPublisher | None = None
        if url:
            self.publisher = RedisPublisher(
                redis_factory(url),
                self.keys,
                self.metrics,
                where=redacted(url),
                hedge_capacity=config.redis.hedge_queue_size,
                heartbeat_interval_s=config.redis.heartbeat_interval_s,
                heartbeat_ttl_s=config.redis.heartbeat_ttl_s,
                healthy=self._healthy,
                clock=clock,
            )
        self.alerts: AlertSink | None = None
        if url:
            self.alerts = AlertSink(
                redis_factory(url), self.keys, Path(config.redis.outbox_dir), config.redis.stream_maxlen,
                self.metrics, clock,
            )
        self.role: Ownership | None = None
        self._candles: list[Any] = []  # the kline history, for the fresh engine after a step-down
        if self.scaled and url:
            self.role = self._ownership(url)
        self.http = HttpServer(
            config.http.host, config.http.port, self.metrics, ready=self._readiness, state=self.state,
            rebalance=self.rebalance, hedge_ack=self.hedge_ack, settings=config.http,
        )
        self.commands: CommandReader | None = None
        if url:
            self.commands = CommandReader(redis_factory(url), self.keys, self.command)
        self.stats = Stats(started=clock())
        self.state_file = statefile.state_path(config.redis.outbox_dir, self.index_name)
        self.state_dir = os.path.abspath(config.redis.outbox_dir)  # the outbox and state copy, as shown
        self._saved: dict[str, Any] | None = None  # the last persisted state, copied to state_file at stop
        self.started = asyncio.Event()
        self._dirty = False  # the index changed since the last publish
        self._newest_tick: float | None = None
        self._last_publish = 0.0
        self._last_eval = 0.0
        self._dropped_exported = 0
        self._grace_logged = False
        self.metrics.queue_capacity.labels("ingest").set(self.bus.capacity)

    def _ownership(self, url: str) -> Ownership:
        from hedgewatch.service.ingest import process_name

        cfg = self.config
        factory = redis_factory(url)
        holder = process_name(cfg)
        assets = {s for src in cfg.sources if src.enabled for s in src.symbols} | set(cfg.index.constituents)
        if cfg.index.track:
            assets.add(cfg.index.track)
        reader = StreamReader(factory, streams_for(self.keys, assets), self.bus.put,
                              cluster=is_cluster(parse_redis_url(url)), count=cfg.scale.batch_max,
                              on_error=lambda exc: self.metrics.redis_errors.inc())
        role = Ownership(factory, self.keys, self.index_name, holder, lease_s=cfg.scale.lease_s, reader=reader,
                         metrics=self.metrics, replay_s=cfg.oracle.max_age_s, take_over=self._take_over,
                         step_down=self._step_down, owned=self._owned_tasks)
        assert self.publisher is not None and self.alerts is not None
        self.publisher.fenced = True
        self.publisher.on_fenced = role.fenced
        self.publisher.heartbeat_key = self.keys.process_heartbeat("engine", holder)
        self.alerts.fenced = True
        self.alerts.fence_index = self.index_name
        self.alerts.on_fenced = role.fenced
        self.alerts.ids_ttl_ms = int(cfg.scale.alert_ids_ttl_s * 1000)
        return role

    @property
    def owning(self) -> bool:
        """This process runs the index now: always in one process; in the scaled layout while it holds the
        lease."""
        return self.role is None or self.role.owning

    async def _take_over(self, token: int) -> None:
        """The lease is ours: restore the index from Redis, then let the fenced writes through."""
        assert self.publisher is not None and self.alerts is not None
        await self._restore()
        self.publisher.fence_token = token
        self.alerts.set_fence(token)
        self._last_publish = self._last_eval = 0.0

    def _step_down(self) -> None:
        """The lease is gone: write nothing more, forget the market, start over as a standby."""
        if self.publisher is not None:
            self.publisher.fence_token = None
        if self.alerts is not None:
            self.alerts.set_fence(None)
        self.bus.clear()
        now = self.clock()
        self.engine = Engine(self.config, now)
        self.market = self.engine.market
        self.rules = self.engine.rules
        if self._candles:
            self.engine.bootstrap(self._candles)
        self._saved = None
        self._dirty = False
        self._grace_logged = False

    def _owned_tasks(self) -> list[tuple[str, Any]]:
        """The tasks only the owner runs, besides the stream readers."""
        return [] if self.commands is None else [("commands", self.commands.run())]

    # --- views -----------------------------------------------------------------------------------------

    def _touched(self, now: float) -> None:
        self._dirty = True

    def _healthy(self) -> bool:
        return not self.bus.closed

    def _readiness(self) -> tuple[bool, dict[str, Any]]:
        ready = self.market.ready
        return ready, {"index": self.index_name, "level": self.market.level}

    def state(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "ts": now,
            "uptime_s": now - self.stats.started,
            "state_dir": None if self.alerts is None else self.state_dir,
            "market": self.market.state(now),
            "rules": self.rules.state(),
            "position": self.rules.hedge.positions.view(),
            "ledger": self.engine.primary.state(),
            "feeds": {c.name: c.status() for c in self.connectors},
            "selection": None if self.selection is None else self.selection.status(),
            "scale": None if self.role is None else self.role.state(),
            "pipeline": {
                "events": self.stats.events,
                "index_updates": self.stats.index_updates,
                "queue_depth": len(self.bus),
                "queue_capacity": self.bus.capacity,
                "queue_dropped": self.bus.dropped,
                "redis": None
                if self.publisher is None
                else {"connected": self.publisher.connected, "published": self.publisher.published,
                      "server": self.publisher.where},
            },
        }

    def rebalance(self) -> dict[str, Any]:
        """An on-demand rebalance (``POST /rebalance``): units change, the divisor keeps the level
        continuous, and the new composition is published with the next snapshot."""
        now = self.clock()
        done = self.owning and self.market.rebalance_now(now)
        if done:
            self._dirty = True
            log.info("index %s rebalanced on demand", self.index_name)
        snap = self.market.snapshot(now)
        weights = {a: c.get("weight") for a, c in snap.get("constituents", {}).items()}
        return {"rebalanced": done, "index": self.index_name, "level": snap.get("level"), "weights": weights,
                **({} if done else {"reason": "the index is not built yet"})}

    def hedge_ack(self, body: dict[str, Any], by: str) -> dict[str, Any]:
        """The user did the open advice, or states what is held (``POST /hedge/ack``, ``hedgewatch hedge
        ack``, the Redis command stream). The new belief is persisted at once and the advice republished in
        its new state; the next evaluation advises from it. AckError when it cannot be applied."""
        index = body.get("index")
        if not self.owning:
            raise AckError(f"this process stands by for index {self.index_name}; its owner takes acknowledgements")
        if index not in (None, self.index_name):
            raise AckError(f"unknown index {index!r} (this daemon runs {self.index_name})")
        contracts = body.get("contracts")
        if contracts is not None and (isinstance(contracts, bool) or not isinstance(contracts, int | float)):
            raise AckError("contracts must be a number (a short of 50 is -50)")
        advice_id = body.get("advice_id")
        if advice_id is not None and not isinstance(advice_id, str):
            raise AckError("advice_id must be a string")
        now = self.clock()
        hedge = self.rules.hedge
        result = hedge.ack(None if contracts is None else float(contracts), advice_id, by[:64], now)
        pos = result.position
        log.info("hedge %s: position %g contracts acknowledged by %s%s", self.index_name, pos.contracts, pos.by,
                 f" (advice {result.advice.id} {result.advice.state})" if result.advice else "")
        if result.advice is not None and self.publisher is not None:
            self.publisher.publish_hedge(self.index_name, hedge.message(hedge.last, result.advice))
        self.engine.primary.follow_position(now)
        self._persist_now(now)
        return {"index": self.index_name, "position": hedge.positions.view(),
                "advice": None if result.advice is None else result.advice.to_dict()}

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """One command from the Redis command stream."""
        if cmd.get("command") != "hedge_ack":
            raise CommandError(f"unknown command {str(cmd.get('command'))[:32]!r}")
        by = cmd.get("by")
        return self.hedge_ack(cmd, by if isinstance(by, str) and by else "redis")

    def _persist_now(self, now: float) -> None:
        """Save the state now (a position or advice changed), not at the next snapshot."""
        if self.publisher is None:
            return
        self._saved = self._persisted(self.market.snapshot(now), now)
        self.publisher.save_state(self.index_name, self._saved)

    # --- stages ----------------------------------------------------------------------------------------

    async def _pipeline(self) -> None:
        """Consume the bus in batches; every index change is timed and, when due, published."""
        observe = self.metrics.tick_to_index.observe
        bus = self.bus
        interval = self.config.index.publish_interval_s
        eval_interval = self.config.rules.eval_interval_s
        while True:
            try:
                batch = await bus.get_batch(BATCH_MAX)
            except ClosedError:
                return
            if not self.owning:
                continue  # read before a step-down: the next owner reads these again
            step = self.engine.apply_batch(batch)
            first_change = step.first_change
            self.stats.events += len(batch)
            if first_change is None:
                continue
            now = self.clock()
            # the batch's oldest changing tick waited longest: observing it keeps the histogram honest
            observe(now - first_change)
            self.stats.index_updates += 1
            self._newest_tick = step.newest_change
            self._dirty = True
            if now - self._last_eval >= eval_interval:
                self._evaluate(now)
            if now - self._last_publish >= interval:
                self._publish(now)

    def _evaluate(self, now: float) -> None:
        """Evaluate the rules on the current snapshot; alerts go to the durable sink, a hedge
        recommendation to its channel."""
        self._last_eval = now
        result = self.engine.evaluate(now)[0]
        self._emit_all(result.alerts, now)
        if result.hedge is not None:
            h = result.hedge
            log.info("hedge %s (%s): ratio %s -> %s, target %s contracts (%s USD), trade %s %s", self.index_name,
                     h.get("reason"), h.get("from_ratio"), h.get("ratio"), h.get("target_contracts"),
                     h.get("target_notional_usd"), h.get("side"), h.get("trade_contracts"))
            if self.publisher is not None:
                self.publisher.publish_hedge(self.index_name, h)

    def _transitions(self, now: float) -> None:
        """Source and oracle transitions: logged, and handed to the event rules once the asset has been
        priced normally: sources arriving one by one at start-up are not an outage."""
        logged, alerts = self.engine.transitions(now)
        for d in logged:
            log.info("%s %s %s: %s -> %s (%s)", d["kind"], d["asset"], d.get("source") or "", d["old"],
                     d["new"], d["reason"])
        self._emit_all(alerts, now)

    def _emit_all(self, alerts: list[Alert], now: float) -> None:
        """The alerts of one step, with the state that step left: the last alert carries it into the
        outbox, where it is durable together with the alert (one fsynced record), and it goes to Redis at
        once too. A crash at any instant then restarts either before the transition (no alert, the rule
        fires again) or after it (the alert and its state), never with the alert out and the state behind,
        which would fire it twice and apply its hedge action twice."""
        if not alerts:
            return
        state = None
        if self.alerts is not None:
            self._persist_now(now)
            state = orjson.dumps(self._saved) if self._saved is not None else None
        for i, alert in enumerate(alerts):
            self.metrics.alerts.labels(alert.rule, alert.status).inc()
            log.warning("alert %s %s [%s]: %s", alert.status, alert.rule, alert.severity, alert.summary)
            if self.alerts is not None:
                self.alerts.submit(alert, state if i == len(alerts) - 1 else None)

    def _publish(self, now: float) -> None:
        self._dirty = False
        self._last_publish = now
        if self.publisher is None:
            return
        snap = self.market.snapshot(now)
        self.publisher.publish_snapshot(self.index_name, snap, self._newest_tick)
        self._saved = self._persisted(snap, now)
        self.publisher.save_state(self.index_name, self._saved)
        self.stats.snapshots += 1

    def _persisted(self, snap: dict[str, Any], now: float) -> dict[str, Any]:
        return {"snapshot": snap, "rules": self.rules.dump_state(), "ledger": self.engine.primary.dump(),
                "saved_at": now}

    async def _ticker(self) -> None:
        """Staleness, scheduled work, throttled publishing and metric export, on a fixed cadence."""
        next_export = 0.0
        interval = self.config.index.publish_interval_s
        while True:
            await asyncio.sleep(TICK_INTERVAL_S)
            now = self.clock()
            if not self.owning:
                if now >= next_export:
                    self._export_standby()
                    next_export = now + EXPORT_INTERVAL_S
                continue
            if self.engine.tick(now):
                self._dirty = True
            self._transitions(now)
            self._grace(now)
            if now - self._last_eval >= max(self.config.rules.eval_interval_s, TICK_INTERVAL_S):
                # time-based conditions ("for", staleness) progress even when no tick moves the index
                self._evaluate(now)
            if self._dirty and now - self._last_publish >= interval:
                self._publish(now)
            if now >= next_export:
                self._export(now)
                next_export = now + EXPORT_INTERVAL_S

    def _grace(self, now: float) -> None:
        """End the start-up grace once every configured source has priced every constituent it lists (or
        log, once, what had not when ``rules.startup_grace_s`` ran out)."""
        if self._grace_logged:
            return
        if not self.engine.in_grace:
            self._grace_logged = True
            waiting = self._unpriced()
            log.info("start-up grace over after %.0f s%s", self.config.rules.startup_grace_s,
                     f"; not yet priced: {', '.join(waiting)}" if waiting else "")
            return
        if not self._unpriced():
            self.engine.end_grace()
            self._grace_logged = True
            log.info("start-up grace over after %.1f s: every source priced its assets", now - self.stats.started)

    def _unpriced(self) -> list[str]:
        """The constituents some configured source has not priced yet."""
        out = []
        members = self.market.members or frozenset(self.config.index.constituents)
        if not members:
            return ["the index's constituents"]
        for asset in sorted(members):
            expected = sum(1 for s in self.config.sources if s.enabled and asset in s.symbols)
            o = self.market.oracle(asset)
            if o is None or o.n_valid < expected:
                out.append(asset)
        return out

    def _check_clock(self) -> None:
        """Log and export a step of the wall clock (the daemon's own clock does not follow it)."""
        if self.steady is None:
            return
        step = self.steady.check()
        self.metrics.clock_offset.set(round(self.steady.offset, 3))
        if step is not None:
            self.metrics.clock_steps.inc()
            log.warning("the wall clock stepped %+.1f s (now %+.1f s from the daemon's steady clock); ages, "
                        "silences and rule durations keep real elapsed time, shown times stay on the start's "
                        "time line", step, self.steady.offset)

    def _export_standby(self) -> None:
        self._check_clock()
        if self.role is not None:
            self.role.export()

    def _export(self, now: float) -> None:
        self._check_clock()
        if self.role is not None:
            self.role.export()
        self.market_exporter.export(self.market, self.metrics, now)
        self.rules.export(self.metrics)
        self.engine.primary.export(self.metrics)
        m = self.metrics
        m.queue_depth.labels("ingest").set(len(self.bus))
        m.queue_dropped.labels("ingest").inc(self.bus.dropped - self._dropped_exported)
        self._dropped_exported = self.bus.dropped
        m.ready.set(1 if self.market.ready else 0)
        if self.publisher is not None:
            m.queue_depth.labels("redis_hedge").set(len(self.publisher._hedges))

    # --- lifecycle -------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set; returns the process exit code."""
        self.metrics.up.set(1)
        self.metrics.start_time.set(self.stats.started)
        await self.http.start()
        if self.publisher is not None and self.role is None:
            await self._restore()
        try:
            async with asyncio.TaskGroup() as tg:
                feeds = [tg.create_task(_supervised(c), name=f"feed:{c.name}") for c in self.connectors]
                pipeline = tg.create_task(self._pipeline(), name="pipeline")
                others = [tg.create_task(self._ticker(), name="ticker"),
                          tg.create_task(self._history(), name="history")]
                if self.selection is not None:
                    others.append(tg.create_task(self.selection.run(), name="selection"))
                writer = None
                if self.publisher is not None:
                    writer = tg.create_task(self.publisher.run(), name="redis-publisher")
                if self.alerts is not None:
                    others.append(tg.create_task(self.alerts.run(), name="alert-sink"))
                if self.commands is not None and self.role is None:
                    others.append(tg.create_task(self.commands.run(), name="commands"))
                if self.role is not None:
                    others.append(tg.create_task(self.role.run(), name="ownership"))
                if self.config.portfolio.balances is not None:
                    others.append(tg.create_task(self._balances(), name="balances"))
                self.started.set()
                log.info(
                    "running index %s over %s; http %s:%d%s",
                    self.index_name, f"{len(self.connectors)} sources" if self.role is None else
                    f"the Redis event streams, standing by for its lease as {self.role.holder}",
                    self.http.host, self.http.port,
                    "" if self.alerts is None else f"; outbox and state copy in {self.state_dir}",
                )
                await stop.wait()
                await self._shutdown(feeds, pipeline, writer, others)
        finally:
            await self.http.close()
            if self.publisher is not None:
                await self.publisher.close()
            self.metrics.up.set(0)
        return 0

    async def _balances(self) -> None:
        """Poll the venue's read-only balances and hedge position (the source of truth when configured) at
        ``poll_s``; a failure is logged once until the next success and retried with a growing pause."""
        cfg = self.config.portfolio.balances
        assert cfg is not None
        hedge = self.rules.hedge
        failing = False
        pause = cfg.poll_s
        while True:
            try:
                got = await fetch_balances(cfg, os.environ)
            except (FeedError, SecretError) as exc:
                if not failing:
                    log.warning("balances from %s unavailable: %s; the position stays %g (%s)", cfg.exchange,
                                exc, hedge.position, hedge.positions.position.source)
                failing = True
                pause = min(pause * 2, max(cfg.poll_s, 600.0))
            else:
                if failing:
                    log.info("balances from %s readable again", cfg.exchange)
                failing, pause = False, cfg.poll_s
                now = self.clock()
                if got.holdings:
                    hedge.set_holdings(got.holdings)
                if got.position_contracts is not None:
                    moved = got.position_contracts != hedge.position
                    adv = hedge.set_position(got.position_contracts, now)
                    if moved:
                        log.info("hedge %s: the venue reports %g contracts", self.index_name, hedge.position)
                    if adv is not None and self.publisher is not None:
                        self.publisher.publish_hedge(self.index_name, hedge.message(hedge.last, adv))
                    if moved or adv is not None:
                        self.engine.primary.follow_position(now)
                        self._persist_now(now)
            await asyncio.sleep(pause)

    async def _history(self) -> None:
        """Bootstrap the indicators from the venues' kline history: each asset from the first source that
        serves it; a failing source hands over to the next; with none reachable, retry with capped backoff
        (the rules meanwhile report the missing history as unavailable signals)."""
        constituents = self.config.index.constituents or tuple(
            {a for src in self.config.sources for a in src.symbols})
        remaining = plan(self.rules.history_needed(), constituents)
        backoff = 2.0
        failed: set[str] = set()  # sources whose failure was logged: later ones fold into one line per retry
        while remaining:
            for src in self.config.sources:
                wanted = {a: n for a, n in remaining.items() if a in src.symbols}
                if not (src.enabled and supports(src.exchange) and wanted):
                    continue
                try:
                    candles = await fetch_history(src, wanted, clock=self.clock)
                except (FeedError, RejectedMessage) as exc:
                    if src.source_id not in failed:
                        failed.add(src.source_id)
                        log.warning("kline history from %s failed: %s", src.source_id, exc)
                    continue
                self.engine.bootstrap(candles)
                if self.role is not None:
                    self._candles.extend(candles)
                got = {c.asset for c in candles}
                remaining = {a: n for a, n in remaining.items() if a not in got}
                log.info("indicators bootstrapped with %d klines from %s (%s)", len(candles), src.source_id,
                         ", ".join(sorted(got)))
            if remaining:
                log.warning("no kline history yet for %s; retrying in %.0f s", ", ".join(sorted(remaining)),
                            backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 300.0)

    async def _restore(self) -> None:
        assert self.publisher is not None
        saved = await self.publisher.load_state(self.index_name, strict=self.role is not None)
        if self.role is None:
            # one process: the local copies may be newer than a Redis that restarted empty; in the scaled
            # layout Redis is the one truth (a local copy may hold what a lost lease kept from Redis)
            saved = statefile.newer(saved, await asyncio.to_thread(statefile.load, self.state_file))
            saved = statefile.newer(saved, self._outbox_state())
        if saved:
            # the basket first: the restored levels, extremes and crossings are in its points
            self.market.restore(saved.get("snapshot") or {}, self.clock())
            self.rules.restore_state(saved.get("rules") or {}, self.clock())
            self.engine.primary.load(saved.get("ledger") or {})
            log.info("restored persisted rule and hedge state of %s saved at %s", self.index_name,
                     saved.get("saved_at"))

    def _outbox_state(self) -> dict[str, Any] | None:
        """The state the newest alert in the outbox carried (it outlives a Redis that restarted empty)."""
        raw = None if self.alerts is None else self.alerts.last_state
        if raw is None:
            return None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None

    async def _save_local(self) -> None:
        """The final state to the local copy too: Redis may be unreachable now, or restart empty."""
        if self._saved is None:
            return
        try:
            await asyncio.to_thread(statefile.save, self.state_file, self._saved)
        except OSError as exc:
            log.warning("could not write the local state copy %s: %s", self.state_file, exc)

    async def _final_snapshot(self, writer: asyncio.Task[None] | None, others: list[asyncio.Task[None]],
                              deadline_s: float) -> bool:
        """The last snapshot and state to Redis, within ``deadline_s``; True when written. A write still in
        flight then is ended by closing the client, not waited out."""
        if self.publisher is None or writer is None:
            return True
        self.publisher.stop()  # the writer returns once the final snapshot is written
        flushed = not await _settle([writer], deadline_s, quiet=True) and self.publisher.pending == 0
        if not writer.done():
            await self.publisher.close()
            writer.cancel()
            others.append(writer)
        return flushed

    async def _final_alerts(self, deadline_s: float) -> int:
        """Alerts still queued: delivered within ``deadline_s``, the rest kept in the on-disk outbox."""
        if self.alerts is None:
            return 0
        return await asyncio.shield(self.alerts.flush(deadline_s))

    async def _shutdown(
        self,
        feeds: list[asyncio.Task[None]],
        pipeline: asyncio.Task[None],
        writer: asyncio.Task[None] | None,
        others: list[asyncio.Task[None]],
    ) -> None:
        t0 = time.monotonic()  # the budget is real time whatever the wall clock (or an injected one) does
        d = self.deadlines

        def left(cap: float) -> float:
            return max(0.0, min(cap, d.total_s - (time.monotonic() - t0)))

        for t in feeds:
            t.cancel()
        await _settle(feeds, left(d.feeds_s))
        if self.commands is not None:
            await self.commands.close()  # a blocking read in flight ends now, not at its timeout
        queued = len(self.bus)
        self.bus.close()
        try:
            async with asyncio.timeout(left(d.drain_s)):
                await asyncio.shield(pipeline)
        except TimeoutError:
            log.warning("drain deadline passed with %d events queued; dropping them", len(self.bus))
            pipeline.cancel()
            await _settle([pipeline], left(d.cancel_s))
        if self.owning:
            self._publish(self.clock())  # queues the final snapshot and state, and keeps it for the local copy
        flush_s = left(d.flush_s)
        flushed, delivered, _ = await asyncio.gather(
            self._final_snapshot(writer, others, flush_s), self._final_alerts(flush_s), self._save_local())
        if self.role is not None:
            await self.role.release()
        if self.publisher is not None:
            await self.publisher.close()
        for t in others:
            t.cancel()
        stragglers = await _settle(others, left(d.cancel_s))
        log.info(
            "stopped after %.0f s: %d events, %d index updates, %d snapshots, %d dropped, %d drained at stop,"
            " final flush %s, %d alerts flushed, shutdown %.2f s%s",
            self.clock() - self.stats.started, self.stats.events, self.stats.index_updates,
            self.stats.snapshots, self.bus.dropped, queued, "ok" if flushed else "FAILED", delivered,
            time.monotonic() - t0, f", stragglers: {', '.join(stragglers)}" if stragglers else "",
        )


async def _supervised(connector: Connector, backoff_s: float = 1.0, max_backoff_s: float = 60.0) -> None:
    """Run a connector forever. Connectors handle their venue's failures themselves; this catches a bug
    (an unexpected exception) so one broken feed cannot take the daemon down: it is logged with its
    traceback and the connector restarted after a growing pause."""
    while True:
        try:
            await connector.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("feed %s crashed; restarting in %.0f s", connector.name, backoff_s)
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, max_backoff_s)


async def _settle(tasks: list[asyncio.Task[None]], timeout_s: float, *, quiet: bool = False) -> list[str]:
    """Wait for (cancelled) tasks to finish; returns the names of those that did not in time, each logged
    with where it is stuck unless ``quiet``."""
    pending = {t for t in tasks if not t.done()}
    if pending and timeout_s > 0:
        _, pending = await asyncio.wait(pending, timeout=timeout_s)
    for t in [] if quiet else pending:
        frames = t.get_stack(limit=3)
        where = ", ".join(f"{f.f_code.co_filename}:{f.f_lineno}" for f in frames)
        log.warning("task %s did not stop within %.1f s (at %s)", t.get_name(), timeout_s, where)
    return [t.get_name() for t in pending]


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def serve(config: Config, *, started: Callable[[Daemon], None] | None = None) -> int:
    """Run the daemon on ``config`` until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    install_signal_handlers(stop)
    daemon = Daemon(config)
    if started is not None:
        started(daemon)
    return await daemon.run(stop)

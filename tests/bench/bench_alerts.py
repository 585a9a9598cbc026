"""The alert path, end to end, against a private redis-server and a loopback Slack stand-in.

Run: ``python -m tests.bench.bench_alerts``. The daemon calls ``AlertSink.submit`` in the same step as the
rule evaluation that fires, so submit time is the rule's firing time. Reports, as medians over RUNS runs:

* submit -> stream: from ``AlertSink.submit`` to the entry being readable in ``hedgewatch:alerts:stream``
  (a blocking XREAD reader), p50 and p99 over alerts submitted one every few milliseconds;
* submit -> Slack: from ``AlertSink.submit`` to the Slack stand-in receiving the message, the notifier
  running with one group per alert and no pacing, alerts submitted at 200/s, p50 and p99;
* notifier delivery rate: messages per second from a pre-filled stream to the stand-in with no rate limit,
  one message per alert, and alerts per second with the default grouping (by rule and index) for the ratio.

Everything runs in one process (the stand-in in a thread), so the figures include sharing one interpreter.
"""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from hedgewatch.service.alerts import Alert, fingerprint
from hedgewatch.service.config import Config
from hedgewatch.service.keys import Keys
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.notify import run_notifier
from hedgewatch.service.outbox import AlertSink
from hedgewatch.service.redisconn import redis_factory
from tests.chat_fakes import FakeChat, fake_chat
from tests.support import RedisServer, redis_server, wait_for

RUNS = 5
LATENCY_ALERTS = 300
SLACK_INTERVAL_S = 0.005  # 200 alerts/s: below the delivery rate, so no backlog builds up
RATE_ALERTS = 2000
KEYS = Keys()
ID = re.compile(r"[0-9a-f]{16}-firing-\d+")


def alert(i: int, run: int) -> Alert:
    fp = fingerprint("bench", "HW", {"n": str(i)})
    return Alert(id=Alert.make_id(fp, "firing", run * 1e6 + i), fingerprint=fp, rule="bench", index="HW",
                 status="firing", severity="warning", summary=f"bench alert {i}", starts_at=run * 1e6 + i,
                 labels={"n": str(i)})


def config(url: str, chat: FakeChat, group_by: list[str]) -> Config:
    return Config.model_validate({
        "sources": [{"exchange": "binance", "symbols": ["BTC"]}], "index": {"constituents": ["BTC"]},
        "redis": {"url": url},
        "notify": {"slack": {"webhook_url": f"{chat.url}/hook", "rate_limit_per_s": 1e9},
                   "routes": [{"destination": "slack", "group_by": group_by}],
                   "templates": {"slack_title": "", "slack_line": "{id}"}, "consumer_name": "bench"},
    })


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def to_stream(srv: RedisServer, run: int) -> list[float]:
    r = aredis.Redis.from_url(srv.url)
    await r.delete(KEYS.alerts_stream)
    seen: dict[str, float] = {}

    async def reader() -> None:
        last = "$"
        while len(seen) < LATENCY_ALERTS:
            for _, entries in await r.xread({KEYS.alerts_stream: last}, block=1000) or []:
                for eid, fields in entries:
                    seen[fields[b"id"].decode()] = time.perf_counter()
                    last = eid
    with tempfile.TemporaryDirectory() as d:
        sink = AlertSink(redis_factory(srv.url), KEYS, Path(d), 100_000, Metrics())
        submitted: dict[str, float] = {}
        async with asyncio.TaskGroup() as tg:
            read = tg.create_task(reader(), name="bench-reader")
            await asyncio.sleep(0.05)  # the reader's first XREAD is blocking on '$'
            run_task = tg.create_task(sink.run(), name="alert-sink")
            for i in range(LATENCY_ALERTS):
                a = alert(i, run)
                submitted[a.id] = time.perf_counter()
                sink.submit(a)
                await asyncio.sleep(0.002)
            await read
            run_task.cancel()
        await sink.close()
    await r.aclose()
    return [seen[k] - t for k, t in submitted.items()]


async def to_slack(srv: RedisServer, run: int) -> list[float]:
    r = aredis.Redis.from_url(srv.url)
    await r.flushall()
    await r.aclose()
    with fake_chat() as chat, tempfile.TemporaryDirectory() as d:
        stop = asyncio.Event()
        sink = AlertSink(redis_factory(srv.url), KEYS, Path(d), 100_000, Metrics())
        submitted: dict[str, float] = {}
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_notifier(config(srv.url, chat, ["n"]), stop=stop), name="notifier")
            run_task = tg.create_task(sink.run(), name="alert-sink")
            await asyncio.sleep(0.2)  # the notifier's group exists and its reader blocks
            for i in range(LATENCY_ALERTS):
                a = alert(i, run + 100)
                submitted[a.id] = time.perf_counter()
                sink.submit(a)
                await asyncio.sleep(SLACK_INTERVAL_S)
            await wait_for(lambda: len(chat.ok()) >= LATENCY_ALERTS, 60, "every alert on the stand-in")
            stop.set()
            run_task.cancel()
        await sink.close()
        # the stand-in stamps with time.monotonic(); perf_counter and monotonic share a clock on Linux
        got = {r.text.strip(): r.at for r in chat.ok()}
        return [got[k] - t for k, t in submitted.items() if k in got]


async def delivery_rate(srv: RedisServer, run: int, group_by: list[str]) -> tuple[float, int]:
    r = aredis.Redis.from_url(srv.url)
    await r.flushall()
    with tempfile.TemporaryDirectory() as d:
        sink = AlertSink(redis_factory(srv.url), KEYS, Path(d), 100_000, Metrics(), batch_size=500)
        for i in range(RATE_ALERTS):
            sink.submit(alert(i, run + 200))
        await sink.flush(30)
    await r.aclose()
    with fake_chat() as chat:
        stop = asyncio.Event()
        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_notifier(config(srv.url, chat, group_by), stop=stop), name="notifier")
            await wait_for(lambda: sum(len(ID.findall(x.text)) for x in chat.ok()) >= RATE_ALERTS, 120,
                           "every alert delivered")
            elapsed = time.perf_counter() - t0
            stop.set()
        return RATE_ALERTS / elapsed, len(chat.ok())


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    names = ("stream_p50", "stream_p99", "slack_p50", "slack_p99", "rate_msgs", "rate_grouped",
             "messages_grouped")
    rows: dict[str, list[float]] = {k: [] for k in names}
    with redis_server() as srv:
        for run in range(RUNS):
            s = await to_stream(srv, run)
            rows["stream_p50"].append(pct(s, 0.5))
            rows["stream_p99"].append(pct(s, 0.99))
            k = await to_slack(srv, run)
            rows["slack_p50"].append(pct(k, 0.5))
            rows["slack_p99"].append(pct(k, 0.99))
            rate, _ = await delivery_rate(srv, run, ["n"])
            rows["rate_msgs"].append(rate)
            grouped, n_msgs = await delivery_rate(srv, run, ["rule", "index"])
            rows["rate_grouped"].append(grouped)
            rows["messages_grouped"].append(n_msgs)
    med: dict[str, Any] = {k: statistics.median(v) for k, v in rows.items()}
    print(f"alert path, medians of {RUNS} runs ({LATENCY_ALERTS} alerts for latency, {RATE_ALERTS} for rate)")
    print(f"{'measure':<44}{'p50':>10}{'p99':>10}")
    for label, key in (("submit -> in the stream (ms)", "stream"),
                       ("submit -> Slack stand-in (ms)", "slack")):
        print(f"{label:<44}{med[key + '_p50'] * 1e3:>10.2f}{med[key + '_p99'] * 1e3:>10.2f}")
    print(f"{'notifier rate, one message per alert (msg/s)':<44}{med['rate_msgs']:>10.0f}")
    print(f"{'notifier rate, grouped by rule+index (alerts/s)':<44}{med['rate_grouped']:>10.0f}"
          f"   in {med['messages_grouped']:.0f} messages, {med['rate_grouped'] / med['rate_msgs']:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())

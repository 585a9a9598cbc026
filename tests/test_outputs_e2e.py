"""From a rule firing in the real daemon to a Slack message: the daemon as a subprocess against the exchange
simulator, its alert outbox into a real redis-server, the notifier in this process, a loopback Slack."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import redis.asyncio as aioredis

from hedgewatch.service.config import Config
from hedgewatch.service.metrics import NotifyMetrics
from hedgewatch.service.notify import run_notifier
from tests.chat_fakes import fake_chat
from tests.support import RedisServer, free_port, wait_for
from tests.test_daemon_e2e import PREFIX, daemon_config, sim, start_daemon  # noqa: F401 (sim: fixture)

RULES = """
groups:
  - name: e2e
    rules:
      - name: PricePositive
        expr: price > 0
        for: 0s
        severity: warning
        action: notify
        annotations: {summary: "{{ $index }} is priced"}
"""


async def test_a_rule_firing_in_the_daemon_reaches_slack_once(sim, redis_srv: RedisServer,  # noqa: F811
                                                              tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    cfg = daemon_config(sim, redis_srv.url, free_port(), tmp_path / "outbox")
    cfg["rules"] = {"files": [str(rules)], "eval_interval_s": 0.2}
    proc, log = await start_daemon(cfg, tmp_path)
    r = aioredis.Redis.from_url(redis_srv.url)
    stream = f"{PREFIX}:alerts:stream"
    try:
        with fake_chat() as chat:
            notify_cfg = Config.model_validate({
                **{k: cfg[k] for k in ("sources", "index", "redis")},
                "notify": {"slack": {"webhook_url": f"{chat.url}/services/T/B/X", "rate_limit_per_s": 50.0},
                           "templates": {"slack_line": "{rule}: {summary}"}},
            })
            stop = asyncio.Event()
            worker = asyncio.create_task(run_notifier(notify_cfg, stop=stop, metrics=NotifyMetrics()), name="notifier")

            async def delivered() -> bool:
                if proc.returncode is not None:
                    raise AssertionError(f"daemon exited: {log.read_text()[-2000:]}")
                return len(chat.ok()) >= 1

            await wait_for(delivered, 30, "the rule's alert on the Slack stand-in")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            await wait_for(lambda: _acked(r, stream), 10, "the alert acknowledged")
            stop.set()
            await asyncio.wait_for(worker, 10)
        assert len(chat.ok()) == 1
        assert "PricePositive: E2E is priced" in chat.ok()[0].text
        assert await r.xlen(stream) == 1
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await r.aclose()


async def _acked(r: aioredis.Redis, stream: str) -> bool:
    return int((await r.xpending(stream, "notify"))["pending"]) == 0

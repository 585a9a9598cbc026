"""`hedgewatch demo` as a user runs it: offline, honouring environment overrides, publishing to Redis when
one is named, printing plain status lines when its output is not a terminal, and exposing on its live
/metrics every metric the Grafana dashboards and the Prometheus alert rules use."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from tests.support import REPO, RedisServer, free_port, wait_for
from tests.test_deploy import METRIC, alert_exprs, dashboard_exprs

# Counters have samples only once their event happened (a reject, a reconnect, an alert, a delivery); the
# tracking error exists only when a venue's composite index is tracked. Everything else must carry data.
EVENT_DRIVEN_SUFFIX = "_total"
ONLY_WHEN_TRACKING = {"hedgewatch_index_tracking_error_ratio"}


def used_metrics() -> set[str]:
    """The daemon's metrics the dashboards and alert rules read (the notifier's are its own process's:
    tests/test_prometheus.py scrapes both)."""
    exprs = alert_exprs() + [e for name, ex in dashboard_exprs().items() if name != "hw-notify.json" for e in ex]
    return {m for e in exprs for m in METRIC.findall(e) if not m.startswith("hedgewatch_notify_")}


def family_of(sample: str) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_created"):
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


async def test_demo_offline_with_redis_and_live_metrics(redis_srv: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEWATCH__")}
    env.update(PYTHONPATH=str(REPO), HEDGEWATCH__HTTP__PORT=str(port), HEDGEWATCH__REDIS__URL=redis_srv.url,
               HEDGEWATCH__REDIS__OUTBOX_DIR=str(tmp_path / "outbox"))
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as o, err.open("wb") as e:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hedgewatch.service", "demo", cwd=tmp_path,
                                                    env=env, stdout=o, stderr=e)
    used = used_metrics()
    need_samples = {m for m in used if not m.endswith(EVENT_DRIVEN_SUFFIX)} - ONLY_WHEN_TRACKING
    families: set[str] = set()
    samples: set[str] = set()
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            async def complete() -> bool:
                nonlocal families, samples
                if proc.returncode is not None:
                    raise AssertionError(f"demo exited {proc.returncode}: {err.read_text()[-2000:]}")
                try:
                    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.TransportError:
                    return False
                families = {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ")}
                samples = {ln.split("{")[0].split(" ")[0] for ln in text.splitlines() if ln and ln[0] != "#"}
                return need_samples <= samples | {family_of(s) for s in samples}

            try:
                await wait_for(complete, 40, "every dashboard metric to carry data")
            except AssertionError:
                missing = need_samples - samples - {family_of(s) for s in samples}
                raise AssertionError(f"no data on the live /metrics for {sorted(missing)}") from None
        declared = families | {f + "_total" for f in families}
        absent = {m for m in used if family_of(m) not in declared}
        assert not absent, f"not on the live /metrics at all: {sorted(absent)}"

        r = aioredis.Redis.from_url(redis_srv.url)
        try:
            await wait_for(lambda: r.exists("hedgewatch:state:HWDEMO"), 10, "the demo's state key")
            assert await r.exists("hedgewatch:heartbeat")
        finally:
            await r.aclose()
        await wait_for(lambda: "index HWDEMO" in out.read_text(), 15, "a plain status line")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 10)
    assert code == 0
    assert "Traceback" not in err.read_text()

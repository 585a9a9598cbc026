"""SIGTERM while Redis is frozen (SIGSTOP: connections stay open, nothing answers) and an alert delivery is in
flight: the daemon stops within its 5 s budget, and nothing of it is still running after its "stopped" line.

The Redis client's socket timeout is 5 s, so a frozen Redis holds every call for up to 5 s; the stop path
must bound each of them by what is left of the budget instead of waiting them out."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.service.alerts import Alert, fingerprint
from hedgewatch.service.app import Daemon
from hedgewatch.service.config import Config, config_from_dict
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.outbox import Outbox
from tests.support import RedisServer, free_port, wait_for

STOP_BUDGET_S = 5.0
STOP_TARGET_S = 4.5  # what the test holds the stop to, with margin below the budget


def frozen_config(redis_url: str, tmp_path: Path) -> Config:
    closed = free_port()  # nothing listens: the feeds retry quietly, which is all this test needs of them
    data: dict[str, Any] = {
        "sources": [{"exchange": "binanceusdm", "symbols": ["BTC"], "ws_url": f"ws://127.0.0.1:{closed}/",
                     "rest_url": f"http://127.0.0.1:{closed}"}],
        "index": {"name": "FRZ", "constituents": ["BTC"], "weighting": "equal", "base_level": 1000.0},
        "redis": {"url": redis_url, "prefix": "hwf", "outbox_dir": str(tmp_path / "outbox")},
        "http": {"host": "127.0.0.1", "port": free_port()},
    }
    return config_from_dict(data, env={})


def alert(i: int) -> Alert:
    fp = fingerprint("Frozen", "FRZ", {"n": str(i)})
    return Alert(id=Alert.make_id(fp, "firing", 1_700_000_000 + i), fingerprint=fp, rule="Frozen", index="FRZ",
                 status="firing", severity="warning", summary=f"alert {i}", starts_at=1_700_000_000 + i,
                 labels={"n": str(i)})


class After(logging.Handler):
    """Records every log line and the time of the daemon's "stopped" line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.stopped_at: float | None = None
        self.after: list[str] = []
        self.last_after_s = 0.0  # how long after the stopped line the last line came
        self.run_after_s = 0.0  # how long after the stopped line the daemon's run() returned

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if self.stopped_at is not None:
            self.after.append(msg)
            self.last_after_s = time.monotonic() - self.stopped_at
        elif msg.startswith("stopped after"):
            self.stopped_at = time.monotonic()


@pytest.fixture
def frozen(redis_srv: RedisServer) -> Iterator[RedisServer]:
    yield redis_srv
    if redis_srv.proc is not None and redis_srv.proc.poll() is None:
        os.kill(redis_srv.proc.pid, signal.SIGCONT)


async def stop_with_frozen_redis(srv: RedisServer, tmp_path: Path, in_flight_s: float) -> tuple[float, After]:
    """Run the daemon, freeze Redis, submit an alert, stop ``in_flight_s`` later; the stop's duration."""
    daemon = Daemon(frozen_config(srv.url, tmp_path), metrics=Metrics())
    stop = asyncio.Event()
    watch = After()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(watch)
    try:
        run = asyncio.create_task(daemon.run(stop))
        await asyncio.wait_for(daemon.started.wait(), 10)
        assert daemon.alerts is not None and daemon.publisher is not None
        await wait_for(lambda: daemon.publisher is not None and daemon.publisher.connected, what="Redis")
        assert srv.proc is not None
        os.kill(srv.proc.pid, signal.SIGSTOP)
        daemon.alerts.submit(alert(0))
        await asyncio.sleep(in_flight_s)  # the delivery blocks on the frozen Redis this long before the stop
        t0 = time.monotonic()
        stop.set()
        assert await asyncio.wait_for(run, 30) == 0
        returned = time.monotonic()
        took = returned - t0
        if watch.stopped_at is not None:
            watch.run_after_s = returned - watch.stopped_at
        # a straggler still running would log or hold the loop: give it the rest of a socket timeout
        await asyncio.sleep(STOP_BUDGET_S + 0.5 - took if took < STOP_BUDGET_S else 0.5)
    finally:
        root.removeHandler(watch)
        root.setLevel(level)
        os.kill(srv.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
    return took, watch


@pytest.mark.parametrize("in_flight_s", [0.2, 3.8, 4.4])
async def test_stop_keeps_its_deadline_with_redis_frozen(frozen: RedisServer, tmp_path: Path,
                                                         in_flight_s: float) -> None:
    took, watch = await stop_with_frozen_redis(frozen, tmp_path, in_flight_s)
    assert took < STOP_TARGET_S, f"stop took {took:.2f} s"
    assert watch.stopped_at is not None
    assert watch.after == [], f"still running after the stopped line: {watch.after}"
    assert watch.run_after_s < 0.25, f"run() returned {watch.run_after_s:.2f} s after the stopped line"
    # the alert Redis never took is on disk for the next start
    assert [r.alert_id for r in Outbox(tmp_path / "outbox").load()] == [alert(0).id]

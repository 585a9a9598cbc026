"""A step of the wall clock (NTP, a resumed VM, ``date -s``) must not blind the daemon: ages, silences and
rule durations run on its steady clock; the step is logged once and exported."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from hedgewatch.service.app import Daemon
from hedgewatch.service.clock import SteadyClock
from hedgewatch.service.config import Config, config_from_dict
from hedgewatch.service.events import Quote
from hedgewatch.service.metrics import Metrics
from tests.support import free_port


class FakeTime:
    """A wall clock and a monotonic clock the test moves: ``elapse`` moves both, ``step`` only the wall."""

    def __init__(self, wall: float = 1_700_000_000.0) -> None:
        self.w, self.m = wall, 1000.0

    def wall(self) -> float:
        return self.w

    def mono(self) -> float:
        return self.m

    def elapse(self, s: float) -> None:
        self.w += s
        self.m += s

    def step(self, s: float) -> None:
        self.w += s


def test_steady_clock_follows_elapsed_time_not_steps() -> None:
    t = FakeTime()
    clock = SteadyClock(t.wall, t.mono)
    start = clock()
    assert start == t.w
    t.elapse(10)
    t.step(-3600)
    t.elapse(5)
    assert clock() - start == 15
    assert clock.offset == -3600
    assert clock.check() == -3600
    assert clock.check() is None  # reported once
    t.step(0.4)  # drift below a second is not a step
    assert clock.check() is None
    t.step(7200)
    assert clock.check() == pytest.approx(7200.4)


def config(tmp_path: Path) -> Config:
    closed = free_port()
    data: dict[str, Any] = {
        "sources": [{"exchange": ex, "symbols": ["BTC"], "ws_url": f"ws://127.0.0.1:{closed}/",
                     "rest_url": f"http://127.0.0.1:{closed}"} for ex in ("binanceusdm", "bybit", "okx")],
        "index": {"name": "CLK", "constituents": ["BTC"], "weighting": "equal", "base_level": 1000.0},
        "oracle": {"max_age_s": 10},
        "http": {"host": "127.0.0.1", "port": free_port()},
    }
    return config_from_dict(data, env={})


def quote(daemon: Daemon, exchange: str, price: float) -> Quote:
    now = daemon.clock()
    return Quote(exchange=exchange, asset="BTC", instrument="BTCUSDT", bid=price - 0.5, ask=price + 0.5,
                 ts_exchange=now, ts_recv=now)


def test_a_stalled_venue_goes_stale_across_a_wall_clock_step_back(tmp_path: Path) -> None:
    """The issue as it was seen: after a -3600 s step a stalled venue stayed valid at age 0 for an hour."""
    t = FakeTime()
    daemon = Daemon(config(tmp_path), metrics=Metrics(), clock=SteadyClock(t.wall, t.mono))
    daemon.engine.apply_batch([quote(daemon, ex, 50_000.0) for ex in ("binanceusdm", "bybit", "okx")])
    daemon.engine.tick(daemon.clock())
    assert daemon.market.oracle("BTC").n_valid == 3
    t.step(-3600)  # the wall clock jumps back an hour; binanceusdm goes quiet
    for _ in range(12):
        t.elapse(1)
        daemon.engine.apply_batch([quote(daemon, ex, 50_000.0) for ex in ("bybit", "okx")])
        daemon.engine.tick(daemon.clock())
    sources = daemon.market.state(daemon.clock())["oracle"]["BTC"]["sources"]
    stalled = next(s for name, s in sources.items() if name.startswith("binanceusdm"))
    assert stalled["status"] == "stale" and stalled["age_s"] == pytest.approx(12, abs=0.01)
    assert daemon.market.oracle("BTC").n_valid == 2


def test_a_wall_clock_step_is_logged_once_and_exported(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    metrics = Metrics()
    daemon = Daemon(config(tmp_path), metrics=metrics, clock=SteadyClock(t.wall, t.mono))
    daemon._export(daemon.clock())
    assert metrics.clock_offset._value.get() == 0 and metrics.clock_steps._value.get() == 0
    t.step(-3600)
    with caplog.at_level(logging.WARNING, logger="hedgewatch"):
        for _ in range(3):
            t.elapse(1)
            daemon._export(daemon.clock())
    steps = [r.getMessage() for r in caplog.records if "wall clock stepped" in r.getMessage()]
    assert len(steps) == 1 and "-3600.0 s" in steps[0]
    assert metrics.clock_offset._value.get() == -3600
    assert metrics.clock_steps._value.get() == 1


def test_the_daemon_runs_on_a_steady_clock_by_default(tmp_path: Path) -> None:
    daemon = Daemon(config(tmp_path), metrics=Metrics())
    assert isinstance(daemon.clock, SteadyClock) and daemon.steady is daemon.clock
    # every connector stamps its receive times with the same clock the oracle ages them by
    assert all(c.ctx.clock is daemon.clock for c in daemon.connectors)

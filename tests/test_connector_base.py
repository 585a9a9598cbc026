"""The shared connector machinery: backoff, burst-limited logging, numeric checks, the absurd-jump guard."""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hedgewatch.connectors.base import Route, Tuning, ms, num, positive
from hedgewatch.service.errors import RejectedMessage
from hedgewatch.service.retry import Backoff, BurstLog


@given(st.integers(min_value=0, max_value=60), st.integers(min_value=0, max_value=2**32))
def test_backoff_is_jittered_capped_exponential(attempt: int, seed: int) -> None:
    b = Backoff(0.5, 30.0, random.Random(seed))
    b.attempt = attempt
    d = min(30.0, 0.5 * 2.0 ** attempt)
    assert d / 2 <= b.next() <= d


def test_backoff_resets() -> None:
    b = Backoff(0.5, 30.0, random.Random(1))
    delays = [b.next() for _ in range(10)]
    assert delays[-1] >= 15.0 and max(delays) <= 30.0
    b.reset()
    assert b.next() <= 0.5


def test_burst_log_one_line_then_summaries(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = BurstLog(logging.getLogger("hedgewatch.test"), 60.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, "hedgewatch.test")
    for i in range(100):  # 100 failures within 50 s: one line
        now[0] = i * 0.5
        log.event("connect", "cannot connect")
    assert [r.getMessage() for r in caplog.records] == ["cannot connect"]
    now[0] = 61.0
    log.event("connect", "cannot connect")
    assert caplog.records[-1].getMessage() == "cannot connect (99 more since the last report)"
    log.clear("connect", "connected")
    log.clear("connect", "connected")  # nothing open any more: no second line
    assert [r.getMessage() for r in caplog.records][-1] == "connected"
    assert len(caplog.records) == 3


@pytest.mark.parametrize(("value", "reason"), [
    (float("nan"), "non_finite"), (float("inf"), "non_finite"), (-1.0, "non_positive"), (0.0, "non_positive"),
    (2e9, "absurd"),
])
def test_positive_rejects(value: float, reason: str) -> None:
    with pytest.raises(RejectedMessage) as info:
        positive(value, "price")
    assert info.value.reason == reason


def test_num_and_ms() -> None:
    assert num({"p": "1.5"}, "p") == 1.5
    with pytest.raises(RejectedMessage, match="missing_field"):
        num({}, "p")
    with pytest.raises(RejectedMessage, match="non_numeric"):
        num({"p": None}, "p")
    assert ms("1786540471710") == 1786540471.71
    with pytest.raises(RejectedMessage, match="non_numeric"):
        ms("soon")


def test_jump_guard_and_its_reset() -> None:
    r = Route("k", "c", 0, "BTC", "BTCUSDT", "USDT", 0.1)
    r.check_jump(100.0, 0.0)
    with pytest.raises(RejectedMessage, match="absurd"):
        r.check_jump(150.0, 1.0)   # +50% within a second of the last accepted price
    r.check_jump(250.0, 100.0)     # within 3x of a reference that is 100 s old
    with pytest.raises(RejectedMessage, match="absurd"):
        r.check_jump(1000.0, 100.0)
    r.check_jump(255.0, 100.1)     # a good price ends the streak
    rejected = 0
    for i in range(25):            # a lasting new level is adopted after the streak limit
        try:
            r.check_jump(10_000.0, 101.0 + i)
        except RejectedMessage:
            rejected += 1
    assert rejected == 19 and r.ref == 10_000.0


def test_silence_bound() -> None:
    t = Tuning()
    assert t.silence_bound(0.1) == 3.0
    assert t.silence_bound(1.0) == 5.0
    assert t.silence_bound(60.0) == 300.0


def test_burst_log_force_and_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = BurstLog(logging.getLogger("hedgewatch.test"), 60.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, "hedgewatch.test")
    log.event("lost:a", "lost (recycled)")
    for i in range(3):  # held back inside the window
        now[0] = 1.0 + i
        log.event("lost:a", f"lost ({i})")
    assert log.suppressed("lost:a") == 3
    now[0] = 10.0
    log.event("lost:a", "lost (closed by peer)", force=True)  # a healthy connection's loss: never swallowed
    log.event("lost:a", "lost (again)")
    now[0] = 30.0
    log.flush()  # the window is still open: nothing yet
    now[0] = 71.0
    log.flush()  # the window passed with one line held back: its summary
    log.flush()  # told once
    log.event("quiet:b", "quiet")
    log.event("quiet:b", "quiet")
    log.clear("quiet:b")  # ended without a message of its own: the summary still comes out
    assert [r.getMessage() for r in caplog.records] == [
        "lost (recycled)",
        "lost (closed by peer) (3 more since the last report)",
        "lost (again) (1 like it since the last report)",
        "quiet",
        "quiet (1 like it since the last report)",
    ]


async def test_connection_pacing_and_backoff_run_on_the_injected_timebase() -> None:
    """Pacing waits and backoff jitter come from the connector's timebase: on a fake one the waits are
    exact and repeatable, and nothing sleeps on the machine's clock."""
    import random

    from hedgewatch.connectors.base import FeedContext
    from hedgewatch.service.clock import Timebase
    from hedgewatch.service.metrics import Metrics

    now = [100.0]
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    def make() -> FeedContext:
        return FeedContext("okx", lambda ev: None, Metrics(), lambda: now[0], Tuning(connect_gap_s=0.4),
                           Timebase(wall=lambda: now[0], monotonic=lambda: now[0], sleep=sleep,
                                    rng=random.Random(7)))

    ctx = make()
    for _ in range(3):
        await ctx.pace_connect()
    # three attempts at once: the first goes now, each next one waits its gap on the fake clock
    assert waits == [pytest.approx(0.4), pytest.approx(0.4)] and now[0] == pytest.approx(100.8)
    one, two = make().backoff(1.0, 30.0), make().backoff(1.0, 30.0)
    assert [one.next() for _ in range(4)] == [two.next() for _ in range(4)]  # same seed, same jitter

"""Machinery every connector shares: tuning knobs, backoff, burst-limited logging, per-channel routes with
their watchdog state, numeric checks for decoders, and the context that turns decoded values into events,
counters and feed-status transitions.

Decoders raise ``RejectedMessage(reason)``; the context counts it under
``hedgewatch_messages_rejected_total{exchange,reason}`` and logs it at most once per burst. Per-message
counters are kept as plain ints on the route (a Prometheus ``inc`` takes a lock) and flushed to the registry
by the connection's housekeeping task about once a second.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.sanity import MAX_JUMP_FACTOR, MAX_PRICE, accept_price, check_price, positive
from service.errors import RejectedMessage
from service.events import Event, FeedState, FeedStatus
from service.metrics import Metrics

__all__ = ["MAX_JUMP_FACTOR", "MAX_PRICE", "positive"]  # the price checks live in connectors.sanity

log = logging.getLogger("hedgewatch.connectors")


@dataclass(frozen=True, slots=True)
class Tuning:
    """Timing knobs of a connector. The defaults are the production values; tests shrink them.

    A subscribed channel is *silent* when no data arrived for ``max(silence_factor * cadence,
    silence_floor_s)``; it is then re-subscribed, and the connection is recycled when it is still silent
    one more bound later. The watchdog runs every ``watchdog_interval_s``, so detection happens within
    bound + ``watchdog_interval_s``.
    """

    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    stable_after_s: float = 60.0
    silence_factor: float = 5.0
    silence_floor_s: float = 3.0
    watchdog_interval_s: float = 0.5
    max_conn_age_s: float = 23 * 3600.0
    open_timeout_s: float = 10.0
    ack_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    max_frame_bytes: int = 1 << 20
    max_queue: int = 64
    log_interval_s: float = 60.0
    flush_interval_s: float = 1.0
    rest_timeout_s: float = 10.0
    connect_gap_s: float = 0.4

    def silence_bound(self, cadence_s: float) -> float:
        return max(self.silence_factor * cadence_s, self.silence_floor_s)


class Backoff:
    """Capped exponential backoff with equal jitter: the n-th delay is uniform in [d/2, d] with
    d = min(cap, base * 2**n). ``reset`` after a connection stayed up for ``stable_after_s``."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        d = min(self.cap_s, self.base_s * (2.0 ** min(self.attempt, 30)))
        self.attempt += 1
        return d * 0.5 + self._rng.random() * d * 0.5

    def reset(self) -> None:
        self.attempt = 0


class BurstLog:
    """Logs the first occurrence of a kind of trouble, then at most one summary line per ``interval_s``
    while it lasts, so an outage or a flood of bad frames yields a handful of lines, not one per event."""

    def __init__(self, logger: logging.Logger, interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._open: dict[str, tuple[float, int]] = {}  # key -> (last logged at, suppressed since)

    def event(self, key: str, msg: str, level: int = logging.WARNING) -> None:
        now = self._clock()
        entry = self._open.get(key)
        if entry is None:
            self._log.log(level, msg)
            self._open[key] = (now, 0)
        elif now - entry[0] >= self._interval:
            more = f" ({entry[1]} more since the last report)" if entry[1] else ""
            self._log.log(level, msg + more)
            self._open[key] = (now, 0)
        else:
            self._open[key] = (entry[0], entry[1] + 1)

    def clear(self, key: str, msg: str | None = None, level: int = logging.INFO) -> None:
        """The burst ended; log ``msg`` if one was open."""
        if self._open.pop(key, None) is not None and msg:
            self._log.log(level, msg)


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed. On Python 3.11 ``asyncio.wait_for`` and task groups
    can surface a child's error instead of the ``CancelledError`` that arrived at the same moment; a
    reconnect-forever loop that caught that error would then never stop. Every broad ``except`` in such a
    loop calls this first."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


# --- numeric checks used by decoders -------------------------------------------------------------------


def num(d: dict[str, Any], key: str) -> float:
    """``float(d[key])`` with the failures turned into rejects."""
    try:
        return float(d[key])
    except KeyError:
        raise RejectedMessage("missing_field", key) from None
    except (TypeError, ValueError):
        raise RejectedMessage("non_numeric", key) from None


def non_negative(x: float, what: str) -> float:
    if 0.0 <= x < 1e18:
        return x
    if x != x or x in (math.inf, -math.inf):
        raise RejectedMessage("non_finite", what)
    raise RejectedMessage("non_positive" if x < 0 else "absurd", what)


def ms(v: Any) -> float:
    """Epoch milliseconds (int or numeric string) to epoch seconds."""
    try:
        return int(v) / 1000.0
    except (TypeError, ValueError):
        raise RejectedMessage("non_numeric", "timestamp") from None


def ms_of(d: Any, key: str) -> float:
    """``d[key]`` as epoch milliseconds to seconds, a reject when absent."""
    try:
        v = d[key]
    except (KeyError, TypeError, IndexError):
        raise RejectedMessage("missing_field", key) from None
    return ms(v)


# --- routes: one per subscribed channel ----------------------------------------------------------------


class Route:
    """One subscribed channel of one instrument (a Binance stream, a Bybit topic, an OKX channel+instId):
    what to decode it into, and the watchdog's and counters' state. Built once at subscribe time so the
    hot path is one dict lookup away from its decoder."""

    __slots__ = (
        "anchor", "asset", "cadence_s", "channel", "count", "critical", "flushed", "hi", "instrument",
        "key", "kind", "last", "lo", "quote", "ref", "ref_at", "resubscribed_at", "scale", "seen", "seq",
        "seq_anchor", "seq_streak", "since", "state", "streak", "subscribed_at", "topic",
    )

    def __init__(self, key: str, channel: str, kind: Any, asset: str, instrument: str, quote: str,
                 cadence_s: float, topic: Any = None, scale: float = 1.0, critical: bool = True) -> None:
        self.key = key              # what the venue names it in frames
        self.topic = topic          # what to send to (un)subscribe it, when not ``key``
        self.channel = channel      # metric label: the venue's channel name, low cardinality
        self.kind: Any = kind       # decoder selector: the connector's own constants
        self.asset = asset
        self.instrument = instrument
        self.quote = quote
        self.cadence_s = cadence_s  # expected time between two messages when the market is live
        self.scale = scale          # base units per contract (OKX ctVal); 1.0 elsewhere
        # A critical channel that stays silent after a re-subscribe gets its connection recycled; trades and
        # candles of a quiet market may legitimately pause, so they are only flagged and re-subscribed.
        self.critical = critical
        self.count = 0
        self.flushed = 0
        self.last = 0.0             # when a valid message was last seen (clock seconds)
        self.seen = 0               # ``count`` when the watchdog last looked
        # connectors.sanity's state: the last accepted price (reference), when, and the fast-path band
        # around it; the streak of agreeing rejected prices that would re-anchor it
        self.ref = 0.0
        self.ref_at = 0.0
        self.lo = 0.0
        self.hi = 0.0
        self.anchor = 0.0
        self.streak = 0
        self.seq = 0                # last accepted sequence number where the venue has one; 0 after subscribe
        self.seq_anchor = 0
        self.seq_streak = 0
        self.state = FeedState.CONNECTING
        self.subscribed_at = 0.0
        self.resubscribed_at = 0.0
        self.since = 0.0

    def check_jump(self, price: float, now: float) -> None:
        """Check one price against the last accepted one and, when it passes, make it the reference (for
        frames that carry nothing else to check; see ``connectors.sanity``)."""
        check_price(self, price, now)
        accept_price(self, price, now)


class FeedContext:
    """What a connector hands its decoders and connections: the event sink, the clock, the metrics and the
    burst-limited reject log, all keyed by the source's name."""

    def __init__(self, exchange: str, sink: Callable[[Event], None], metrics: Metrics,
                 clock: Callable[[], float], tuning: Tuning) -> None:
        self.exchange = exchange
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.tuning = tuning
        self.log = logging.getLogger(f"hedgewatch.connectors.{exchange}")
        self.burst = BurstLog(self.log, tuning.log_interval_s)
        self.rejected: dict[str, int] = {}
        self.reconnects = 0
        self.connections_up = 0
        self._last_connect = 0.0
        self._rejected_children: dict[str, Any] = {}
        self._messages_children: dict[str, Any] = {}
        metrics.feed_known(exchange)  # its reject and reconnect counters exist at 0 from the start

    def reject(self, exc: RejectedMessage, channel: str = "") -> None:
        reason = exc.reason
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        child = self._rejected_children.get(reason)
        if child is None:
            child = self.metrics.messages_rejected.labels(self.exchange, reason)
            self._rejected_children[reason] = child
        child.inc()
        where = f" on {channel}" if channel else ""
        self.burst.event(f"reject:{reason}", f"{self.exchange}: rejected a message{where}: {exc}")

    def connection_up(self, up: bool) -> None:
        """Track how many of the venue's connections are up; ``hedgewatch_feed_connected`` is 1 while at
        least one is."""
        self.connections_up += 1 if up else -1
        self.metrics.feed_connected.labels(self.exchange).set(1 if self.connections_up > 0 else 0)

    async def pace_connect(self) -> None:
        """Space the venue's connection attempts ``connect_gap_s`` apart (venue connect rate limits: OKX
        allows 3 a second per IP), whatever the number of connections starting or reconnecting at once."""
        gap = self.tuning.connect_gap_s
        now = time.monotonic()
        slot = max(now, self._last_connect + gap)
        self._last_connect = slot
        if slot > now:
            await asyncio.sleep(slot - now)

    def status(self, channel: str, state: str, detail: str = "") -> None:
        self.sink(FeedStatus(self.exchange, channel, state, detail, self.clock()))

    def flush(self, routes: list[Route]) -> None:
        """Move the routes' message counts into ``hedgewatch_messages_total``."""
        children = self._messages_children
        for r in routes:
            child = children.get(r.channel)
            if child is None:  # a new channel: its counters exist at 0 before its first message or silence
                self.metrics.channel_known(self.exchange, r.channel)
                child = children[r.channel] = self.metrics.messages.labels(self.exchange, r.channel)
            n = r.count - r.flushed
            if n:
                child.inc(n)
                r.flushed = r.count

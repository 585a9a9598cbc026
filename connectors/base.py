"""Machinery every connector shares: tuning knobs, backoff, burst-limited logging, per-channel routes with
their watchdog state, numeric checks for decoders, and the context that turns decoded values into events,
counters and feed-status transitions.

Decoders raise ``RejectedMessage(reason)``; the context counts it under
``hedgewatch_messages_rejected_total{exchange,reason}`` and logs it at most once per burst. Per-message
counters are kept as plain ints on the route (a Prometheus ``inc`` takes a lock) and flushed to the registry
by the connection's housekeeping task about once a second.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hedgewatch.connectors.sanity import MAX_JUMP_FACTOR, MAX_PRICE, accept_price, check_price, positive
from hedgewatch.service.clock import Timebase
from hedgewatch.service.errors import RejectedMessage
from hedgewatch.service.events import Event, FeedState, FeedStatus
from hedgewatch.service.metrics import Metrics
from hedgewatch.service.retry import Backoff, BurstLog

__all__ = ["MAX_JUMP_FACTOR", "MAX_PRICE", "positive"]  # the price checks live in connectors.sanity

log = logging.getLogger("hedgewatch.connectors")


@dataclass(frozen=True, slots=True)
class Tuning:
    """Timing knobs of a connector. The defaults are the production values; tests shrink them.

    Each channel has a configured bound ``max(silence_factor * nominal cadence, silence_floor_s)``, the
    floor of its learned bound ``silence_factor * learned cadence`` (see ``Cadence``), which is capped at
    ``silence_cap_s``. A channel past its bound on a connection that still delivers is *quiet*: flagged
    and probed with a subscribe that opens no gap, never recycled. A connection is recycled when no channel
    on it delivered for the connection's own bound (learned the same way from its merged stream) or when
    it fails the venue's keep-alive. The watchdog runs every ``watchdog_interval_s``, so detection happens
    within bound + ``watchdog_interval_s``.
    """

    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    stable_after_s: float = 60.0
    silence_factor: float = 5.0
    silence_floor_s: float = 3.0
    silence_cap_s: float = 300.0
    cadence_memory_s: float = 600.0
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
        """The configured bound of a channel of nominal ``cadence_s``: the floor of its learned bound."""
        return max(self.silence_factor * cadence_s, self.silence_floor_s)

    def learned_bound(self, floor_s: float, learned_s: float | None) -> float:
        """The bound in force: ``silence_factor`` x the learned cadence, never below the configured bound
        ``floor_s`` and never above ``silence_cap_s`` (unless the configured bound itself is higher)."""
        if learned_s is None:
            return floor_s
        return max(floor_s, min(self.silence_factor * learned_s, self.silence_cap_s))


class Cadence:
    """The expected time between two messages of a stream, learned from what it delivered.

    The estimate is the length-biased mean gap ``sum(g**2) / sum(g)`` over the gaps ``g`` between arrivals,
    each gap's weight decaying with time constant ``memory_s``: the mean length of the gap that a moment
    picked at random falls into. A stream ticking every 0.1 s learns 0.1 s; a thin symbol with gaps of
    12.7 s and 7.5 s among quick updates learns several seconds; bursts followed by long pauses learn the
    pauses, which a plain mean gap would hide. A gap in progress is not counted until it ends, so a stalled
    stream cannot talk its own bound up while it is stalled.

    Arrivals are usually seen at the watchdog's resolution: ``arrive(now, n, period)`` records ``n`` messages
    seen in the ``period`` seconds before ``now``, spread evenly over it.
    """

    __slots__ = ("_at", "_last", "_s1", "_s2", "gaps", "memory_s")

    def __init__(self, memory_s: float = 600.0) -> None:
        self.memory_s = memory_s
        self._s1 = 0.0      # decayed sum of gaps
        self._s2 = 0.0      # decayed sum of squared gaps
        self._at = 0.0      # when the sums were last decayed
        self._last = 0.0    # the last arrival (0: none since the stream was (re)started)
        self.gaps = 0       # gaps counted in all

    def restart(self) -> None:
        """A new subscription: the time until its first message is not a gap of the stream."""
        self._last = 0.0

    def arrive(self, now: float, n: int = 1, period: float = 0.0) -> None:
        if n <= 0:
            return
        last = self._last
        self._last = now
        if not last:
            n -= 1  # the first message opens the stream: only the ones after it close gaps
            if n <= 0:
                return
            last = now - period
        span = max(now - last, 0.0)
        if self._at:
            decay = math.exp(-max(now - self._at, 0.0) / self.memory_s)
            self._s1 *= decay
            self._s2 *= decay
        self._at = now
        inner = min(period, span) / n       # the n - 1 gaps inside the period
        first = span - inner * (n - 1)      # the gap that led into the period
        self._s1 += span
        self._s2 += first * first + (n - 1) * inner * inner
        self.gaps += n

    @property
    def value(self) -> float | None:
        """The learned cadence in seconds, None before two messages arrived."""
        if self._s1 <= 0.0:
            return None
        return self._s2 / self._s1


# --- numeric checks used by decoders -------------------------------------------------------------------


def num(d: dict[str, Any], key: str) -> float:
    """``float(d[key])`` with the failures turned into rejects."""
    try:
        return float(d[key])
    except KeyError:
        raise RejectedMessage("missing_field", key) from None
    except (TypeError, ValueError):
        raise RejectedMessage("non_numeric", key) from None


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
        "anchor", "asset", "cadence", "cadence_s", "channel", "count", "critical", "flushed", "hi",
        "instrument", "key", "kind", "last", "lo", "probe_at", "probes", "quote", "ref", "ref_at",
        "resubscribed_at", "scale", "seen", "seq", "seq_anchor", "seq_at", "seq_streak", "since", "state",
        "streak", "subscribed_at", "topic",
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
        self.seq_at = 0.0           # when ``seq`` was accepted (a re-subscribe after it resets the expectation)
        self.seq_streak = 0
        self.state = FeedState.CONNECTING
        self.subscribed_at = 0.0
        self.resubscribed_at = 0.0
        self.since = 0.0            # when the channel went quiet
        self.cadence = Cadence()    # learned from what the channel delivered (see ``Cadence``)
        self.probe_at = 0.0         # no subscribe probe of a quiet channel before this
        self.probes = 0             # probes sent (status)

    def bound(self, tuning: Tuning) -> float:
        """The silence bound in force: the learned one, the configured one as its floor."""
        return tuning.learned_bound(tuning.silence_bound(self.cadence_s), self.cadence.value)

    def check_jump(self, price: float, now: float) -> None:
        """Check one price against the last accepted one and, when it passes, make it the reference (for
        frames that carry nothing else to check; see ``connectors.sanity``)."""
        check_price(self, price, now)
        accept_price(self, price, now)


class FeedContext:
    """What a connector hands its decoders and connections: the event sink, the clock, the metrics and the
    burst-limited reject log, all keyed by the source's name."""

    def __init__(self, exchange: str, sink: Callable[[Event], None], metrics: Metrics,
                 clock: Callable[[], float], tuning: Tuning, timebase: Timebase | None = None) -> None:
        self.exchange = exchange
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        # pacing, keep-alive, connection age, backoff waits and jitter: one injected timebase
        self.time = timebase or Timebase()
        self.tuning = tuning
        self.log = logging.getLogger(f"hedgewatch.connectors.{exchange}")
        self.burst = BurstLog(self.log, tuning.log_interval_s)
        self.rejected: dict[str, int] = {}
        self.reconnects = 0
        self.up: dict[str, bool] = {}   # connection name -> connected, subscribed and delivering
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

    @property
    def connections_up(self) -> int:
        return sum(self.up.values())

    def add_connection(self, name: str) -> None:
        """Register a connection (down until it is subscribed), so its series has a sample from the start."""
        self.up.setdefault(name, False)
        self.metrics.feed_connection_up.labels(self.exchange, name).set(0)
        self._export_connected()

    def connection_up(self, up: bool, name: str = "") -> None:
        """Record that connection ``name`` is up (connected and subscribed) or down.
        ``hedgewatch_feed_connected{exchange}`` is 1 only while every connection of the venue is up: a
        venue whose quotes connection is down is not connected, whatever its other connections do."""
        self.up[name] = up
        self.metrics.feed_connection_up.labels(self.exchange, name or self.exchange).set(1 if up else 0)
        self._export_connected()

    def _export_connected(self) -> None:
        up = bool(self.up) and all(self.up.values())
        self.metrics.feed_connected.labels(self.exchange).set(1 if up else 0)

    def channel_state(self, r: Route, subscribed: bool, quiet: bool) -> None:
        """Per-channel health: ``hedgewatch_feed_channel_subscribed`` and ``hedgewatch_feed_channel_quiet``."""
        m = self.metrics
        m.feed_channel_subscribed.labels(self.exchange, r.channel, r.asset).set(1 if subscribed else 0)
        m.feed_channel_quiet.labels(self.exchange, r.channel, r.asset).set(1 if quiet else 0)

    async def pace_connect(self) -> None:
        """Space the venue's connection attempts ``connect_gap_s`` apart (venue connect rate limits: OKX
        allows 3 a second per IP), whatever the number of connections starting or reconnecting at once."""
        gap = self.tuning.connect_gap_s
        now = self.time.monotonic()
        slot = max(now, self._last_connect + gap)
        self._last_connect = slot
        if slot > now:
            await self.time.sleep(slot - now)

    def backoff(self, base_s: float, cap_s: float) -> Backoff:
        """A backoff drawing its jitter from the timebase's random source."""
        return Backoff(base_s, cap_s, self.time.rng)

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

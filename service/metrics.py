"""Every Prometheus metric of hedgewatch, in one place, with full names and base units.

Each process exports only its own: ``Metrics`` is the daemon's (``hedgewatch run``/``demo``),
``NotifyMetrics`` the notifier's (``hedgewatch notify``). Each object owns its own ``CollectorRegistry``
(passed in or fresh), so tests and several processes in one interpreter never collide, and each registry
carries prometheus_client's process, platform and GC collectors. Labels are low-cardinality: index, asset,
exchange, channel, rule, reason, queue, destination.

A labelled counter has no series until its first ``labels()`` call, so a dashboard shows "No data" and
``rate``/``increase`` miss the first increment. Every label set known at start is therefore created at 0:
``feed_known`` and ``channel_known`` (from the connectors), ``rules_known`` and ``redis_known`` (from the
daemon), and the notifier's destinations (from the notifier).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

# Tick-to-index latency buckets: the target is p99 < 5 ms, so resolution is finest below 10 ms.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# The reasons a decoder rejects a message with (connectors/README.md, "Rejects").
REJECT_REASONS = (
    "malformed", "missing_field", "non_numeric", "non_finite", "non_positive", "absurd", "crossed",
    "no_snapshot", "out_of_order", "unexpected", "decode_error",
)
# Every queue of the daemon, for hedgewatch_queue_dropped_total; the Redis ones only with Redis configured.
DAEMON_QUEUES = ("ingest",)
REDIS_QUEUES = ("redis_snapshot", "redis_hedge", "alert_outbox")
REDIS_KINDS = ("index", "hedge", "alert")
ALERT_STATUSES = ("firing", "resolved")


def _default_collectors(registry: CollectorRegistry) -> None:
    """prometheus_client's process_*, python_info and python_gc_* metrics, in this registry too (the
    library registers them only in its global one)."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class FeedMetrics:
    """The connectors' metrics, shared by the daemon and by ``hedgewatch ingest`` (which runs only them)."""

    registry: CollectorRegistry

    def _define_feeds(self, r: CollectorRegistry) -> None:
            self.messages = Counter(
                "hedgewatch_messages", "Messages received and decoded", ["exchange", "channel"], registry=r
            )
            self.messages_rejected = Counter(
                "hedgewatch_messages_rejected", "Messages rejected", ["exchange", "reason"], registry=r
            )
            self.reconnects = Counter("hedgewatch_reconnects", "Reconnections", ["exchange"], registry=r)
            self.feed_connected = Gauge(
                "hedgewatch_feed_connected",
                "1 while every connection of the venue is connected, subscribed and delivering",
                ["exchange"],
                registry=r,
            )
            self.feed_connection_up = Gauge(
                "hedgewatch_feed_connection_up",
                "1 while this connection is connected, subscribed and delivering",
                ["exchange", "connection"],
                registry=r,
            )
            self.feed_channel_subscribed = Gauge(
                "hedgewatch_feed_channel_subscribed",
                "1 while the channel of this asset is subscribed on a live connection",
                ["exchange", "channel", "asset"],
                registry=r,
            )
            self.feed_channel_quiet = Gauge(
                "hedgewatch_feed_channel_quiet",
                "1 while a subscribed channel of this asset is past its learned silence bound on a live connection",
                ["exchange", "channel", "asset"],
                registry=r,
            )
            self.channel_silent = Counter(
                "hedgewatch_channel_silent",
                "Times a subscribed channel went past its silence bound (quiet on a live connection)",
                ["exchange", "channel"],
                registry=r,
            )

    def feed_known(self, exchange: str) -> None:
        """A source's counters at 0 before its first message: rejects per reason, reconnects."""
        for reason in REJECT_REASONS:
            self.messages_rejected.labels(exchange, reason)
        self.reconnects.labels(exchange)

    def channel_known(self, exchange: str, channel: str) -> None:
        """A subscribed channel's counters at 0: messages and silences."""
        self.messages.labels(exchange, channel)
        self.channel_silent.labels(exchange, channel)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Metrics(FeedMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        _default_collectors(r)

        # oracle and index
        self.index_price = Gauge("hedgewatch_index_price", "Index level", ["index"], registry=r)
        self.index_status = Gauge(
            "hedgewatch_index_status", "Index status: 0 ok, 1 degraded, 2 stale", ["index"], registry=r
        )
        self.asset_price = Gauge("hedgewatch_asset_price", "Oracle price in USD", ["asset"], registry=r)
        self.asset_status = Gauge(
            "hedgewatch_asset_status", "Oracle status: 0 ok, 1 degraded, 2 stale", ["asset"], registry=r
        )
        self.asset_confidence = Gauge(
            "hedgewatch_asset_confidence_ratio",
            "Spread of the valid sources relative to the oracle price",
            ["asset"],
            registry=r,
        )
        self.source_price = Gauge(
            "hedgewatch_source_price", "Latest price of one source in USD; no sample while the source is stale",
            ["asset", "exchange"], registry=r
        )
        self.source_age = Gauge(
            "hedgewatch_source_age_seconds", "Age of a source's latest price", ["asset", "exchange"], registry=r
        )
        self.source_stale = Gauge(
            "hedgewatch_source_stale",
            "1 while the source's price is older than the oracle's max age (hedgewatch_source_price then has "
            "no sample)",
            ["asset", "exchange"],
            registry=r,
        )
        self.source_excluded = Gauge(
            "hedgewatch_source_excluded",
            "1 when the oracle excludes the source (outlier or stale)",
            ["asset", "exchange"],
            registry=r,
        )
        self.source_spot = Gauge(
            "hedgewatch_source_spot",
            "1 while the source is priced from its spot market, 0 while its perpetual is",
            ["asset", "exchange"],
            registry=r,
        )
        self.oracle_sources = Gauge(
            "hedgewatch_oracle_sources", "Number of valid sources behind the oracle price", ["asset"], registry=r
        )
        self.index_constituent_weight = Gauge(
            "hedgewatch_index_constituent_weight_ratio", "Constituent weight", ["index", "asset"], registry=r
        )
        self.index_tracking_error = Gauge(
            "hedgewatch_index_tracking_error_ratio",
            "Our level against the venue's published value of the tracked index, minus one",
            ["index"],
            registry=r,
        )

        # derivatives
        self.index_funding_rate = Gauge(
            "hedgewatch_index_funding_rate", "Index funding rate per 8 h", ["index"], registry=r
        )
        self.index_open_interest_usd = Gauge(
            "hedgewatch_index_open_interest_usd", "Open interest summed in USD", ["index"], registry=r
        )
        self.index_basis_ratio = Gauge(
            "hedgewatch_index_basis_ratio", "Futures over spot minus one", ["index"], registry=r
        )
        self.index_basis_annualized_ratio = Gauge(
            "hedgewatch_index_basis_annualized_ratio", "Annualized basis", ["index"], registry=r
        )
        self.index_futures_price = Gauge(
            "hedgewatch_index_futures_price", "Futures leg price in index points", ["index"], registry=r
        )
        self.asset_funding_rate = Gauge(
            "hedgewatch_asset_funding_rate", "Funding rate per 8 h", ["asset", "exchange"], registry=r
        )
        self.asset_open_interest_usd = Gauge(
            "hedgewatch_asset_open_interest_usd", "Open interest in USD", ["asset", "exchange"], registry=r
        )

        # hedge and rules
        self.hedge_ratio = Gauge("hedgewatch_hedge_ratio", "Target hedge ratio", ["index"], registry=r)
        self.hedge_contracts = Gauge(
            "hedgewatch_hedge_contracts", "Recommended hedge size in contracts", ["index"], registry=r
        )
        self.hedge_notional_usd = Gauge(
            "hedgewatch_hedge_notional_usd", "Target hedge notional", ["index"], registry=r
        )
        self.portfolio_value_usd = Gauge(
            "hedgewatch_portfolio_value_usd",
            "Portfolio value at oracle prices: view unhedged (the holdings) or hedged (plus the hedge ledger's "
            "P&L, funding and fees)",
            ["index", "view"],
            registry=r,
        )

        # the hedge ledger (the advised hedge as if executed, or the position reported)
        self.hedge_position_contracts = Gauge(
            "hedgewatch_hedge_position_contracts", "Hedge position in the ledger, signed (short < 0)", ["index"],
            registry=r,
        )
        self.hedge_pnl_usd = Gauge(
            "hedgewatch_hedge_pnl_usd", "Price P&L of the hedge, realized + unrealized", ["index"], registry=r
        )
        # gauges, not counters: funding is paid as well as received
        self.hedge_funding_usd = Gauge(
            "hedgewatch_hedge_funding_usd_total", "Funding received (negative: paid) since the ledger started",
            ["index"], registry=r,
        )
        self.hedge_fees_usd = Gauge(
            "hedgewatch_hedge_fees_usd_total", "Trading fees paid by the hedge since the ledger started",
            ["index"], registry=r,
        )
        self.portfolio_drawdown_ratio = Gauge(
            "hedgewatch_portfolio_drawdown_ratio", "Portfolio value against its running peak, minus one (<= 0)",
            ["index", "view"], registry=r,
        )
        self.rule_state = Gauge(
            "hedgewatch_rule_state", "0 inactive, 1 pending, 2 firing", ["index", "rule"], registry=r
        )
        self.alerts = Counter("hedgewatch_alerts", "Alerts emitted", ["rule", "status"], registry=r)
        self.index_indicator = Gauge(
            "hedgewatch_index_indicator",
            "Price-level signals the rules watch (moving averages, levels, trendlines, all-time high/low), in "
            "index points; the indicator label is the signal's name in rule expressions",
            ["index", "indicator"],
            registry=r,
        )

        self._define_feeds(r)

        # pipeline
        self.tick_to_index = Histogram(
            "hedgewatch_tick_to_index_seconds",
            "From a tick's receive time to the index update it caused",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("hedgewatch_queue_depth", "Items waiting in a queue", ["queue"], registry=r)
        self.queue_capacity = Gauge("hedgewatch_queue_capacity", "Capacity of a queue", ["queue"], registry=r)
        self.queue_dropped = Counter(
            "hedgewatch_queue_dropped", "Items dropped by a queue's overflow policy", ["queue"], registry=r
        )
        self.redis_up = Gauge("hedgewatch_redis_up", "1 while Redis answers", registry=r)
        # the process's Redis clients (the publisher's and the alert outbox's) each report what they see;
        # hedgewatch_redis_up has this one writer and says 1 only while every client that reported is through
        self._redis_seen: dict[str, bool] = {}
        self.redis_published = Counter(
            "hedgewatch_redis_published", "Messages published to Redis", ["kind"], registry=r
        )
        self.redis_errors = Counter("hedgewatch_redis_errors", "Failed Redis operations", registry=r)
        self.outbox_depth = Gauge(
            "hedgewatch_alert_outbox_depth", "Alerts waiting on disk for Redis", registry=r
        )
        self.outbox_writable = Gauge(
            "hedgewatch_alert_outbox_writable",
            "1 while the alert outbox directory takes writes; 0 while alerts are held in memory only",
            registry=r,
        )
        self.outbox_write_errors = Counter(
            "hedgewatch_alert_outbox_write_errors", "Failed writes to the alert outbox directory", registry=r
        )
        self.heartbeat_timestamp = Gauge(
            "hedgewatch_heartbeat_timestamp_seconds", "When the heartbeat key was last set (epoch)",
            registry=r,
        )

        self.clock_offset = Gauge(
            "hedgewatch_clock_offset_seconds",
            "Wall clock minus the daemon's steady clock (ages and durations run on the steady one)",
            registry=r,
        )
        self.clock_steps = Counter(
            "hedgewatch_clock_steps", "Wall-clock steps of a second or more detected", registry=r
        )
        # the scaled layout (run --bus redis): index ownership and the event streams
        self.index_owner = Gauge(
            "hedgewatch_index_owner", "1 while this process holds the lease of the index", ["index"], registry=r
        )
        self.lease_age = Gauge(
            "hedgewatch_lease_age_seconds", "Seconds since Redis last confirmed this process's lease renewal",
            ["index"], registry=r,
        )
        self.takeovers = Counter(
            "hedgewatch_takeovers", "Acquisitions of the index's lease by this process", ["index"], registry=r
        )
        self.fencing_refusals = Counter(
            "hedgewatch_fencing_refusals", "Writes refused because the lease had passed to another process",
            ["index"], registry=r,
        )
        self.lease_losses = Counter(
            "hedgewatch_lease_losses", "Times this process stepped down as the index's owner", ["index"],
            registry=r,
        )
        self.stream_events = Counter(
            "hedgewatch_stream_events_read", "Events read from the Redis event streams", registry=r
        )
        self.up = Gauge("hedgewatch_up", "1 while the daemon runs", registry=r)
        self.ready = Gauge("hedgewatch_ready", "1 when every constituent has oracle quorum", registry=r)
        self.start_time = Gauge("hedgewatch_start_time_seconds", "Start time (epoch)", registry=r)

        for q in DAEMON_QUEUES:
            self.queue_dropped.labels(q)

    # -- label sets known at start --------------------------------------------------------------------

    def rules_known(self, rules: Iterable[str]) -> None:
        """Alerts emitted per rule and status at 0."""
        for rule in rules:
            for status in ALERT_STATUSES:
                self.alerts.labels(rule, status)

    def redis_known(self, configured: bool) -> None:
        """With Redis configured, its counters at 0; without, no Redis metric at all (a Redis gauge at 0
        would claim Redis is down and the heartbeat missing, for a daemon that does not use Redis)."""
        if configured:
            for kind in REDIS_KINDS:
                self.redis_published.labels(kind)
            for q in REDIS_QUEUES:
                self.queue_dropped.labels(q)
            return
        for metric in (self.redis_up, self.redis_published, self.redis_errors, self.outbox_depth,
                       self.outbox_writable, self.outbox_write_errors, self.heartbeat_timestamp):
            self.registry.unregister(metric)

    def scaled_known(self, index: str | None) -> None:
        """In the scaled layout (``index`` given) the ownership series at 0; otherwise none of them."""
        scaled = (self.index_owner, self.lease_age, self.takeovers, self.fencing_refusals, self.lease_losses,
                  self.stream_events)
        if index is None:
            for metric in scaled:
                self.registry.unregister(metric)
            return
        self.index_owner.labels(index).set(0)
        for counter in (self.takeovers, self.fencing_refusals, self.lease_losses):
            counter.labels(index)

    def redis_answers(self, client: str, ok: bool) -> None:
        """``client`` (``publisher``, ``outbox``) reached Redis (``ok``) or failed to."""
        self._redis_seen[client] = ok
        self.redis_up.set(1 if all(self._redis_seen.values()) else 0)


class IngestMetrics(FeedMetrics):
    """``hedgewatch ingest``'s own: the connectors', its queue, its writes to the event streams, its shard."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        _default_collectors(r)
        self._define_feeds(r)
        self.shard = Gauge(
            "hedgewatch_ingest_shard", "This shard's number (label shard K of shards N), always 1",
            ["shard", "shards"], registry=r,
        )
        self.assigned = Gauge(
            "hedgewatch_ingest_assigned", "1 for each source and asset this shard runs", ["exchange", "asset"],
            registry=r,
        )
        self.events_written = Counter(
            "hedgewatch_ingest_events_written", "Events written to the Redis event streams", registry=r
        )
        self.entries_written = Counter(
            "hedgewatch_ingest_entries_written", "Stream entries written (one per asset per flush)", registry=r
        )
        self.queue_depth = Gauge("hedgewatch_queue_depth", "Items waiting in a queue", ["queue"], registry=r)
        self.queue_capacity = Gauge("hedgewatch_queue_capacity", "Capacity of a queue", ["queue"], registry=r)
        self.queue_dropped = Counter(
            "hedgewatch_queue_dropped", "Items dropped by a queue's overflow policy", ["queue"], registry=r
        )
        self.redis_up = Gauge("hedgewatch_redis_up", "1 while Redis answers", registry=r)
        self.redis_errors = Counter("hedgewatch_redis_errors", "Failed Redis operations", registry=r)
        self.heartbeat_timestamp = Gauge(
            "hedgewatch_heartbeat_timestamp_seconds", "When the heartbeat key was last set (epoch)",
            registry=r,
        )
        self.up = Gauge("hedgewatch_ingest_up", "1 while the ingest shard runs", registry=r)
        self.start_time = Gauge("hedgewatch_start_time_seconds", "Start time (epoch)", registry=r)
        self.queue_dropped.labels("ingest")


class NotifyMetrics:
    """The notifier's own metrics (``hedgewatch notify``): deliveries, retries, refusals, its queues."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        _default_collectors(r)

        self.notify_sent = Counter(
            "hedgewatch_notify_sent", "Notifications delivered", ["destination"], registry=r
        )
        self.notify_failed = Counter(
            "hedgewatch_notify_failed",
            "Notifications given up: refused for good (a 4xx other than 429, a redirect) or sent "
            "max_unconfirmed_retries times without an answer (reason unconfirmed)",
            ["destination", "reason"],
            registry=r,
        )
        self.notify_retries = Counter(
            "hedgewatch_notify_retries",
            "Delivery attempts retried (rate_limited, server_error, network, timeout, bad_response); "
            "timeout ones may have arrived and be duplicated",
            ["destination", "reason"],
            registry=r,
        )
        self.notify_silenced = Counter("hedgewatch_notify_silenced", "Alerts muted by a silence", registry=r)
        self.notify_alertmanager_active = Gauge(
            "hedgewatch_notify_alertmanager_alerts", "Alerts the notifier keeps pushing to Alertmanager",
            ["status"], registry=r,
        )
        self.notify_bot_commands = Counter(
            "hedgewatch_notify_bot_commands", "Telegram bot commands answered", ["command"], registry=r
        )
        self.notify_bot_ignored = Counter(
            "hedgewatch_notify_bot_ignored",
            "Telegram updates not answered (chat not allowed, not a command, unknown command)",
            ["reason"], registry=r,
        )
        self.notify_delivery = Histogram(
            "hedgewatch_notify_delivery_seconds",
            "From an alert entering the stream to its delivery",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=r,
        )
        self.queue_depth = Gauge("hedgewatch_queue_depth", "Items waiting in a queue", ["queue"], registry=r)
        self.queue_capacity = Gauge("hedgewatch_queue_capacity", "Capacity of a queue", ["queue"], registry=r)
        self.redis_errors = Counter("hedgewatch_redis_errors", "Failed Redis operations", registry=r)
        self.up = Gauge("hedgewatch_notify_up", "1 while the notifier runs", registry=r)

    def destinations_known(self, destinations: Iterable[str]) -> None:
        """Each destination's queue depth at 0 before its first alert (its counters are created by the
        worker, which knows their reasons)."""
        for name in destinations:
            self.queue_depth.labels(f"notify_{name}").set(0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

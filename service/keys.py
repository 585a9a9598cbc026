"""Every Redis name hedgewatch reads or writes, in one place (DESIGN: Redis)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "hedgewatch"

    def index_channel(self, index: str) -> str:
        """pub/sub: index snapshot JSON."""
        return f"{self.prefix}:index:{index}"

    def hedge_channel(self, index: str) -> str:
        """pub/sub: hedge recommendation JSON."""
        return f"{self.prefix}:hedge:{index}"

    def state(self, index: str) -> str:
        """key: last snapshot and persisted rule/hedge state."""
        return f"{self.prefix}:state:{index}"

    @property
    def alerts_channel(self) -> str:
        """pub/sub: alert JSON."""
        return f"{self.prefix}:alerts"

    @property
    def alerts_stream(self) -> str:
        """stream (MAXLEN ~): the same alerts, durable."""
        return f"{self.prefix}:alerts:stream"

    @property
    def outbox_marker(self) -> str:
        """hash: outbox id -> last outbox sequence taken into the alert stream (exactly-once)."""
        return f"{self.prefix}:alerts:outbox"

    @property
    def commands(self) -> str:
        """stream: commands to the daemon from other programs (field ``json``, see ``service.commands``), e.g.
        ``hedge_ack`` from the Telegram bot; read with a consumer group."""
        return f"{self.prefix}:commands"

    def command_result(self, entry_id: str) -> str:
        """key with TTL: the outcome of the command at stream entry ``entry_id``."""
        return f"{self.prefix}:commands:result:{entry_id}"

    @property
    def heartbeat(self) -> str:
        """key with TTL, set while the daemon is healthy."""
        return f"{self.prefix}:heartbeat"

    @property
    def silences(self) -> str:
        """hash: silence id -> silence JSON, read by the notifier."""
        return f"{self.prefix}:silences"

    @property
    def delivered(self) -> str:
        """hash: alert id -> delivery time, the notifier's dedup record."""
        return f"{self.prefix}:notify:delivered"

    @property
    def alertmanager_alerts(self) -> str:
        """hash: fingerprint -> latest alert JSON of the series, what the notifier keeps pushing to
        Alertmanager (shared by every notifier worker, so a restart keeps firing alerts alive)."""
        return f"{self.prefix}:notify:alertmanager"


    # --- the scaled layout (ingest shards, engines with leases); see ScaledKeys ------------------------

    def state_at(self, index: str) -> str:
        """key: ``saved_at`` of the state in ``state(index)``; a fenced write of an older state is skipped."""
        return f"{self.state(index)}:at"

    def events(self, asset: str) -> str:
        """stream (MAXLEN ~): the normalized events of one asset (or composite index symbol), in batches."""
        return f"{self.prefix}:events:{asset}"

    @property
    def feeds(self) -> str:
        """stream (MAXLEN ~): the connections' status changes of every ingest shard."""
        return f"{self.prefix}:events:_feeds"

    def lease(self, index: str) -> str:
        """key with TTL: the process that owns ``index`` now (its value: the holder's name)."""
        return f"{self.prefix}:lease:{index}"

    def fence(self, index: str) -> str:
        """key: the fencing token, one more at every acquisition of the lease of ``index``."""
        return f"{self.prefix}:fence:{index}"

    @property
    def alert_ids(self) -> str:
        """set with TTL: ids of the alerts already in the stream, so a new owner never adds one twice."""
        return f"{self.prefix}:alerts:ids"

    def process_heartbeat(self, role: str, name: str) -> str:
        """key with TTL: the heartbeat of one process of the scaled layout (an ingest shard, an engine)."""
        return f"{self.prefix}:heartbeat:{role}:{name}"


@dataclass(frozen=True, slots=True)
class ScaledKeys(Keys):
    """The names of the scaled layout (``run --bus redis``, ``ingest``): every key of one index carries the
    hash tag ``{INDEX}``, so they all live in one Redis Cluster hash slot and one Lua script may touch them
    together (the fencing token with the alert stream and the state). Event streams are one per asset,
    untagged: they spread over the slots, and an engine reads only the assets its index needs. The alert
    stream is the index's (``<prefix>:{INDEX}:alerts:stream``): the fenced write of an alert checks the
    index's token in the same script. Pub/sub channels are no keys; they are tagged the same for clarity."""

    index: str = "HW"

    def _tag(self, index: str | None = None) -> str:
        return f"{self.prefix}:{{{index or self.index}}}"

    def index_channel(self, index: str) -> str:
        return f"{self._tag(index)}:index"

    def hedge_channel(self, index: str) -> str:
        return f"{self._tag(index)}:hedge"

    def state(self, index: str) -> str:
        return f"{self._tag(index)}:state"

    def lease(self, index: str) -> str:
        return f"{self._tag(index)}:lease"

    def fence(self, index: str) -> str:
        return f"{self._tag(index)}:fence"

    @property
    def alerts_channel(self) -> str:
        return f"{self._tag()}:alerts"

    @property
    def alerts_stream(self) -> str:
        return f"{self._tag()}:alerts:stream"

    @property
    def outbox_marker(self) -> str:
        return f"{self._tag()}:alerts:outbox"

    @property
    def alert_ids(self) -> str:
        return f"{self._tag()}:alerts:ids"

    @property
    def commands(self) -> str:
        return f"{self._tag()}:commands"

    def command_result(self, entry_id: str) -> str:
        return f"{self._tag()}:commands:result:{entry_id}"

    @property
    def heartbeat(self) -> str:
        return f"{self._tag()}:heartbeat"

    @property
    def silences(self) -> str:
        return f"{self._tag()}:silences"

    @property
    def delivered(self) -> str:
        return f"{self._tag()}:notify:delivered"

    @property
    def alertmanager_alerts(self) -> str:
        return f"{self._tag()}:notify:alertmanager"


def keys_for(prefix: str, index: str, scaled: bool) -> Keys:
    """The names a process uses: the scaled layout's when the events travel over Redis (``bus: redis``)."""
    return ScaledKeys(prefix, index) if scaled else Keys(prefix)

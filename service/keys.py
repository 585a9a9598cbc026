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


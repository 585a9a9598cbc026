"""Alertmanager-style grouping, pure and clock-free (the caller passes ``now``).

Alerts of one route with equal ``group_by`` values form a group. A new group waits ``group_wait`` before its
first notification, so alerts that fire together arrive together; later changes wait until
``group_interval`` after the previous notification; a group whose alerts still fire and that has nothing
new is notified again every ``repeat_interval`` (0 disables repeats). A notification shows the latest state
of each alert series (fingerprint) and settles every stream entry it covers. A group with nothing firing is
forgotten once notified.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hedgewatch.service.alerts import Alert
from hedgewatch.service.notify.routing import Route


@dataclass(frozen=True, slots=True)
class Item:
    """An alert read from the stream, not yet settled."""

    alert: Alert
    entry_id: str
    entered_at: float  # when it entered the stream (from its entry id), for the delivery latency metric


@dataclass(frozen=True, slots=True)
class Notification:
    destination: str
    key: tuple[str, ...]
    alerts: tuple[Alert, ...]  # what the message shows
    items: tuple[Item, ...]  # the stream entries it settles; empty for a repeat
    repeat: bool = False


@dataclass(slots=True)
class _Group:
    route: Route
    created_at: float
    pending: list[Item] = field(default_factory=list)
    firing: dict[str, Alert] = field(default_factory=dict)
    last_sent: float | None = None
    flush_at: float | None = None


class Grouper:
    def __init__(self) -> None:
        self._groups: dict[tuple[str, ...], _Group] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def add(self, route: Route, item: Item, now: float) -> None:
        key = route.group_key(item.alert)
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = _Group(route, now)
        g.pending.append(item)
        if g.last_sent is None:
            at = g.created_at + route.group_wait_s
        else:
            at = max(now, g.last_sent + route.group_interval_s)
        g.flush_at = at if g.flush_at is None else min(g.flush_at, at)

    def forget(self, route: Route, alert: Alert) -> None:
        """A resolve that is not to be sent still ends the series' repeats."""
        g = self._groups.get(route.group_key(alert))
        if g is not None:
            g.firing.pop(alert.fingerprint, None)

    def due(self, now: float) -> list[Notification]:
        """Notifications to send now, in the order their groups were created."""
        out = []
        for key, g in list(self._groups.items()):
            if g.pending and g.flush_at is not None and g.flush_at <= now:
                out.append(self._flush(key, g, now))
            elif (not g.pending and g.firing and g.route.repeat_interval_s > 0 and g.last_sent is not None
                  and now >= g.last_sent + g.route.repeat_interval_s):
                g.last_sent = now
                out.append(Notification(key[0], key, tuple(g.firing.values()), (), repeat=True))
            if not g.pending and not g.firing:
                del self._groups[key]
        return out

    def _flush(self, key: tuple[str, ...], g: _Group, now: float) -> Notification:
        latest: dict[str, Alert] = {}
        for it in g.pending:
            latest.pop(it.alert.fingerprint, None)  # re-insert so the order is that of the latest state
            latest[it.alert.fingerprint] = it.alert
        for fp, a in latest.items():
            if a.status == "firing":
                g.firing[fp] = a
            else:
                g.firing.pop(fp, None)
        items = tuple(g.pending)
        g.pending.clear()
        g.flush_at = None
        g.last_sent = now
        return Notification(key[0], key, tuple(latest.values()), items)

    def next_deadline(self) -> float | None:
        """The earliest time ``due`` may return something, or None when nothing is scheduled."""
        times = []
        for g in self._groups.values():
            if g.pending and g.flush_at is not None:
                times.append(g.flush_at)
            elif g.firing and g.route.repeat_interval_s > 0 and g.last_sent is not None:
                times.append(g.last_sent + g.route.repeat_interval_s)
        return min(times, default=None)

"""Which destinations an alert goes to, and how it is grouped there. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hedgewatch.service.alerts import Alert
from hedgewatch.service.config import NotifyConfig, RouteConfig


def attribute(alert: Alert, name: str) -> str | None:
    """An alert's rule, index, severity, status, fingerprint, or else one of its labels."""
    if name in ("rule", "index", "severity", "status", "fingerprint"):
        return str(getattr(alert, name))
    return alert.labels.get(name)


def matches(alert: Alert, matchers: Mapping[str, str]) -> bool:
    """True when every ``name: value`` matcher equals the alert's attribute of that name."""
    return all(attribute(alert, k) == v for k, v in matchers.items())


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved route: the config's route with the notify-wide defaults filled in."""

    destination: str
    severities: tuple[str, ...]
    match: Mapping[str, str]
    group_by: tuple[str, ...]
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    send_resolved: bool

    def accepts(self, alert: Alert) -> bool:
        if self.severities and alert.severity not in self.severities:
            return False
        return matches(alert, self.match)

    def group_key(self, alert: Alert) -> tuple[str, ...]:
        return (self.destination, *(attribute(alert, k) or "" for k in self.group_by))


def _resolve(r: RouteConfig, cfg: NotifyConfig) -> Route:
    return Route(
        destination=r.destination, severities=r.severities, match=dict(r.match), group_by=r.group_by,
        group_wait_s=cfg.group_wait_s if r.group_wait_s is None else r.group_wait_s,
        group_interval_s=cfg.group_interval_s if r.group_interval_s is None else r.group_interval_s,
        repeat_interval_s=cfg.repeat_interval_s if r.repeat_interval_s is None else r.repeat_interval_s,
        send_resolved=r.send_resolved,
    )


def build_routes(cfg: NotifyConfig) -> list[Route]:
    """The config's routes; without any, one route per configured destination filtered by its
    ``severities``. Routes to a destination that is not configured are ignored."""
    configured = {name for name, sec in (("slack", cfg.slack), ("telegram", cfg.telegram)) if sec is not None}
    if cfg.routes:
        return [_resolve(r, cfg) for r in cfg.routes if r.destination in configured]
    routes = []
    for name in ("slack", "telegram"):
        sec = getattr(cfg, name)
        if sec is not None:
            routes.append(_resolve(RouteConfig(destination=name, severities=sec.severities), cfg))
    return routes


def route(alert: Alert, routes: list[Route]) -> list[Route]:
    """The routes an alert takes: every accepting route, the first one per destination."""
    chosen: dict[str, Route] = {}
    for r in routes:
        if r.destination not in chosen and r.accepts(alert):
            chosen[r.destination] = r
    return list(chosen.values())

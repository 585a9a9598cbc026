"""Alertmanager as a destination, fed the way Prometheus feeds it.

Each alert read from the stream becomes its series' latest state in a Redis hash
(``hedgewatch:notify:alertmanager``, fingerprint -> alert JSON) shared by every notifier worker. A pusher
POSTs that state to ``/api/v2/alerts`` of every configured Alertmanager as soon as it changes and again every
``resend_interval_s``: a firing alert with its own ``startsAt`` and an ``endsAt`` four intervals ahead, so
Alertmanager keeps it active for as long as it fires (and resolves it by itself only when no notifier is left
to re-send); a resolved one with its real ``endsAt``, re-sent for ``resolved_retention_s`` so an
Alertmanager that missed it (restarting, unreachable) still learns of the resolution.

Pushing is idempotent (Alertmanager identifies an alert by its labels), so re-sends, several workers and a
timed-out request answered late cost nothing. Routing, grouping, silences and repeats are Alertmanager's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx
import orjson
import redis.asyncio as aredis

from hedgewatch.service.alerts import Alert, iso
from hedgewatch.service.config import AlertmanagerConfig
from hedgewatch.service.keys import Keys
from hedgewatch.service.metrics import NotifyMetrics
from hedgewatch.service.notify.bursts import Burst
from hedgewatch.service.notify.destinations import (
    JSON,
    GiveUp,
    RetryLater,
    check_url,
    retry_after,
    status_error,
    transport_error,
)
from hedgewatch.service.notify.silences import Matcher, Silence

log = logging.getLogger(__name__)
T = TypeVar("T")
BATCH = 256  # alerts per POST, as Prometheus batches them
VALID_FOR_INTERVALS = 4  # Prometheus: endsAt = now + 4 x max(evaluation interval, resend delay)

# newest wins: a later firing replaces an earlier one and its resolve; a resolve ends only its own firing.
# RFC 3339 times of one fixed format compare as strings.
_UPDATE = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, c = pcall(cjson.decode, cur)
  if ok and type(c) == 'table' and type(c.startsAt) == 'string' then
    if c.startsAt > ARGV[2] then return 0 end
    if c.startsAt == ARGV[2] and c.status == 'resolved' and ARGV[3] == 'firing' then return 0 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
return 1
"""

RedisRetry = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]


def hedge_text(alert: Alert) -> str | None:
    h = alert.hedge
    if h is None:
        return None
    return (f"hedge {h.from_ratio:.0%} -> {h.to_ratio:.0%}: {h.side} {h.contracts:g} contracts "
            f"(${h.notional_usd:,.0f})")


def postable(alert: Alert, now: float, valid_for_s: float) -> dict[str, Any]:
    """The alert in the API's ``PostableAlert`` shape. Empty labels are left out (Alertmanager drops
    them); the hedge change becomes an annotation."""
    annotations = dict(alert.annotations)
    text = hedge_text(alert)
    if text is not None:
        annotations.setdefault("hedge", text)
    ends = alert.ends_at if alert.status == "resolved" and alert.ends_at is not None else now + valid_for_s
    out: dict[str, Any] = {"labels": {k: v for k, v in alert.labels.items() if v != ""},
                           "annotations": annotations, "startsAt": iso(alert.starts_at), "endsAt": iso(ends)}
    if alert.generator_url:
        out["generatorURL"] = alert.generator_url
    return out


class AlertmanagerPusher:
    """Keeps every configured Alertmanager up to date with the alerts in the shared hash."""

    name = "alertmanager"

    def __init__(self, cfg: AlertmanagerConfig, client: httpx.AsyncClient, redis: aredis.Redis, keys: Keys,
                 metrics: NotifyMetrics, redis_retry: RedisRetry, *, retry_after_max_s: float,
                 retry_min_s: float, retry_max_s: float, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.urls = [check_url(u, f"notify.alertmanager.urls[{i}]").rstrip("/") + "/api/v2/alerts"
                     for i, u in enumerate(cfg.urls)]
        self.cfg = cfg
        self._client = client
        self._redis = redis
        self._key = keys.alertmanager_alerts
        self._metrics = metrics
        self._retry = redis_retry
        self._cap = retry_after_max_s
        self._retry_min, self._retry_max = retry_min_s, retry_max_s
        self._clock, self._mono = clock, monotonic
        self._changed = asyncio.Event()
        self._bursts = [Burst(log, f"alertmanager[{i}]") for i in range(len(self.urls))]
        self._delay = retry_min_s
        metrics.notify_sent.labels(self.name)
        for status in ("firing", "resolved"):
            metrics.notify_alertmanager_active.labels(status).set(0)

    async def take(self, alert: Alert) -> None:
        """Record ``alert`` as its series' latest state (unless a newer firing is there) and push soon."""
        await self._redis.eval(_UPDATE, 1, self._key, alert.fingerprint, iso(alert.starts_at) or "",  # type: ignore[misc]
                               alert.status, alert.to_json())
        self._changed.set()

    async def run(self) -> None:
        """Push on every change and every ``resend_interval_s``; after a failure, sooner, backing off."""
        due = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, due - self._mono())):
                    await self._changed.wait()
            changed = self._changed.is_set()
            self._changed.clear()
            alerts = await self._retry("alertmanager state", self._load)
            wait = await self._push_all(alerts)
            if wait is None and alerts:
                firing = sum(a.status == "firing" for a in alerts)
                log.log(logging.INFO if changed else logging.DEBUG,
                        "notify: alertmanager: %s %d alerts (%d firing, %d resolved) to %d Alertmanager%s",
                        "pushed" if changed else "re-sent", len(alerts), firing, len(alerts) - firing,
                        len(self.urls), "" if len(self.urls) == 1 else "s")
            due = self._mono() + (self.cfg.resend_interval_s if wait is None else wait)

    async def _load(self) -> list[Alert]:
        """The alerts to push; resolved ones past their retention and unreadable entries are removed."""
        now = self._clock()
        raw = await self._redis.hgetall(self._key)
        keep, drop = [], []
        for fp, value in raw.items():
            try:
                a = Alert.from_json(value)
            except (KeyError, ValueError, TypeError):
                drop.append(fp)
                continue
            if a.status == "resolved" and (a.ends_at or 0.0) < now - self.cfg.resolved_retention_s:
                drop.append(fp)
            else:
                keep.append(a)
        if drop:
            await self._redis.hdel(self._key, *drop)
        for status in ("firing", "resolved"):
            self._metrics.notify_alertmanager_active.labels(status).set(sum(a.status == status for a in keep))
        return keep

    async def _push_all(self, alerts: list[Alert]) -> float | None:
        """POST to every Alertmanager; None when all took it, else how long to wait before trying again."""
        now = self._clock()
        valid_for = VALID_FOR_INTERVALS * self.cfg.resend_interval_s
        body = [postable(a, now, valid_for) for a in alerts]
        waits: list[float] = []
        for url, burst in zip(self.urls, self._bursts, strict=True):
            wait = await self._push(url, burst, body)
            if wait is not None:
                waits.append(wait)
        if not waits or not body:
            self._delay = self._retry_min
            return None
        backoff = self._delay * (0.5 + random.random())
        self._delay = min(self._delay * 2, self._retry_max)
        return min(max(max(waits), backoff), self.cfg.resend_interval_s)

    async def _push(self, url: str, burst: Burst, body: list[dict[str, Any]]) -> float | None:
        for i in range(0, len(body), BATCH):
            try:
                await self._post(url, body[i:i + BATCH])
            except RetryLater as exc:
                self._metrics.notify_retries.labels(self.name, exc.reason).inc()
                burst.failed(f"{exc.reason}, retrying")
                return exc.delay_s if exc.delay_s is not None else 0.0
            except GiveUp as exc:
                # a 4xx: the request is wrong (a label Alertmanager refuses); retrying at the resend
                # interval keeps the rest of the state flowing once it is fixed
                self._metrics.notify_failed.labels(self.name, exc.reason).inc()
                burst.failed(f"refused the alerts ({exc.reason})", logging.ERROR)
                return self.cfg.resend_interval_s
        burst.recovered()
        self._metrics.notify_sent.labels(self.name).inc()
        return None

    async def _post(self, url: str, batch: list[dict[str, Any]]) -> None:
        try:
            resp = await self._client.post(url, content=orjson.dumps(batch), headers=JSON,
                                           timeout=self.cfg.timeout_s)
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        if resp.status_code == 429:
            raise RetryLater("rate_limited", retry_after(resp.headers.get("retry-after"), self._cap))
        err = status_error(resp.status_code)
        if err is not None:
            raise err


# the notifier's matcher names that are not Alertmanager labels
_AM_NAMES = {"rule": "alertname"}
_NOT_LABELS = ("status", "fingerprint")


async def add_am_silence(client: httpx.AsyncClient, cfg: AlertmanagerConfig, matchers: Sequence[Matcher],
                         starts_at: float, ends_at: float, created_by: str, comment: str) -> str:
    """Create the same silence in Alertmanager (``POST /api/v2/silences``), so it also mutes what
    Alertmanager delivers; returns Alertmanager's silence id. Members of a cluster share silences, so the
    first URL that takes it is enough. Raises ``ValueError`` when a matcher has no Alertmanager equivalent
    and ``RetryLater``/``GiveUp`` when no Alertmanager took it."""
    if any(m.name in _NOT_LABELS for m in matchers):
        raise ValueError("status and fingerprint are not Alertmanager labels")
    body = {"matchers": [{**m.to_dict(), "name": _AM_NAMES.get(m.name, m.name)} for m in matchers],
            "startsAt": iso(starts_at), "endsAt": iso(ends_at), "createdBy": created_by,
            "comment": comment or "hedgewatch"}
    last: RetryLater | GiveUp = RetryLater("network")
    for i, base in enumerate(cfg.urls):
        url = check_url(base, f"notify.alertmanager.urls[{i}]").rstrip("/") + "/api/v2/silences"
        try:
            resp = await client.post(url, content=orjson.dumps(body), headers=JSON, timeout=cfg.timeout_s)
        except httpx.TransportError as exc:
            last = transport_error(exc)
            continue
        err = status_error(resp.status_code)
        if err is not None:
            last = err
            continue
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            return str(orjson.loads(resp.content).get("silenceID", ""))
        return ""
    raise last


async def mirror_silence(cfg: AlertmanagerConfig | None, s: Silence,
                         client: httpx.AsyncClient | None = None) -> str | None:
    """Mirror the notifier silence ``s`` into Alertmanager when one is configured; a line for the user
    saying what happened there, None without an Alertmanager."""
    if cfg is None:
        return None
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(httpx.AsyncClient(follow_redirects=False))
        try:
            sid = await add_am_silence(client, cfg, s.matchers, s.starts_at, s.ends_at, s.created_by, s.comment)
        except ValueError as exc:
            return f"not set in Alertmanager: {exc}"
        except (RetryLater, GiveUp) as exc:
            return f"not set in Alertmanager ({exc.reason}): set it there with amtool"
    return f"Alertmanager silence {sid}"

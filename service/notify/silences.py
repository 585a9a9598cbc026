"""Silences: mute alerts matching some matchers until a time. Stored in Redis (``hedgewatch:silences``,
a hash of id -> JSON) so the CLI, another program or an operator with redis-cli can set them, and every
notifier sees them."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import orjson
import redis.asyncio as aredis

from service.alerts import Alert, iso
from service.keys import Keys
from service.notify.routing import matches

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``15m``, ``2h``, ``1d``, ``1w`` -> seconds."""
    m = DURATION.match(text)
    if m is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 2h, 1d)")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_matchers(items: list[str]) -> dict[str, str]:
    """``["rule=ma50_break", "index=HW"]`` -> a matcher mapping."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"not a matcher: {item!r} (use name=value)")
        out[name.strip()] = value.strip()
    return out


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes every alert whose attributes match all ``matchers`` until ``ends_at`` (epoch seconds)."""

    id: str
    matchers: dict[str, str]
    ends_at: float
    created_at: float
    comment: str = ""
    created_by: str = field(default="cli")

    def active(self, now: float) -> bool:
        return now < self.ends_at

    def mutes(self, alert: Alert, now: float) -> bool:
        return self.active(now) and matches(alert, self.matchers)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Silence:
        d = orjson.loads(raw)
        return cls(id=str(d["id"]), matchers={str(k): str(v) for k, v in d.get("matchers", {}).items()},
                   ends_at=float(d["ends_at"]), created_at=float(d.get("created_at", 0.0)),
                   comment=str(d.get("comment", "")), created_by=str(d.get("created_by", "")))

    def describe(self) -> str:
        m = ", ".join(f"{k}={v}" for k, v in self.matchers.items()) or "(everything)"
        return f"{self.id}  until {iso(self.ends_at)}  {m}" + (f"  # {self.comment}" if self.comment else "")


async def add_silence(r: aredis.Redis, keys: Keys, matchers: Mapping[str, str], duration_s: float,
                      comment: str = "", now: float | None = None) -> Silence:
    """Create a silence lasting ``duration_s`` from now."""
    t = time.time() if now is None else now
    s = Silence(uuid.uuid4().hex[:12], dict(matchers), t + duration_s, t, comment)
    await r.hset(keys.silences, s.id, s.to_json())
    return s


async def list_silences(r: aredis.Redis, keys: Keys, now: float | None = None,
                        include_expired: bool = False) -> list[Silence]:
    """Silences ordered by end time; malformed entries are skipped."""
    t = time.time() if now is None else now
    out = []
    for raw in (await r.hgetall(keys.silences)).values():
        try:
            s = Silence.from_json(raw)
        except (ValueError, KeyError, TypeError):
            continue
        if include_expired or s.active(t):
            out.append(s)
    return sorted(out, key=lambda s: s.ends_at)


async def remove_silence(r: aredis.Redis, keys: Keys, silence_id: str) -> bool:
    return bool(await r.hdel(keys.silences, silence_id))


async def purge_expired(r: aredis.Redis, keys: Keys, now: float) -> int:
    """Delete silences that ended; returns how many."""
    expired = [s.id for s in await list_silences(r, keys, now, include_expired=True) if not s.active(now)]
    if expired:
        await r.hdel(keys.silences, *expired)
    return len(expired)

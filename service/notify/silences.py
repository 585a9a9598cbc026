"""Silences: mute alerts matching some matchers until a time, for the notifier's own deliveries (Slack,
Telegram; an Alertmanager keeps its own silences, set with amtool). Stored in Redis (``hedgewatch:silences``,
a hash of id -> JSON in Alertmanager's silence shape) so the CLI, the Telegram bot, another program or an
operator with redis-cli can set them, and every notifier sees them.

Matchers are Alertmanager's: ``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex``; a regular
expression matches the whole value; a label the alert does not have is the empty string. Names are the
alert's labels (``alertname``, ``index``, ``severity``, ...) plus ``rule`` (= ``alertname``), ``status``
and ``fingerprint``."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aredis

from hedgewatch.service.alerts import Alert, iso, parse_time
from hedgewatch.service.keys import Keys
from hedgewatch.service.notify.routing import attribute

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, "y": 365 * 86400.0}
MAX_SILENCE_S = 366 * 86400.0
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|==|=)\s*(.*?)\s*$")


def parse_duration(text: str) -> float:
    """``30s``, ``15m``, ``2h``, ``1h30m``, ``1d``, ``1w`` -> seconds. A bare number is refused: ``2`` is
    not obviously two seconds."""
    t = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        raise ValueError(f"duration {text!r} has no unit: write e.g. {t}m, {t}h or {t}d")
    pos, total = 0, 0.0
    for m in _PART.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not t or pos != len(t):
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 2h, 1h30m, 1d)")
    if total <= 0 or total > MAX_SILENCE_S:
        raise ValueError(f"duration {text!r} must be above 0 and at most a year")
    return total


@dataclass(frozen=True, slots=True)
class Matcher:
    """One of Alertmanager's matchers."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def __post_init__(self) -> None:
        if self.is_regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"{self.name}{self.op}{self.value}: not a regular expression ({exc})") from exc

    @property
    def op(self) -> str:
        return {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}[
            (self.is_regex, self.is_equal)]

    def matches(self, alert: Alert) -> bool:
        actual = attribute(alert, self.name) or ""
        hit = re.fullmatch(self.value, actual) is not None if self.is_regex else actual == self.value
        return hit == self.is_equal

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"' if self.is_regex else f"{self.name}{self.op}{self.value}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}


def parse_matcher(text: str) -> Matcher:
    """``rule=BelowMA50``, ``severity!=info``, ``rule=~Below.*``, ``index!~"HW|HX"``."""
    m = _MATCHER.match(text)
    if m is None:
        raise ValueError(f"not a matcher: {text!r} (use name=value, name!=value, name=~regex or name!~regex)")
    name, op, value = m.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return Matcher(name, value, is_regex=op in ("=~", "!~"), is_equal=op in ("=", "==", "=~"))


def parse_matchers(items: Iterable[str]) -> tuple[Matcher, ...]:
    """Every matcher of a command line; at least one (a silence of everything is a mistake to refuse)."""
    out = tuple(parse_matcher(i) for i in items)
    if not out:
        raise ValueError("a silence needs at least one matcher (e.g. rule=BelowMA50 or rule=~Below.*)")
    return out


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes every alert matching all ``matchers`` from ``starts_at`` until ``ends_at`` (epoch seconds)."""

    id: str
    matchers: tuple[Matcher, ...]
    ends_at: float
    starts_at: float
    comment: str = ""
    created_by: str = field(default="cli")

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, alert: Alert, now: float) -> bool:
        return self.active(now) and all(m.matches(alert) for m in self.matchers)

    def to_json(self) -> bytes:
        return orjson.dumps({"id": self.id, "matchers": [m.to_dict() for m in self.matchers],
                             "startsAt": iso(self.starts_at), "endsAt": iso(self.ends_at),
                             "createdBy": self.created_by, "comment": self.comment})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Silence:
        d = orjson.loads(raw)
        found = d.get("matchers", [])
        if isinstance(found, dict):  # written by an earlier version: {name: value}, exact matches
            matchers = tuple(Matcher(str(k), str(v)) for k, v in found.items())
        else:
            matchers = tuple(Matcher(str(m["name"]), str(m["value"]), bool(m.get("isRegex", False)),
                                     bool(m.get("isEqual", True))) for m in found)
        ends = parse_time(d["endsAt"]) if "endsAt" in d else float(d["ends_at"])
        starts = parse_time(d.get("startsAt")) if "startsAt" in d else float(d.get("created_at", 0.0))
        if ends is None:
            raise ValueError("a silence needs endsAt")
        return cls(id=str(d["id"]), matchers=matchers, ends_at=ends, starts_at=starts or 0.0,
                   comment=str(d.get("comment", "")), created_by=str(d.get("createdBy", d.get("created_by", ""))))

    def describe(self) -> str:
        m = ", ".join(str(x) for x in self.matchers) or "(everything)"
        return f"{self.id}  until {iso(self.ends_at)}  {m}" + (f"  # {self.comment}" if self.comment else "")


async def add_silence(r: aredis.Redis, keys: Keys, matchers: Sequence[Matcher], duration_s: float,
                      comment: str = "", now: float | None = None, created_by: str = "cli") -> Silence:
    """Create a silence lasting ``duration_s`` from now."""
    t = time.time() if now is None else now
    s = Silence(uuid.uuid4().hex[:12], tuple(matchers), t + duration_s, t, comment, created_by)
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
        if include_expired or t < s.ends_at:
            out.append(s)
    return sorted(out, key=lambda s: s.ends_at)


async def remove_silence(r: aredis.Redis, keys: Keys, silence_id: str) -> bool:
    return bool(await r.hdel(keys.silences, silence_id))


async def purge_expired(r: aredis.Redis, keys: Keys, now: float) -> int:
    """Delete silences that ended; returns how many."""
    expired = [s.id for s in await list_silences(r, keys, now, include_expired=True) if now >= s.ends_at]
    if expired:
        await r.hdel(keys.silences, *expired)
    return len(expired)

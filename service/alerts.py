"""The alert: what a rule (or the daemon itself) tells the user. Its JSON follows Alertmanager's webhook
alert shape so existing tooling reads it: ``id``, ``fingerprint``, ``rule``, ``index``, ``status``,
``severity``, ``summary``, ``starts_at``, ``ends_at``, ``labels``, ``annotations``, ``values`` and, for
hedge actions, ``hedge``."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

Status = Literal["firing", "resolved"]


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC string (what Alertmanager uses)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fingerprint(rule: str, index: str, labels: dict[str, str]) -> str:
    """Stable identity of an alert series: same rule, index and labels -> same fingerprint."""
    parts = [rule, index, *(f"{k}={labels[k]}" for k in sorted(labels))]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class HedgeChange:
    from_ratio: float
    to_ratio: float
    notional_usd: float
    contracts: float
    side: Literal["buy", "sell", "none"]
    id: str | None = None  # the advice this change made (``service.position``)
    position: float | None = None  # the signed position held when it was made; side and trade are from it
    trade_contracts: float | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert notification. ``id`` is unique per notification (a firing and its resolve differ);
    ``fingerprint`` is shared by every notification of the same series."""

    id: str
    fingerprint: str
    rule: str
    index: str
    status: Status
    severity: str
    summary: str
    starts_at: float
    ends_at: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    values: dict[str, float | str | bool | None] = field(default_factory=dict)
    hedge: HedgeChange | None = None

    @staticmethod
    def make_id(fp: str, status: str, starts_at: float) -> str:
        return f"{fp}-{status}-{int(starts_at * 1000)}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["starts_at"] = iso(self.starts_at)
        d["ends_at"] = iso(self.ends_at)
        if self.hedge is None:
            d.pop("hedge")
        return d

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        def ts(v: Any) -> float | None:
            if v is None or isinstance(v, int | float):
                return v
            return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()

        hedge = d.get("hedge")
        return cls(
            id=d["id"], fingerprint=d["fingerprint"], rule=d["rule"], index=d["index"], status=d["status"],
            severity=d["severity"], summary=d["summary"], starts_at=ts(d["starts_at"]) or 0.0,
            ends_at=ts(d.get("ends_at")), labels=dict(d.get("labels") or {}),
            annotations=dict(d.get("annotations") or {}), values=dict(d.get("values") or {}),
            hedge=HedgeChange(**hedge) if hedge else None,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Alert:
        return cls.from_dict(orjson.loads(raw))

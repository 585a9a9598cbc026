"""The alert: what a rule (or the daemon itself) tells the user.

Its JSON uses Alertmanager's own field names, so an Alertmanager, amtool or any webhook consumer reads it
as it is: ``labels`` (always ``alertname``, ``index`` and ``severity``), ``annotations`` (always
``summary``), ``startsAt``, ``endsAt`` (only once resolved), ``generatorURL`` and ``status``
(``firing``/``resolved``); plus hedgewatch's ``id``, ``fingerprint``, ``values`` (the inputs that made it
fire) and, for hedge actions, ``hedge``. In Python the common labels are also attributes (``rule``,
``index``, ``severity``, ``summary``)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

Status = Literal["firing", "resolved"]
RESERVED_LABELS = ("alertname", "index", "severity")


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC string (what Alertmanager uses)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: Any) -> float | None:
    """An RFC 3339 string (or epoch seconds) as epoch seconds; None for null, empty and Go's zero time."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TypeError("a time cannot be a boolean")
    if isinstance(value, int | float):
        ts = float(value)
    else:
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    if not math.isfinite(ts):
        raise ValueError("a time must be finite")
    return None if ts <= 0 else ts  # "0001-01-01T00:00:00Z" is how Alertmanager spells "not set"


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
    """One alert notification. ``id`` is unique per notification (a firing and its resolve differ) and
    deterministic (series and the firing's start), so a restart or a failover that emits the same
    notification again emits the same id; ``fingerprint`` is shared by every notification of a series.

    ``labels`` always holds ``alertname`` (= ``rule``), ``index`` and ``severity``, and ``annotations``
    ``summary``: they are filled in from the attributes at construction, the attributes winning."""

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
    generator_url: str = ""

    def __post_init__(self) -> None:
        own = {k: v for k, v in self.labels.items() if k not in RESERVED_LABELS}
        object.__setattr__(self, "labels", {"alertname": self.rule, "index": self.index,
                                            "severity": self.severity, **own})
        if self.annotations.get("summary") != self.summary:
            object.__setattr__(self, "annotations", {**self.annotations, "summary": self.summary})

    @staticmethod
    def make_id(fp: str, status: str, starts_at: float) -> str:
        """The id of the ``status`` notification of the firing of series ``fp`` that started at
        ``starts_at``: a firing and its resolve share the start, and differ by status."""
        return f"{fp}-{status}-{round(starts_at * 1000)}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "fingerprint": self.fingerprint, "status": self.status,
            "labels": dict(self.labels), "annotations": dict(self.annotations),
            "startsAt": iso(self.starts_at),
        }
        if self.ends_at is not None:
            d["endsAt"] = iso(self.ends_at)
        d["generatorURL"] = self.generator_url
        d["values"] = dict(self.values)
        if self.hedge is not None:
            d["hedge"] = asdict(self.hedge)
        return d

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Alert:
        """Read :meth:`to_dict`'s shape. Raises KeyError, ValueError or TypeError on anything else."""
        if "startsAt" not in d and "starts_at" in d:
            d = _from_earlier_shape(d)
        labels = {str(k): str(v) for k, v in (d.get("labels") or {}).items()}
        annotations = {str(k): str(v) for k, v in (d.get("annotations") or {}).items()}
        status = d["status"]
        if status not in ("firing", "resolved"):
            raise ValueError(f"unknown alert status {status!r}")
        starts = parse_time(d["startsAt"])
        if starts is None:
            raise ValueError("an alert needs startsAt")
        hedge = d.get("hedge")
        return cls(
            id=str(d["id"]), fingerprint=str(d["fingerprint"]), rule=labels["alertname"],
            index=labels["index"], status=status, severity=labels.get("severity", ""),
            summary=annotations.get("summary", ""), starts_at=starts, ends_at=parse_time(d.get("endsAt")),
            labels=labels, annotations=annotations, values=dict(d.get("values") or {}),
            hedge=HedgeChange(**hedge) if hedge else None, generator_url=str(d.get("generatorURL") or ""),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Alert:
        return cls.from_dict(orjson.loads(raw))


def _from_earlier_shape(d: dict[str, Any]) -> dict[str, Any]:
    """Alerts written by an earlier version (``rule``, ``starts_at``, ``ends_at``) may still wait in an
    outbox or the stream across an upgrade: read them rather than drop them."""
    labels = {**(d.get("labels") or {}), "alertname": d["rule"], "index": d["index"],
              "severity": d.get("severity", "")}
    annotations = {"summary": d.get("summary", ""), **(d.get("annotations") or {})}
    return {**d, "labels": labels, "annotations": annotations, "startsAt": d["starts_at"],
            "endsAt": d.get("ends_at")}

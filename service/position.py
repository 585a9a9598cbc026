"""The hedge position the daemon believes is held, where that belief comes from, and the life of each advice.

Positions are signed as venues report them: a short of 50 contracts is ``-50``. The belief comes from, in
order of authority: the venue (read-only balances, when configured: the source of truth), the user's
acknowledgement of an advice (``hedgewatch hedge ack``, ``POST /hedge/ack``, the Redis command stream), or the
config at first start. An advice is always "from what you hold to the target"; its states::

    advised ──ack──► acknowledged ──venue agrees──► reconciled
       │  └──venue reaches the target──────────────► reconciled
       ├──assumed executed (backtest, ``assume_executed``)──► executed
       ├──a new target, or the position changed otherwise──► superseded
       └──back inside the band, or older than the TTL──► expired

A user who does nothing keeps the same advice (same id): a drift advice is replaced only when the target
moves by more than half the tolerance band from the open advice's target, and not more often than
``drift_min_interval_s``; a rule's change of the target ratio always makes a new advice. Pure and
synchronous: the caller passes the time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from hedgewatch.service.errors import HedgewatchError

HISTORY_LEN = 50


class PositionSource(StrEnum):
    CONFIG = "config"
    ACK = "ack"
    VENUE = "venue"
    ASSUMED = "assumed"


class AdviceState(StrEnum):
    ADVISED = "advised"
    ACKNOWLEDGED = "acknowledged"
    EXECUTED = "executed"
    RECONCILED = "reconciled"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"


OPEN_STATES = frozenset({AdviceState.ADVISED})


class AckError(HedgewatchError):
    """An acknowledgement that cannot be applied (no open advice, a stale advice id, a bad number)."""


@dataclass
class Position:
    contracts: float
    source: PositionSource
    updated_at: float | None = None
    by: str | None = None


@dataclass
class Advice:
    """One trade instruction: from ``held_contracts`` (signed) to a short of ``target_contracts``."""

    id: str
    index: str
    reason: str
    created_at: float
    ratio: float
    target_contracts: float
    held_contracts: float
    trade_contracts: float
    side: str
    state: AdviceState = AdviceState.ADVISED
    updated_at: float = 0.0
    by: str | None = None
    sent_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = str(self.state)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Advice:
        names = cls.__dataclass_fields__
        kw = {k: v for k, v in d.items() if k in names}
        kw["state"] = AdviceState(kw.get("state", AdviceState.ADVISED))
        return cls(**kw)


@dataclass(frozen=True)
class AckResult:
    position: Position
    advice: Advice | None


@dataclass
class DriftPolicy:
    """When a drift from the target is worth an advice (portfolio section of the config)."""

    lot_size: float
    tolerance_ratio: float
    min_interval_s: float = 300.0
    remind_s: float = 0.0
    ttl_s: float = 86_400.0


@dataclass
class PositionBook:
    """The believed position and the open advice of one index."""

    index: str
    policy: DriftPolicy
    position: Position = field(default_factory=lambda: Position(0.0, PositionSource.CONFIG))
    open: Advice | None = None
    history: deque[Advice] = field(default_factory=lambda: deque(maxlen=HISTORY_LEN))
    seq: int = 0
    last_drift_at: float | None = None
    config_contracts: float = 0.0
    moved: bool = False  # the position changed other than by following the open advice

    @classmethod
    def from_config(cls, index: str, contracts: float, policy: DriftPolicy) -> PositionBook:
        return cls(index, policy, Position(contracts, PositionSource.CONFIG), config_contracts=contracts)

    # --- advice -----------------------------------------------------------------------------------------

    def _same(self, a: float, b: float) -> bool:
        return abs(a - b) < self.policy.lot_size / 2

    def decide(self, *, target: float, out_of_band: bool, band_contracts: float, ratio_changed: bool,
               now: float) -> str | None:
        """The reason a new advice is due now, or None. ``band_contracts`` is the tolerance band in
        contracts at the current price."""
        adv = self.open
        if ratio_changed:
            return "target_changed"
        if adv is None and not self.history:
            return "initial"
        if adv is not None and adv.state in OPEN_STATES:
            if not out_of_band or abs(target - adv.target_contracts) <= max(self.policy.lot_size,
                                                                            band_contracts / 2):
                return None  # the same advice stands: a user who does nothing is not told anything new
        elif not out_of_band:
            self.moved = False
            return None
        elif self.moved:
            return "position_changed"  # the user said (or the venue showed) that something else is held
        if self.last_drift_at is not None and now - self.last_drift_at < self.policy.min_interval_s:
            return None
        return "drift"

    def advise(self, *, reason: str, ratio: float, target: float, now: float) -> Advice:
        """A new advice from what is held to a short of ``target``; the open one is superseded."""
        self._close(AdviceState.SUPERSEDED, now)
        held = self.position.contracts
        delta = -target - held
        self.seq += 1
        adv = Advice(
            id=f"{self.index}-{self.seq}", index=self.index, reason=reason, created_at=now, ratio=ratio,
            target_contracts=target, held_contracts=held, trade_contracts=round(abs(delta), 10),
            side="none" if self._same(delta, 0.0) else ("sell" if delta < 0 else "buy"),
            updated_at=now, sent_at=now,
        )
        if reason == "drift":
            self.last_drift_at = now
        self.moved = False
        self.open = adv
        self.history.append(adv)
        return adv

    def moot(self, now: float) -> Advice | None:
        """The open drift advice once what is held is back inside half the band: it expires."""
        adv = self.open
        if adv is not None and adv.state in OPEN_STATES and adv.reason == "drift":
            return self._close(AdviceState.EXPIRED, now)
        return None

    def reminder(self, now: float) -> Advice | None:
        """The open advice again (same id) when reminders are on and one is due."""
        adv = self.open
        if adv is None or adv.state not in OPEN_STATES or adv.side == "none" or self.policy.remind_s <= 0:
            return None
        if now - adv.sent_at < self.policy.remind_s:
            return None
        adv.sent_at = now
        return adv

    def expire(self, now: float) -> Advice | None:
        """The open advice once it is older than the TTL."""
        adv = self.open
        if adv is not None and adv.state in OPEN_STATES and now - adv.created_at >= self.policy.ttl_s:
            return self._close(AdviceState.EXPIRED, now)
        return None

    def _close(self, state: AdviceState, now: float, by: str | None = None) -> Advice | None:
        adv = self.open
        if adv is None or adv.state not in OPEN_STATES:
            return None
        adv.state, adv.updated_at = state, now
        if by is not None:
            adv.by = by
        return adv

    def assume_executed(self, now: float) -> Advice | None:
        """Take the open advice as done (backtests, or ``portfolio.assume_executed``)."""
        adv = self.open
        if adv is None or adv.state not in OPEN_STATES:
            return None
        self.position = Position(-adv.target_contracts, PositionSource.ASSUMED, now)
        return self._close(AdviceState.EXECUTED, now)

    # --- what is held -------------------------------------------------------------------------------

    def ack(self, *, contracts: float | None, advice_id: str | None, by: str, now: float) -> AckResult:
        """The user did the open advice (``contracts`` None), or states what is held now (signed)."""
        adv = self.open if self.open is not None and self.open.state in OPEN_STATES else None
        if advice_id is not None and (adv is None or adv.id != advice_id):
            raise AckError(f"advice {advice_id} is not open (open: {adv.id if adv else 'none'})")
        if contracts is None:
            if adv is None:
                raise AckError("no open advice to acknowledge; state what is held with contracts")
            contracts = -adv.target_contracts
        elif contracts != contracts or abs(contracts) == float("inf"):
            raise AckError("contracts must be a finite number (a short of 50 is -50)")
        self.position = Position(float(contracts), PositionSource.ACK, now, by)
        if adv is not None:
            done = self._same(contracts, -adv.target_contracts)
            self._close(AdviceState.ACKNOWLEDGED if done else AdviceState.SUPERSEDED, now, by)
            self.moved = not done
        else:
            self.moved = True
        return AckResult(self.position, adv)

    def reconcile(self, contracts: float, now: float) -> Advice | None:
        """The venue's reported position, the source of truth: an open or acknowledged advice whose target
        it holds is reconciled; a position that moved elsewhere supersedes the open advice."""
        previous = self.position.contracts
        self.position = Position(float(contracts), PositionSource.VENUE, now, "venue")
        last = self.history[-1] if self.history else None
        if last is None:
            return None
        if self._same(contracts, -last.target_contracts):
            if last.state in (AdviceState.ADVISED, AdviceState.ACKNOWLEDGED, AdviceState.EXECUTED):
                last.state, last.updated_at = AdviceState.RECONCILED, now
                return last
            return None
        if not self._same(contracts, previous):
            self.moved = True
            return self._close(AdviceState.SUPERSEDED, now, "venue")
        return None

    def config_changed(self, contracts: float, now: float) -> bool:
        """The config's position was edited since the state was saved: the config wins."""
        if self._same(contracts, self.config_contracts):
            return False
        self.config_contracts = contracts
        self.position = Position(contracts, PositionSource.CONFIG, now, "config")
        self._close(AdviceState.SUPERSEDED, now, "config")
        self.moved = True
        return True

    # --- state --------------------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        p = self.position
        return {"contracts": p.contracts, "source": str(p.source), "updated_at": p.updated_at, "by": p.by,
                "advice": None if self.open is None else self.open.to_dict()}

    def dump(self) -> dict[str, Any]:
        p = self.position
        return {
            "position": {"contracts": p.contracts, "source": str(p.source), "updated_at": p.updated_at,
                         "by": p.by},
            "config_contracts": self.config_contracts, "seq": self.seq, "last_drift_at": self.last_drift_at,
            "moved": self.moved,
            "open": None if self.open is None else self.open.id,
            "history": [a.to_dict() for a in self.history],
        }

    def load(self, state: dict[str, Any]) -> None:
        p = state.get("position")
        if isinstance(p, dict) and isinstance(p.get("contracts"), int | float):
            self.position = Position(float(p["contracts"]), PositionSource(p.get("source", "config")),
                                     p.get("updated_at"), p.get("by"))
        if isinstance(state.get("config_contracts"), int | float):
            self.config_contracts = float(state["config_contracts"])
        self.seq = int(state.get("seq") or 0)
        self.last_drift_at = state.get("last_drift_at")
        self.moved = bool(state.get("moved"))
        self.history = deque((Advice.from_dict(a) for a in state.get("history") or []), maxlen=HISTORY_LEN)
        open_id = state.get("open")
        self.open = next((a for a in reversed(self.history) if a.id == open_id), None)

"""The per-asset price oracle: a (weighted) median of fresh venue prices with quorum rules.

Methodology (DESIGN "Oracle, per asset"; every number comes from ``OracleConfig``):

- A source's price is dropped when its last accepted update is older than ``max_age_s``.
- With 3 or more fresh sources the reference is the weighted median of all fresh sources; a source further
  than ``exclude_band_ratio`` from it is excluded, and re-admitted only after it has stayed within half the
  band for ``readmit_after_s`` (hysteresis: a venue flapping at the band edge does not flap the price).
  One addition: when the excluded sources are no longer a minority of the fresh ones (the market moved and
  they were the first to show it), those within half the band of the median are re-admitted at once.
- The published value depends on the number of valid (fresh, not excluded) sources:
  3+ the weighted median, ``ok``; 2 their mean, ``ok``, unless they disagree by more than
  ``pair_band_ratio`` (tighter than the exclusion band: with two sources there is no majority to tell the
  wrong one, so a drifting venue may move the mean by at most half the pair band): then the last value is
  held, still ``ok`` for ``pair_hold_s`` (one odd tick is not an outage), ``degraded`` once the
  disagreement lasts longer; 1 used only if within the band of the last value (or when there is no last
  value yet), ``degraded``, else the last value is held, ``degraded``; 0 the last value is held, ``stale``.
- A tick further than ``max_jump_ratio`` from the current oracle value while the oracle is ``ok``, or a
  non-positive one, is rejected: it is not stored and changes nothing (the source keeps its last accepted
  price, which ages as usual). After ``REJECT_STRIKES`` consecutive rejected ticks the source is
  ``rejected`` (out of the price) until its next acceptable tick.

Published with the value: its status, the number of valid sources and a confidence, the relative spread
``(max - min) / price`` of the valid sources (0 with one source, None with none).

Every change of a source's status, and of the oracle's own status, is recorded as a ``SourceTransition`` in
a list shared with the caller, which drains it for metrics and alerts.

The hot path (``update``) is written for CPython speed: slotted objects, no allocation beyond a short list,
a plain sorted median when all weights are equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from hedgewatch.service.config import OracleConfig


class Status(StrEnum):
    """An asset oracle's or an index's status (the strings are the published contract)."""

    OK = "ok"
    DEGRADED = "degraded"
    STALE = "stale"


class SourceState(StrEnum):
    """One source's state in an asset oracle; only VALID sources contribute to the published price."""

    VALID = "ok"
    EXCLUDED = "excluded"
    REJECTED = "rejected"
    STALE = "stale"
    PENDING = "pending"


class TransitionKind(StrEnum):
    """What a ``SourceTransition`` is about."""

    SOURCE = "source"  # a source's state (``source`` names the venue)
    ORACLE = "oracle"  # an asset oracle's status
    INDEX = "index"  # the index status (``asset`` holds the index name)
    MARKET = "market"  # the market (spot or perpetual) that prices a source
    REBALANCE = "rebalance"  # a rebalance happened (``reason`` lists members added and removed)
    REBALANCE_PREVIEW = "rebalance_preview"  # a scheduled rebalance's preview window opened


OK, DEGRADED, STALE = Status.OK, Status.DEGRADED, Status.STALE
STATUS_CODE = {OK: 0, DEGRADED: 1, STALE: 2}
VALID, EXCLUDED, REJECTED = SourceState.VALID, SourceState.EXCLUDED, SourceState.REJECTED
SRC_STALE, PENDING = SourceState.STALE, SourceState.PENDING

# Consecutive rejected ticks after which a source is taken out of the price: one hostile tick changes
# nothing, a venue that keeps sending absurd prices is reported.
REJECT_STRIKES = 3


@dataclass(slots=True)
class SourceTransition:
    """One status change, for alerts and logs. ``kind`` is ``source`` (``source`` names the venue),
    ``oracle`` (an asset's oracle status), ``index`` (the index status; ``asset`` holds the index name) or
    ``rebalance`` (a rebalance happened; ``reason`` lists members added and removed) or
    ``rebalance_preview`` (a scheduled rebalance's preview window opened)."""

    ts: float
    kind: TransitionKind
    asset: str
    source: str
    old: str
    new: str
    reason: str
    price: float | None = None
    reference: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "ts": self.ts,
            "kind": self.kind,
            "asset": self.asset,
            "source": self.source,
            "old": self.old,
            "new": self.new,
            "reason": self.reason,
            "price": self.price,
            "reference": self.reference,
        }


class Source:
    """One venue's latest price for one asset, in USD."""

    __slots__ = ("inside_since", "name", "outlier", "price", "reason", "rejected", "status", "strikes", "ts",
                 "weight")

    def __init__(self, name: str, weight: float) -> None:
        self.name = name
        self.weight = weight
        self.price: float | None = None
        self.ts = 0.0
        self.status = PENDING
        self.reason = "no price yet"
        self.rejected = 0
        self.strikes = 0  # consecutive rejected ticks
        self.inside_since: float | None = None
        # Remembered across staleness and rejected ticks: going quiet must not launder an exclusion.
        self.outlier = False

    @property
    def excluded(self) -> bool:
        return self.status == EXCLUDED


def median(values: list[float]) -> float:
    """The median of a non-empty list (sorted in place)."""
    values.sort()
    n = len(values)
    h = n >> 1
    if n & 1:
        return values[h]
    return (values[h - 1] + values[h]) * 0.5


def weighted_median(pairs: list[tuple[float, float]]) -> float:
    """The weighted median of ``(value, weight)`` pairs (sorted in place). When the cumulative weight hits
    exactly half at a value, the result is the midpoint with the next value, so equal weights give the
    ordinary median."""
    pairs.sort()
    total = 0.0
    for _, w in pairs:
        total += w
    half = total * 0.5
    acc = 0.0
    for i, (v, w) in enumerate(pairs):
        acc += w
        if acc > half + 1e-12 * total:
            return v
        if abs(acc - half) <= 1e-12 * total:
            return (v + pairs[i + 1][0]) * 0.5 if i + 1 < len(pairs) else v
    return pairs[-1][0]


class AssetOracle:
    """The oracle for one asset. ``update`` feeds one source's USD price; ``refresh`` re-evaluates
    staleness and re-admission at a given time. Both return True when the price or the status changed."""

    __slots__ = (
        "_band",
        "_by_name",
        "_equal_weights",
        "_half_band",
        "_jump",
        "_max_age",
        "_pair_band",
        "_pair_hold",
        "_readmit",
        "_sink",
        "_sources",
        "_split_since",
        "_weights",
        "asset",
        "confidence",
        "n_valid",
        "price",
        "reason",
        "status",
        "ts",
    )

    def __init__(
        self,
        asset: str,
        config: OracleConfig,
        sink: list[SourceTransition],
        weights: dict[str, float] | None = None,
    ) -> None:
        self.asset = asset
        self._max_age = config.max_age_s
        self._band = config.exclude_band_ratio
        self._half_band = config.exclude_band_ratio * 0.5
        self._readmit = config.readmit_after_s
        self._jump = config.max_jump_ratio
        self._pair_band = min(config.pair_band_ratio, config.exclude_band_ratio)
        self._pair_hold = config.pair_hold_s
        self._split_since: float | None = None  # when the only two valid sources started to disagree
        self._sink = sink
        self._sources: list[Source] = []
        self._by_name: dict[str, Source] = {}
        self._weights = dict(weights or {})
        self._equal_weights = True
        self.price: float | None = None
        self.status = STALE
        self.reason = "no sources yet"
        self.n_valid = 0
        self.confidence: float | None = None
        self.ts = 0.0

    # --- sources -----------------------------------------------------------------------------------

    def source(self, name: str) -> Source:
        """The source named ``name``, created on first use with its configured weight."""
        src = self._by_name.get(name)
        if src is None:
            src = Source(name, self._weights.get(name, 1.0))
            self._sources.append(src)
            self._by_name[name] = src
            self._equal_weights = len({s.weight for s in self._sources}) == 1
        return src

    @property
    def sources(self) -> list[Source]:
        return self._sources

    def _set_source(self, src: Source, status: SourceState, reason: str, now: float, ref: float | None) -> None:
        if status == EXCLUDED:
            src.outlier = True
        elif status == VALID:
            src.outlier = False
        if src.status != status:
            # A first price is not news, nor is a wrong venue moving between "excluded" (an outlier) and
            # "rejected" (an absurd tick): it is out of the price either way, and a manipulated quote
            # straddling the absurd threshold would otherwise report it on every tick.
            if (src.status != PENDING or status != VALID) and {src.status, status} != {EXCLUDED, REJECTED}:
                self._sink.append(
                    SourceTransition(
                        now, TransitionKind.SOURCE, self.asset, src.name, src.status, status, reason, src.price, ref
                    )
                )
            src.status = status
        src.reason = reason

    # --- feeding -----------------------------------------------------------------------------------

    def update(self, name: str, price: float, now: float) -> bool:
        """Feed one source's latest USD price received at ``now``."""
        src = self._by_name.get(name)
        if src is None:
            src = self.source(name)
        if not price > 0.0 or price == math.inf:  # also catches NaN
            return self._reject(src, "non-positive or non-finite price", now)
        last = self.price
        # Only a healthy oracle is a reference for "absurd": when degraded or stale the quorum rules
        # below protect the value, and a genuine big move must be able to get through.
        if last is not None and self.status == OK:
            dev = price / last - 1.0
            if dev > self._jump or -dev > self._jump:
                return self._reject(src, f"absurd: {dev:+.1%} from the oracle price", now)
        src.strikes = 0
        src.price = price
        src.ts = now
        if src.status in (REJECTED, PENDING, SRC_STALE):
            # An excluded source stays excluded until the hysteresis re-admits it; so does one coming back
            # from an absurd tick with a price still outside the band (it would only be excluded again).
            if src.outlier or (src.status == REJECTED and last is not None and abs(price / last - 1.0) > self._band):
                self._set_source(src, EXCLUDED, "fresh again, still an outlier until re-admitted", now, last)
            else:
                self._set_source(src, VALID, "fresh", now, last)
        return self._recompute(now)

    def _reject(self, src: Source, why: str, now: float) -> bool:
        """A rejected tick: counted, and nothing else changes until it has happened ``REJECT_STRIKES``
        times in a row (then the source is out of the price until its next acceptable tick)."""
        src.rejected += 1
        src.strikes += 1
        if src.strikes < REJECT_STRIKES:
            src.reason = f"last tick rejected ({why})" if src.status == VALID else src.reason
            return False
        self._set_source(src, REJECTED, why, now, self.price)
        return self._recompute(now)

    def refresh(self, now: float) -> bool:
        """Re-evaluate staleness and re-admission at ``now`` (called periodically, not per tick)."""
        return self._recompute(now)

    # --- the computation ---------------------------------------------------------------------------

    def _reference(self, fresh: list[Source]) -> float:
        if self._equal_weights:
            return median([s.price for s in fresh])  # type: ignore[misc]
        return weighted_median([(s.price, s.weight) for s in fresh])  # type: ignore[misc]

    def _screen(self, fresh: list[Source], ref: float, now: float, may_exclude: bool) -> None:
        """Exclude outliers against ``ref`` and re-admit those that stayed close long enough."""
        band, half = self._band, self._half_band
        for s in fresh:
            dev = abs(s.price / ref - 1.0)  # type: ignore[operator]
            if dev <= band and s.status == VALID:
                continue  # the common case, kept inline for speed
            self._screen_one(s, dev, ref, now, may_exclude)
        if may_exclude:
            # When the excluded sources are no longer a minority, the market moved and they were the first
            # to show it: those back near the median are re-admitted at once instead of leaving a single
            # venue (or none) to price the asset through the hold period.
            valid = sum(1 for s in fresh if s.status == VALID)
            if valid * 2 <= len(fresh):
                for s in fresh:
                    if s.status == EXCLUDED and abs(s.price / ref - 1.0) <= half:  # type: ignore[operator]
                        s.inside_since = None
                        self._set_source(s, VALID, "re-admitted: the consensus moved to it", now, ref)

    def _screen_one(self, s: Source, dev: float, ref: float, now: float, may_exclude: bool) -> None:
        band = self._band
        if s.status == EXCLUDED:
            if dev <= self._half_band:
                if s.inside_since is None:
                    s.inside_since = now
                if now - s.inside_since >= self._readmit:
                    s.inside_since = None
                    why = f"re-admitted after {self._readmit:g}s within half the band"
                    self._set_source(s, VALID, why, now, ref)
                else:
                    s.reason = f"re-admitting: {dev:.2%} from median, within half band"
            else:
                s.inside_since = None
                s.reason = f"outlier: {dev:.2%} from median > {band:.2%}"
        elif may_exclude and dev > band:
            s.inside_since = None
            self._set_source(s, EXCLUDED, f"outlier: {dev:.2%} from median > {band:.2%}", now, ref)

    def _recompute(self, now: float) -> bool:  # noqa: C901 - one pass over the modes DESIGN lists
        fresh: list[Source] = []
        limit = now - self._max_age
        for s in self._sources:
            st = s.status
            if st in (REJECTED, PENDING):
                continue
            if s.ts < limit:
                if st != SRC_STALE:
                    self._set_source(s, SRC_STALE, f"no update for more than {self._max_age:g}s", now, None)
                continue
            fresh.append(s)
        if len(fresh) >= 3:
            self._screen(fresh, self._reference(fresh), now, True)
        elif self.price is not None and len(fresh) != len([s for s in fresh if s.status == VALID]):
            self._screen(fresh, self.price, now, False)
        valid = [s for s in fresh if s.status == VALID]
        n = len(valid)
        last, old_status = self.price, self.status
        price: float | None
        if n >= 3:
            price = self._reference(valid)
            status, reason = OK, ""
        elif n == 2:
            price, status, reason = self._pair(valid[0].price, valid[1].price, last, old_status, now)  # type: ignore[arg-type]
        elif n == 1:
            p = valid[0].price
            if last is None or abs(p / last - 1.0) <= self._band:  # type: ignore[operator]
                price, status, reason = p, DEGRADED, "single source"
            else:
                price, status, reason = last, DEGRADED, "single source far from the last value; holding"
        else:
            price, status, reason = last, STALE, "no valid source; holding"
        if n != 2:
            self._split_since = None
        if n >= 2:
            lo = hi = valid[0].price
            for s in valid:
                p = s.price
                if p < lo:  # type: ignore[operator]
                    lo = p
                elif p > hi:  # type: ignore[operator]
                    hi = p
            self.confidence = (hi - lo) / price if price else None  # type: ignore[operator]
        else:
            self.confidence = None if n == 0 else 0.0
        self.n_valid = n
        self.reason = reason
        if status != old_status:
            self._sink.append(
                SourceTransition(now, TransitionKind.ORACLE, self.asset, "", old_status, status, reason, price)
            )
            self.status = status
        if price != last:
            self.price = price
            self.ts = now
            return True
        return status != old_status

    def _pair(self, a: float, b: float, last: float | None, old_status: Status,
              now: float) -> tuple[float | None, Status, str]:
        """Two valid sources: their mean while they agree within the pair band; else the last value held,
        ``ok`` for ``pair_hold_s`` and ``degraded`` after (at once when the oracle was not ok)."""
        if abs(a - b) * 2.0 <= self._pair_band * (a + b):
            self._split_since = None
            return (a + b) * 0.5, OK, ""
        if self._split_since is None:
            self._split_since = now
        why = f"two sources disagree by {abs(a - b) * 2.0 / (a + b):.2%} > {self._pair_band:.2%}; holding"
        if last is not None and old_status == OK and now - self._split_since < self._pair_hold:
            return last, OK, why
        return last, DEGRADED, why

    # --- reporting ---------------------------------------------------------------------------------

    def to_dict(self, now: float) -> dict[str, object]:
        """The oracle value with its status, the number of valid sources and each source's price, status,
        reason and age (for ``/state``)."""
        return {
            "price": self.price,
            "status": self.status,
            "reason": self.reason,
            "valid_sources": self.n_valid,
            "confidence": self.confidence,
            "ts": self.ts,
            "sources": {
                s.name: {
                    "price": s.price,
                    "status": s.status,
                    "reason": s.reason,
                    "age_s": None if s.price is None else round(now - s.ts, 3),
                    "weight": s.weight,
                    "excluded": s.status in (EXCLUDED, REJECTED),
                    "rejected": s.rejected,
                }
                for s in self._sources
            },
        }

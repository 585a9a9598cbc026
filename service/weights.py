"""Weighting schemes: from constituent data to target weights that sum to 1.

``cap`` weights by market cap, ``free_float`` by market cap times the free-float ratio, ``equal`` gives
each member 1/n, ``fixed`` normalizes given weights, and ``capped`` starts from free-float cap weights and
clips every weight at ``cap_ratio``, redistributing the excess proportionally over the uncapped members,
repeated until nothing exceeds the cap (the S&P / MSCI capped-index procedure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hedgewatch.service.errors import HedgewatchError


class WeightingError(HedgewatchError):
    """The data cannot produce weights (a missing market cap, all weights zero, ...)."""


def _normalize(raw: Mapping[str, float]) -> dict[str, float]:
    total = sum(raw.values())
    if not total > 0:
        raise WeightingError("weights must have a positive sum")
    return {k: v / total for k, v in raw.items()}


def _caps(members: Sequence[str], market_caps: Mapping[str, float]) -> dict[str, float]:
    missing = [m for m in members if not market_caps.get(m, 0.0) > 0]
    if missing:
        raise WeightingError(f"no market cap for {', '.join(missing)}")
    return {m: float(market_caps[m]) for m in members}


def equal(members: Sequence[str]) -> dict[str, float]:
    if not members:
        raise WeightingError("no members")
    w = 1.0 / len(members)
    return dict.fromkeys(members, w)


def cap(members: Sequence[str], market_caps: Mapping[str, float]) -> dict[str, float]:
    return _normalize(_caps(members, market_caps))


def free_float(
    members: Sequence[str], market_caps: Mapping[str, float], float_ratios: Mapping[str, float]
) -> dict[str, float]:
    """Market cap times the free-float ratio (1.0 where no ratio is known)."""
    caps = _caps(members, market_caps)
    return _normalize({m: c * float_ratios.get(m, 1.0) for m, c in caps.items()})


def fixed(members: Sequence[str], weights: Mapping[str, float]) -> dict[str, float]:
    missing = [m for m in members if m not in weights]
    if missing:
        raise WeightingError(f"no fixed weight for {', '.join(missing)}")
    if any(weights[m] < 0 for m in members):
        raise WeightingError("fixed weights must not be negative")
    return _normalize({m: float(weights[m]) for m in members})


def capped(weights: Mapping[str, float], cap_ratio: float) -> dict[str, float]:
    """Clip every weight at ``cap_ratio`` and redistribute the excess proportionally among the members
    below the cap, until none exceeds it. When the cap is infeasible (``cap_ratio * n < 1``) every member
    gets the cap's closest feasible value, 1/n."""
    w = _normalize(weights)
    n = len(w)
    if cap_ratio * n <= 1.0 + 1e-12:
        return equal(list(w))
    fixed_at_cap: set[str] = set()
    for _ in range(n):
        over = [k for k, v in w.items() if k not in fixed_at_cap and v > cap_ratio * (1 + 1e-12)]
        if not over:
            break
        fixed_at_cap.update(over)
        free = [k for k in w if k not in fixed_at_cap]
        room = 1.0 - cap_ratio * len(fixed_at_cap)
        free_total = sum(w[k] for k in free)
        for k in fixed_at_cap:
            w[k] = cap_ratio
        for k in free:
            w[k] = w[k] / free_total * room if free_total > 0 else room / len(free)
    return w


def compute(
    scheme: str,
    members: Sequence[str],
    *,
    market_caps: Mapping[str, float] | None = None,
    float_ratios: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
    cap_ratio: float = 1.0,
) -> dict[str, float]:
    """Target weights of ``members`` under ``scheme`` (one of the config's ``Weighting`` names)."""
    if scheme == "equal":
        return equal(members)
    if scheme == "cap":
        return cap(members, market_caps or {})
    if scheme == "free_float":
        return free_float(members, market_caps or {}, float_ratios or {})
    if scheme == "fixed":
        return fixed(members, weights or {})
    if scheme == "capped":
        return capped(free_float(members, market_caps or {}, float_ratios or {}), cap_ratio)
    raise WeightingError(f"unknown weighting {scheme!r}")

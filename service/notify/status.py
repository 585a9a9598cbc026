"""What the Telegram bot says about an index, as plain text, from the daemon's saved state
(``hedgewatch:state:<INDEX>``: ``{"snapshot", "rules": {"engine": {"ratio"}, "hedge": {"positions":
{"position": {"contracts", "source"}}, "advice"}}, "saved_at"}``). Pure: the caller passes the state,
whether the heartbeat is alive, and now. Every field may be missing (an older or a starting daemon): what
is not known is said so."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

STALE_AFTER_S = 120.0  # a state older than this is shown with its age as a warning


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 172800:
        return f"{s / 3600:.1f} h ago"
    return f"{s / 86400:.1f} d ago"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def last_advice(state: dict[str, Any] | None) -> dict[str, Any] | None:
    advice = _d(_d(_d(state).get("rules")).get("hedge")).get("advice")
    return advice if isinstance(advice, dict) else None


def _ratio(state: dict[str, Any]) -> float | None:
    return _num(_d(_d(state.get("rules")).get("engine")).get("ratio"))


def _position(state: dict[str, Any]) -> tuple[float | None, str | None]:
    """The position the daemon believes is held, and where the belief comes from."""
    p = _d(_d(_d(_d(state.get("rules")).get("hedge")).get("positions")).get("position"))
    source = p.get("source")
    return _num(p.get("contracts")), source if isinstance(source, str) else None


def _advice_line(advice: dict[str, Any] | None, now: float) -> str:
    if advice is None:
        return "advice: none yet"
    trade, side = _num(advice.get("trade_contracts")), advice.get("side")
    target = _num(advice.get("target_contracts"))
    ts = _num(advice.get("ts"))
    what = f"{side} {trade:g} contracts" if trade and side in ("buy", "sell") else "no trade"
    parts = [f"advice: {what}"]
    held = _num(advice.get("position_contracts"))
    if held is not None and trade:
        parts.append(f"from {held:g}")
    if target is not None:
        parts.append(f"to a short of {target:g}")
    if advice.get("reason"):
        state = advice.get("state")
        parts.append(f"({advice['reason']}" + (f", {state}" if isinstance(state, str) else ""))
        parts[-1] += f", {ago(now - ts)})" if ts is not None else ")"
    return " ".join(parts)


def _header(index: str, state: dict[str, Any] | None, alive: bool, now: float) -> list[str]:
    lines = []
    if not alive:
        lines.append("The daemon's heartbeat is missing: it may be down.")
    saved = _num(_d(state).get("saved_at"))
    if state is None:
        lines.append(f"No state saved for index {index}: is the daemon running with this Redis?")
    elif saved is not None and now - saved > STALE_AFTER_S:
        lines.append(f"State of {index} saved {ago(now - saved)}: not current.")
    return lines


def status(index: str, state: dict[str, Any] | None, alive: bool, now: float) -> str:
    """``/status``: index level and status, each constituent's oracle, the hedge ratio, the position and
    the last advice."""
    lines = _header(index, state, alive, now)
    if state is None:
        return "\n".join(lines)
    snap = _d(state.get("snapshot"))
    level = _num(snap.get("level"))
    head = f"{index} {level:,.2f}" if level is not None else f"{index} (no level yet)"
    st = snap.get("status") or "unknown"
    reason = snap.get("status_reason")
    lines.append(f"{head}, {st}" + (f" ({reason})" if reason and st != "ok" else ""))
    constituents = _d(snap.get("constituents"))
    if constituents:
        parts = []
        for asset, c in sorted(constituents.items()):
            c = _d(c)
            n = c.get("sources")
            parts.append(f"{asset} {c.get('status') or '?'}" + (f" ({n} src)" if isinstance(n, int) else ""))
        lines.append("oracle: " + ", ".join(parts))
    ratio, (position, source) = _ratio(state), _position(state)
    lines.append("hedge ratio: " + (f"{ratio:.0%}" if ratio is not None else "unknown")
                 + ", position: " + (f"{position:g} contracts" if position is not None else "unknown")
                 + (f" ({source})" if source and position is not None else ""))
    lines.append(_advice_line(last_advice(state), now))
    return "\n".join(lines)


def hedge(index: str, state: dict[str, Any] | None, alive: bool, now: float) -> str:
    """``/hedge``: the last advice in full."""
    lines = _header(index, state, alive, now)
    if state is None:
        return "\n".join(lines)
    advice = last_advice(state)
    lines.append(f"{index} hedge")
    if advice is None:
        lines.append("No advice yet (the hedge is sized once the index is priced).")
        return "\n".join(lines)
    rows = [("ratio", "ratio", "{:.0%}"), ("portfolio", "portfolio_value_usd", "${:,.0f}"),
            ("target notional", "target_notional_usd", "${:,.0f}"), ("futures price", "futures_price", "{:,.2f}"),
            ("target short", "target_contracts", "{:g} contracts"),
            ("position", "position_contracts", "{:g} contracts"), ("beta", "beta", "{:.2f}"),
            ("funding per day", "funding_per_day_usd", "${:,.2f}")]
    for label, key, fmt in rows:
        v = _num(advice.get(key))
        if v is not None:
            lines.append(f"{label}: {fmt.format(v)}")
    lines.append(_advice_line(advice, now))
    if isinstance(advice.get("id"), str):
        lines.append(f"advice id: {advice['id']} (/ack when done)")
    return "\n".join(lines)

"""The pricing core's transitions reach event rules in their vocabulary."""

from __future__ import annotations

from rules.events import from_market
from service.oracle import SourceTransition


def t(kind: str, old: str, new: str) -> dict[str, object]:
    return SourceTransition(1.0, kind, "BTC", "bybit", old, new, "why").to_dict()


def test_source_transitions_map_to_event_kinds() -> None:
    assert from_market(t("source", "ok", "excluded"))["kind"] == "source_excluded"  # type: ignore[index]
    assert from_market(t("source", "ok", "rejected"))["kind"] == "source_excluded"  # type: ignore[index]
    assert from_market(t("source", "ok", "stale"))["kind"] == "source_stale"  # type: ignore[index]
    back = from_market(t("source", "excluded", "ok"))
    assert back == {"kind": "source_readmitted", "exchange": "bybit", "asset": "BTC", "status": "ok",
                    "reason": "why", "ts": 1.0}
    assert from_market(t("source", "pending", "ok")) is None  # a first price is not a re-admission


def test_oracle_status_and_ignored_kinds() -> None:
    assert from_market(t("oracle", "ok", "degraded")) == {
        "kind": "oracle_status", "asset": "BTC", "status": "degraded", "reason": "why", "ts": 1.0}
    assert from_market(t("index", "ok", "stale")) is None
    assert from_market(t("rebalance", "", "")) is None

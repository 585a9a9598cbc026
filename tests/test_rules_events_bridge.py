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


def test_a_wrong_venue_straddling_the_absurd_threshold_is_reported_once() -> None:
    from service.config import OracleConfig
    from service.oracle import AssetOracle

    sink: list[SourceTransition] = []
    o = AssetOracle("BTC", OracleConfig(), sink)
    for t, (a, b, c) in enumerate([(100.0, 100.1, 99.9)] * 3):
        o.update("a", a, float(t))
        o.update("b", b, float(t))
        o.update("c", c, float(t))
    sink.clear()
    for i in range(20):  # venue c quotes ~+50%: alternately just below and just above the absurd limit
        o.update("c", 149.9 if i % 2 else 150.1, 10.0 + i)
        o.update("a", 100.0, 10.0 + i)
        o.update("b", 100.1, 10.0 + i)
    kinds = [(t.source, t.old, t.new) for t in sink if t.kind == "source"]
    assert len(kinds) == 1 and kinds[0][0] == "c" and kinds[0][2] in ("excluded", "rejected")
    assert o.price is not None and abs(o.price / 100.05 - 1) < 0.001

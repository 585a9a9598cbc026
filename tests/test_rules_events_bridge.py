"""The pricing core's transitions reach event rules in their vocabulary."""

from __future__ import annotations

from hedgewatch.rules.events import from_market
from hedgewatch.service.oracle import SourceTransition


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
    assert from_market(t("rebalance", "", "done")) == {
        "kind": "rebalance", "asset": "BTC", "status": "done", "reason": "why", "ts": 1.0}


def test_scheduled_rebalances_are_told_ahead_and_when_done_each_time() -> None:
    """The bundled `RebalancePreview` and `Rebalanced` event rules: the preview when its window opens, the
    rebalance when done, and next month's again (a rebalance is a moment, not a condition to resolve)."""
    from datetime import UTC, datetime

    from hedgewatch.service.engine import Engine
    from tests.market_support import VENUES, config, quote

    def ts(*a: int) -> float:
        return datetime(*a, tzinfo=UTC).timestamp()

    start = ts(2026, 11, 1)
    e = Engine(config(index="weighting: equal\nrebalance: {schedule: monthly, preview_s: 3600}"), start)
    told = []
    for now in (start, ts(2026, 11, 30, 15, 30), ts(2026, 11, 30, 16), ts(2026, 12, 31, 15), ts(2026, 12, 31, 16)):
        e.apply_batch([quote(v, a, 100.0, now) for a in ("BTC", "ETH") for v in VENUES[:3]])
        e.tick(now)
        told += [(a.rule, a.status, a.labels.get("asset"), a.summary, now) for a in e.transitions(now)[1]]
        e.evaluate(now)
    assert [(r, st, asset, when) for r, st, asset, _, when in told] == [
        ("RebalancePreview", "firing", "HW", ts(2026, 11, 30, 15, 30)),
        ("Rebalanced", "firing", "HW", ts(2026, 11, 30, 16)),
        ("RebalancePreview", "firing", "HW", ts(2026, 12, 31, 15)),
        ("Rebalanced", "firing", "HW", ts(2026, 12, 31, 16)),
    ]
    assert told[0][3] == "HW rebalances soon: rebalance at 2026-11-30 16:00 UTC: added -; removed -"
    assert told[1][3] == "HW rebalanced: added -; removed -"


def test_a_wrong_venue_straddling_the_absurd_threshold_is_reported_once() -> None:
    from hedgewatch.service.config import OracleConfig
    from hedgewatch.service.oracle import AssetOracle

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

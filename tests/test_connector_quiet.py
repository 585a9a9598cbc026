"""A quiet symbol among live ones, replayed at its real timing through a real websocket server on loopback
(``tests.replay``), with production silence bounds on a stepped clock: 30 s of market in a few seconds.

Real illiquid symbols go quiet for longer than the 3 s quote bound: gaps of 12.7 s and 7.5 s in a 30 s
capture, and 15 s in the acceptance case. Such a symbol must be flagged quiet and probed without a gap,
while no connection is recycled and no frame of any symbol is lost.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hedgewatch.connectors.base import Tuning
from hedgewatch.service.config import SourceConfig
from hedgewatch.service.demo import feed_health, source_label
from hedgewatch.service.events import FeedStatus, Quote
from tests.connector_fakes import metric, running
from tests.replay import T0_MS, Replay, ReplayVenue
from tests.support import wait_for

ASSETS = ["BTC", "ETH", "SOL", "XRP", "DOGE"]
QUIET = "DOGE"

# Production bounds (3 s floor, 5 x cadence); only the machinery's own pacing is quick, and the watchdog
# looks every 5 ms of wall time at a clock the replay steps by 0.1 s.
TUNING = dataclasses.replace(Tuning(), backoff_base_s=0.05, backoff_cap_s=0.2, watchdog_interval_s=0.005,
                             flush_interval_s=0.05, open_timeout_s=2.0, ack_timeout_s=2.0, rest_timeout_s=2.0,
                             connect_gap_s=0.01)


def live(offset: float, until_s: float = 30.0) -> list[float]:
    """A liquid symbol: a book update every 0.1 s."""
    return [round(offset + 0.1 * k, 3) for k in range(1, int(until_s / 0.1))]


# The recorded thin symbol: a few updates, 12.7 s of nothing, three updates, 7.5 s of nothing, a few more.
REAL_TIMING = [0.4, 1.1, 1.6, 2.3, 15.0, 15.3, 16.1, 23.6, 24.2, 25.0, 26.9, 28.5, 29.4]
# The acceptance case: updates every 0.5 s, quiet from 5 s to 20 s, then every 0.5 s again.
QUIET_15 = [0.5 * k for k in range(1, 11)] + [20.0 + 0.5 * k for k in range(20)]


def gaps(ts: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(ts)]


def test_the_schedules_have_the_recorded_gaps() -> None:
    assert sorted(gaps(REAL_TIMING))[-2:] == [7.5, 12.7]
    assert max(gaps(QUIET_15)) == 15.0


@pytest.fixture(params=["binanceusdm", "bybit", "okx"])
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[ReplayVenue]:
    v = await ReplayVenue(request.param, ASSETS).start()
    yield v
    await v.stop()


def source(v: ReplayVenue) -> SourceConfig:
    return SourceConfig.model_validate({"exchange": v.protocol, "symbols": ASSETS, "ws_url": v.ws_url,
                                        "rest_url": v.url, "channels": ["quotes"]})


async def replay(venue: ReplayVenue, quiet: list[float]) -> dict[str, Any]:
    """Replay 30 s; return what the test asserts on."""
    schedule = {a: live(0.01 * i) for i, a in enumerate(ASSETS) if a != QUIET}
    schedule[QUIET] = quiet
    rp = Replay(venue, schedule)
    seen: dict[str, Any] = {"connected": set(), "quiet_gauge": {}}
    async with running(source(venue), tuning=TUNING, clock=rp.clock) as (conn, ev, m):
        # subscribed before the replay starts (the instrument list and connections come first)
        await _subscribed(conn)

        def received(asset: str) -> int:
            return sum(1 for e in ev if isinstance(e, Quote) and e.asset == asset and e.ts_exchange > rp.t0)

        def on_step(t: float) -> None:
            seen["connected"].add(metric(m, "hedgewatch_feed_connected", exchange=venue.protocol))
            seen["quiet_gauge"][round(t, 1)] = {
                a: metric(m, "hedgewatch_feed_channel_quiet", exchange=venue.protocol,
                          channel=_channel(venue), asset=a) for a in ASSETS}
            seen.setdefault("view", {})[round(t, 1)] = feed_health({venue.protocol: conn.status()})

        await rp.run(conn, received, until_s=30.0, on_step=on_step)
        seen.update(status=conn.status(), events=list(ev), received={a: received(a) for a in ASSETS},
                    connections=len(conn.connections))
    return seen


async def _subscribed(conn: Any) -> None:
    await wait_for(lambda: conn.connections and all(c.state == "subscribed" for c in conn.connections), 10,
                   "every connection subscribed")


def _channel(v: ReplayVenue) -> str:
    return {"binanceusdm": "bookTicker", "bybit": "tickers", "okx": "tickers"}[v.protocol]


def _assert_nothing_lost_nothing_recycled(venue: ReplayVenue, seen: dict[str, Any]) -> None:
    assert venue.connects == seen["connections"], "a connection was recycled"
    assert all(c["reconnects"] == 0 for c in seen["status"]["connections"].values())
    for a in ASSETS:  # every pushed frame became exactly one quote, in order
        quotes = [e for e in seen["events"] if isinstance(e, Quote) and e.asset == a
                  and e.ts_exchange > T0_MS / 1000]  # Bybit's snapshot at subscribe is venue time T0
        assert len(quotes) == len(venue.sent[a]) == seen["received"][a], a
        bids = [q.bid for q in quotes]
        assert bids == sorted(bids) and len(set(bids)) == len(bids), a
    assert seen["connected"] == {1.0}, "hedgewatch_feed_connected left 1 while every connection was up"
    unsubscribes = [m for _, m in venue.received if isinstance(m, dict)
                    and (m.get("method") == "UNSUBSCRIBE" or m.get("op") == "unsubscribe")]
    assert unsubscribes == [], "a re-subscribe opened a gap"


def _channel_status(venue: ReplayVenue, seen: dict[str, Any], asset: str) -> dict[str, Any]:
    key = {"binanceusdm": f"{asset.lower()}usdt@bookTicker", "bybit": f"tickers.{asset}USDT",
           "okx": f"tickers:{asset}-USDT-SWAP"}[venue.protocol]
    for c in seen["status"]["connections"].values():
        if key in c["channels"]:
            return c["channels"][key]
    raise AssertionError(key)


async def test_a_symbol_quiet_for_15_s_recycles_nothing_and_loses_nothing(venue: ReplayVenue) -> None:
    seen = await replay(venue, QUIET_15)
    _assert_nothing_lost_nothing_recycled(venue, seen)
    key = _channel_status(venue, seen, QUIET)
    quiet = [e for e in seen["events"] if isinstance(e, FeedStatus) and e.state == "quiet"]
    # learned cadence 0.5 s: the configured 3 s bound holds; flagged once, 3 s into the gap (+ one step)
    assert len(quiet) == 1
    assert 1_786_540_008.0 <= quiet[0].ts_recv <= 1_786_540_008.2
    assert all(v == 1.0 for t, g in seen["quiet_gauge"].items() if 8.2 <= t < 20.0 for v in [g[QUIET]])
    assert all(g[a] == 0.0 for g in seen["quiet_gauge"].values() for a in ASSETS if a != QUIET)
    assert seen["quiet_gauge"][25.0][QUIET] == 0.0 and key["state"] == "subscribed"
    # the demo view tells the quiet symbol (feed live) from a stale source whose feed is down
    assert seen["view"][10.0] == {(venue.protocol, QUIET): "quiet"} and seen["view"][25.0] == {}
    src = {"exchange": venue.protocol, "price": 0.25, "age_s": 11.0, "status": "stale", "reason": "old"}
    assert source_label(src, "quiet").endswith("[stale: quiet symbol, feed live]")
    assert source_label(src, "down").endswith("[stale: feed down]")
    # probed once by a plain subscribe of the quiet topic (the venue confirms or restores it)
    assert _subscribes(venue, QUIET) == 2
    # the live symbols learned their 0.1 s cadence; their bound stays the configured 3 s
    live_key = _channel_status(venue, seen, "BTC")
    assert live_key["learned_cadence_s"] == pytest.approx(0.1, abs=0.01)
    assert live_key["silence_bound_s"] == 3.0


async def test_the_recorded_thin_symbol_learns_its_own_bound(venue: ReplayVenue) -> None:
    """Gaps of 12.7 s and 7.5 s: the first, past the configured 3 s, is flagged quiet; learned from it, the
    symbol's bound grows past 7.5 s, so the second gap is the symbol's normal pace and flags nothing."""
    seen = await replay(venue, REAL_TIMING)
    _assert_nothing_lost_nothing_recycled(venue, seen)
    quiet = [e for e in seen["events"] if isinstance(e, FeedStatus) and e.state == "quiet"]
    assert len(quiet) == 1
    # before the long gap the symbol had learned 5 x sum(g^2)/sum(g) of its gaps 0.7, 0.5, 0.7 s: 3.24 s
    before = gaps(REAL_TIMING[:4])
    bound = max(3.0, 5 * sum(g * g for g in before) / sum(before))
    assert REAL_TIMING[3] + bound <= quiet[0].ts_recv - T0_MS / 1000 <= REAL_TIMING[3] + bound + 0.2
    key = _channel_status(venue, seen, QUIET)
    assert key["learned_cadence_s"] > 7.5 / 5 and key["silence_bound_s"] > 7.5
    assert key["configured_bound_s"] == 3.0


def _subscribes(venue: ReplayVenue, asset: str) -> int:
    topic = {"binanceusdm": f"{asset.lower()}usdt@bookTicker", "bybit": f"tickers.{asset}USDT"}.get(
        venue.protocol)
    n = 0
    for _, m in venue.received:
        if not isinstance(m, dict):
            continue
        if venue.protocol == "binanceusdm" and m.get("method") == "SUBSCRIBE":
            n += topic in m["params"]
        elif venue.protocol == "bybit" and m.get("op") == "subscribe":
            n += topic in m["args"]
        elif venue.protocol == "okx" and m.get("op") == "subscribe":
            n += {"channel": "tickers", "instId": f"{asset}-USDT-SWAP"} in m["args"]
    return n

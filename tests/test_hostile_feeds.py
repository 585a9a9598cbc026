"""Hostile frames through a proxy in front of every simulated venue, into the daemon's own engine.

The three native connectors (Binance USDⓈ-M, Bybit, OKX) read the simulator through ``HostileProxy``,
which injects every category of ``tests/hostile.py`` (one-sided absurd quotes, crossed books, scaled
books, huge sequence numbers, error floods with forged text, deep nesting, malformed control frames,
junk) at 300 frames/s per venue, ten times the honest rate. What a user would see must not change: no
crash and nothing at ERROR, no alert, no index or oracle status flip, no source excluded, the oracle within
0.1 % of the honest reference, honest quotes still flowing from every venue, a handful of log lines that no
venue text can forge. ``python -m tests.bench.bench_fuzz`` is the same for 150 s.
"""

from __future__ import annotations

import logging

import pytest

from tests.fuzz import fuzz_run, summary
from tests.hostile import CATEGORIES


async def test_hostile_frames_on_every_venue_change_nothing_a_user_sees(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "hedgewatch.connectors")
    r = await fuzz_run(8.0, 300.0)
    s = summary(r)
    assert r.errors == [], s
    assert r.hostile_total > 3000 and set(r.hostile) == set(CATEGORIES), s
    assert (r.alert_total, r.index_flips, r.oracle_flips, r.source_transitions) == (0, 0, 0, 0), s
    assert r.final_status == "ok" and r.samples > 50, s
    assert r.max_deviation < 0.001, s
    # honest quotes kept flowing on every venue (about 30 a second each: 3 assets at 10/s)
    assert all(r.quotes[v] > 150 for v in ("binanceusdm", "bybit", "okx")), s
    # every hostile frame was classified under a proper reason, none as a decoder failure
    for venue in ("binanceusdm", "bybit", "okx"):
        for reason in ("wide_spread", "crossed", "absurd", "malformed", "unexpected"):
            assert r.rejected[f"{venue}:{reason}"] > 0, (venue, reason, s)
        assert r.rejected[f"{venue}:decode_error"] == 0, s
    assert r.rejected["binanceusdm:sequence_jump"] > 0 and r.rejected["bybit:sequence_jump"] > 0, s
    # the log: one line per kind of trouble and burst, none forged by venue text
    lines = [rec.getMessage() for rec in caplog.records if rec.name.startswith("hedgewatch.connectors")]
    assert len(lines) < 40, lines
    assert not any("\n" in line or "\r" in line or "\x1b" in line for line in lines)
    assert all(len(line) < 400 for line in lines)

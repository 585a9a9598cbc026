"""The hedge ledger in the running daemon: the daily summary a user switched on reaches Slack and Telegram
through the notifier, the ledger is in ``/state`` and the metrics, and a restarted daemon carries on with
the ledger it persisted.

Two days of hourly bars (Binance public-data CSVs written for the test) are fed into a real ``Daemon`` (its
bus given each bar's events, its clock at the bar's close, a real redis-server); the notifier runs in this
process against loopback stand-ins for Slack and Telegram. The advice is taken as executed
(``portfolio.assume_executed``), so the ledger holds the static hedge from the first bar.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

import hedgewatch.service.app as app
from hedgewatch.service.app import Daemon
from hedgewatch.service.backtest.replay import Replay
from hedgewatch.service.backtest.run import backtest_config, venues_of
from hedgewatch.service.config import Config
from hedgewatch.service.history.files import load_history
from hedgewatch.service.metrics import NotifyMetrics
from hedgewatch.service.notify import run_notifier
from hedgewatch.service.overlay import SUMMARY_RULE
from tests.backtest_support import DAY, HOUR, config, kline_rows, write_funding, write_klines
from tests.chat_fakes import fake_chat
from tests.stepped import settle
from tests.support import CONTROL_HEADERS, RedisServer, control_token_file, free_port, wait_for

PREFIX = "hwled"
ASSETS = ("BTC", "ETH")


def write_days(folder: Path, start: float, hours: int) -> None:
    """BTC and ETH falling 0.1% an hour; funding 0.01% every 8 h."""
    for a, p0 in (("BTC", 60_000.0), ("ETH", 3_000.0)):
        write_klines(folder, f"{a}USDT", "1h", kline_rows(start, HOUR, [p0 * 0.999 ** i for i in range(hours)]))
        write_funding(folder, f"{a}USDT", [(start + k * 8 * HOUR, 1e-4) for k in range(hours // 8 + 1)])


def daemon_config(redis_url: str, tmp_path: Path, chat_url: str) -> Config:
    cfg = config(ASSETS, holdings={"HB": 1000}, ratio=0.5, multiplier=10, lot_size=1,
                 ledger={"fee_bps": 4.0, "slippage_bps": 2.0,
                         "daily_summary": {"enabled": True, "time_utc": "00:00"}})
    cfg = backtest_config(cfg, 3600)  # the oracle on the bars' resolution (and the summary switched off)
    return cfg.model_copy(update={
        "redis": cfg.redis.model_copy(update={"url": SecretStr(redis_url), "prefix": PREFIX,
                                              "outbox_dir": str(tmp_path / "outbox")}),
        "http": cfg.http.model_copy(update={"port": free_port(), "token_file": control_token_file(tmp_path)}),
        "index": cfg.index.model_copy(update={"publish_interval_s": 0.0}),
        "portfolio": cfg.portfolio.model_copy(update={"assume_executed": True}),
        # the user switched the daily summary on (backtest_config turns it off for backtests)
        "ledger": cfg.ledger.model_copy(update={"daily_summary": cfg.ledger.daily_summary.model_copy(
            update={"enabled": True})}),
        "notify": cfg.notify.model_validate({
            "slack": {"webhook_url": f"{chat_url}/services/T/B/X", "rate_limit_per_s": 50.0},
            "telegram": {"bot_token": "123:secret", "chat_id": "42", "api_url": chat_url, "rate_limit_per_s": 50.0},
            "templates": {"slack_line": "{summary}", "telegram_line": "{summary}"}}),
    })


async def drive(daemon: Daemon, replay: Replay, now: list[float], times: list[float]) -> None:
    for t in times:
        now[0] = t
        for ev in replay.events(t):
            daemon.bus.put(ev)
        await settle(daemon)


async def test_the_daily_summary_state_and_restart(tmp_path: Path, redis_srv: RedisServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # recent days, so the notifier's age limit (wall clock) lets the summaries through
    import time

    start = (time.time() // DAY - 3) * DAY
    write_days(tmp_path / "data", start, 48)
    history = load_history(tmp_path / "data")
    monkeypatch.setattr(app, "TICK_INTERVAL_S", 3600.0)  # one evaluation per bar, after its events
    with fake_chat() as chat:
        cfg = daemon_config(redis_srv.url, tmp_path, chat.url)
        replay = Replay(history, venues_of(cfg, list(ASSETS)), 3600, start, start + 2 * DAY)
        times = replay.times()
        first, second = times[:30], times[30:]  # the first midnight at bar 24, the second at bar 48
        now = [start]
        stop_notify = asyncio.Event()
        notifier = asyncio.create_task(run_notifier(cfg, stop=stop_notify, metrics=NotifyMetrics()))
        try:
            # the first daemon: a day and six hours
            daemon = Daemon(cfg, clock=lambda: now[0])
            daemon.connectors = []
            stop = asyncio.Event()
            run = asyncio.create_task(daemon.run(stop))
            await daemon.started.wait()
            await drive(daemon, replay, now, first)
            led = daemon.engine.primary.ledger
            # $1,000 x index at about 973 x 50% / ($10 x 973): 50 contracts short since the first bar
            assert led.position == -50 and led.changes == 1
            assert led.fundings == 3 and led.funding_usd > 0  # 08:00, 16:00, 00:00
            async with httpx.AsyncClient() as http:
                state = (await http.get(f"http://127.0.0.1:{cfg.http.port}/state")).json()
            ledger = state["ledger"]
            assert ledger["position_contracts"] == -50 and ledger["funding_usd"] == pytest.approx(led.funding_usd)
            assert ledger["portfolio_hedged_usd"] > ledger["portfolio_unhedged_usd"]  # a falling market
            assert ledger["drawdown"]["unhedged"]["current_ratio"] < ledger["drawdown"]["hedged"]["current_ratio"] < 0
            before = led.summary()
            stop.set()
            assert await run == 0

            # the daily summary of the first midnight, on Slack and on Telegram
            def summaries(telegram: bool) -> list[str]:
                return [r.text for r in chat.ok() if ("/bot" in r.path) == telegram and SUMMARY_RULE in r.text]

            await wait_for(lambda: summaries(False) and summaries(True), 20, "the daily summary delivered")
            text = summaries(False)[0]
            assert "HB hedge: -50 contracts" in text and "hedged" in text and "unhedged" in text

            # a second daemon restores the ledger and carries on to the next midnight
            now[0] = first[-1]
            daemon2 = Daemon(cfg, clock=lambda: now[0])
            daemon2.connectors = []
            stop2 = asyncio.Event()
            run2 = asyncio.create_task(daemon2.run(stop2))
            await daemon2.started.wait()
            led2 = daemon2.engine.primary.ledger
            restored = led2.summary()
            for k in ("position_contracts", "entry_price", "realized_usd", "funding_usd", "fees_usd", "changes",
                      "fundings"):
                assert restored[k] == pytest.approx(before[k]), k
            await drive(daemon2, replay, now, second)
            assert led2.changes == 1  # not traded again: the position held was restored
            assert led2.fundings == 6
            stop2.set()
            assert await run2 == 0
            await wait_for(lambda: len(summaries(False)) >= 2 and len(summaries(True)) >= 2, 20,
                           "the second day's summary delivered")
            assert len(summaries(False)) == 2 and len(summaries(True)) == 2  # once a day
        finally:
            stop_notify.set()
            await asyncio.wait_for(notifier, 15)


async def test_the_ledger_follows_the_acknowledged_position(tmp_path: Path, redis_srv: RedisServer,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Live, the ledger holds what the user acknowledged, not what was advised, at the futures price then."""
    start = 1_700_006_400.0  # a midnight
    write_days(tmp_path / "data", start, 24)
    history = load_history(tmp_path / "data")
    monkeypatch.setattr(app, "TICK_INTERVAL_S", 3600.0)
    cfg = daemon_config(redis_srv.url, tmp_path, "http://127.0.0.1:9")
    cfg = cfg.model_copy(update={"portfolio": cfg.portfolio.model_copy(update={"assume_executed": False}),
                                 "notify": cfg.notify.model_validate({})})
    replay = Replay(history, venues_of(cfg, list(ASSETS)), 3600, start, start + DAY)
    times = replay.times()
    now = [start]
    daemon = Daemon(cfg, clock=lambda: now[0])
    daemon.connectors = []
    stop = asyncio.Event()
    run = asyncio.create_task(daemon.run(stop))
    await daemon.started.wait()
    try:
        await drive(daemon, replay, now, times[:5])
        led = daemon.engine.primary.ledger
        assert led.position == 0 and led.changes == 0  # advised 50 short, nothing done yet
        level = daemon.market.level
        assert level is not None
        async with httpx.AsyncClient() as http:
            r = await http.post(f"http://127.0.0.1:{cfg.http.port}/hedge/ack", json={"contracts": -30},
                                headers=CONTROL_HEADERS)
            assert r.status_code == 200, r.text
            # the user sold 30: the ledger holds 30 short from the futures price of the last bar, less slippage
            assert led.position == -30 and led.fills[-1].price == pytest.approx(level)
            assert led.fills[-1].fill_price == pytest.approx(level * (1 - 2e-4))
            assert led.fills[-1].reason == "ack"
            await drive(daemon, replay, now, times[5:10])
            state = (await http.get(f"http://127.0.0.1:{cfg.http.port}/state")).json()["ledger"]
        assert state["position_contracts"] == -30 and led.changes == 1
        # 30 x $10 x the fall of the index since the fill, the slippage included
        assert state["unrealized_usd"] == pytest.approx(30 * 10 * (led.fills[-1].fill_price - daemon.market.level))
        assert state["pnl_usd"] > 0
    finally:
        stop.set()
        assert await run == 0

"""The backtest command end to end: history files in, the report opened in headless Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backtest_support import story, ts
from tests.chromium import ARTIFACTS, CHROMIUM, open_page
from tests.support import REPO

START = ts("2024-06-01")
ASSETS = ("BTC", "ETH", "SOL")

CONFIG = """
sources:
  - {exchange: binanceusdm, symbols: [BTC, ETH, SOL]}
  - {exchange: bybit, symbols: [BTC, ETH, SOL]}
  - {exchange: okx, symbols: [BTC, ETH, SOL]}
index: {name: HW3, constituents: [BTC, ETH, SOL], weighting: capped, cap_ratio: 0.5, base_level: 1000,
        market_caps: {BTC: 1.9e12, ETH: 4.3e11, SOL: 9.0e10}}
portfolio: {holdings: {HW3: 1000}, hedge_ratio: 0.2, multiplier: 10, lot_size: 1, tolerance_ratio: 0.05}
rules: {files: [builtin:default], levels: {R1: 1100}}
ledger: {fee_bps: 4, slippage_bps: 2}
"""

COMPARE = """
groups:
  - name: trend
    rules:
      - name: BelowMA20d
        expr: price < sma(20, "1d")
        for: 2h
        resolve: price > sma(20, "1d")
        action: {set_hedge: 60%}
"""


def hedgewatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "hedgewatch.service", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    story(tmp / "data", ASSETS, START, 60, warmup_days=60)
    (tmp / "hw.yaml").write_text(CONFIG)
    (tmp / "trend.yaml").write_text(COMPARE)
    r = hedgewatch("backtest", "-c", "hw.yaml", "--from", "2024-06-01", "--to", "2024-07-31", "--data", "data",
                   "--compare", "trend.yaml", "--out", "out", cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert "report: out/report.html" in r.stdout
    for name in ("configured", "unhedged", "static", "trend"):
        assert any(line.startswith(name) for line in r.stdout.splitlines()), name
    return tmp / "out"


def test_the_figures_and_series_files(report: Path) -> None:
    figs = json.loads((report / "summary.json").read_text())
    assert [r["rule_set"] for r in figs["summary"]] == ["configured", "unhedged", "static", "trend"]
    assert figs["bars"] == 60 * 24 - 1 + 1  # bar closes from 01:00 on the first day to 00:00 after the last
    assert figs["firings"]["configured"], "the story makes the bundled rules fire"
    for f in figs["firings"]["configured"]:
        assert f["ts"] and f["rule"] and "inputs" in f
    header = (report / "series.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["ts", "time", "level", "status"]
    # the averages, levels and trendlines of every rule set compared, drawn over the index
    assert {"sma_50_1d", "level_R1", "trendline_long_term", "sma_20_1d"} <= set(header)
    assert {"configured_hedged_usd", "unhedged_hedged_usd", "static_position_contracts",
            "trend_funding_usd"} <= set(header)
    assert len((report / "series.csv").read_text().splitlines()) == figs["bars"] + 1


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
async def test_the_report_renders_in_chromium(report: Path) -> None:
    probe = """JSON.stringify({
      charts: document.querySelectorAll('svg.chart').length,
      drawn: [...document.querySelectorAll('svg.chart path.line')].filter(p => p.getAttribute('d').length > 100).length,
      markers: document.querySelectorAll('#c-index path.marker').length,
      marked: [...new Set([...document.querySelectorAll('#c-index path.marker')].map(m => m.dataset.ruleSet))],
      signals: [...document.querySelectorAll('#c-index path.line')].map(p => p.dataset.series),
      rows: document.querySelectorAll('#summary tbody tr').length,
      firings: document.querySelectorAll('table.firings tbody tr').length,
      hidden: document.querySelectorAll('.line.off').length,
      width: document.querySelector('svg.chart').getBoundingClientRect().width})"""
    click = "document.querySelector('.key[data-chart=\"c-value\"][data-k=\"1\"]').click()"
    page = await open_page(report / "report.html", probe, after_load=click)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "backtest-report.png").write_bytes(page.screenshot)
    assert page.errors == []
    got = json.loads(page.value)
    assert got["charts"] == 6 and got["drawn"] >= 10
    figs = json.loads((report / "summary.json").read_text())
    fired = sum(len(v) for v in figs["firings"].values())
    # a marker at every rule firing, of every rule set; every firing listed
    assert got["markers"] == fired and sorted(got["marked"]) == ["configured", "trend"]
    assert got["rows"] == 4 and got["firings"] == fired
    assert got["signals"] == ["HW3", "level_R1", "sma_50_1d", "trendline_long_term", "ath", "sma_20_1d"]
    assert got["hidden"] == 1  # the legend click hid its line
    assert got["width"] > 800
    assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(page.screenshot) > 50_000


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "hw.yaml").write_text(CONFIG)
    (tmp_path / "data").mkdir()
    r = hedgewatch("backtest", "-c", "hw.yaml", "--from", "2024-06-01", "--to", "2024-06-02", "--data", "data",
                   cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == "hedgewatch: no price data for BTC, ETH, SOL in the data folder"
    r = hedgewatch("backtest", "-c", "hw.yaml", "--from", "June", "--to", "2024-06-02", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == "hedgewatch: not a date: 'June' (expected YYYY-MM-DD)"
    r = hedgewatch("backtest", "-c", "hw.yaml", "--from", "2024-06-02", "--to", "2024-06-01", cwd=tmp_path)
    assert r.returncode == 1 and "must be after" in r.stderr and "Traceback" not in r.stderr

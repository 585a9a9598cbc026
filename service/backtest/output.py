"""A backtest's figures as JSON (``summary.json``) and its series as CSV (``series.csv``), for other tools."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from hedgewatch.service.backtest.run import Result
from hedgewatch.service.backtest.stats import summary_table
from hedgewatch.service.ledger import Drawdown


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def figures(res: Result) -> dict[str, Any]:
    return {
        "index": res.index, "from": iso(res.start), "to": iso(res.end), "interval_s": res.interval_s,
        "bars": len(res.times), "summary": summary_table(res),
        "firings": {name: tr.firings for name, tr in res.tracks.items()},
        "advice": {name: tr.advice for name, tr in res.tracks.items()},
        "ledgers": res.ledgers, "rebalances": res.rebalances,
        "compositions": res.compositions, "notes": res.notes,
    }


def drawdowns(values: list[float | None]) -> list[float | None]:
    dd = Drawdown()
    return [None if v is None else dd.add(v) for v in values]


def series_rows(res: Result) -> tuple[list[str], list[list[Any]]]:
    header = ["ts", "time", "level", "status", *res.signals]
    cols: list[list[Any]] = [res.times, [iso(t) for t in res.times], res.level, res.status,
                             *res.signals.values()]
    for name, tr in res.tracks.items():
        header += [f"{name}_{k}" for k in ("ratio", "position_contracts", "unhedged_usd", "hedged_usd",
                                           "hedge_pnl_usd", "funding_usd", "fees_usd", "drawdown_ratio")]
        cols += [tr.ratio, tr.position, tr.unhedged, tr.hedged, tr.pnl, tr.funding, tr.fees, drawdowns(tr.hedged)]
    return header, [list(r) for r in zip(*cols, strict=True)]


def write_outputs(res: Result, out: Path) -> dict[str, Path]:
    """``summary.json``, ``series.csv`` and ``report.html`` in ``out``."""
    from hedgewatch.service.backtest.report import render

    out.mkdir(parents=True, exist_ok=True)
    figs = figures(res)
    paths = {"json": out / "summary.json", "csv": out / "series.csv", "html": out / "report.html"}
    paths["json"].write_bytes(orjson.dumps(figs, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    header, rows = series_rows(res)
    with open(paths["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(["" if v is None else v for v in row] for row in rows)
    paths["html"].write_text(render(res, figs))
    return paths

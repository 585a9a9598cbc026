"""``hedgewatch backtest``: the daemon's engine over historical bars on a simulated clock.

The config is the daemon's own, with its sources replaced by the data (one source, ``history``, quorum
one). Beside the configured rule set the same market carries the unhedged portfolio (no rules, ratio 0, no
position), a static hedge at the configured baseline ratio (no rules: re-sized only when it drifts out of the
tolerance band, as the daemon would advise) and each rule file given to compare. At every bar close, in the
daemon's order: the bar's events, the scheduled work (staleness, rebalances with the market caps as of that
date), the transitions, and the rules on the snapshot (``rules.eval_interval_s`` is met by every bar). Each
overlay's advice is taken as executed at that bar's futures price (fees and slippage from ``ledger``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hedgewatch.connectors.klines import plan
from hedgewatch.rules.stage import is_price_level
from hedgewatch.service.alerts import Alert
from hedgewatch.service.backtest.replay import Replay
from hedgewatch.service.config import Config
from hedgewatch.service.engine import Engine
from hedgewatch.service.history.files import History, HistoryError

BASELINES = ("unhedged", "static")


@dataclass
class Track:
    """Per-bar series of one overlay."""

    ratio: list[float] = field(default_factory=list)
    position: list[float] = field(default_factory=list)
    target: list[float | None] = field(default_factory=list)
    unhedged: list[float | None] = field(default_factory=list)
    hedged: list[float | None] = field(default_factory=list)
    pnl: list[float] = field(default_factory=list)
    funding: list[float] = field(default_factory=list)
    fees: list[float] = field(default_factory=list)
    firings: list[dict[str, Any]] = field(default_factory=list)
    advice: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Result:
    """A backtest's series and per-overlay tracks, and what the data lacked."""

    index: str
    start: float
    end: float
    interval_s: int
    times: list[float] = field(default_factory=list)
    level: list[float | None] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    signals: dict[str, list[float | None]] = field(default_factory=dict)
    tracks: dict[str, Track] = field(default_factory=dict)
    ledgers: dict[str, dict[str, Any]] = field(default_factory=dict)
    rebalances: list[dict[str, Any]] = field(default_factory=list)
    compositions: list[dict[str, Any]] = field(default_factory=list)  # each build and rebalance: target weights
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def rule_sets(config: Config, compare: list[str]) -> list[tuple[str, Config]]:
    """The configured rule set, the two baselines, and one overlay per compared rule file."""
    p, r = config.portfolio, config.rules
    unhedged = config.model_copy(update={
        "rules": r.model_copy(update={"files": ()}),
        "portfolio": p.model_copy(update={"hedge_ratio": 0.0, "hedge_ratio_min": 0.0, "position_contracts": 0.0}),
    })
    static = config.model_copy(update={"rules": r.model_copy(update={"files": ()})})
    out = [("configured", config), ("unhedged", unhedged), ("static", static)]
    names = {n for n, _ in out}
    for f in compare:
        name = Path(f).stem.removesuffix(".yaml")
        while name in names:
            name += "'"
        names.add(name)
        out.append((name, config.model_copy(update={"rules": r.model_copy(update={"files": (str(f),)})})))
    return out


def backtest_config(config: Config, interval_s: int) -> Config:
    """The config on bars. A price stays fresh for one bar (the data's resolution, as ``oracle.max_age_s``
    is the feeds' live), so the venues' quotes of one bar close do not see each other as stale; an asset
    whose bar is missing keeps its last price for that bar and is stale from the next. The venues all quote
    the one record of the data, so there is no outlier to screen between them, and a bar may move further
    than a tick: neither the exclusion band nor the jump bound applies. A selection takes its candidates
    from the data's market caps as of each day, never from today's list (``selection.path``)."""
    oracle = config.oracle.model_copy(update={"max_age_s": interval_s + 1.0, "exclude_band_ratio": 0.99,
                                              "max_jump_ratio": 1e6})
    ledger = config.ledger.model_copy(update={"daily_summary": config.ledger.daily_summary.model_copy(
        update={"enabled": False})})  # the report is the summary
    idx = config.index
    if idx.selection is not None:
        idx = idx.model_copy(update={"selection": idx.selection.model_copy(update={"provider": "file", "path": None,
                                                                                   "url": None})})
    return config.model_copy(update={"oracle": oracle, "ledger": ledger, "index": idx})


def venues_of(config: Config, assets: list[str]) -> dict[str, list[str]]:
    """Per asset with data, the configured sources that list it (the data is quoted as each of them)."""
    out: dict[str, list[str]] = {}
    for src in config.sources:
        if src.enabled:
            for a in src.symbols:
                if a in assets:
                    out.setdefault(a, []).append(src.source_id)
    return out


def pick_interval(history: History, assets: list[str], wanted: int | None) -> int:
    """The bar interval: the one asked for, else the finest every priced asset has klines of."""
    per_asset = [set(history.klines[a]) for a in assets if a in history.klines]
    if not per_asset:
        raise HistoryError("no kline files for any asset of the index in the data folder")
    common = set.intersection(*per_asset)
    if wanted is not None:
        if wanted not in common:
            raise HistoryError(f"not every asset has {wanted} s klines in the data folder")
        return wanted
    if not common:
        raise HistoryError("the assets' kline files share no interval")
    return min(common)


def assets_of(config: Config, history: History) -> list[str]:
    idx = config.index
    wanted = set(idx.constituents) | {a for a in config.portfolio.holdings if a != idx.name}
    if idx.selection is not None:
        wanted |= history.assets() - set(idx.selection.exclude)
    return sorted(wanted)


def run_backtest(config: Config, history: History, start: float, end: float, *, compare: list[str] | None = None,
                 interval_s: int | None = None) -> Result:
    assets = assets_of(config, history)
    missing = [a for a in config.index.constituents if a not in history.assets()]
    if missing:
        raise HistoryError(f"no price data for {', '.join(missing)} in the data folder")
    if config.index.selection is not None and not history.market_caps:
        raise HistoryError("index.selection picks constituents by market cap as of each rebalance: the data folder "
                           "has no CoinGecko market_chart files")
    interval = pick_interval(history, assets, interval_s)
    cfg = backtest_config(config, interval)
    sets = rule_sets(cfg, compare or [])
    engine = Engine(cfg, start, overlays=sets, follow_advice=True)
    candles = any("candles" in (s.channels or ()) for s in cfg.sources if s.enabled)
    replay = Replay(history, venues_of(cfg, assets), interval, start, end, candles=candles)
    constituents = cfg.index.constituents or tuple(assets)
    for o in engine.overlays:
        o.rules.bootstrap(replay.warmup(plan(o.rules.history_needed(), constituents), history))
    res = Result(cfg.index.name, start, end, interval, config=cfg.model_dump(mode="json", exclude={"redis", "notify"}))
    res.tracks = {o.name: Track() for o in engine.overlays}
    day = -1
    for t in replay.times():
        if int(t // 86400) != day:
            day = int(t // 86400)
            cands = replay.candidates(t)
            if cands is not None:
                engine.market.set_candidates(cands, t)
        engine.apply_batch(replay.events(t))
        engine.tick(t)
        _, alerts = engine.transitions(t)
        results = engine.evaluate(t)
        _record(res, engine, t, results, alerts)
    res.rebalances = list(engine.market.rebalancer.history)
    res.ledgers = {o.name: o.state() for o in engine.overlays}
    res.notes = _notes(replay, engine, history)
    return res


def _record(res: Result, engine: Engine, t: float, results: list[Any], alerts: list[Alert]) -> None:
    m = engine.market
    rb = m.rebalancer
    if rb.last_ts is not None and (not res.compositions or res.compositions[-1]["ts"] != rb.last_ts):
        res.compositions.append({"ts": rb.last_ts, "weights": dict(rb.targets)})
    res.times.append(t)
    res.level.append(m.level)
    res.status.append(m.status)
    n = len(res.times)
    for o in engine.overlays:  # the averages, levels and trendlines every rule set reads (one market: alike)
        for name, v in o.rules.env.items():
            if is_price_level(name):
                col = res.signals.setdefault(name, [None] * (n - 1))
                if len(col) < n:
                    col.append(float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None)
    for col in res.signals.values():
        if len(col) < n:
            col.append(None)
    for i, (o, r) in enumerate(zip(engine.overlays, results, strict=True)):
        tr = res.tracks[o.name]
        led = o.ledger
        tr.ratio.append(o.rules.engine.ratio)
        tr.position.append(led.position)
        tr.target.append(o.rules.sizing.target_contracts if o.rules.sizing else None)
        tr.unhedged.append(o.unhedged_usd)
        tr.hedged.append(o.hedged_usd)
        tr.pnl.append(led.pnl_usd)
        tr.funding.append(led.funding_usd)
        tr.fees.append(led.fees_usd)
        raised = list(r.alerts) + (alerts if i == 0 else o.other_alerts)
        o.other_alerts.clear()
        for a in raised:
            tr.firings.append(_firing(a, t, r.hedge))
        if r.hedge is not None:
            tr.advice.append({"ts": t, **{k: r.hedge.get(k) for k in (
                "reason", "from_ratio", "ratio", "target_contracts", "delta_contracts", "side", "trade_contracts",
                "futures_price", "portfolio_value_usd", "target_notional_usd", "rules")}})


def _firing(a: Alert, t: float, hedge: dict[str, Any] | None) -> dict[str, Any]:
    d: dict[str, Any] = {"ts": t, "rule": a.rule, "status": a.status, "severity": a.severity,
                         "summary": a.summary, "inputs": dict(a.values)}
    if a.hedge is not None:
        d["hedge_change"] = {"from_ratio": a.hedge.from_ratio, "to_ratio": a.hedge.to_ratio,
                             "contracts": a.hedge.contracts, "side": a.hedge.side,
                             "notional_usd": a.hedge.notional_usd}
    if hedge is not None:  # the advice produced at that bar (a resolution may move the hedge too)
        d["advice"] = {k: hedge.get(k) for k in ("ratio", "target_contracts", "side", "trade_contracts",
                                                  "futures_price")}
    return d


def _notes(replay: Replay, engine: Engine, history: History) -> list[str]:
    g = replay.gaps
    out = []
    for a in sorted(g.no_funding):
        out.append(f"no funding data for {a}: its funding is counted as zero")
    for a, n in sorted(g.funding_before_first.items()):
        out.append(f"{a}: {n} bars before its first funding record, funding counted as zero there")
    for a, n in sorted(g.missing_bars.items()):
        out.append(f"{a}: {n} bars without a price (not filled in: the last price stands for one bar, then the "
                   "asset is stale)")
    missing = sum(o.funding_missing for o in engine.overlays[:1])
    if missing:
        out.append(f"{missing} funding times without a known index funding rate were settled at zero")
    if engine.config.index.weighting in ("cap", "capped", "free_float"):
        if not history.market_caps:
            out.append("no market-cap history: cap weights use the config's market_caps at every rebalance")
        else:
            for a in sorted(set(replay.assets) - set(history.market_caps)):
                out.append(f"no market-cap history for {a}: its cap weight uses the config's market_caps")
    if not replay.candles:
        out.append("no source subscribes candles: the bars fed prices only, so volume signals were unavailable, "
                   "as they are live")
    if not history.open_interest:
        out.append("no open-interest data: rules on open interest saw it as unavailable")
    return out


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)

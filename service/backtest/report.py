"""The backtest report: one self-contained HTML file, charts drawn as inline SVG (no script or font from
the network, so it opens offline), a summary table per rule set and every rule firing with its inputs and
advice. Clicking a legend entry hides or shows its line."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from hedgewatch.service.backtest.output import drawdowns, iso
from hedgewatch.service.backtest.run import Result

W, PAD_L, PAD_R, PAD_T, PAD_B = 1100, 78, 16, 12, 26
MAX_POINTS = 2400
PALETTE = ("#1f77b4", "#7f7f7f", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
SIGNAL_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728", "#ff9896")

Series = tuple[str, Sequence[float | None], str, str]  # name, values, colour, dash
Marker = tuple[float, float, str, str, str, bool]  # time, value, colour, tooltip, rule set, resolved


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _thin(n: int) -> list[int]:
    """Indices to draw: all, or a stride that keeps the chart light for long runs."""
    if n <= MAX_POINTS:
        return list(range(n))
    step = n / MAX_POINTS
    idx = sorted({int(i * step) for i in range(MAX_POINTS)} | {n - 1})
    return idx


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def chart(cid: str, title: str, times: Sequence[float], series: Sequence[Series], *,
          fmt: Callable[[float], str] = lambda v: f"{v:,.0f}", height: int = 240, step: bool = False,
          markers: Sequence[Marker] = (), zero: bool = False) -> str:
    """A line chart as SVG, with its legend."""
    if not times:
        return ""
    t0, t1 = times[0], times[-1] if times[-1] > times[0] else times[0] + 1
    vals = [v for _, s, _, _ in series for v in s if v is not None and math.isfinite(v)]
    vals += [m[1] for m in markers]
    if zero:
        vals.append(0.0)  # ratios and positions read against zero
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - (abs(lo) * 0.01 or 1), hi + (abs(hi) * 0.01 or 1)
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    iw, ih = W - PAD_L - PAD_R, height - PAD_T - PAD_B

    def x(t: float) -> float:
        return PAD_L + (t - t0) / (t1 - t0) * iw

    def y(v: float) -> float:
        return PAD_T + (hi - v) / (hi - lo) * ih

    parts = [f'<svg class="chart" id="{cid}" viewBox="0 0 {W} {height}" role="img" aria-label="{_e(title)}">']
    for v in _ticks(lo, hi):
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                     f'<text class="ylab" x="{PAD_L - 6}" y="{y(v) + 4:.1f}">{_e(fmt(v))}</text>')
    span = t1 - t0
    for i in range(7):
        t = t0 + span * i / 6
        label = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d" if span > 3 * 86400 else "%m-%d %H:%M")
        anchor = ' style="text-anchor:end"' if i == 6 else ""
        parts.append(f'<text class="xlab" x="{x(t):.1f}" y="{height - 6}"{anchor}>{label}</text>')
    idx = _thin(len(times))
    for k, (name, values, colour, dash) in enumerate(series):
        d = _path([(x(times[i]), y(v)) if v is not None and math.isfinite(v) else None
                   for i in idx for v in (values[i],)], step)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<path class="line s{k}" data-series="{_e(name)}" d="{"".join(d)}" stroke="{colour}"'
                     f'{dash_attr}/>')
    for t, v, colour, tip, rule_set, resolved in markers:
        px, py = x(t), y(v)
        faded = ' fill-opacity="0.35"' if resolved else ""
        parts.append(f'<path class="marker" data-rule-set="{_e(rule_set)}" d="M{px:.1f},{py - 9:.1f}l-5,-8h10z" '
                     f'fill="{colour}"{faded}><title>{_e(tip)}</title></path>')
    parts.append(f'<rect class="frame" x="{PAD_L}" y="{PAD_T}" width="{iw}" height="{ih}"/></svg>')
    legend = "".join(f'<span class="key" data-chart="{cid}" data-k="{k}"><i style="background:{c}"></i>{_e(n)}</span>'
                     for k, (n, _, c, _) in enumerate(series))
    return f'<section><h2>{_e(title)}</h2><div class="legend">{legend}</div>{"".join(parts)}</section>'


def _path(points: list[tuple[float, float] | None], step: bool) -> list[str]:
    """SVG path commands through ``points``; None breaks the line (a gap in the data is not bridged)."""
    d, pen = [], "M"
    prev_y: float | None = None
    for pt in points:
        if pt is None:
            pen = "M"
            continue
        px, py = pt
        if step and prev_y is not None and pen == "L":
            d.append(f"L{px:.1f},{prev_y:.1f}")
        d.append(f"{pen}{px:.1f},{py:.1f}")
        pen, prev_y = "L", py
    return d


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:+.2%}"


def _usd(v: float | None) -> str:
    if v is None:
        return "–"
    return f"-${-v:,.0f}" if v < 0 else f"${v:,.0f}"


def summary_html(rows: list[dict[str, Any]]) -> str:
    cols = [("rule set", lambda r: r["rule_set"]), ("return", lambda r: _pct(r.get("return_ratio"))),
            ("max drawdown", lambda r: _pct(r.get("max_drawdown_ratio"))),
            ("volatility (ann.)", lambda r: _pct(r.get("volatility_annualized_ratio"))),
            ("worst month", lambda r: f"{_pct(r.get('worst_month_ratio'))} ({r.get('worst_month') or '–'})"),
            ("cost of protection (per up month)", lambda r: _pct(r.get("cost_of_protection_ratio"))),
            ("drawdown saved", lambda r: _pct(r.get("drawdown_saved_ratio"))),
            ("hedge P&L", lambda r: _usd(r.get("hedge_pnl_usd"))),
            ("funding net", lambda r: _usd(r.get("funding_net_usd"))), ("fees", lambda r: _usd(r.get("fees_usd"))),
            ("hedge changes", lambda r: r.get("hedge_changes", 0)),
            ("turnover", lambda r: f"{r.get('turnover_ratio', 0):.2f}×")]
    head = "".join(f"<th>{c}</th>" for c, _ in cols)
    body = "".join("<tr>" + "".join(f"<td>{_e(f(r))}</td>" for _, f in cols) + "</tr>" for r in rows)
    return f'<table id="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _inputs(d: dict[str, Any]) -> str:
    def one(v: Any) -> str:
        return f"{v:.6g}" if isinstance(v, float) else str(v)
    return ", ".join(f"{k}={one(v)}" for k, v in d.items())


def firings_html(res: Result) -> str:
    out = []
    for name, tr in res.tracks.items():
        if not tr.firings:
            continue
        rows = []
        for f in tr.firings:
            adv = f.get("advice")
            hc = f.get("hedge_change")
            advice = ""
            if hc:
                advice = (f"hedge {hc['from_ratio']:.0%} → {hc['to_ratio']:.0%}: {hc['contracts']:g} contracts "
                          f"({hc['side']})")
            if adv:
                advice += f"; trade {adv['side']} {adv['trade_contracts']:g} at {adv['futures_price']:,.2f}"
            rows.append(f"<tr><td>{iso(f['ts'])}</td><td>{_e(f['rule'])}</td><td>{_e(f['status'])}</td>"
                        f"<td>{_e(f['summary'])}</td><td class='inputs'>{_e(_inputs(f['inputs']))}</td>"
                        f"<td>{_e(advice)}</td></tr>")
        out.append(f"<h3>{_e(name)}</h3><table class='firings'><thead><tr><th>time</th><th>rule</th>"
                   f"<th>status</th><th>summary</th><th>inputs</th><th>advice</th></tr></thead>"
                   f"<tbody>{''.join(rows)}</tbody></table>")
    return "".join(out) or "<p>No rule fired.</p>"


STYLE = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1140px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 2px}h3{font-size:14px;margin:14px 0 4px}
.meta{color:#666}svg.chart{width:100%;height:auto;display:block}
.grid{stroke:#eee}.frame{fill:none;stroke:#ccc}.line{fill:none;stroke-width:1.4}.line.off{display:none}
.ylab{font-size:11px;text-anchor:end;fill:#666}.xlab{font-size:11px;text-anchor:middle;fill:#666}
.legend{font-size:12px;margin:2px 0 0 78px}.key{margin-right:14px;cursor:pointer;user-select:none}
.key i{display:inline-block;width:12px;height:3px;margin:0 5px 3px 0;vertical-align:middle}.key.off{opacity:.35}
table{border-collapse:collapse;width:100%;font-size:12.5px;margin:6px 0}th,td{border:1px solid #ddd;
padding:3px 6px;text-align:right;vertical-align:top}th{background:#f6f6f6}td:first-child,th:first-child{text-align:left}
table.firings td{text-align:left}td.inputs{font-family:ui-monospace,monospace;font-size:11px;max-width:380px}
ul.notes{color:#7a4b00}
"""

SCRIPT = """
document.querySelectorAll('.key').forEach(function (key) {
  key.addEventListener('click', function () {
    var svg = document.getElementById(key.dataset.chart);
    var line = svg && svg.querySelector('.line.s' + key.dataset.k);
    if (line) { line.classList.toggle('off'); key.classList.toggle('off'); }
  });
});
"""


def _firing_markers(res: Result, colour: dict[str, str]) -> list[Marker]:
    """A marker at every firing of every rule set, in the rule set's colour (a resolution paler)."""
    out = []
    pos = {t: i for i, t in enumerate(res.times)}
    for name, tr in res.tracks.items():
        for f in tr.firings:
            i = pos.get(f["ts"])
            level = res.level[i] if i is not None else None
            if level is None:
                continue
            tip = f"{name}: {iso(f['ts'])} {f['rule']} {f['status']}: {f['summary']}"
            out.append((f["ts"], level, colour[name], tip, name, f["status"] != "firing"))
    return out


def render(res: Result, figs: dict[str, Any]) -> str:
    t = res.times
    hedging = [n for n in res.tracks if n != "unhedged"]
    colour = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(res.tracks)}
    sig = [(n, v, SIGNAL_COLORS[i % len(SIGNAL_COLORS)], "5,3") for i, (n, v) in enumerate(res.signals.items())]
    charts = [
        chart("c-index", f"{res.index} index, its moving averages, levels and trendlines; ▼ rule firings "
              "(pale: resolved)", t,
              [(res.index, res.level, "#111", ""), *sig], fmt=lambda v: f"{v:,.1f}", height=300,
              markers=_firing_markers(res, colour)),
        chart("c-ratio", "Hedge ratio", t, [(n, res.tracks[n].ratio, colour[n], "") for n in hedging],
              fmt=lambda v: f"{v:.0%}", step=True, height=180, zero=True),
        chart("c-position", "Hedge position (contracts, short < 0)", t,
              [(n, res.tracks[n].position, colour[n], "") for n in hedging], fmt=lambda v: f"{v:,.4g}", step=True,
              height=180, zero=True),
        chart("c-value", "Portfolio value: hedged by each rule set, unhedged, static hedge", t,
              [(n, tr.hedged, colour[n], "" if n != "unhedged" else "4,2") for n, tr in res.tracks.items()]),
        chart("c-drawdown", "Drawdown from the running peak", t,
              [(n, drawdowns(tr.hedged), colour[n], "") for n, tr in res.tracks.items()], fmt=lambda v: f"{v:.0%}",
              height=200),
        chart("c-carry", "Funding received (solid) and fees paid (dashed), cumulative", t,
              [s for n in hedging for s in ((f"{n} funding", res.tracks[n].funding, colour[n], ""),
                                            (f"{n} fees", res.tracks[n].fees, colour[n], "3,3"))], height=200),
    ]
    notes = "".join(f"<li>{_e(n)}</li>" for n in res.notes)
    led = res.config.get("ledger", {})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hedgewatch backtest {_e(res.index)}</title>
<style>{STYLE}</style></head><body>
<h1>hedgewatch backtest: {_e(res.index)}</h1>
<p class="meta">{iso(res.start)} to {iso(res.end)}, {len(t):,} bars of {res.interval_s:,} s; fills at the futures
price with {led.get('fee_bps', 0):g} bps fees and {led.get('slippage_bps', 0):g} bps slippage; rules evaluated at
each bar close, advice taken as executed at that bar.</p>
<h2>Summary</h2>{summary_html(figs['summary'])}
{''.join(charts)}
<h2>Rule firings</h2>{firings_html(res)}
<h2>About the data</h2><ul class="notes">{notes or '<li>complete: every bar priced, funding for every asset</li>'}</ul>
<script>{SCRIPT}</script>
</body></html>
"""

"""Builds the Grafana dashboards (deploy/grafana/dashboards/*.json) with grafana-foundation-sdk's typed builders.

Run ``python deploy/grafana/generate.py`` after editing (``--check`` compares instead of writing); the JSON is
committed so Grafana's file provisioning needs nothing but the files. uids are fixed, so links and bookmarks
survive a re-provisioning.

Every option goes through a typed builder method: one Grafana does not read where it is set (stacking in the
panel options instead of the field config, say) has no method there and fails when this script runs. Every
dashboard has a ``job`` and an ``instance`` variable, and every query selects through ``sel()``, which adds
both matchers: two daemons (or a daemon and its notifier) on one Prometheus never mix on a panel.

To add a dashboard: write a function returning ``dashboard(...)`` from panels made by ``timeseries``,
``timeline`` or ``stat`` and add it to ``DASHBOARDS``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.builders import stat as sb
from grafana_foundation_sdk.builders import statetimeline as stb
from grafana_foundation_sdk.builders import timeseries as tsb
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

OUT = Path(__file__).parent / "dashboards"
DS = dm.DataSourceRef(type_val="prometheus", uid="hedgewatch-prometheus")

# The metric each kind of process always exports: it names the jobs and instances of that kind.
DAEMON = "hedgewatch_up"
NOTIFIER = "hedgewatch_notify_up"

STATUS = {"0": "ok", "1": "degraded", "2": "stale"}
Panel = Builder[dm.Panel]


def sel(metric: str, **matchers: str) -> str:
    """``metric{job=~"$job",instance=~"$instance",k=~"v",...}``: every query on every dashboard goes through
    this, so it always follows the dashboard's job and instance choice."""
    parts = ['job=~"$job"', 'instance=~"$instance"'] + [f'{k}=~"{v}"' for k, v in matchers.items()]
    return f"{metric}{{{','.join(parts)}}}"


def rate(metric: str, by: str = "", fn: str = "rate", **matchers: str) -> str:
    inner = f"{fn}({sel(metric, **matchers)}[$__rate_interval])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantiles(metric: str, qs: Iterable[float] = (0.5, 0.9, 0.99)) -> list[tuple[str, str]]:
    return [
        (f"histogram_quantile({q}, sum by (le) (rate({sel(metric + '_bucket')}[$__rate_interval])))",
         f"p{round(q * 100)}")
        for q in qs
    ]


def _targets(exprs: list[tuple[str, str]]) -> list[Builder[object]]:
    return [
        pb.Dataquery().expr(e).legend_format(lg).ref_id(chr(ord("A") + i)).datasource(DS)
        for i, (e, lg) in enumerate(exprs)
    ]


def _legend(table: bool = False) -> cb.VizLegendOptions:
    lg = cb.VizLegendOptions().show_legend(True)
    if table:
        return lg.display_mode(cm.LegendDisplayMode.TABLE).placement(cm.LegendPlacement.RIGHT)
    return lg.display_mode(cm.LegendDisplayMode.LIST).placement(cm.LegendPlacement.BOTTOM)


def timeseries(
    title: str,
    exprs: list[tuple[str, str]],
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    desc: str = "",
    stack: bool = False,
    bars: bool = False,
    steps: bool = False,
    legend_table: bool = False,
) -> tsb.Panel:
    p = (
        tsb.Panel().title(title).description(desc).datasource(DS).span(w).height(h).unit(unit)
        .targets(_targets(exprs)).legend(_legend(legend_table))
    )
    if stack:
        # Grafana reads stacking from the field config (fieldConfig.defaults.custom.stacking)
        p = p.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL)).fill_opacity(40)
    if bars:
        p = p.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80)
    if steps:
        p = p.line_interpolation(cm.LineInterpolation.STEP_AFTER)
    return p


def timeline(title: str, expr: str, legend: str, mappings: dict[str, str], *, w: int = 24, h: int = 8,
             desc: str = "") -> stb.Panel:
    results = {k: dm.ValueMappingResult(text=v, index=i) for i, (k, v) in enumerate(mappings.items())}
    return (
        stb.Panel().title(title).description(desc).datasource(DS).span(w).height(h)
        .targets(_targets([(expr, legend)])).mappings([dm.ValueMap(options=results)])
    )


def stat(title: str, expr: str, legend: str = "", *, unit: str = "short", w: int = 6, h: int = 4,
         desc: str = "") -> sb.Panel:
    return (
        sb.Panel().title(title).description(desc).datasource(DS).span(w).height(h).unit(unit)
        .targets(_targets([(expr, legend)]))
    )


def variable(name: str, query: str, *, label: str = "", multi: bool = True) -> db.QueryVariable:
    return (
        db.QueryVariable(name).label(label or name).datasource(DS)
        .query({"query": query, "refId": f"var-{name}"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(multi).include_all(True).all_value(".*")
    )


def scope_variables(process_metric: str) -> list[db.QueryVariable]:
    """``job`` and ``instance``, from the metric every process of the dashboard's kind exports."""
    return [
        variable("job", f"label_values({process_metric}, job)"),
        variable("instance", f'label_values({process_metric}{{job=~"$job"}}, instance)'),
    ]


def label_variable(name: str, metric: str, label: str = "") -> db.QueryVariable:
    return variable(name, f'label_values({metric}{{job=~"$job",instance=~"$instance"}}, {name})', label=label)


def dashboard(uid: str, title: str, panels: list[Panel], variables: list[db.QueryVariable], *,
              description: str = "") -> db.Dashboard:
    d = (
        db.Dashboard(title).uid(uid).description(description).tags(["hedgewatch"]).timezone("utc")
        .refresh("10s").time("now-6h", "now").readonly()
        .variables(variables)
        .link(db.DashboardLink("hedgewatch").type(dm.DashboardLinkType.DASHBOARDS).tags(["hedgewatch"])
              .as_dropdown(True).include_vars(True).keep_time(True))
    )
    for i, p in enumerate(panels, start=1):
        d = d.with_panel(p.id(i))  # type: ignore[attr-defined]
    return d


def process_panels(w: int = 8) -> list[Panel]:
    """The process's own health from prometheus_client's default collectors."""
    return [
        timeseries("CPU", [(f"rate({sel('process_cpu_seconds_total')}[$__rate_interval])", "{{instance}}")],
                   unit="percentunit", w=w, desc="CPU time per second (1 = one core)."),
        timeseries("Resident memory", [(sel("process_resident_memory_bytes"), "{{instance}}")], unit="bytes", w=w),
        timeseries(
            "Open file descriptors and GC",
            [
                (sel("process_open_fds"), "open fds {{instance}}"),
                (rate("python_gc_collections_total", by="generation"), "gc/s gen {{generation}}"),
            ],
            w=w,
        ),
    ]


# -- the dashboards -----------------------------------------------------------------------------------


def index_dashboard() -> db.Dashboard:
    return dashboard(
        "hw-index",
        "hedgewatch · index",
        [
            timeseries(
                "Index level, moving averages and levels",
                [
                    (sel("hedgewatch_index_price", index="$index"), "{{index}}"),
                    (sel("hedgewatch_index_indicator", index="$index"), "{{index}} {{indicator}}"),
                ],
                w=24,
                h=10,
                desc="The index against the indicators and levels the rules watch (50/200-day MA, ATH, "
                "resistance, support, trendline).",
            ),
            timeseries(
                "Futures leg",
                [
                    (sel("hedgewatch_index_futures_price", index="$index"), "{{index}} futures"),
                    (sel("hedgewatch_index_price", index="$index"), "{{index}} spot"),
                ],
            ),
            timeseries(
                "Tracking error vs the venue's index",
                [(sel("hedgewatch_index_tracking_error_ratio", index="$index"), "{{index}}")],
                unit="percentunit",
                desc="Only when the index tracks a venue's published index (index.tracks).",
            ),
            timeseries(
                "Constituent weights",
                [(sel("hedgewatch_index_constituent_weight_ratio", index="$index"), "{{asset}}")],
                unit="percentunit",
                stack=True,
                legend_table=True,
            ),
            timeline("Index status", sel("hedgewatch_index_status", index="$index"), "{{index}}", STATUS, w=12),
        ],
        [*scope_variables(DAEMON), label_variable("index", "hedgewatch_index_price")],
    )


def oracle_dashboard() -> db.Dashboard:
    a = {"asset": "$asset"}
    return dashboard(
        "hw-oracle",
        "hedgewatch · oracle",
        [
            timeseries(
                "Oracle price and every source",
                [
                    (sel("hedgewatch_asset_price", **a), "{{asset}} oracle"),
                    (sel("hedgewatch_source_price", **a), "{{asset}} {{exchange}}"),
                ],
                unit="currencyUSD",
                w=24,
                h=10,
            ),
            timeseries("Source age", [(sel("hedgewatch_source_age_seconds", **a), "{{asset}} {{exchange}}")],
                       unit="s"),
            timeseries("Valid sources", [(sel("hedgewatch_oracle_sources", **a), "{{asset}}")]),
            timeline("Excluded sources", sel("hedgewatch_source_excluded", **a), "{{asset}} {{exchange}}",
                     {"0": "in", "1": "excluded"}),
            timeline("Oracle status", sel("hedgewatch_asset_status", **a), "{{asset}}", STATUS, w=12),
            timeseries(
                "Confidence (spread of valid sources)",
                [(sel("hedgewatch_asset_confidence_ratio", **a), "{{asset}}")],
                unit="percentunit",
            ),
        ],
        [*scope_variables(DAEMON), label_variable("asset", "hedgewatch_asset_price")],
    )


def derivatives_dashboard() -> db.Dashboard:
    i = {"index": "$index"}
    return dashboard(
        "hw-derivatives",
        "hedgewatch · funding, open interest, basis",
        [
            timeseries("Index funding rate (per 8 h)", [(sel("hedgewatch_index_funding_rate", **i), "{{index}}")],
                       unit="percentunit"),
            timeseries("Open interest", [(sel("hedgewatch_index_open_interest_usd", **i), "{{index}}")],
                       unit="currencyUSD"),
            timeseries(
                "Basis",
                [
                    (sel("hedgewatch_index_basis_ratio", **i), "{{index}} basis"),
                    (sel("hedgewatch_index_basis_annualized_ratio", **i), "{{index}} annualized"),
                ],
                unit="percentunit",
            ),
            timeseries("Funding by constituent and venue",
                       [(sel("hedgewatch_asset_funding_rate"), "{{asset}} {{exchange}}")], unit="percentunit"),
            timeseries("Open interest by constituent and venue",
                       [(sel("hedgewatch_asset_open_interest_usd"), "{{asset}} {{exchange}}")],
                       unit="currencyUSD", w=24),
        ],
        [*scope_variables(DAEMON), label_variable("index", "hedgewatch_index_price")],
    )


def hedge_dashboard() -> db.Dashboard:
    i = {"index": "$index"}
    return dashboard(
        "hw-hedge",
        "hedgewatch · hedge and rules",
        [
            timeseries("Hedge ratio", [(sel("hedgewatch_hedge_ratio", **i), "{{index}}")], unit="percentunit"),
            timeseries(
                "Hedge notional and portfolio value",
                [
                    (sel("hedgewatch_hedge_notional_usd", **i), "{{index}} notional"),
                    (sel("hedgewatch_portfolio_value_usd", view="unhedged", **i), "{{index}} portfolio"),
                ],
                unit="currencyUSD",
            ),
            timeseries("Recommended contracts", [(sel("hedgewatch_hedge_contracts", **i), "{{index}}")],
                       steps=True),
            # the hedge ledger: what the hedge held did for the portfolio
            timeseries("Hedge position in the ledger (contracts, short < 0)",
                       [(sel("hedgewatch_hedge_position_contracts", **i), "{{index}}")], steps=True,
                       desc="The position the ledger holds: advice acknowledged, reconciled from the venue, or "
                            "assumed executed"),
            timeseries(
                "Portfolio value, hedged and unhedged",
                [(sel("hedgewatch_portfolio_value_usd", **i), "{{index}} {{view}}")],
                unit="currencyUSD",
                desc="Unhedged: the holdings at oracle prices. Hedged: plus the hedge's P&L and funding, less fees",
            ),
            timeseries(
                "Hedge P&L, funding and fees",
                [
                    (sel("hedgewatch_hedge_pnl_usd", **i), "{{index}} P&L (realized + unrealized)"),
                    (sel("hedgewatch_hedge_funding_usd_total", **i), "{{index}} funding received"),
                    (sel("hedgewatch_hedge_fees_usd_total", **i), "{{index}} fees paid"),
                ],
                unit="currencyUSD",
            ),
            timeseries("Drawdown from the peak, hedged and unhedged",
                       [(sel("hedgewatch_portfolio_drawdown_ratio", **i), "{{index}} {{view}}")],
                       unit="percentunit"),
            timeseries("Alerts emitted", [(rate("hedgewatch_alerts_total", by="rule, status", fn="increase"),
                                           "{{rule}} {{status}}")], bars=True),
            timeline("Rule states", sel("hedgewatch_rule_state", **i), "{{rule}}",
                     {"0": "inactive", "1": "pending", "2": "firing"}),
        ],
        [*scope_variables(DAEMON), label_variable("index", "hedgewatch_index_price")],
    )


def pipeline_dashboard() -> db.Dashboard:
    return dashboard(
        "hw-pipeline",
        "hedgewatch · pipeline health",
        [
            timeseries("Messages/s by venue", [(rate("hedgewatch_messages_total", by="exchange"), "{{exchange}}")],
                       unit="reqps"),
            timeseries("Rejected messages/s",
                       [(rate("hedgewatch_messages_rejected_total", by="exchange, reason"),
                         "{{exchange}} {{reason}}")], unit="reqps"),
            timeseries("Reconnects", [(rate("hedgewatch_reconnects_total", by="exchange", fn="increase"),
                                       "{{exchange}}")]),
            timeline("Feed connections", sel("hedgewatch_feed_connected"), "{{exchange}}", {"0": "down", "1": "up"},
                     w=12),
            timeseries("Silent channels detected",
                       [(rate("hedgewatch_channel_silent_total", by="exchange, channel", fn="increase"),
                         "{{exchange}} {{channel}}")]),
            timeseries("Tick to index latency", quantiles("hedgewatch_tick_to_index_seconds"), unit="s"),
            timeseries("Queue fill",
                       [(f"{sel('hedgewatch_queue_depth')} / {sel('hedgewatch_queue_capacity')}", "{{queue}}")],
                       unit="percentunit"),
            timeseries("Queue drops/s", [(rate("hedgewatch_queue_dropped_total", by="queue"), "{{queue}}")]),
            timeseries(
                "Redis",
                [
                    (sel("hedgewatch_redis_up"), "up"),
                    (rate("hedgewatch_redis_published_total", by="kind"), "published/s {{kind}}"),
                    (rate("hedgewatch_redis_errors_total"), "errors/s"),
                    (sel("hedgewatch_alert_outbox_depth"), "alerts waiting on disk"),
                    (sel("hedgewatch_alert_outbox_writable"), "outbox writable"),
                ],
            ),
            timeseries("Heartbeat age", [(f"time() - {sel('hedgewatch_heartbeat_timestamp_seconds')}",
                                          "{{instance}}")], unit="s",
                       desc="Since the daemon last set its Redis heartbeat key."),
            timeseries(
                "Up and ready",
                [
                    (sel("hedgewatch_up"), "up {{instance}}"),
                    (sel("hedgewatch_ready"), "ready {{instance}}"),
                    (sel("up"), "scrape {{instance}}"),
                ],
                w=24,
            ),
            *process_panels(),
        ],
        scope_variables(DAEMON),
    )


def notifier_dashboard() -> db.Dashboard:
    return dashboard(
        "hw-notify",
        "hedgewatch · notifier",
        [
            timeseries("Delivered", [(rate("hedgewatch_notify_sent_total", by="destination", fn="increase"),
                                      "{{destination}}")], bars=True),
            timeseries(
                "Retried and refused",
                [
                    (rate("hedgewatch_notify_retries_total", by="destination, reason", fn="increase"),
                     "retried {{destination}} {{reason}}"),
                    (rate("hedgewatch_notify_failed_total", by="destination, reason", fn="increase"),
                     "refused {{destination}} {{reason}}"),
                    (rate("hedgewatch_notify_silenced_total", fn="increase"), "silenced"),
                ],
                desc="Retries: rate limits, server errors, network. Refusals (4xx) need the webhook or token "
                "checked.",
            ),
            timeseries("Delivery latency (stream to chat)", quantiles("hedgewatch_notify_delivery_seconds",
                                                                      (0.5, 0.99)), unit="s"),
            timeseries("Queues",
                       [(sel("hedgewatch_queue_depth"), "{{queue}}"),
                        (rate("hedgewatch_redis_errors_total"), "redis errors/s")]),
            timeseries("Up", [(sel("hedgewatch_notify_up"), "up {{instance}}"), (sel("up"), "scrape {{instance}}")],
                       w=24),
            *process_panels(),
        ],
        scope_variables(NOTIFIER),
    )


DASHBOARDS: list[Callable[[], db.Dashboard]] = [
    index_dashboard,
    oracle_dashboard,
    derivatives_dashboard,
    hedge_dashboard,
    pipeline_dashboard,
    notifier_dashboard,
]


def render(build: Callable[[], db.Dashboard]) -> tuple[str, str]:
    """(uid, JSON text) of one dashboard, exactly as committed."""
    d = build().build()
    assert d.uid is not None
    return d.uid, json.dumps(d, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else OUT
    out.mkdir(parents=True, exist_ok=True)
    stale = []
    for build in DASHBOARDS:
        uid, text = render(build)
        path = out / f"{uid}.json"
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date (run python deploy/grafana/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Writes the Grafana dashboards (deploy/grafana/dashboards/*.json) from the panel lists below.

Run ``python deploy/grafana/generate.py`` after editing; the JSON is committed so Grafana's file provisioning
needs nothing but the files. uids are fixed: links and bookmarks survive a re-provisioning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards"
DS = {"type": "prometheus", "uid": "hedgewatch-prometheus"}


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(
    title: str,
    targets: list[tuple[str, str]],
    *,
    kind: str = "timeseries",
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    desc: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "targets": [target(e, lg, chr(ord("A") + i)) for i, (e, lg) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
    }
    if extra:
        p.update(extra)
    return p


def state_timeline(
    title: str, expr: str, legend: str, mappings: dict[str, str], w: int = 24
) -> dict[str, Any]:
    p = panel(title, [(expr, legend)], kind="state-timeline", w=w)
    p["fieldConfig"]["defaults"]["mappings"] = [
        {
            "type": "value",
            "options": {k: {"text": v, "index": i} for i, (k, v) in enumerate(mappings.items())},
        }
    ]
    return p


def var(name: str, query: str, multi: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "multi": multi,
        "includeAll": True,
        "current": {},
    }


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]]) -> dict:
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y = 0, y + row_h
            row_h = 0
        p["gridPos"].update(x=x, y=y)
        p["id"] = i
        x += w
        row_h = max(row_h, h)
    return {
        "uid": uid,
        "title": title,
        "tags": ["hedgewatch"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "panels": panels,
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["hedgewatch"], "asDropdown": True, "title": "hedgewatch"}],
    }


INDEX = var("index", "label_values(hedgewatch_index_price, index)")
ASSET = var("asset", "label_values(hedgewatch_asset_price, asset)")
STATUS = {"0": "ok", "1": "degraded", "2": "stale"}
IDX = '{index=~"$index"}'
AST = '{asset=~"$asset"}'

DASHBOARDS = [
    dashboard(
        "hw-index",
        "hedgewatch · index",
        [
            panel(
                "Index level, moving averages and levels",
                [
                    (f"hedgewatch_index_price{IDX}", "{{index}}"),
                    (f"hedgewatch_index_indicator{IDX}", "{{index}} {{indicator}}"),
                ],
                w=24,
                h=10,
                desc="The index against the indicators and levels the rules watch (50/200-day MA, ATH, "
                "resistance, support, trendline).",
            ),
            panel(
                "Futures leg",
                [
                    (f"hedgewatch_index_futures_price{IDX}", "{{index}} futures"),
                    (f"hedgewatch_index_price{IDX}", "{{index}} spot"),
                ],
            ),
            panel(
                "Tracking error vs the venue's index",
                [(f"hedgewatch_index_tracking_error_ratio{IDX}", "{{index}}")],
                unit="percentunit",
            ),
            panel(
                "Constituent weights",
                [(f"hedgewatch_index_constituent_weight_ratio{IDX}", "{{asset}}")],
                unit="percentunit",
                extra={
                    "options": {
                        "legend": {"displayMode": "table", "placement": "right"},
                        "stacking": {"mode": "normal"},
                    }
                },
            ),
            state_timeline("Index status", f"hedgewatch_index_status{IDX}", "{{index}}", STATUS, w=12),
        ],
        [INDEX],
    ),
    dashboard(
        "hw-oracle",
        "hedgewatch · oracle",
        [
            panel(
                "Oracle price and every source",
                [
                    (f"hedgewatch_asset_price{AST}", "{{asset}} oracle"),
                    (f"hedgewatch_source_price{AST}", "{{asset}} {{exchange}}"),
                ],
                unit="currencyUSD",
                w=24,
                h=10,
            ),
            panel(
                "Source age", [(f"hedgewatch_source_age_seconds{AST}", "{{asset}} {{exchange}}")], unit="s"
            ),
            panel("Valid sources", [(f"hedgewatch_oracle_sources{AST}", "{{asset}}")]),
            state_timeline(
                "Excluded sources",
                f"hedgewatch_source_excluded{AST}",
                "{{asset}} {{exchange}}",
                {"0": "in", "1": "excluded"},
            ),
            state_timeline("Oracle status", f"hedgewatch_asset_status{AST}", "{{asset}}", STATUS, w=12),
            panel(
                "Confidence (spread of valid sources)",
                [(f"hedgewatch_asset_confidence_ratio{AST}", "{{asset}}")],
                unit="percentunit",
            ),
        ],
        [ASSET],
    ),
    dashboard(
        "hw-derivatives",
        "hedgewatch · funding, open interest, basis",
        [
            panel(
                "Index funding rate (per 8 h)",
                [(f"hedgewatch_index_funding_rate{IDX}", "{{index}}")],
                unit="percentunit",
            ),
            panel(
                "Open interest",
                [(f"hedgewatch_index_open_interest_usd{IDX}", "{{index}}")],
                unit="currencyUSD",
            ),
            panel(
                "Basis",
                [
                    (f"hedgewatch_index_basis_ratio{IDX}", "{{index}} basis"),
                    (f"hedgewatch_index_basis_annualized_ratio{IDX}", "{{index}} annualized"),
                ],
                unit="percentunit",
            ),
            panel(
                "Funding by constituent and venue",
                [("hedgewatch_asset_funding_rate", "{{asset}} {{exchange}}")],
                unit="percentunit",
            ),
            panel(
                "Open interest by constituent and venue",
                [("hedgewatch_asset_open_interest_usd", "{{asset}} {{exchange}}")],
                unit="currencyUSD",
                w=24,
            ),
        ],
        [INDEX],
    ),
    dashboard(
        "hw-hedge",
        "hedgewatch · hedge and rules",
        [
            panel("Hedge ratio", [(f"hedgewatch_hedge_ratio{IDX}", "{{index}}")], unit="percentunit"),
            panel(
                "Hedge notional and portfolio value",
                [
                    (f"hedgewatch_hedge_notional_usd{IDX}", "{{index}} notional"),
                    (f"hedgewatch_portfolio_value_usd{IDX}", "{{index}} portfolio"),
                ],
                unit="currencyUSD",
            ),
            panel(
                "Recommended contracts",
                [(f"hedgewatch_hedge_contracts{IDX}", "{{index}}")],
                extra={
                    "fieldConfig": {
                        "defaults": {
                            "unit": "short",
                            "custom": {"drawStyle": "line", "lineInterpolation": "stepAfter"},
                        },
                        "overrides": [],
                    }
                },
            ),
            panel(
                "Alerts emitted (timeline)",
                [
                    (
                        "sum by (rule, status) (increase(hedgewatch_alerts_total[$__rate_interval]))",
                        "{{rule}} {{status}}",
                    )
                ],
                extra={
                    "fieldConfig": {
                        "defaults": {"unit": "short", "custom": {"drawStyle": "bars"}},
                        "overrides": [],
                    }
                },
            ),
            state_timeline(
                "Rule states",
                f"hedgewatch_rule_state{IDX}",
                "{{rule}}",
                {"0": "inactive", "1": "pending", "2": "firing"},
            ),
        ],
        [INDEX],
    ),
    dashboard(
        "hw-pipeline",
        "hedgewatch · pipeline health",
        [
            panel(
                "Messages/s by venue",
                [("sum by (exchange) (rate(hedgewatch_messages_total[$__rate_interval]))", "{{exchange}}")],
                unit="reqps",
            ),
            panel(
                "Rejected messages/s",
                [
                    (
                        "sum by (exchange, reason) "
                        "(rate(hedgewatch_messages_rejected_total[$__rate_interval]))",
                        "{{exchange}} {{reason}}",
                    )
                ],
                unit="reqps",
            ),
            panel(
                "Reconnects",
                [
                    (
                        "sum by (exchange) (increase(hedgewatch_reconnects_total[$__rate_interval]))",
                        "{{exchange}}",
                    )
                ],
            ),
            state_timeline(
                "Feed connections",
                "hedgewatch_feed_connected",
                "{{exchange}}",
                {"0": "down", "1": "up"},
                w=12,
            ),
            panel(
                "Silent channels detected",
                [
                    (
                        "sum by (exchange, channel) "
                        "(increase(hedgewatch_channel_silent_total[$__rate_interval]))",
                        "{{exchange}} {{channel}}",
                    )
                ],
            ),
            panel(
                "Tick to index latency",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) (rate(hedgewatch_tick_to_index_seconds_bucket"
                        f"[$__rate_interval])))",
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.9, 0.99)
                ],
                unit="s",
            ),
            panel(
                "Queue fill",
                [("hedgewatch_queue_depth / hedgewatch_queue_capacity", "{{queue}}")],
                unit="percentunit",
            ),
            panel(
                "Queue drops/s",
                [("sum by (queue) (rate(hedgewatch_queue_dropped_total[$__rate_interval]))", "{{queue}}")],
            ),
            panel(
                "Redis",
                [
                    ("hedgewatch_redis_up", "up"),
                    (
                        "sum by (kind) (rate(hedgewatch_redis_published_total[$__rate_interval]))",
                        "published/s {{kind}}",
                    ),
                    ("rate(hedgewatch_redis_errors_total[$__rate_interval])", "errors/s"),
                    ("hedgewatch_alert_outbox_depth", "alerts waiting on disk"),
                ],
            ),
            panel(
                "Heartbeat age",
                [("time() - hedgewatch_heartbeat_timestamp_seconds", "heartbeat age")],
                unit="s",
            ),
            panel(
                "Notifications",
                [
                    (
                        "sum by (destination) (increase(hedgewatch_notify_sent_total[$__rate_interval]))",
                        "sent {{destination}}",
                    ),
                    (
                        "sum by (destination, reason) "
                        "(increase(hedgewatch_notify_retries_total[$__rate_interval]))",
                        "retried {{destination}} {{reason}}",
                    ),
                    (
                        "sum by (destination, reason) "
                        "(increase(hedgewatch_notify_failed_total[$__rate_interval]))",
                        "refused {{destination}} {{reason}}",
                    ),
                    ("increase(hedgewatch_notify_silenced_total[$__rate_interval])", "silenced"),
                ],
            ),
            panel(
                "Alert delivery latency (stream to chat)",
                [
                    (
                        "histogram_quantile(0.5, sum by (le) (rate(hedgewatch_notify_delivery_seconds_bucket"
                        "[$__rate_interval])))",
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (le) (rate(hedgewatch_notify_delivery_seconds_bucket"
                        "[$__rate_interval])))",
                        "p99",
                    ),
                ],
                unit="s",
            ),
            panel(
                "Up and ready",
                [
                    ("hedgewatch_up", "up"),
                    ("hedgewatch_ready", "ready"),
                    ('up{job=~"hedgewatch.*"}', "scrape {{job}}"),
                ],
                w=24,
            ),
        ],
        [],
    ),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for d in DASHBOARDS:
        (OUT / f"{d['uid']}.json").write_text(json.dumps(d, indent=2) + "\n")


if __name__ == "__main__":
    main()

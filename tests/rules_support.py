"""Helpers for the rule tests: a config around a rule file, and snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hedgewatch.rules.stage import RuleStage
from hedgewatch.service.config import Config, parse_config


def config_for(rule_file: Path, portfolio: str = "", rules_extra: str = "") -> Config:
    text = f"""
sources: [{{exchange: binanceusdm, symbols: [BTC, ETH]}}]
index: {{name: HW, constituents: [BTC, ETH]}}
rules: {{files: ["{rule_file}"]{rules_extra}}}
portfolio: {{holdings: {{HW: 1000}}, hedge_ratio: 0.2, multiplier: 1, lot_size: 0.001{portfolio}}}
"""
    return parse_config(text, env={})


def stage_for(tmp_path: Path, rules_yaml: str, portfolio: str = "", rules_extra: str = "") -> RuleStage:
    f = tmp_path / "rules.yaml"
    f.write_text(rules_yaml)
    return RuleStage(config_for(f, portfolio, rules_extra), 0.0)


def snap(level: float, ts: float, status: str = "ok", **deriv: Any) -> dict[str, Any]:
    return {"index": "HW", "ts": ts, "level": level, "status": status,
            "constituents": {"BTC": {"price": level * 90, "units": 0.005}, "ETH": {"price": level * 3}},
            "derivatives": {"futures_price": level, **deriv}}

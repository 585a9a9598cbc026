"""``hedgewatch rules test FILE``: rule unit tests written as input series and expected alerts, in the
manner of ``promtool test rules``.

```yaml
rule_files: [my-rules.yaml]          # relative to this file; builtin:default works too
evaluation_interval: 1m
levels: {R1: 1050}                   # optional: rules.levels, rules.trendlines, rules.pivot_strength
portfolio: {holdings: {HW: 1000}, hedge_ratio: 0.2, multiplier: 10}
tests:
  - name: leveraged approach to resistance
    interval: 1m                     # defaults to evaluation_interval
    bootstrap:                       # klines ending where the series start
      - {timeframe: 1d, closes: "975+0.2x59"}
    input_series:                    # promtool notation: "a+bxn" = a, a+b, ... (n+1 values); "_" missing
      price: "1000+1x60"
      funding: "0.0005x60"
      oi: "1e10+1e8x60"
      status: "ok x60"
    alert_rule_test:                 # the alerts firing at eval_time (none listed: none may fire)
      - eval_time: 20m
        alertname: LeveragedApproach
        exp_alerts:
          - labels: {severity: warning}
            annotations: {summary: "..."}
    hedge_test:
      - {eval_time: 20m, ratio: 0.5, contracts: 50}
```
Series names: ``price``, ``futures_price``, ``funding``, ``funding_annualized``, ``basis``, ``basis_ratio``,
``basis_annualized``, ``oi``, ``oi_change_<w>``, ``status``, ``state``, ``asset_price.<A>``,
``asset_funding.<A>``, ``asset_oi.<A>``, ``volume_24h.<A>``; the futures price defaults to the price.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from hedgewatch.rules.durations import parse_duration, parse_timeframe
from hedgewatch.rules.loader import BUILTIN_PREFIX
from hedgewatch.rules.stage import RuleStage
from hedgewatch.service.alerts import Alert
from hedgewatch.service.config import Config
from hedgewatch.service.errors import ConfigError
from hedgewatch.service.events import Candle

T0 = 1_700_006_400.0  # a UTC midnight: test time 0
_TERM = re.compile(r"^(_|[-+]?[\d.eE+-]*?\d)(?:([-+][\d.eE+-]+)?x(\d+))?$")
_DERIV = {
    **{k: k for k in ("futures_price", "funding_rate_8h", "funding_annualized", "basis", "basis_ratio",
                      "basis_annualized", "open_interest_usd", "state")},
    "funding": "funding_rate_8h", "oi": "open_interest_usd",
}
_ASSET = {"asset_price": ("constituents", "price"), "asset_funding": ("assets", "funding_rate_8h"),
          "asset_oi": ("assets", "open_interest_usd"), "volume_24h": ("assets", "volume_24h")}


def expand(series: str) -> list[Any]:
    """promtool's expanding notation: ``1+2x3`` -> 1 3 5 7; ``5x2`` -> 5 5 5; ``_x2`` -> 3 missing;
    words (``ok``, ``degraded x3``) repeat the same way."""
    out: list[Any] = []
    tokens = series.replace(" x", "x").split()
    for tok in tokens:
        m = _TERM.match(tok)
        if m is None:
            word, _, n = tok.partition("x")
            if not word.isalpha() or (n and not n.isdigit()):
                raise ValueError(f"cannot read series term '{tok}'")
            out += [word] * (int(n) + 1 if n else 1)
            continue
        start, step, n = m.groups()
        if start == "_":
            out += [None] * (int(n) + 1 if n else 1)
            continue
        v, d = float(start), float(step or 0)
        out += [v + i * d for i in range(int(n) + 1 if n else 1)]
    return out


def _snapshot(inputs: dict[str, list[Any]], i: int, t: float) -> dict[str, Any]:
    def at(name: str) -> Any:
        vals = inputs[name]
        return vals[i] if i < len(vals) else None

    snap: dict[str, Any] = {"index": "HW", "ts": t, "status": "ok", "constituents": {}, "derivatives": {},
                            "assets": {}}
    for name in inputs:
        v = at(name)
        if name in ("price", "level"):
            snap["level"] = v
        elif name == "status":
            snap["status"] = v or "stale"
        elif name in _DERIV:
            snap["derivatives"][_DERIV[name]] = v
        elif name.startswith("oi_change_"):
            snap["derivatives"].setdefault("open_interest_change", {})[name[10:]] = v
        elif "." in name and name.split(".")[0] in _ASSET:
            kind, asset = name.split(".", 1)
            section, field = _ASSET[kind]
            snap[section].setdefault(asset, {})[field] = v
        else:
            raise ValueError(f"unknown input series '{name}'")
    snap["derivatives"].setdefault("futures_price", snap.get("level"))
    return snap


def _config(doc: dict[str, Any], base: Path) -> Config:
    files = [f if f.startswith(BUILTIN_PREFIX) else str((base / f).resolve())
             for f in doc.get("rule_files", [])]
    rules: dict[str, Any] = {"files": files}
    rules.update({k: doc[k] for k in ("levels", "trendlines", "pivot_strength") if k in doc})
    portfolio = doc.get("portfolio") or {"cash_usd": 1_000_000.0}
    return Config.model_validate({"sources": [{"exchange": "test", "symbols": ["BTC"]}],
                                  "index": {"name": "HW", "constituents": ["BTC"]},
                                  "rules": rules, "portfolio": portfolio})


def _bootstrap(specs: list[dict[str, Any]], stage: RuleStage) -> None:
    for spec in specs or []:
        tf = parse_timeframe(spec.get("timeframe", "1d"))
        closes = expand(str(spec["closes"]))
        volumes = expand(str(spec["volumes"])) if "volumes" in spec else [0.0] * len(closes)
        start = T0 - tf * len(closes) - (T0 % tf)
        stage.bootstrap(Candle("test", "HW", "HW", tf, start + k * tf, c, c, c, c, volumes[k] or 0.0, True,
                               start + k * tf, start + k * tf) for k, c in enumerate(closes) if c is not None)


def _check_alerts(case: dict[str, Any], at: float, firing: dict[str, dict[str, Alert]]) -> list[str]:
    errors = []
    name = str(case.get("alertname"))
    got = sorted(firing.get(name, {}).values(), key=lambda a: sorted(a.labels.items()))
    want = case.get("exp_alerts") or []
    if len(got) != len(want):
        return [f"{name} at {at:g}s: expected {len(want)} firing, got {len(got)}"]
    for exp, alert in zip(want, got, strict=True):
        for section, actual in (("labels", alert.labels), ("annotations", alert.annotations)):
            for k, v in (exp.get(section) or {}).items():
                got_v = actual.get(k)
                if got_v != str(v):
                    errors.append(f"{name} at {at:g}s: {section}.{k} = {got_v!r}, expected {str(v)!r}")
        for k, v in (exp.get("hedge") or {}).items():
            actual_v = getattr(alert.hedge, k, None) if alert.hedge else None
            if actual_v is None or (isinstance(v, int | float) and abs(actual_v - v) > 1e-9) \
                    or (isinstance(v, str) and actual_v != v):
                errors.append(f"{name} at {at:g}s: hedge.{k} = {actual_v!r}, expected {v!r}")
    return errors


def run_case(doc: dict[str, Any], case: dict[str, Any], base: Path) -> list[str]:
    """Run one test case; returns its failures (empty when it passes)."""
    stage = RuleStage(_config(doc, base), T0)
    _bootstrap(case.get("bootstrap") or [], stage)
    interval = parse_duration(case.get("interval", doc.get("evaluation_interval", "1m")))
    inputs = {str(k): expand(str(v)) for k, v in (case.get("input_series") or {}).items()}
    checks: dict[float, list[tuple[str, dict[str, Any]]]] = {}
    known = {r.name for r in stage.engine.rules} | {r.name for r in stage.events.rules}
    for c in case.get("alert_rule_test") or []:
        if str(c.get("alertname")) not in known:
            # a misspelt name would pass silently: nothing of that name ever fires
            raise ValueError(f"alert_rule_test names {c.get('alertname')!r}, which no rule file defines")
        checks.setdefault(parse_duration(c["eval_time"]), []).append(("alert", c))
    for c in case.get("hedge_test") or []:
        checks.setdefault(parse_duration(c["eval_time"]), []).append(("hedge", c))
    steps = max([len(v) for v in inputs.values()] + [int(max(checks, default=0) // interval) + 1])
    firing: dict[str, dict[str, Alert]] = {}
    errors: list[str] = []
    for i in range(steps):
        at = i * interval
        res = stage.evaluate(_snapshot(inputs, i, T0 + at), T0 + at)
        for a in res.alerts:
            if a.status == "firing":
                firing.setdefault(a.rule, {})[a.fingerprint] = a
            else:
                firing.get(a.rule, {}).pop(a.fingerprint, None)
        for kind, c in checks.get(at, []):
            if kind == "alert":
                errors += _check_alerts(c, at, firing)
                continue
            sizing = stage.sizing
            for k, attr in (("ratio", "ratio"), ("contracts", "target_contracts")):
                if k in c:
                    got = getattr(sizing, attr) if sizing else None
                    if got is None or abs(got - float(c[k])) > 1e-9:
                        errors.append(f"hedge at {at:g}s: {k} = {got!r}, expected {c[k]!r}")
    return errors


def run_rule_tests(path: str) -> int:
    """Run every test in ``path``; prints one line per test and returns the exit code (0: all pass)."""
    p = Path(path)
    try:
        doc = YAML(typ="safe").load(p.read_text())
    except (OSError, ValueError) as exc:
        print(f"{path}: cannot read the test file: {exc}")
        return 2
    except Exception as exc:  # ruamel's parse errors
        print(f"{path}: invalid YAML: {exc}")
        return 2
    failed = 0
    for n, case in enumerate((doc or {}).get("tests") or []):
        name = case.get("name") or f"test {n + 1}"
        try:
            errors = run_case(doc, case, p.parent)
        except ConfigError as exc:
            print(f"ERROR {name}:\n  " + "\n  ".join(str(x) for x in exc.problems))
            return 2
        except (ValueError, KeyError, TypeError) as exc:
            errors = [f"bad test: {exc}"]
        if errors:
            failed += 1
            print(f"FAIL  {name}\n  " + "\n  ".join(errors))
        else:
            print(f"PASS  {name}")
    total = len((doc or {}).get("tests") or [])
    print(f"{total - failed}/{total} passed")
    return 1 if failed else 0

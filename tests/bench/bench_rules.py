"""Rule evaluation cost per index update, for 10, 100 and 1,000 rules (target: 100 rules < 200 us).

Run: ``python -m tests.bench.bench_rules``. Rules are realistic expressions over moving averages, levels,
funding, open interest, volume and crossings, with indicators bootstrapped so every rule really evaluates.
Columns (medians over the updates): ``stage`` is a whole ``RuleStage.evaluate`` (snapshot into the
indicators, every rule, hedge sizing); ``rules`` the rule engine alone on a prepared env (states, hysteresis,
actions); ``exprs`` our compiled expressions alone; ``cel`` the same expressions through the CEL bindings
with one Context per update (scaled to the same number of rules), to compare with ``exprs``.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from hedgewatch.rules.stage import RuleStage
from hedgewatch.service.config import Config
from hedgewatch.service.events import Candle

try:  # the comparison column only
    import cel
except ImportError:  # pragma: no cover
    cel = None

DAY = 86400
T0 = 1_700_006_400.0
MAS = [("sma", 20, "1h"), ("sma", 50, "1d"), ("ema", 21, "4h"), ("sma", 200, "1d"), ("ema", 50, "1h")]
TEMPLATES = [
    ('price < {ma}({n}, "{tf}") * {k1}', "{ma}_{n}_{tf} * {k1}", "price < {key} * {k1}"),
    ('price >= level("R1") * {k2} and funding > {f}', "", "price >= level_R1 * {k2} && funding > {f}"),
    ('funding > {f} and oi_change("{w}") > {o}', "", "funding > {f} && oi_change_{w} > {o}"),
    ('crossed_below(price, {ma}({n}, "{tf}"))', "", ""),
    ('price > ath * {k2} and volume("1h", 1) > {v} * volume_sma(24, "1h")', "",
     "price > ath * {k2} && volume_1h_1 > {v} * volume_sma_24_1h"),
    ('abs(price - {ma}({n}, "{tf}")) / price < {d} and not backwardation', "",
     "(price - {key}) / price < {d} && ({key} - price) / price < {d} && !backwardation"),
]
ACTIONS = ["{adjust_hedge: 0.05}", "{raise_hedge_to: 0.5}", "{lower_hedge_to: 0.2}", "notify"]


def rule_file(n: int, rng: random.Random) -> tuple[str, list[str]]:
    lines = ["groups:", "  - name: bench", "    rules:"]
    cels = []
    for i in range(n):
        ma, length, tf = MAS[i % len(MAS)]
        params = {"ma": ma, "n": length, "tf": tf, "key": f"{ma}_{length}_{tf}",
                  "k1": round(rng.uniform(0.97, 1.0), 4),
                  "k2": round(rng.uniform(0.99, 1.01), 4), "f": round(rng.uniform(0.0001, 0.0006), 5),
                  "w": rng.choice(["1h", "4h", "24h"]), "o": round(rng.uniform(0.0, 0.05), 3),
                  "v": round(rng.uniform(1.2, 2.0), 2), "d": round(rng.uniform(0.001, 0.01), 4)}
        expr, _, cel_expr = TEMPLATES[i % len(TEMPLATES)]
        lines += [f"      - name: R{i}", f"        expr: '{expr.format(**params)}'",
                  f"        for: {rng.choice(['0s', '1m', '5m'])}", f"        priority: {i % 7}",
                  f"        action: {ACTIONS[i % len(ACTIONS)]}"]
        if cel_expr:
            cels.append(cel_expr.format(**params))
    return "\n".join(lines) + "\n", cels


def make_stage(n: int, rng: random.Random) -> tuple[RuleStage, list[str]]:
    text, cels = rule_file(n, rng)
    path = Path(tempfile.mkdtemp()) / f"bench{n}.yaml"
    path.write_text(text)
    cfg = Config.model_validate({
        "sources": [{"exchange": "sim", "symbols": ["BTC", "ETH"]}],
        "index": {"name": "HW", "constituents": ["BTC", "ETH"]},
        "rules": {"files": [str(path)], "levels": {"R1": 1050.0}},
        "portfolio": {"holdings": {"HW": 1000}, "hedge_ratio": 0.2, "multiplier": 10, "lot_size": 0.01},
    })
    stage = RuleStage(cfg, T0)
    candles = []
    for tf, count in ((DAY, 250), (4 * 3600, 250), (3600, 250)):
        level = 1000.0
        for k in range(count):
            level *= 1 + rng.gauss(0, 0.01)
            ts = T0 - (count - k) * tf
            candles.append(Candle("sim", "HW", "HW", tf, ts, level, level * 1.01, level * 0.99, level,
                                  rng.uniform(1e3, 3e3), True, ts, ts))
    stage.bootstrap(candles)
    return stage, cels


def snapshots(count: int, rng: random.Random) -> list[dict]:
    out = []
    level, oi = 1000.0, 1e10
    for i in range(count):
        level *= 1 + rng.gauss(0, 0.002)
        oi *= 1 + rng.gauss(0, 0.001)
        t = T0 + i * 60.0
        out.append({"index": "HW", "ts": t, "level": level, "status": "ok",
                    "constituents": {"BTC": {"price": level * 95, "sources": 3, "confidence": 0.0004},
                                     "ETH": {"price": level * 3.4, "sources": 3, "confidence": 0.0005}},
                    "derivatives": {"futures_price": level * 1.0007,
                                    "funding_rate_8h": rng.uniform(-2e-4, 7e-4),
                                    "open_interest_usd": oi, "basis_ratio": 0.0007, "state": "contango"}})
    return out


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def bench(n: int, updates: int = 600) -> tuple[float, float, float, float | None, int]:
    rng = random.Random(n)
    stage, cels = make_stage(n, rng)
    snaps = snapshots(updates, rng)
    stage_t, rules_t = [], []
    for s in snaps:
        t = time.perf_counter()
        stage.evaluate(s, s["ts"])
        stage_t.append(time.perf_counter() - t)
    # the engine alone, on the env of the last update
    env, status = dict(stage.env), "ok"
    for i in range(200):
        t = time.perf_counter()
        stage.engine.evaluate(env, status, snaps[-1]["ts"] + i)
        rules_t.append(time.perf_counter() - t)
    evaluating = sum(1 for st in stage.engine.states.values() if st.health == "ok")
    fns = [r.expr.fn for r in stage.engine.rules
           if r.expr is not None and stage.engine.states[r.name].health == "ok"]
    expr_t = []
    for _ in range(200):
        t = time.perf_counter()
        for fn in fns:
            fn(env)
        expr_t.append(time.perf_counter() - t)
    cel_us = None
    if cel is not None and cels:
        progs = [cel.compile(c) for c in cels]
        cenv = {k: v for k, v in env.items() if v is not None}
        cenv["funding"] = env.get("funding_rate_8h")
        cenv.update({f"oi_change_{w}": 0.01 for w in ("1h", "4h", "24h")})
        cel_t = []
        for _ in range(200):
            t = time.perf_counter()
            ctx = cel.Context(cenv)
            for p in progs:
                p.execute(ctx)
            cel_t.append(time.perf_counter() - t)
        cel_us = median_us(cel_t) * n / len(cels)  # scaled to the same number of rules
    return median_us(stage_t), median_us(rules_t), median_us(expr_t), cel_us, evaluating


def main() -> None:
    print(f"{'rules':>6} {'stage us':>10} {'rules us':>10} {'exprs us':>10} {'cel us':>10} {'us/rule':>8} "
          f"{'evaluating':>10}")
    for n in (10, 100, 1000):
        stage_us, rules_us, expr_us, cel_us, evaluating = bench(n)
        cel_s = f"{cel_us:10.1f}" if cel_us is not None else f"{'-':>10}"
        print(f"{n:>6} {stage_us:10.1f} {rules_us:10.1f} {expr_us:10.1f} {cel_s} {stage_us / n:8.2f} "
              f"{evaluating:>10}")
    print("target: 100 rules < 200 us per index update (stage column)")


if __name__ == "__main__":
    main()

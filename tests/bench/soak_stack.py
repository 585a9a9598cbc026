"""The monitoring stack for a while, as an operator would run it: ``hedgewatch demo`` and ``hedgewatch notify``
scraped by a real Prometheus (Debian's) at the shipped scrape interval with the shipped rules, alerting to a
real Alertmanager (Debian's) running the shipped alertmanager.yml (its Slack receiver pointed at a loopback
stand-in); the notifier pushes to that Alertmanager too.

Every minute it prints the alert states in Prometheus (pending, firing) and what Alertmanager holds; at the
end, the dashboard query counts (with data, empty, failing). Exits 1 if any shipped rule fired.

    python3 -m tests.bench.soak_stack [--minutes 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from ruamel.yaml import YAML

from tests.alertmanager_support import alertmanager, alertmanager_binary
from tests.chat_fakes import fake_chat
from tests.test_prometheus import DEPLOY, Stack, run_dashboard_queries, running_stack

SCRAPE_S = 5.0  # the shipped prometheus.yml's interval


def alert_states(stack: Stack) -> tuple[Counter[str], list[str]]:
    alerts = stack.get("/api/v1/alerts")["alerts"]
    states = Counter(a["state"] for a in alerts)
    names = sorted(f"{a['labels']['alertname']}({a['state']}, job={a['labels'].get('job', '-')})" for a in alerts)
    return states, names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    if alertmanager_binary() is None:
        print("prometheus-alertmanager is not installed", file=sys.stderr)
        return 2
    yaml = YAML(typ="safe")
    with tempfile.TemporaryDirectory(prefix="hw-soak-") as d, fake_chat() as slack:
        secret = Path(d) / "slack_webhook_url"
        secret.write_text(f"{slack.url}/services/T/B/AM")
        am_cfg = yaml.load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
        am_cfg["global"]["slack_api_url_file"] = str(secret)
        cfg_path = Path(d) / "am.yml"
        with cfg_path.open("w") as f:
            yaml.dump(am_cfg, f)
        with alertmanager(cfg_path.read_text()) as am, \
                running_stack(scrape_s=SCRAPE_S, alertmanager_url=am.url) as stack:
            start = time.monotonic()
            fired: set[str] = set()
            print(f"stack up: Prometheus {stack.prom}, Alertmanager {am.url}; running {args.minutes:g} min")
            while True:
                stack.check_alive()
                elapsed = time.monotonic() - start
                states, names = alert_states(stack)
                fired |= {n for n in names if "(firing" in n}
                held = [a["labels"]["alertname"] for a in am.alerts()]
                print(f"{elapsed / 60:5.1f} min  Prometheus: {states.get('firing', 0)} firing, "
                      f"{states.get('pending', 0)} pending {names}  Alertmanager holds {len(held)} {held}",
                      flush=True)
                if elapsed >= args.minutes * 60:
                    break
                time.sleep(min(60.0, args.minutes * 60 - elapsed + 0.1))
            rules = [r for g in stack.get("/api/v1/rules", type="alert")["groups"] for r in g["rules"]]
            by_state = Counter(r["state"] for r in rules)
            unhealthy = [r["name"] for r in rules if r["health"] != "ok"]
            out = run_dashboard_queries(stack, SCRAPE_S)
            print(f"rules: {len(rules)} ({dict(by_state)}), unhealthy {unhealthy}; ever firing: {sorted(fired)}")
            print(f"Slack stand-in received {len(slack.received)} messages from Alertmanager")
            print(f"dashboard queries: {len(out['data'])} with data, {len(out['empty'])} empty, "
                  f"{len(out['failing'])} failing")
            for kind in ("empty", "failing"):
                for uid, title, expr in out[kind]:
                    print(f"  {kind}: {uid} {title!r}: {expr}")
            return 1 if fired or unhealthy else 0


if __name__ == "__main__":
    sys.exit(main())

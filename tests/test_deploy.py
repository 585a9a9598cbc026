"""deploy/: Prometheus config and rules pass promtool, dashboards are valid with fixed unique uids, and every
metric a dashboard or an alert rule uses is one that service/metrics.py exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from ruamel.yaml import YAML

from hedgewatch.service.metrics import Metrics, NotifyMetrics
from tests.support import REPO

DEPLOY = REPO / "deploy"
PROM = DEPLOY / "prometheus"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
EXPECTED_UIDS = {"hw-index", "hw-oracle", "hw-derivatives", "hw-hedge", "hw-pipeline", "hw-notify"}
METRIC = re.compile(r"\bhedgewatch_[a-z0-9_]+\b")


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def exposed_names() -> set[str]:
    """Every sample name the daemon's and notifier's /metrics can carry, from the registry's families."""
    names: set[str] = set()
    for fam in [*Metrics().registry.collect(), *NotifyMetrics().registry.collect()]:
        if fam.type == "counter" or isinstance(fam, CounterMetricFamily):
            names |= {f"{fam.name}_total", f"{fam.name}_created"}
        elif fam.type == "histogram" or isinstance(fam, HistogramMetricFamily):
            names |= {f"{fam.name}_bucket", f"{fam.name}_sum", f"{fam.name}_count", f"{fam.name}_created"}
        else:
            names.add(fam.name)
    return names


def dashboard_exprs() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        d = json.loads(path.read_text())
        exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
        exprs += [v["query"]["query"] for v in d["templating"]["list"]]
        out[path.name] = exprs
    return out


def alert_exprs() -> list[str]:
    return [r["expr"] for g in load_yaml(PROM / "alerts.yml")["groups"] for r in g["rules"]]


@pytest.mark.parametrize(
    "args",
    [("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"), ("test", "rules", "alerts_test.yml")],
    ids=["config", "rules", "rule-unit-tests"],
)
def test_promtool_accepts_the_prometheus_files(args: tuple[str, ...]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install -y prometheus)")
    proc = subprocess.run(
        [promtool, *args[:-1], str(PROM / args[-1])], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_metric_used_by_dashboards_and_alerts_exists() -> None:
    exposed = exposed_names()
    used: dict[str, set[str]] = {"alerts.yml": {m for e in alert_exprs() for m in METRIC.findall(e)}}
    for name, exprs in dashboard_exprs().items():
        used[name] = {m for e in exprs for m in METRIC.findall(e)}
    missing = {where: sorted(names - exposed) for where, names in used.items() if names - exposed}
    assert not missing, f"metrics not in service/metrics.py: {missing}"
    assert all(used.values()), "a dashboard uses no hedgewatch metric at all"


def test_dashboards_are_valid_with_fixed_unique_uids() -> None:
    uids = []
    ds_uid = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")["datasources"][0]["uid"]
    for path in sorted(DASHBOARDS.glob("*.json")):
        d = json.loads(path.read_text())
        uids.append(d["uid"])
        assert path.stem == d["uid"]
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)) and d["panels"]
        for p in d["panels"]:
            assert p["datasource"]["uid"] == ds_uid
            assert p["targets"] and all(t["expr"] for t in p["targets"])
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
    assert len(uids) == len(set(uids))
    assert set(uids) == EXPECTED_UIDS


def test_dashboards_are_what_the_generator_writes(tmp_path: Path) -> None:
    """The committed JSON is exactly what the typed builder produces (run generate.py after editing it)."""
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "grafana/generate.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in tmp_path.glob("*.json")} == {p.name for p in DASHBOARDS.glob("*.json")}
    for path in DASHBOARDS.glob("*.json"):
        assert (tmp_path / path.name).read_text() == path.read_text(), f"{path.name}: run generate.py"
    check = subprocess.run([sys.executable, str(DEPLOY / "grafana/generate.py"), "--check"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stderr


SELECTOR = re.compile(r"\b((?:hedgewatch|process|python)_[a-z0-9_]+|up)(\{[^}]*\})?(?![a-z0-9_(])")


def test_every_dashboard_query_follows_the_job_and_instance_variables() -> None:
    for path in sorted(DASHBOARDS.glob("*.json")):
        d = json.loads(path.read_text())
        names = [v["name"] for v in d["templating"]["list"]]
        assert names[:2] == ["job", "instance"], path.name
        for p in d["panels"]:
            for t in p["targets"]:
                for metric, matchers in SELECTOR.findall(t["expr"]):
                    assert 'job=~"$job"' in matchers and 'instance=~"$instance"' in matchers, (
                        f"{path.name} {p['title']!r}: {metric} is not filtered by job and instance"
                    )


def test_stacking_is_set_where_grafana_reads_it() -> None:
    d = json.loads((DASHBOARDS / "hw-index.json").read_text())
    (weights,) = [p for p in d["panels"] if p["title"] == "Constituent weights"]
    assert weights["fieldConfig"]["defaults"]["custom"]["stacking"] == {"mode": "normal"}
    assert "stacking" not in weights["options"]


def test_a_misplaced_option_fails_at_build_time() -> None:
    """The builder is typed: stacking exists on the field config of a time series, not on a stat panel."""
    from grafana_foundation_sdk.builders import stat

    with pytest.raises(AttributeError):
        stat.Panel().stacking  # type: ignore[attr-defined]  # noqa: B018


def test_the_dashboards_cover_what_the_operator_needs() -> None:
    used = {m for exprs in dashboard_exprs().values() for e in exprs for m in METRIC.findall(e)}
    for needed in (
        "hedgewatch_index_price",
        "hedgewatch_index_indicator",
        "hedgewatch_source_price",
        "hedgewatch_source_excluded",
        "hedgewatch_source_age_seconds",
        "hedgewatch_index_funding_rate",
        "hedgewatch_index_open_interest_usd",
        "hedgewatch_index_basis_ratio",
        "hedgewatch_hedge_ratio",
        "hedgewatch_hedge_notional_usd",
        "hedgewatch_hedge_contracts",
        "hedgewatch_rule_state",
        "hedgewatch_alerts_total",
        "hedgewatch_messages_total",
        "hedgewatch_messages_rejected_total",
        "hedgewatch_reconnects_total",
        "hedgewatch_queue_depth",
        "hedgewatch_tick_to_index_seconds_bucket",
    ):
        assert needed in used, needed


def test_alert_rules_cover_the_daemons_health() -> None:
    names = {r["alert"] for g in load_yaml(PROM / "alerts.yml")["groups"] for r in g["rules"]}
    assert {
        "HedgewatchDown",
        "HedgewatchHeartbeatMissing",
        "HedgewatchOracleDegraded",
        "HedgewatchSourceStale",
        "HedgewatchReconnectStorm",
        "HedgewatchQueueSaturated",
        "HedgewatchLatencyHigh",
    } <= names


def test_compose_runs_the_whole_stack() -> None:
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    assert "version" not in compose, "the Compose specification has no version key"
    services = compose["services"]
    assert set(services) == {"redis", "prometheus", "alertmanager", "grafana", "hedgewatch", "notify"}
    config = "/etc/hedgewatch/hedgewatch.yaml"
    assert services["hedgewatch"]["command"] == ["run", "-c", config]
    assert services["notify"]["command"] == ["notify", "-c", config]
    for name in ("hedgewatch", "notify"):
        assert services[name]["configs"] == [{"source": "hedgewatch", "target": config}]
    assert "config/hedgewatch.example.yaml" in compose["configs"]["hedgewatch"]["file"]
    assert any(v.endswith(":/var/lib/hedgewatch") for v in services["hedgewatch"]["volumes"]), "state volume"
    for name, svc in services.items():
        assert "healthcheck" in svc and svc["healthcheck"]["test"], f"{name} has no healthcheck"
        assert svc["logging"]["options"]["max-size"], f"{name} logs are unbounded"
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{port} would be published on every interface"
        for key in svc.get("environment", {}):
            assert not re.search(r"PASSWORD$|TOKEN$|WEBHOOK_URL$", key), f"{name}: secret {key} in the environment"
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "grafana_admin_password" in services["grafana"]["secrets"]
    assert set(compose["secrets"]) == {"slack_webhook_url", "grafana_admin_password"}
    prom = load_yaml(PROM / "prometheus.yml")
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"hedgewatch:9108", "notify:9109", "alertmanager:9093"}
    am_targets = [t for a in prom["alerting"]["alertmanagers"] for sc in a["static_configs"] for t in sc["targets"]]
    assert am_targets == ["alertmanager:9093"]


def test_the_example_config_validates_and_has_a_portfolio() -> None:
    path = DEPLOY / "config" / "hedgewatch.example.yaml"
    proc = subprocess.run([sys.executable, "-m", "hedgewatch.service", "check", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = load_yaml(path)
    assert cfg["portfolio"]["holdings"] and cfg["portfolio"]["hedge_ratio"] > 0
    assert cfg["notify"]["alertmanager"]["urls"] == ["http://alertmanager:9093"]


def test_amtool_accepts_the_alertmanager_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not installed (Debian: apt-get install -y prometheus-alertmanager)")
    proc = subprocess.run([amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = load_yaml(DEPLOY / "alertmanager" / "alertmanager.yml")
    assert cfg["global"]["slack_api_url_file"].startswith("/run/secrets/"), "the webhook URL is a secret"


def test_systemd_units_run_the_installed_commands_with_credentials() -> None:
    for unit, command in (("hedgewatch.service", "run"), ("hedgewatch-notify.service", "notify")):
        text = (DEPLOY / "systemd" / unit).read_text()
        assert re.search(rf"^ExecStart=/opt/hedgewatch/bin/hedgewatch {command} -c /etc/hedgewatch/hedgewatch.yaml$",
                         text, re.M), unit
        assert re.search(r"^LoadCredential=redis_url:", text, re.M), unit
        assert "HEDGEWATCH__REDIS__URL_FILE=%d/redis_url" in text
        for directive in ("DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "Restart=on-failure",
                          "StateDirectory=", "WantedBy=multi-user.target"):
            assert directive in text, f"{unit}: {directive}"


def test_licence_and_packaging() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "SIGNALS.md" in data["hedgewatch.rules"]


def test_readme_links_resolve_inside_the_repository() -> None:
    for doc in [REPO / "README.md", DEPLOY / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "../shared" not in text and "/work/" not in text, f"{doc.name} points outside the repository"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: link to {target} does not resolve"
        for target in re.findall(r"`((?:docs|deploy|rules|connectors)/[\w./-]+\.(?:md|yml|yaml|py|service))`", text):
            assert (REPO / target).exists() or (doc.parent / target).exists(), f"{doc.name}: {target} is missing"
    for name in ("architecture.md", "contracts.md", "methodology.md"):
        assert (REPO / "docs" / name).stat().st_size > 1000, name


def test_dockerfile_is_slim_non_root_with_a_healthcheck() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1\d-slim", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert re.search(r"^EXPOSE 9108$", text, re.M)
    assert "HEDGEWATCH__HTTP__HOST=0.0.0.0" in text


def test_contracts_document_every_metric_of_each_process() -> None:
    text = (REPO / "docs" / "contracts.md").read_text()
    for registry in (Metrics().registry, NotifyMetrics().registry):
        for fam in registry.collect():
            if fam.name.startswith("hedgewatch_"):
                name = f"{fam.name}_total" if fam.type == "counter" else fam.name
                assert f"`{name}`" in text, f"docs/contracts.md does not describe {name}"

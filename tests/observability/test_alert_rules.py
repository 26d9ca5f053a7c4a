"""The alerting as files: promtool checks and unit-tests the rules, amtool the routing; every
alert is tested firing and silent, has its severity, summary and runbook; the
PrometheusRule carries the same groups; the dashboards are Grafana JSON whose queries
are valid PromQL. test_prometheus_live.py runs them all against real traffic."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.observability.conftest import (
    ALERTMANAGER_CONFIG,
    PROMETHEUS_DIR,
    ROOT,
    RULE_FILES,
    RULE_TESTS,
    RUNBOOK_BASE,
    RUNBOOKS,
    alerting_rules,
    alertmanager_config,
    binary,
    prometheus_config,
    rule_groups,
)
from tests.observability.render_dashboards import DASHBOARDS, expressions, panels, substitute

PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "prometheusrule.yaml"
SEVERITIES = {"critical", "warning"}


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603


# --- the rules ------------------------------------------------------------------------------


def test_promtool_accepts_every_rules_file() -> None:
    checked = run(binary("promtool"), "check", "rules", *map(str, RULE_FILES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_every_alert_passes_its_promtool_unit_tests() -> None:
    tested = run(binary("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("SUCCESS") == len(RULE_TESTS)


def _verdicts() -> dict[tuple[str, str], set[str]]:
    """For each (alertname, severity): "fires" when some test group expects it at the last
    time it evaluates that alertname, "silent" when some group does not. The last
    evaluation, because earlier ones may be an alert still pending."""
    verdicts: dict[tuple[str, str], set[str]] = defaultdict(set)
    severities = defaultdict(set)
    for rule in alerting_rules():
        severities[rule["alert"]].add(rule["labels"]["severity"])
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            last: dict[str, dict[str, Any]] = {}
            for case in group.get("alert_rule_test", []):
                last[case["alertname"]] = case
            for name, case in last.items():
                firing = {alert["exp_labels"]["severity"] for alert in case.get("exp_alerts") or []}
                for severity in severities[name]:
                    verdicts[name, severity].add("fires" if severity in firing else "silent")
    return verdicts


def test_every_alert_is_unit_tested_firing_on_its_condition_and_silent_below_it() -> None:
    verdicts = _verdicts()
    alerts = {(rule["alert"], rule["labels"]["severity"]) for rule in alerting_rules()}
    assert {alert: verdicts.get(alert, set()) for alert in alerts} == {alert: {"fires", "silent"} for alert in alerts}


def test_every_unit_test_file_loads_the_rules_it_tests() -> None:
    for path in RULE_TESTS:
        loaded = [(path.parent / name).resolve() for name in yaml.safe_load(path.read_text())["rule_files"]]
        assert loaded == [rules.resolve() for rules in RULE_FILES], path.name


def test_every_alert_has_a_severity_a_summary_and_a_runbook_that_exists() -> None:
    for rule in alerting_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) >= {"summary", "description", "runbook_url"}, name
        assert rule["annotations"]["summary"].strip(), name
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_BASE), url
        runbook = RUNBOOKS / url.removeprefix(RUNBOOK_BASE)
        assert runbook.is_file(), url
        assert name in runbook.read_text(), f"{runbook.name} does not name {name}"


def test_every_runbook_says_what_it_means_what_to_check_what_to_do_and_when_to_escalate() -> None:
    runbooks = sorted(path for path in RUNBOOKS.glob("*.md") if path.name != "README.md")
    used = {rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_BASE) for rule in alerting_rules()}
    assert {path.name for path in runbooks} == used, "a runbook per alert family, and no orphan"
    index = (RUNBOOKS / "README.md").read_text()
    for path in runbooks:
        headings = re.findall(r"^## (.+)$", path.read_text(), flags=re.M)
        assert headings[:4] == ["What it means", "Check", "Do", "Escalate"], path.name
        assert f"({path.name})" in index, f"docs/runbooks/README.md does not link {path.name}"


def test_the_checklists_alerts_are_all_there_with_their_severities() -> None:
    present = {(rule["alert"], rule["labels"]["severity"]) for rule in alerting_rules()}
    assert present >= {
        ("OneFlowDown", "critical"),
        ("OneFlowErrorRateHigh", "critical"),  # > 1 %
        ("OneFlowErrorRateHigh", "warning"),  # > 0.5 %
        ("OneFlowLatencyHigh", "critical"),  # p99 > 2 s
        ("OneFlowLatencyHigh", "warning"),  # p95 > 1 s
        ("OneFlowDatabaseConnectionErrors", "critical"),
        ("OneFlowRedisErrors", "critical"),
        ("OneFlowDiskSpaceLow", "critical"),  # < 10 %
        ("OneFlowMemoryHigh", "critical"),  # > 90 %
        ("OneFlowBreakerOpen", "warning"),
        ("OneFlowRateLimitNearlyReached", "warning"),
        ("OneFlowCertificateExpiring", "warning"),  # within 30 days
        ("OneFlowUsageDrainLagging", "warning"),
        ("OneFlowLedgerMismatch", "critical"),
        ("OneFlowNegativeBalance", "critical"),
        ("OneFlowAvailabilityBudgetBurn", "critical"),
        ("OneFlowAvailabilityBudgetBurn", "warning"),
        ("OneFlowOverheadBudgetBurn", "critical"),
        ("OneFlowTTFTBudgetBurn", "critical"),
    }


def test_twins_share_an_alertname_and_alertmanager_tells_them_apart_by_every_label_they_carry() -> None:
    by_name = defaultdict(list)
    for rule in alerting_rules():
        by_name[rule["alert"]].append(rule)
    [inhibition] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())["inhibit_rules"]
    assert inhibition["source_matchers"] == ['severity="critical"']
    assert inhibition["target_matchers"] == ['severity="warning"']
    for name, twins in by_name.items():
        if len(twins) == 1:
            continue
        assert sorted(rule["labels"]["severity"] for rule in twins) == ["critical", "warning"], name
        carried = {"alertname"}
        for rule in twins:
            carried |= set(rule["labels"]) - {"severity"}
            for clause in re.findall(r"\bby \(([^)]*)\)", rule["expr"]):
                carried |= {label.strip() for label in clause.split(",")} - {"le"}  # le: histogram_quantile's
        assert carried <= set(inhibition["equal"]), name


def _prometheus_rule_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prometheusrule", PROMETHEUS_DIR / "prometheusrule.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prometheusrule_carries_the_same_groups_as_the_rules_file() -> None:
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert (resource["apiVersion"], resource["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert resource["spec"]["groups"] == rule_groups()
    rendered = _prometheus_rule_module().render(RULE_FILES[0].read_text())
    assert PROMETHEUS_RULE.read_text() == rendered, "stale: run python deploy/prometheus/prometheusrule.py"


def test_the_prometheusrule_stays_out_of_the_kustomization() -> None:
    """Clusters without the Prometheus Operator lack the resource type (like the ServiceMonitor)."""
    resources = yaml.safe_load((ROOT / "deploy" / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert "prometheusrule.yaml" not in resources


# --- Prometheus and Alertmanager configuration ----------------------------------------------


def test_the_scrape_config_reads_the_web_pods_metrics_port_and_loads_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == "oneflow"  # the rules select up{job="oneflow"}
    assert job["metrics_path"] == "/metrics"
    kept = {tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    # deploy/k8s/metrics-service.yaml: the label oneflow.ai/metrics and the port named metrics.
    assert kept == {
        ("__meta_kubernetes_service_label_oneflow_ai_metrics",): "true",
        ("__meta_kubernetes_endpoint_port_name",): "metrics",
    }
    service = yaml.safe_load((ROOT / "deploy" / "k8s" / "metrics-service.yaml").read_text())
    assert service["metadata"]["labels"]["oneflow.ai/metrics"] == "true"
    assert [port["name"] for port in service["spec"]["ports"]] == ["metrics"]
    globbed = sorted((PROMETHEUS_DIR / pattern).resolve() for pattern in config["rule_files"])
    assert sorted(path.resolve() for path in RULE_FILES) == sorted(
        {path for pattern in globbed for path in pattern.parent.glob(pattern.name)}
    )


def test_promtool_accepts_the_prometheus_config_as_the_live_test_runs_it(tmp_path: Path) -> None:
    config = prometheus_config(
        target="127.0.0.1:9100", alertmanager="127.0.0.1:9093", rule_files=RULE_FILES, interval="15s"
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    checked = run(binary("promtool"), "check", "config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_amtool_accepts_the_alertmanager_config_as_written_and_as_the_live_test_runs_it(tmp_path: Path) -> None:
    amtool = binary("amtool")
    derived = tmp_path / "alertmanager.yml"
    derived.write_text(yaml.safe_dump(alertmanager_config(receiver_url="http://127.0.0.1:1", secrets=tmp_path)))
    for path in (ALERTMANAGER_CONFIG, derived):
        checked = run(amtool, "check-config", str(path))
        assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "alertname=OneFlowDown"], "pagerduty,chat"),
        (["severity=warning", "alertname=OneFlowBreakerOpen"], "chat"),
        (["alertname=SomethingElse"], "chat"),
    ],
)
def test_critical_alerts_page_and_reach_chat_and_warnings_reach_chat_only(labels: list[str], receivers: str) -> None:
    routed = run(binary("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels)
    assert routed.returncode == 0, routed.stderr
    assert routed.stdout.strip() == receivers


def test_secrets_are_read_from_files_never_written_in_the_config() -> None:
    text = ALERTMANAGER_CONFIG.read_text()
    config = yaml.safe_load(text)
    [pagerduty] = next(r for r in config["receivers"] if r["name"] == "pagerduty")["pagerduty_configs"]
    [slack] = next(r for r in config["receivers"] if r["name"] == "chat")["slack_configs"]
    assert "routing_key" not in pagerduty
    assert pagerduty["routing_key_file"].startswith("/etc/alertmanager/secrets/")
    assert "api_url" not in slack
    assert slack["api_url_file"].startswith("/etc/alertmanager/secrets/")
    assert "hooks.slack.com" not in text


# --- the dashboards ---------------------------------------------------------------------------


def _boards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in DASHBOARDS}


def test_the_four_dashboards_are_grafana_json_with_the_datasource_as_a_variable() -> None:
    boards = _boards()
    assert sorted(boards) == ["oneflow-business", "oneflow-overview", "oneflow-providers", "oneflow-slo"]
    assert len({board["uid"] for board in boards.values()}) == 4
    for name, board in boards.items():
        assert board["uid"] == name and board["title"].startswith("OneFlow / ")
        assert isinstance(board["schemaVersion"], int)
        [variable] = board["templating"]["list"]
        assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in panels(board):
            where = f"{name}: {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["expr"].strip() and target["refId"], where
                assert target["datasource"] == panel["datasource"], where


def test_each_dashboard_shows_what_it_is_for() -> None:
    queried = {name: " ".join(expressions(board)) for name, board in _boards().items()}
    wanted = {
        "oneflow-overview": [
            "oneflow_requests_total",
            'status_class="5xx"',
            "histogram_quantile(0.99, sum by (le) (rate(oneflow_request_duration_seconds_bucket",
            "oneflow_time_to_first_token_seconds_bucket",
            "oneflow_gateway_overhead_seconds_bucket",
            "oneflow_tokens_total",
            "oneflow_credits_charged_total",
        ],
        "oneflow-providers": [
            "oneflow_upstream_latency_seconds_bucket",
            "oneflow_upstream_errors_total",
            "oneflow_breaker_state",
        ],
        "oneflow-business": [
            "oneflow_credits_charged_total",
            "oneflow_active_organizations",
            'oneflow_funnel_organizations{stage="signed_up"}',
            'oneflow_funnel_organizations{stage="first_credits"}',
        ],
        "oneflow-slo": [
            "oneflow:sli_availability:error_ratio_rate30d / 0.001",
            "oneflow:sli_overhead:bad_ratio_rate30d / 0.01",
            "oneflow:sli_ttft:bad_ratio_rate30d / 0.01",
            "oneflow:sli_availability:error_ratio_rate1h / 0.001",
        ],
    }
    missing = {name: [part for part in parts if part not in queried[name]] for name, parts in wanted.items()}
    assert missing == {name: [] for name in wanted}


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as the expression of a recording rule."""
    written = {expr for board in _boards().values() for expr in expressions(board)}
    queries = sorted(substitute(expr, rate_interval="1m", range_seconds=3600) for expr in written)
    recorded = [{"record": f"dashboard:query{number}", "expr": query} for number, query in enumerate(queries)]
    rules = {"groups": [{"name": "dashboards", "rules": recorded}]}
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = run(binary("promtool"), "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(queries)} rules found" in checked.stdout

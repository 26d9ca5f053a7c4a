"""What the observability tests share: the Prometheus tools, the rule files and dashboards of
deploy/, and the configurations derived from deploy/ for a Prometheus and an Alertmanager
on loopback.

The tools are Debian's packages (``prometheus``, ``prometheus-alertmanager``). Without them
the tests that need them skip and say why; with ``ONEFLOW_OBSERVABILITY_REQUIRED`` set
(``.ci/run`` sets it and installs them) they fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_SECRETS = "/etc/alertmanager/secrets/"
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_BASE = "https://github.com/oneflow-ai/oneflow/blob/main/docs/runbooks/"
REQUIRED = "ONEFLOW_OBSERVABILITY_REQUIRED"


def binary(*names: str) -> str:
    """The first of ``names`` on PATH; otherwise the test skips, or fails when required."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    reason = f"{' / '.join(names)} not installed (Debian: apt-get install prometheus prometheus-alertmanager)"
    if os.environ.get(REQUIRED):
        pytest.fail(f"{reason}, and {REQUIRED} is set")
    pytest.skip(reason)


def rule_groups() -> list[dict[str, Any]]:
    return [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


_FOR = re.compile(r"^(\s*for: )(\d+)([smh])\s*$", flags=re.M)
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def quicker(rules: str, factor: int = 60) -> str:
    """The rule file's text with every ``for:`` divided by ``factor`` (5m becomes 5s), and
    nothing else changed: thresholds, windows and labels stay those of production."""

    def divided(match: re.Match[str]) -> str:
        seconds = int(match.group(2)) * _SECONDS[match.group(3)]
        return f"{match.group(1)}{max(1, seconds // factor)}s"

    return _FOR.sub(divided, rules)


def prometheus_config(*, target: str, alertmanager: str, rule_files: list[Path], interval: str) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml for a loopback run: the oneflow job scrapes ``target``
    (static, instead of Kubernetes discovery and its relabelling, which Debian's build lacks
    and which need a cluster), alerts go to ``alertmanager``, and scrapes and evaluations
    happen every ``interval``."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval)
    config["rule_files"] = [str(path) for path in rule_files]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    for job in config["scrape_configs"]:
        job.pop("kubernetes_sd_configs", None)
        job.pop("relabel_configs", None)
        job["static_configs"] = [{"targets": [target]}]
    return config


def _retimed(route: dict[str, Any]) -> None:
    if "group_wait" in route:
        route["group_wait"] = "1s"
    if "group_interval" in route:
        route["group_interval"] = "1s"
    for child in route.get("routes", []):
        _retimed(child)


def _secrets_in(node: Any, secrets: Path) -> Any:
    if isinstance(node, dict):
        return {key: _secrets_in(value, secrets) for key, value in node.items()}
    if isinstance(node, list):
        return [_secrets_in(value, secrets) for value in node]
    if isinstance(node, str) and node.startswith(ALERTMANAGER_SECRETS):
        return str(secrets / node.removeprefix(ALERTMANAGER_SECRETS))
    return node


def alertmanager_config(*, receiver_url: str, secrets: Path) -> dict[str, Any]:
    """deploy/alertmanager/alertmanager.yml for a loopback run: the secret files in
    ``secrets`` (the Slack webhook URL in them pointing at ``receiver_url``/slack), the
    PagerDuty API at ``receiver_url``/pagerduty, groups sent after 1 s instead of 30 s.
    Receivers, routes, inhibition and templates are the file's own."""
    config: dict[str, Any] = _secrets_in(yaml.safe_load(ALERTMANAGER_CONFIG.read_text()), secrets)
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "pagerduty-routing-key").write_text("test-routing-key-0123456789abcdef")
    (secrets / "slack-webhook-url").write_text(f"{receiver_url}/slack")
    for receiver in config["receivers"]:
        for pagerduty in receiver.get("pagerduty_configs", []):
            pagerduty["url"] = f"{receiver_url}/pagerduty"
    _retimed(config["route"])
    return config

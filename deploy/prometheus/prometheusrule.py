"""Writes deploy/k8s/prometheusrule.yaml: the groups of deploy/prometheus/rules/oneflow.yml
in a PrometheusRule for the Prometheus Operator, comments and all, so the two never differ.

    python deploy/prometheus/prometheusrule.py          # writes it
    python deploy/prometheus/prometheusrule.py --check  # exits 1 when it is stale

The rules file is the source; tests/observability/test_alert_rules.py fails while the
PrometheusRule is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent
RULES = DEPLOY / "prometheus" / "rules" / "oneflow.yml"
TARGET = DEPLOY / "k8s" / "prometheusrule.yaml"

HEADER = """\
# Generated from deploy/prometheus/rules/oneflow.yml by deploy/prometheus/prometheusrule.py:
# edit the rules file, then run the script. For the Prometheus Operator: not in
# kustomization.yaml, since clusters without the operator lack this resource type.
# Add it to an overlay's resources, labelled as your Prometheus's ruleSelector
# selects (kube-prometheus-stack: release: <its release name>). docs/alerting.md.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: oneflow
  labels:
    app.kubernetes.io/name: oneflow
    app.kubernetes.io/component: monitoring
spec:
"""


def render(rules: str) -> str:
    """The PrometheusRule around ``rules`` (a rule file's text): its ``groups:`` and
    everything after, indented under ``spec``; the file's own header comment is left
    out, since it speaks of the file."""
    lines = rules.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(f"  {line}\n" if line else "\n" for line in lines[start:])
    return HEADER + body


def main(argv: list[str]) -> int:
    wanted = render(RULES.read_text())
    if "--check" in argv:
        if TARGET.read_text() != wanted:
            print(f"{TARGET} is stale: run python {Path(__file__).relative_to(DEPLOY.parent)}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

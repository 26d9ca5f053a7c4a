"""One organization's bad rows degrade that organization alone.

Organization B's budgets, markup, limits, time zone and grace period are
pushed to the extremes the database itself accepts (written past every form
and serializer, as rows from an older version or a hand edit would be). A's
requests are still served, B gets a clear error rather than a 500, and every
scheduled job still does A's work (issue 11).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from accounts import services as accounts_services
from accounts.models import ApiKey, Organization
from accounts.tasks import expire_rotated_api_key_secrets, rotate_due_api_keys
from billing.models import BillingAccount, Budget, BudgetAlert, UsageEvent, UsageRollup
from billing.services import budget_create
from billing.tasks import apply_usage_retention, drain_usage, reconcile_credits, reconcile_ledgers, rollup_usage
from routing.tasks import probe_deployments
from tests.factories import ApiKeyFactory, CreditGrantFactory, OrganizationFactory
from tests.gateway.conftest import Gateway
from tests.http import Reply, call

BODY = b'{"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "Hello"}]}'
# 28 integer digits: the most a NUMERIC(38, 10) column holds, and what SQLite's
# DECIMAL cannot read back into one (the converter raised for every budget at once).
HUGE_CREDITS = Decimal("9999999999999999999999999999")


def ask(gateway: Gateway, key: str) -> Reply:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return call(gateway.server.url, "POST", "/v1/chat/completions", body=BODY, headers=headers)


def tenant_b(gateway: Gateway) -> tuple[Organization, accounts_services.IssuedSecret]:
    owner = gateway.key.key.created_by
    assert owner is not None
    organization = OrganizationFactory.create(name="Bee", owner=owner)
    CreditGrantFactory.create(organization=organization, amount=Decimal(1000))
    return organization, ApiKeyFactory.create(organization=organization, created_by=owner)


def push_to_extremes(organization: Organization, key: ApiKey) -> None:
    """Rows no form accepts today, written the way older data or a hand edit would be."""
    budget_create(organization=organization, period="daily", limit=Decimal(1))
    budget_create(organization=organization, api_key=key, period="weekly", limit=Decimal(1))
    Budget.objects.filter(organization=organization, api_key=None).update(limit=HUGE_CREDITS)
    Budget.objects.filter(api_key=key, period="weekly").update(alert_thresholds="lots,more")
    BillingAccount.objects.filter(organization=organization).update(markup=Decimal("9999.9999"))
    Organization.objects.filter(pk=organization.pk).update(
        time_zone="Mars/Olympus_Mons",
        limit_rpm=2**31 - 1,
        limit_rph=0,
        limit_input_tpm=2**31 - 1,
        api_key_grace_period=timedelta(seconds=10**12),
    )
    ApiKey.objects.filter(pk=key.pk).update(
        limit_rpm=0, limit_concurrency=2**31 - 1, rotation_interval_days=1, next_rotation_at=timezone.now()
    )


@pytest.fixture
def tenants(gateway: Gateway) -> tuple[Gateway, Organization, accounts_services.IssuedSecret]:
    organization, key = tenant_b(gateway)
    assert ask(gateway, key.raw).status == 200  # B was fine, and its usage is waiting to be drained
    push_to_extremes(organization, key.key)
    return gateway, organization, key


def test_a_is_served_and_b_gets_a_clear_error(tenants: Any) -> None:
    gateway, _, b_key = tenants

    assert ask(gateway, gateway.key.raw).status == 200
    refused = ask(gateway, b_key.raw)

    assert refused.status == 403
    error = refused.json()["error"]
    assert error["code"] == "billing_configuration_invalid"
    assert "budget" in error["message"] or "markup" in error["message"]
    assert ask(gateway, gateway.key.raw).status == 200, "B's refusal changes nothing for A"


def test_every_job_still_does_the_work_of_a(tenants: Any) -> None:
    gateway, organization_b, _ = tenants
    acme = gateway.key.key.organization
    budget_create(organization=acme, period="daily", limit=Decimal("0.0005"), alert_thresholds=(1,))
    ApiKey.objects.filter(pk=gateway.key.key.pk).update(rotation_interval_days=1, next_rotation_at=timezone.now())
    assert ask(gateway, gateway.key.raw).status == 200

    drain_usage()
    rollup_usage()
    reconcile_ledgers()
    reconcile_credits()
    rotate_due_api_keys()
    expire_rotated_api_key_secrets()
    apply_usage_retention()
    probe_deployments()

    assert UsageEvent.objects.filter(organization=acme).exists(), "A's usage was drained"
    assert UsageEvent.objects.filter(organization=organization_b).exists(), "and B's, which is only usage"
    assert UsageRollup.objects.filter(organization=acme).exists(), "A's usage was rolled up"
    assert BudgetAlert.objects.filter(budget__organization=acme).exists(), "A's budget alerted its owner"
    assert gateway.key.key.secrets.count() == 2, "A's key rotated on schedule"

"""Money that enters through REST, the dashboard or the admin is bounded by what the
columns and Redis's integer units can hold: a 400 or a form error naming the field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.forms import ModelForm, modelform_factory
from rest_framework.test import APIClient

from accounts.models import Organization
from billing import services
from billing.admin import GrantForm
from billing.forms import RefundForm
from billing.models import CREDITS_MAX, MARKUP_MAX, PRICE_MAX, BillingAccount, Budget, Price

HUGE = "9999999999999999999999999999"


def budgets_url(org: Organization) -> str:
    return f"/api/organizations/{org.pk}/billing/budgets"


@pytest.mark.parametrize("limit", [HUGE, str(CREDITS_MAX + 1), "1e30", "0"])
def test_a_budget_limit_past_the_bound_is_a_400_naming_the_limit(
    as_alice: APIClient, acme: Organization, limit: str
) -> None:
    response = as_alice.post(budgets_url(acme), {"period": "daily", "limit": limit}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == "limit"
    assert not Budget.objects.exists()


def test_a_budget_limit_at_the_bound_is_accepted_and_listed(as_alice: APIClient, acme: Organization) -> None:
    created = as_alice.post(budgets_url(acme), {"period": "daily", "limit": str(CREDITS_MAX)}, format="json")
    assert created.status_code == 201, created.content
    assert as_alice.get(budgets_url(acme)).status_code == 200
    raised = as_alice.patch(f"{budgets_url(acme)}/{created.json()['id']}", {"limit": HUGE}, format="json")
    assert raised.status_code == 400
    assert raised.json()["error"]["param"] == "limit"


def test_the_service_refuses_a_huge_limit_whoever_calls_it(acme: Organization) -> None:
    with pytest.raises(services.InvalidInput) as refused:
        services.budget_create(organization=acme, period="daily", limit=Decimal(HUGE))
    assert refused.value.param == "limit"


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (Budget, "limit", HUGE),
        (Price, "input_per_1m", str(PRICE_MAX + 1)),
        (Price, "output_per_1m", "9999999999"),
        (Price, "request_fee", str(PRICE_MAX + 1)),
        (BillingAccount, "markup", str(MARKUP_MAX + 1)),
    ],
)
def test_admin_model_forms_refuse_values_past_the_bounds(db: None, model: type, field: str, value: str) -> None:
    form: ModelForm[Any] = modelform_factory(model, fields=[field])({field: value})
    assert not form.is_valid()
    assert field in form.errors


def test_an_admin_grant_past_the_bound_is_a_form_error(acme: Organization) -> None:
    account = services.billing_account(organization=acme)
    form = GrantForm({"markup": "1", "grant": HUGE}, instance=account)
    assert not form.is_valid()
    assert "grant" in form.errors


def test_an_admin_refund_past_the_bound_is_a_form_error(db: None) -> None:
    form = RefundForm({"amount": HUGE, "refunds_seen": "0"})
    assert not form.is_valid()
    assert "amount" in form.errors

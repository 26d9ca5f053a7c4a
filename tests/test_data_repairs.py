"""Data migrations that repair rows written before today's bounds (issue 11):
after them, every page and job can read those rows again."""

from __future__ import annotations

import importlib
from datetime import timedelta
from decimal import Decimal

from django.apps import apps

from accounts.keys import GRACE_MAX
from accounts.models import Organization
from billing.models import CREDITS_MAX, Budget
from tests.factories import BudgetFactory


def run(migration: str) -> None:
    importlib.import_module(migration).clamp(apps, None)


def test_a_budget_limit_past_the_bound_becomes_the_bound(acme: Organization) -> None:
    BudgetFactory.create(organization=acme, period="daily")
    BudgetFactory.create(organization=acme, period="weekly", limit=Decimal(7))
    Budget.objects.filter(period="daily").update(limit=Decimal("9999999999999999999999999999"))

    run("billing.migrations.0014_clamp_out_of_bound_budgets")

    limits = dict(Budget.objects.values_list("period", "limit"))  # readable again (SQLite could not)
    assert limits == {"daily": CREDITS_MAX, "weekly": Decimal(7)}


def test_a_grace_period_past_the_bound_becomes_the_bound(acme: Organization) -> None:
    Organization.objects.filter(pk=acme.pk).update(api_key_grace_period=timedelta(seconds=10**12))

    run("accounts.migrations.0007_clamp_out_of_bound_grace_periods")

    acme.refresh_from_db()
    assert acme.api_key_grace_period == GRACE_MAX

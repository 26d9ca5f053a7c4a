"""Operator admin: every model is registered, every page opens (with each search and
filter), big tables search by exact ids and filter without listing whole tables,
money and usage are read-only, key actions go through the services, no hash is shown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, SolarSchedule
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import selectors, services
from accounts.models import ApiKey, ApiKeySecret, Membership, Organization, User
from audit.models import AuditEntry
from audit.services import audit_record
from billing import services as billing_services
from billing.models import Budget, BudgetAlert, LedgerEntry, UsageEvent, UsageRollup
from oneflow.lib.admin import BoundedPaginator, RelatedIdFilter
from providers.models import Provider
from providers.services import catalog_seed_demo
from tests.factories import (
    ApiKeyFactory,
    BudgetFactory,
    CredentialFactory,
    CreditGrantFactory,
    DeploymentFactory,
    ModelAccessFactory,
    OrganizationFactory,
    PlanFactory,
    UsageEventFactory,
)

PROJECT_APPS = ("audit", "accounts", "providers", "billing", "routing")
# Project models with no admin page of their own, and why.
NOT_REGISTERED: dict[type[Model], str] = {
    ApiKeySecret: "shown read-only on its key's page: prefixes and dates, never the hash",
}
# Registered models that list no rows by design, so have no change page to open.
WITHOUT_ROWS = {"routing.overview": "a page of platform sums read from the rollups, not a table"}


def admin_url(model: type[Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_every_project_model_is_registered_or_exempted_with_a_reason() -> None:
    project_models = [model for model in apps.get_models() if model._meta.app_label in PROJECT_APPS]
    unregistered = [
        model._meta.label
        for model in project_models
        if not admin.site.is_registered(model) and model not in NOT_REGISTERED
    ]
    assert unregistered == []
    assert [model for model in NOT_REGISTERED if admin.site.is_registered(model)] == []
    assert admin.site._registry[ApiKey].inlines[0].model is ApiKeySecret


@dataclass
class Seeded:
    acme: Organization
    globex: Organization
    key: services.IssuedSecret
    globex_key: services.IssuedSecret
    event: UsageEvent
    globex_event: UsageEvent


def usage(organization: Organization, key: ApiKey, request_id: str, status: int, ago: timedelta) -> UsageEvent:
    return UsageEventFactory.create(
        request_id=request_id,
        organization=organization,
        api_key=key,
        provider="Simulator",
        status_code=status,
        prompt_tokens=120,
        completion_tokens=40,
        latency_ms=250,
        attempt_log=[{"deployment_id": 1, "provider": "Simulator", "status": status, "ms": 250}],
        cost=Decimal("0.5"),
        charged=Decimal("0.5"),
        created_at=timezone.now() - ago,
    )


@pytest.fixture
def seeded(operator: User, acme: Organization, alice: User, bob: User, acme_key: services.IssuedSecret) -> Seeded:
    """At least one row of every model the admin shows."""
    catalog_seed_demo()
    provider = Provider.objects.get(name="Simulator")
    CredentialFactory.create(provider=provider, reference="env:SPARE_KEY")
    hidden = ModelAccessFactory.create(organization=acme).public_model  # not public: granted to Acme
    DeploymentFactory.create(public_model=hidden, provider=provider)
    acme.plan = PlanFactory.create(rpm=600)
    acme.save()
    globex = OrganizationFactory.create(name="Globex", owner=bob)
    globex_key = ApiKeyFactory.create(organization=globex, name="globex-ci", created_by=bob)
    services.api_key_rotate(key=acme_key.key)

    event = usage(acme, acme_key.key, "req_acme_ok", 200, timedelta(minutes=5))
    usage(acme, acme_key.key, "req_acme_limited", 429, timedelta(days=2))
    usage(acme, acme_key.key, "req_acme_failed", 502, timedelta(days=10))
    globex_event = usage(globex, globex_key.key, "req_globex_ok", 200, timedelta(minutes=7))
    billing_services.usage_rollup()

    CreditGrantFactory.create(organization=acme, amount=Decimal(100), created_by=operator)
    billing_services.ledger_post(
        organization=acme,
        kind=LedgerEntry.Kind.CHARGE,
        amount=-Decimal("0.5"),
        idempotency_key="usage:req_acme_ok",
        request_id="req_acme_ok",
    )
    CreditGrantFactory.create(organization=globex, amount=Decimal(5))
    BudgetFactory.create(organization=acme, period=Budget.Period.DAILY, limit=Decimal(1))
    BudgetFactory.create(organization=acme, period=Budget.Period.MONTHLY, limit=Decimal(50), api_key=acme_key.key)
    # Checked just after the event, so that it falls in the budget's current day whenever this runs.
    just_after = event.created_at + timedelta(seconds=1)
    assert billing_services.budget_alerts_check(organization_ids=[acme.pk], now=just_after), "half the day's budget"

    Group.objects.create(name="support")
    ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(days=1))
    CrontabSchedule.objects.create(minute="0", hour="3")
    SolarSchedule.objects.create(event="sunrise", latitude=Decimal("48.85"), longitude=Decimal("2.35"))
    RefreshToken.for_user(alice).blacklist()
    limits = {"limit_rpm": {"before": None, "after": 60}}
    audit_record(actor=operator, action=AuditEntry.Action.CHANGE, obj=acme, changes=limits)
    return Seeded(acme, globex, acme_key, globex_key, event, globex_event)


def filter_choice_urls(changelist: str, response: Any) -> set[str]:
    """Each choice of each list filter the page shows, as a URL."""
    if response.context is None or "cl" not in response.context:
        return set()  # a page of its own, not a list
    cl = response.context["cl"]
    return {f"{changelist}{choice['query_string']}" for spec in cl.filter_specs for choice in spec.choices(cl)}


def related_filter_urls(model_admin: admin.ModelAdmin, changelist: str) -> set[str]:
    """The filters by one organization, key or user show no choices until one is given: give one."""
    urls = set()
    for entry in model_admin.list_filter:
        if isinstance(entry, type) and issubclass(entry, RelatedIdFilter):
            related = entry.related_model._default_manager.order_by("pk").first()
            assert related is not None, entry.related_model
            urls.add(f"{changelist}?{entry.parameter_name}={related.pk}")
    return urls


def test_every_changelist_filter_search_add_and_change_page_opens(as_operator: Client, seeded: Seeded) -> None:
    opened = 0
    for model, model_admin in admin.site._registry.items():
        changelist = admin_url(model, "changelist")
        response = as_operator.get(changelist)
        assert response.status_code == 200, changelist
        pages = {f"{changelist}?q=acme"} | related_filter_urls(model_admin, changelist)
        pages |= filter_choice_urls(changelist, response)
        for url in sorted(pages):
            assert as_operator.get(url).status_code == 200, url
        opened += len(pages)

        if model_admin.has_add_permission(response.wsgi_request):
            assert as_operator.get(admin_url(model, "add")).status_code == 200, model
        instance = model._default_manager.order_by("pk").first()
        if instance is None:
            assert model._meta.label_lower in WITHOUT_ROWS, f"seed a {model._meta.label} for the smoke test"
            continue
        change = admin_url(model, "change", instance.pk)
        assert as_operator.get(change).status_code == 200, change
    assert opened > 100, "the filters' choices were followed"


def result_rows(response: Any) -> list[Any]:
    return list(response.context["cl"].result_list)


def test_a_row_s_organization_and_key_link_to_the_list_narrowed_to_them(as_operator: Client, seeded: Seeded) -> None:
    changelist = admin_url(UsageEvent, "changelist")
    everything = as_operator.get(changelist)
    assert f'href="?organization={seeded.globex.pk}"' in everything.content.decode()
    assert f'href="?apikey={seeded.globex_key.key.pk}"' in everything.content.decode()

    globex_only = as_operator.get(changelist, {"organization": seeded.globex.pk})
    assert [row.request_id for row in result_rows(globex_only)] == ["req_globex_ok"]
    assert "Globex" in globex_only.content.decode(), "the chosen organization is named in the filter"

    acme_key = as_operator.get(changelist, {"apikey": seeded.key.key.pk})
    assert {row.request_id for row in result_rows(acme_key)} == {"req_acme_ok", "req_acme_limited", "req_acme_failed"}

    acme_ledger = as_operator.get(admin_url(LedgerEntry, "changelist"), {"organization": seeded.acme.pk})
    assert {row.account.organization_id for row in result_rows(acme_ledger)} == {seeded.acme.pk}
    keys = as_operator.get(admin_url(ApiKey, "changelist"), {"organization": seeded.globex.pk})
    assert result_rows(keys) == [seeded.globex_key.key]


def test_status_and_time_filters_narrow_usage_without_listing_values(as_operator: Client, seeded: Seeded) -> None:
    changelist = admin_url(UsageEvent, "changelist")
    failed = as_operator.get(changelist, {"status": "5xx"})
    assert [row.request_id for row in result_rows(failed)] == ["req_acme_failed"]
    recent = as_operator.get(changelist, {"when": "24h"})
    assert {row.request_id for row in result_rows(recent)} == {"req_acme_ok", "req_globex_ok"}
    week = as_operator.get(admin_url(UsageRollup, "changelist"), {"when": "7d", "period": "hour"})
    assert {row.organization_id for row in result_rows(week)} == {seeded.acme.pk, seeded.globex.pk}


def test_big_tables_search_by_exact_ids(as_operator: Client, seeded: Seeded) -> None:
    usage_list = admin_url(UsageEvent, "changelist")
    assert [row.request_id for row in result_rows(as_operator.get(usage_list, {"q": "req_acme_ok"}))] == ["req_acme_ok"]
    assert result_rows(as_operator.get(usage_list, {"q": "acme"})) == [], "no substring scan of a million rows"

    ledger = result_rows(as_operator.get(admin_url(LedgerEntry, "changelist"), {"q": "req_acme_ok"}))
    assert [(row.kind, row.request_id) for row in ledger] == [(LedgerEntry.Kind.CHARGE, "req_acme_ok")]

    keys = admin_url(ApiKey, "changelist")
    current = ApiKeySecret.objects.filter(key=seeded.key.key).order_by("rotation").last()
    assert current is not None
    for term in (current.display_prefix, seeded.key.raw, seeded.key.key.public_id, "c"):
        assert result_rows(as_operator.get(keys, {"q": term})) == [seeded.key.key], term
    assert result_rows(as_operator.get(keys, {"q": "globex"})) == [seeded.globex_key.key], "a name's start"


def test_key_autocomplete_finds_keys_by_id_and_prefix(as_operator: Client, seeded: Seeded) -> None:
    """Budgets pick their key through autocomplete: 100 000 keys are never listed in a select."""
    autocomplete = reverse("admin:autocomplete")
    query = {"app_label": "billing", "model_name": "budget", "field_name": "api_key"}
    found = as_operator.get(autocomplete, {**query, "term": seeded.globex_key.key.public_id}).json()
    assert [row["id"] for row in found["results"]] == [str(seeded.globex_key.key.pk)]
    budget = Budget.objects.filter(api_key=seeded.key.key).get()
    change = as_operator.get(admin_url(Budget, "change", budget.pk)).content.decode()
    assert "admin-autocomplete" in change
    assert seeded.globex_key.key.public_id not in change, "other keys are not listed in the page"


def test_bounded_paginator_counts_up_to_its_cap(seeded: Seeded, django_assert_num_queries: Any) -> None:
    class CapOfTwo(BoundedPaginator):
        cap = 2

    events = UsageEvent.objects.order_by("-created_at")
    many = CapOfTwo(events, per_page=1)
    with django_assert_num_queries(1):
        assert (many.count, many.capped, many.num_pages) == (2, True, 2)
    few = CapOfTwo(events.filter(organization=seeded.globex), per_page=1)
    assert (few.count, few.capped) == (1, False)


@pytest.mark.parametrize("model", [UsageEvent, UsageRollup, LedgerEntry, BudgetAlert])
def test_money_and_usage_records_are_read_only(as_operator: Client, seeded: Seeded, model: type[Model]) -> None:
    instance = model._default_manager.order_by("pk").first()
    assert instance is not None
    change = admin_url(model, "change", instance.pk)
    page = as_operator.get(change)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert as_operator.post(change, {}).status_code == 403
    assert as_operator.get(admin_url(model, "add")).status_code == 403
    assert as_operator.get(admin_url(model, "delete", instance.pk)).status_code == 403
    assert model._default_manager.filter(pk=instance.pk).exists()


def test_organization_and_billing_pages_link_to_their_rows_instead_of_listing_them(
    as_operator: Client, seeded: Seeded
) -> None:
    page = as_operator.get(admin_url(Organization, "change", seeded.acme.pk)).content.decode()
    assert f"/admin/accounts/apikey/?organization={seeded.acme.pk}" in page
    assert f"/admin/accounts/membership/?organization={seeded.acme.pk}" in page
    assert "bob@example.com" not in page, "members are a link away, not an inline of every member"
    members = as_operator.get(admin_url(Membership, "changelist"), {"organization": seeded.acme.pk})
    assert {row.user.email for row in result_rows(members)} == {"alice@example.com", "bob@example.com"}

    account = billing_services.billing_account(organization=seeded.acme)
    page = as_operator.get(admin_url(type(account), "change", account.pk)).content.decode()
    for table in ("ledgerentry", "usageevent", "usagerollup", "budget", "budgetalert"):
        assert f"/admin/billing/{table}/?organization={seeded.acme.pk}" in page, table


def test_the_key_pages_never_show_a_hash_or_secret(as_operator: Client, acme_key: services.IssuedSecret) -> None:
    secret = ApiKeySecret.objects.get(pk=acme_key.secret.pk)
    for url in (
        reverse("admin:accounts_apikey_changelist"),
        reverse("admin:accounts_apikey_change", args=[acme_key.key.pk]),
    ):
        page = as_operator.get(url).content.decode()
        assert secret.secret_hash not in page
        assert acme_key.raw not in page
    change_page = as_operator.get(reverse("admin:accounts_apikey_change", args=[acme_key.key.pk])).content.decode()
    assert secret.display_prefix in change_page


def test_admin_actions_rotate_and_revoke_through_the_services(
    as_operator: Client, acme_key: services.IssuedSecret
) -> None:
    changelist = reverse("admin:accounts_apikey_changelist")
    as_operator.post(changelist, {"action": "rotate_keys", "_selected_action": [acme_key.key.pk]})
    assert ApiKeySecret.objects.filter(key=acme_key.key).count() == 2
    assert selectors.api_key_authenticate(raw=acme_key.raw) is not None, "the old secret is in its grace period"
    assert services.api_key_reveal(key=acme_key.key) is not None

    as_operator.post(changelist, {"action": "revoke_keys", "_selected_action": [acme_key.key.pk]})
    assert ApiKey.objects.get(pk=acme_key.key.pk).status == ApiKey.Status.REVOKED
    assert selectors.api_key_authenticate(raw=acme_key.raw) is None


def test_non_staff_users_cannot_open_the_admin(client: Client, alice: User) -> None:
    client.force_login(alice)
    response = client.get(reverse("admin:accounts_apikey_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]

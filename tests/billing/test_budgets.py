"""Budgets: windows reset on calendar boundaries in the organization's time zone;
budgets are configuration the gateway reads in one go; alerts fire once per
threshold and window and email the owners; the REST API lets members read and
owners and admins change them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, Organization, User
from accounts.services import IssuedSecret
from billing import services as billing_services
from billing.budgets import PERIODS, budget_window, format_thresholds, parse_thresholds
from billing.models import Budget, BudgetAlert, UsageEvent
from billing.selectors import BudgetView, budget_book, budget_spent
from oneflow.lib import config_version, redis
from oneflow.lib.errors import Conflict, InvalidInput
from tests.factories import ApiKeyFactory, BudgetFactory, MembershipFactory, OrganizationFactory, UsageEventFactory

PARIS = "Europe/Paris"


def test_a_daily_budget_resets_at_local_midnight() -> None:
    # 23:30 UTC on 14 March is 00:30 on 15 March in Paris (UTC+1).
    start, end = budget_window("daily", time_zone=PARIS, moment=datetime(2026, 3, 14, 23, 30, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 3, 14, 23, 0, tzinfo=UTC), datetime(2026, 3, 15, 23, 0, tzinfo=UTC))
    just_before = budget_window("daily", time_zone=PARIS, moment=datetime(2026, 3, 14, 22, 59, 59, tzinfo=UTC))
    assert just_before[1] == start


def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    moment = datetime(2026, 11, 28, 12, tzinfo=UTC)  # a Saturday
    week = budget_window("weekly", time_zone="UTC", moment=moment)
    month = budget_window("monthly", time_zone="UTC", moment=moment)
    assert week == (datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))
    assert month == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    december = budget_window("monthly", time_zone="UTC", moment=datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert december == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def test_a_daylight_saving_day_is_23_hours_long() -> None:
    start, end = budget_window("daily", time_zone=PARIS, moment=datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert end - start == timedelta(hours=23)


@given(
    st.sampled_from(PERIODS),
    st.sampled_from(["UTC", PARIS, "America/New_York", "Asia/Kolkata", "Pacific/Auckland"]),
    # hypothesis takes naive bounds and attaches the time zone itself
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001
)
def test_every_moment_lies_in_exactly_one_window(period: str, time_zone: str, moment: datetime) -> None:
    start, end = budget_window(period, time_zone=time_zone, moment=moment)
    assert start <= moment < end
    assert budget_window(period, time_zone=time_zone, moment=end)[0] == end
    assert budget_window(period, time_zone=time_zone, moment=start - timedelta(microseconds=1))[1] == start


def test_unknown_periods_and_time_zones_are_refused(db: None) -> None:
    with pytest.raises(ValueError, match="unknown budget period"):
        budget_window("hourly", time_zone="UTC", moment=datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValidationError):
        Organization(name="x", slug="x", time_zone="Mars/Olympus").full_clean()


# --- Budgets, alerts and their API ---------------------------------------------------------

NOW = datetime(2026, 11, 28, 10, 30, tzinfo=UTC)  # November's window: [1 Nov, 1 Dec) in UTC


@pytest.fixture
def globex(carol: User) -> Organization:
    return OrganizationFactory.create(name="Globex", owner=carol)


@pytest.fixture
def globex_key(globex: Organization) -> ApiKey:
    return ApiKeyFactory.create(organization=globex).key


def spend(organization: Organization, amount: str, at: datetime, *, key: ApiKey | None = None) -> UsageEvent:
    return UsageEventFactory.create(
        organization=organization, api_key=key, cost=Decimal(amount), charged=Decimal(amount), created_at=at
    )


def budget(organization: Organization, limit: str = "100", **fields: Any) -> Budget:
    return BudgetFactory.create(organization=organization, limit=Decimal(limit), **fields)


def config_version_now() -> int:
    return int(redis.sync_client().get(config_version.KEY) or 0)


def test_budget_periods_are_the_windows_periods() -> None:
    assert tuple(Budget.Period.values) == PERIODS


def test_it_refuses_a_limit_of_zero_or_less(acme: Organization) -> None:
    for limit in ("0", "-1"):
        with pytest.raises(ValidationError) as refused:
            Budget(organization=acme, period="daily", limit=Decimal(limit)).full_clean()
        assert "limit" in refused.value.message_dict
        with pytest.raises(InvalidInput) as by_service:
            budget(acme, limit)
        assert by_service.value.param == "limit"
    # The database refuses it too, whatever wrote it.
    with pytest.raises(IntegrityError), transaction.atomic():
        Budget.objects.create(organization=acme, period="daily", limit=0)
    assert not Budget.objects.exists()


def test_it_parses_thresholds_as_sorted_whole_percentages(acme: Organization) -> None:
    assert parse_thresholds(" 80,50 ,100,80,") == (50, 80, 100)
    assert parse_thresholds("") == ()
    assert format_thresholds([100, 50]) == "50,100"
    for bad in ("0", "101", "fifty", "50;80", ",".join(str(n) for n in range(1, 12))):
        with pytest.raises(ValueError):
            parse_thresholds(bad)
        with pytest.raises(ValidationError) as refused:
            Budget(organization=acme, period="daily", limit=Decimal(1), alert_thresholds=bad).full_clean()
        assert list(refused.value.message_dict) == ["alert_thresholds"]
    created = budget(acme, alert_thresholds=[100, 80, 50, 80])
    assert (created.alert_thresholds, created.thresholds) == ("50,80,100", (50, 80, 100))


def test_it_refuses_a_key_of_another_organization(acme: Organization, globex_key: ApiKey) -> None:
    with pytest.raises(ValidationError) as refused:
        Budget(organization=acme, api_key=globex_key, period="daily", limit=Decimal(5)).full_clean()
    assert list(refused.value.message_dict) == ["api_key"]
    with pytest.raises(InvalidInput) as by_service:
        budget(acme, api_key=globex_key)
    assert by_service.value.param == "api_key"
    assert not Budget.objects.exists()


def test_each_scope_has_one_budget_per_period(acme: Organization, acme_key: IssuedSecret) -> None:
    budget(acme)
    with pytest.raises(Conflict) as twice:
        budget(acme, "50")
    assert twice.value.code == "budget_exists"
    budget(acme, period="weekly")
    budget(acme, api_key=acme_key.key)
    with pytest.raises(Conflict):
        budget(acme, api_key=acme_key.key)
    # Organization budgets have no key: the database still keeps them one per period.
    with pytest.raises(IntegrityError), transaction.atomic():
        Budget.objects.create(organization=acme, period="monthly", limit=1)
    assert Budget.objects.count() == 3


def test_budget_changes_advance_the_config_version(acme: Organization, django_capture_on_commit_callbacks: Any) -> None:
    before = config_version_now()
    with django_capture_on_commit_callbacks(execute=True):
        created = budget(acme)
    with django_capture_on_commit_callbacks(execute=True):
        billing_services.budget_update(budget=created, limit=Decimal(20))
    with django_capture_on_commit_callbacks(execute=True):
        billing_services.budget_delete(budget=created)
    assert config_version_now() == before + 3
    assert not Budget.objects.exists()


def test_budget_book_has_the_org_and_key_budgets_that_are_enabled(
    acme: Organization, acme_key: IssuedSecret, globex_key: ApiKey, django_assert_num_queries: Any
) -> None:
    globex = globex_key.organization
    acme.time_zone = PARIS
    acme.save()
    other_key = ApiKeyFactory.create(organization=acme).key
    org_monthly = budget(acme, "100", alert_thresholds=[90])
    budget(acme, period="weekly", enabled=False)
    key_daily = budget(acme, "5", period="daily", api_key=acme_key.key)
    other_daily = budget(acme, "7", period="daily", api_key=other_key)
    budget(globex)
    budget(globex, period="daily", api_key=globex_key)

    with django_assert_num_queries(1):
        book = budget_book()

    assert [b.id for b in book.for_request(acme.pk, acme_key.key.pk)] == [org_monthly.pk, key_daily.pk]
    assert [b.id for b in book.for_request(acme.pk, other_key.pk)] == [org_monthly.pk, other_daily.pk]
    assert [b.id for b in book.for_request(acme.pk, None)] == [org_monthly.pk]
    # A key is only counted with its own organization.
    assert [b.id for b in book.for_request(acme.pk, globex_key.pk)] == [org_monthly.pk]
    view = book.for_request(acme.pk, acme_key.key.pk)[1]
    assert view == BudgetView(key_daily.pk, acme.pk, acme_key.key.pk, "daily", Decimal(5), PARIS, (50, 80, 100))
    assert book.for_request(acme.pk, None)[0].thresholds == (90,)
    assert view.window(NOW) == budget_window("daily", time_zone=PARIS, moment=NOW)
    assert book.for_request(12345, None) == ()


def test_budget_spent_sums_the_window_and_the_scope_only(
    acme: Organization, acme_key: IssuedSecret, globex: Organization
) -> None:
    key = acme_key.key
    other_key = ApiKeyFactory.create(organization=acme).key
    start, end = budget_window("monthly", time_zone="UTC", moment=NOW)
    spend(acme, "1.5", start, key=key)  # the first moment of the window counts
    spend(acme, "2", NOW, key=other_key)
    spend(acme, "4", NOW)  # no key
    spend(acme, "8", start - timedelta(microseconds=1), key=key)  # the window before
    spend(acme, "16", end, key=key)  # the next window
    spend(globex, "32", NOW)
    org_budget = budget(acme)
    key_budget = budget(acme, api_key=key)

    assert budget_spent(budget=org_budget, start=start, end=end) == Decimal("7.5")
    assert budget_spent(budget=key_budget, start=start, end=end) == Decimal("1.5")
    view = budget_book().for_request(acme.pk, key.pk)[1]
    assert budget_spent(budget=view, start=start, end=end) == Decimal("1.5")
    assert budget_spent(budget=org_budget, start=end, end=end + timedelta(days=30)) == Decimal(16)


def test_alerts_fire_once_per_threshold_and_email_the_owners_only(
    acme: Organization, alice: User, mailoutbox: list[Any]
) -> None:
    MembershipFactory.create(organization=acme, user__email="dana@example.com", role=Membership.Role.ADMIN)
    monthly = budget(acme, "100")
    spend(acme, "49.99", NOW - timedelta(days=1))
    assert billing_services.budget_alerts_check(organization_ids=[acme.pk], now=NOW) == []

    spend(acme, "35.01", NOW)  # 85 of 100: past 50% and 80% at once
    alerts = billing_services.budget_alerts_check(organization_ids=[acme.pk], now=NOW)

    assert [(a.budget_id, a.threshold, a.spent, a.limit) for a in alerts] == [
        (monthly.pk, 50, Decimal(85), Decimal(100)),
        (monthly.pk, 80, Decimal(85), Decimal(100)),
    ]
    assert {a.window_start for a in alerts} == {datetime(2026, 11, 1, tzinfo=UTC)}
    [email] = mailoutbox
    assert email.to == [alice.email]  # not bob (member), not dana (admin)
    assert email.subject == "OneFlow: Acme reached 80% of its monthly budget"
    assert "85.00 of its monthly budget of 100.00 credits" in email.body
    assert "resets 2026-12-01 00:00 (UTC)" in email.body

    # Checking again records nothing and sends nothing.
    assert billing_services.budget_alerts_check(organization_ids=[acme.pk], now=NOW) == []
    assert len(mailoutbox) == 1
    spend(acme, "15", NOW)
    [full] = billing_services.budget_alerts_check(organization_ids=[acme.pk], now=NOW)
    assert full.threshold == 100
    assert mailoutbox[1].subject == "OneFlow: Acme reached 100% of its monthly budget"
    assert BudgetAlert.objects.count() == 3


def test_alerts_only_check_the_given_enabled_budgets(
    acme: Organization, globex: Organization, mailoutbox: list[Any]
) -> None:
    budget(acme, "10", enabled=False)
    budget(globex, "10")
    spend(acme, "10", NOW)
    spend(globex, "10", NOW)
    assert billing_services.budget_alerts_check(organization_ids=[acme.pk], now=NOW) == []
    assert mailoutbox == []
    assert len(billing_services.budget_alerts_check(organization_ids=[globex.pk], now=NOW)) == 3
    assert [m.to for m in mailoutbox] == [["carol@example.com"]]


def test_a_key_alert_names_the_key_and_never_its_secret(
    acme: Organization, acme_key: IssuedSecret, mailoutbox: list[Any]
) -> None:
    budget(acme, "10", period="daily", api_key=acme_key.key, alert_thresholds=[50])
    spend(acme, "6", NOW, key=acme_key.key)
    [alert] = billing_services.budget_alerts_check(organization_ids=[acme.pk], now=NOW)
    assert alert.threshold == 50
    [email] = mailoutbox
    assert email.subject == 'OneFlow: Acme (key "ci") reached 50% of its daily budget'
    assert acme_key.raw not in email.subject + email.body
    assert acme_key.secret.prefix not in email.subject + email.body


def test_a_new_window_alerts_again(acme: Organization, mailoutbox: list[Any]) -> None:
    acme.time_zone = PARIS
    acme.save()
    budget(acme, "10", period="daily", alert_thresholds=[100])
    # 23:30 UTC on 14 March is already the 15th in Paris: a new day, a new window.
    evening, next_day = datetime(2026, 3, 14, 22, 30, tzinfo=UTC), datetime(2026, 3, 14, 23, 30, tzinfo=UTC)
    spend(acme, "10", evening)
    with time_machine.travel(evening, tick=False):
        assert len(billing_services.budget_alerts_check(organization_ids=[acme.pk])) == 1
        assert billing_services.budget_alerts_check(organization_ids=[acme.pk]) == []
    with time_machine.travel(next_day, tick=False):
        assert billing_services.budget_alerts_check(organization_ids=[acme.pk]) == []  # nothing spent yet
        spend(acme, "10", next_day)
        [again] = billing_services.budget_alerts_check(organization_ids=[acme.pk])
    assert again.window_start == datetime(2026, 3, 14, 23, tzinfo=UTC)
    assert [a.window_start.day for a in BudgetAlert.objects.order_by("pk")] == [13, 14]
    assert len(mailoutbox) == 2


def test_the_admin_lists_budgets_and_saving_one_advances_the_config_version(
    as_operator: Client, acme: Organization, django_capture_on_commit_callbacks: Any
) -> None:
    before = config_version_now()
    with django_capture_on_commit_callbacks(execute=True):
        response = as_operator.post(
            reverse("admin:billing_budget_add"),
            {"organization": acme.pk, "period": "weekly", "limit": "12.5", "alert_thresholds": "75", "enabled": "on"},
        )
    assert response.status_code == 302, response.content
    assert Budget.objects.get().thresholds == (75,)
    assert config_version_now() == before + 1
    assert as_operator.get(reverse("admin:billing_budget_changelist"), {"q": "acme"}).status_code == 200
    billing_services.budget_alerts_check(organization_ids=[acme.pk])
    assert as_operator.get(reverse("admin:billing_budgetalert_changelist")).status_code == 200


# The REST API.


def budgets_url(organization: Organization, *rest: object) -> str:
    return "/".join([f"/api/organizations/{organization.pk}/billing/budgets", *map(str, rest)])


def test_members_read_budgets_and_only_owners_and_admins_change_them(
    as_alice: APIClient, as_bob: APIClient, as_carol: APIClient, acme: Organization, bob: User
) -> None:
    refused = as_bob.post(budgets_url(acme), {"period": "monthly", "limit": "100"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
    created = as_alice.post(budgets_url(acme), {"period": "monthly", "limit": "100"}, format="json")
    assert created.status_code == 201, created.json()
    budget_id = created.json()["id"]

    assert [b["id"] for b in as_bob.get(budgets_url(acme)).json()] == [budget_id]
    assert as_bob.get(budgets_url(acme, budget_id)).json()["limit"] == "100.0000000000"
    assert as_bob.patch(budgets_url(acme, budget_id), {"limit": "1"}, format="json").status_code == 403
    assert as_bob.delete(budgets_url(acme, budget_id)).status_code == 403
    assert as_carol.get(budgets_url(acme)).status_code == 404
    assert as_carol.get(budgets_url(acme, budget_id)).status_code == 404
    assert Budget.objects.get().limit == 100

    Membership.objects.filter(user=bob).update(role=Membership.Role.ADMIN)
    assert as_bob.patch(budgets_url(acme, budget_id), {"limit": "1"}, format="json").status_code == 200
    assert Budget.objects.get().limit == 1


def test_owners_create_change_and_delete_budgets(
    as_alice: APIClient, acme: Organization, acme_key: IssuedSecret
) -> None:
    spend(acme, "3.456", datetime.now(UTC), key=acme_key.key)
    created = as_alice.post(
        budgets_url(acme),
        {"api_key": acme_key.key.public_id, "period": "daily", "limit": "10", "alert_thresholds": [90, 50]},
        format="json",
    ).json()
    assert (created["api_key"], created["period"], created["alert_thresholds"]) == (
        acme_key.key.public_id,
        "daily",
        [50, 90],
    )
    assert (created["spent_display"], created["limit_display"], created["enabled"]) == ("3.46", "10.00", True)
    assert (
        datetime.fromisoformat(created["window_start"])
        <= datetime.now(UTC)
        < datetime.fromisoformat(created["window_end"])
    )

    changed = as_alice.patch(
        budgets_url(acme, created["id"]), {"enabled": False, "alert_thresholds": [100]}, format="json"
    ).json()
    assert (changed["enabled"], changed["alert_thresholds"], changed["limit"]) == (False, [100], "10.0000000000")
    assert budget_book().for_request(acme.pk, acme_key.key.pk) == ()

    assert as_alice.delete(budgets_url(acme, created["id"])).status_code == 204
    assert not Budget.objects.exists()
    assert as_alice.get(budgets_url(acme, created["id"])).status_code == 404


def test_the_api_refuses_invalid_budgets_in_the_error_format(
    as_alice: APIClient, acme: Organization, globex: Organization, globex_key: ApiKey
) -> None:
    def refusal(body: dict[str, Any], method: str = "post", url: str = "") -> tuple[int, str | None, str | None]:
        response = getattr(as_alice, method)(url or budgets_url(acme), body, format="json")
        error = response.json()["error"]
        assert error["message"]
        return response.status_code, error["param"], error["code"]

    assert refusal({"period": "monthly", "limit": "0"}) == (400, "limit", "invalid_request")
    assert refusal({"period": "hourly", "limit": "1"})[:2] == (400, "period")
    assert refusal({"period": "monthly", "limit": "1", "alert_thresholds": [0]})[:2] == (400, "alert_thresholds")
    assert refusal({"period": "monthly", "limit": "1", "api_key": globex_key.public_id})[:2] == (400, "api_key")
    assert not Budget.objects.exists()

    assert as_alice.post(budgets_url(acme), {"period": "monthly", "limit": "1"}, format="json").status_code == 201
    assert refusal({"period": "monthly", "limit": "2"}) == (409, None, "budget_exists")
    budget_id = Budget.objects.get().pk
    assert refusal({"limit": "-1"}, "patch", budgets_url(acme, budget_id))[:2] == (400, "limit")
    assert refusal({"alert_thresholds": [101]}, "patch", budgets_url(acme, budget_id))[:2] == (400, "alert_thresholds")
    assert Budget.objects.get().limit == 1
    # Another organization's budget is not found through this one.
    other = budget(globex)
    assert as_alice.get(budgets_url(acme, other.pk)).status_code == 404
    assert as_alice.delete(budgets_url(globex, other.pk)).status_code == 404


def test_budget_alerts_are_listed_newest_first_and_paginated(
    as_bob: APIClient, acme: Organization, globex: Organization
) -> None:
    budget(acme, "10", alert_thresholds=[25, 50, 75])
    budget(globex, "10")
    spend(acme, "10", datetime.now(UTC))
    spend(globex, "10", datetime.now(UTC))
    billing_services.budget_alerts_check(organization_ids=[acme.pk, globex.pk])

    page = as_bob.get(f"/api/organizations/{acme.pk}/billing/budget-alerts").json()
    assert page["count"] == 3
    assert [(a["threshold"], a["period"], a["api_key"], a["spent"]) for a in page["results"]] == [
        (75, "monthly", None, "10.0000000000"),
        (50, "monthly", None, "10.0000000000"),
        (25, "monthly", None, "10.0000000000"),
    ]
    second = as_bob.get(f"/api/organizations/{acme.pk}/billing/budget-alerts", {"page": 2})
    assert second.status_code == 404  # 3 alerts fit on the first page of 50

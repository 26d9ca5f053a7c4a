"""The billing page (balance, statement, budgets, prices) and the members page (invite, roles)."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from accounts import services as account_services
from accounts.models import ApiKey, Membership, Organization, User
from billing import services as billing_services
from billing.models import Budget, BudgetAlert, UsageEvent
from billing.views_billing import BUDGETS_SHOWN
from tests.dashboard.conftest import asset_urls, is_same_origin
from tests.factories import (
    ApiKeyFactory,
    BudgetFactory,
    CreditGrantFactory,
    MembershipFactory,
    PriceFactory,
    UsageEventFactory,
)

PAGES = ["/dashboard/billing", "/dashboard/members"]


def spend(organization: Organization, amount: str, *, key: ApiKey | None = None) -> UsageEvent:
    return UsageEventFactory.create(
        organization=organization, api_key=key, public_model="gpt-4o", cost=Decimal(amount), charged=Decimal(amount)
    )


def grant(organization: Organization, amount: str) -> None:
    CreditGrantFactory.create(organization=organization, amount=Decimal(amount))


@pytest.fixture
def priced(settings) -> None:
    settings.CREDITS_PER_USD = Decimal(1)
    past = timezone.now() - timedelta(days=3)
    PriceFactory.create(public_model="gpt-4o", effective_from=past - timedelta(days=30))  # superseded
    PriceFactory.create(
        public_model="gpt-4o",
        effective_from=past,
        input_per_1m=Decimal("2.5"),
        cached_input_per_1m=Decimal("0.35"),
        output_per_1m=Decimal(10),
    )
    PriceFactory.create(
        public_model="llama-free", effective_from=past, input_per_1m=0, cached_input_per_1m=0, output_per_1m=0,
        is_free=True,
    )  # fmt: skip
    PriceFactory.create(public_model="announced", effective_from=timezone.now() + timedelta(days=5))


def budget_row(html: str, budget: Budget) -> str:
    found = re.search(rf'<tr id="budget-{budget.pk}">(.*?)</tr>', html, re.S)
    assert found is not None
    return found.group(1)


# --- Billing ----------------------------------------------------------------------------


def test_billing_shows_balance_budgets_alerts_and_prices_after_markup(
    alice_browser: Client, acme: Organization, acme_key: account_services.IssuedSecret, priced: None
) -> None:
    grant(acme, "100")
    account = billing_services.billing_account(organization=acme)
    account.markup = Decimal("1.5")
    account.save()
    whole = BudgetFactory.create(organization=acme, period="monthly", limit=Decimal(50))
    per_key = BudgetFactory.create(organization=acme, period="daily", limit=Decimal(4), api_key=acme_key.key)
    spend(acme, "3", key=acme_key.key)
    spend(acme, "7")
    BudgetAlert.objects.create(
        budget=per_key, window_start=timezone.now(), threshold=80, spent=Decimal("3.205"), limit=Decimal(4)
    )

    html = alice_browser.get("/dashboard/billing").content.decode()

    assert re.search(r'id="balance">100\.00 ', html)
    assert '<span class="money">10.00</span> (20%)' in budget_row(html, whole)
    assert '<span class="money">3.00</span> (75%)' in budget_row(html, per_key)
    assert "Key “ci”" in budget_row(html, per_key)
    assert "reached 80% of its daily budget" in html
    assert "(3.21 of 4.00 credits)" in html  # half-up, by the money rule
    gpt = re.search(r'<tr id="price-gpt-4o">(.*?)</tr>', html, re.S)
    assert gpt is not None
    # The version in force, times the 1.5 markup: 0.525 rounds half-up to 0.53.
    assert list(re.findall(r'class="money">([\d.]+)', gpt.group(1))) == ["3.75", "0.53", "15.00"]
    assert "Free" in html.split('id="price-llama-free"')[1].split("</tr>")[0]
    assert "announced" not in html


def test_the_statement_pages_newest_first(alice_browser: Client, acme: Organization) -> None:
    for n in range(1, 31):
        grant(acme, str(n))

    first = alice_browser.get("/dashboard/billing").content.decode()
    second = alice_browser.get("/dashboard/billing?page=2").content.decode()

    amounts = re.findall(r'data-label="Amount \(credits\)" class="money">([\d.]+)<', first)
    assert amounts[:2] == ["30.00", "29.00"] and len(amounts) == 25
    assert re.findall(r'data-label="Amount \(credits\)" class="money">([\d.]+)<', second) == [
        "5.00", "4.00", "3.00", "2.00", "1.00",
    ]  # fmt: skip
    assert "?page=2" in first and "Older" in first and "Newer" not in first
    assert "Older" not in second and "?page=1" in second
    assert "465.00" in first  # the balance


def test_an_owner_creates_updates_and_deletes_a_budget(
    alice_browser: Client, acme: Organization, acme_key: account_services.IssuedSecret
) -> None:
    created = alice_browser.post(
        "/dashboard/billing",
        {"period": "weekly", "limit": "25", "api_key": acme_key.key.public_id, "alert_thresholds": "90, 50"},
    )
    assert created.status_code == 302
    budget = Budget.objects.get(organization=acme)
    assert (budget.period, budget.limit, budget.api_key_id, budget.alert_thresholds, budget.enabled) == (
        "weekly",
        Decimal(25),
        acme_key.key.pk,
        "50,90",
        False,
    )  # fmt: skip  (an unticked box is "off", as a browser sends it)

    prefix = f"budget-{budget.pk}"
    updated = alice_browser.post(
        f"/dashboard/billing/budgets/{budget.pk}",
        {f"{prefix}-limit": "40", f"{prefix}-alert_thresholds": "100", f"{prefix}-enabled": "on"},
        follow=True,
    )
    budget.refresh_from_db()
    assert (budget.limit, budget.alert_thresholds, budget.enabled) == (Decimal(40), "100", True)
    assert "Budget updated." in updated.content.decode()

    assert alice_browser.post(f"/dashboard/billing/budgets/{budget.pk}/delete").status_code == 302
    assert not Budget.objects.filter(pk=budget.pk).exists()


def test_refused_budgets_show_why_on_the_form(alice_browser: Client, acme: Organization) -> None:
    BudgetFactory.create(organization=acme, period="monthly")

    unknown_key = alice_browser.post(
        "/dashboard/billing", {"period": "daily", "limit": "5", "api_key": "key_nope", "alert_thresholds": "50"}
    )
    twice = alice_browser.post("/dashboard/billing", {"period": "monthly", "limit": "9", "alert_thresholds": "50"})
    bad_threshold = alice_browser.post(
        "/dashboard/billing", {"period": "daily", "limit": "9", "alert_thresholds": "150"}
    )

    assert unknown_key.status_code == 400
    assert "No key of this organization has this id." in unknown_key.content.decode()
    assert twice.status_code == 400
    assert "already has a budget for this period" in twice.content.decode()
    assert bad_threshold.status_code == 400
    assert Budget.objects.filter(organization=acme).count() == 1


def test_a_member_reads_billing_but_cannot_change_budgets(bob_browser: Client, acme: Organization) -> None:
    budget = BudgetFactory.create(organization=acme, limit=Decimal(5))
    page = bob_browser.get("/dashboard/billing")
    assert page.status_code == 200
    assert f'id="budget-{budget.pk}"' in page.content.decode()
    assert "Add a budget" not in page.content.decode()

    assert (
        bob_browser.post("/dashboard/billing", {"period": "daily", "limit": "1", "alert_thresholds": "50"}).status_code
        == 403
    )
    assert (
        bob_browser.post(f"/dashboard/billing/budgets/{budget.pk}", {f"budget-{budget.pk}-limit": "1"}).status_code
        == 403
    )
    assert bob_browser.post(f"/dashboard/billing/budgets/{budget.pk}/delete").status_code == 403
    budget.refresh_from_db()
    assert budget.limit == Decimal(5)
    assert Budget.objects.count() == 1


def test_budgets_of_another_organization_are_not_found(alice_browser: Client, acme: Organization, carol: User) -> None:
    theirs = BudgetFactory.create(organization__owner=carol)
    assert alice_browser.post(f"/dashboard/billing/budgets/{theirs.pk}/delete").status_code == 404
    assert alice_browser.post(f"/dashboard/billing/budgets/{theirs.pk}", {}).status_code == 404
    assert f'id="budget-{theirs.pk}"' not in alice_browser.get("/dashboard/billing").content.decode()
    assert Budget.objects.filter(pk=theirs.pk).exists()


# --- Members ----------------------------------------------------------------------------


def test_members_are_listed_with_their_roles(bob_browser: Client, acme: Organization) -> None:
    html = bob_browser.get("/dashboard/members").content.decode()
    assert "alice@example.com" in html and "bob@example.com" in html
    assert '<span class="badge role-owner">Owner</span>' in html
    assert '<span class="badge role-member">Member</span>' in html
    assert "Invite someone" not in html


def test_inviting_someone_new_emails_a_set_password_link_and_lists_them(
    alice_browser: Client, acme: Organization, mailoutbox
) -> None:
    response = alice_browser.post("/dashboard/members", {"email": "Dana@Example.com", "role": "admin"}, follow=True)

    dana = User.objects.get(email="dana@example.com")
    assert not dana.has_usable_password()
    assert Membership.objects.get(organization=acme, user=dana).role == Membership.Role.ADMIN
    assert "dana@example.com" in response.content.decode()
    assert '<span class="badge invited">Invited</span>' in response.content.decode()
    assert [m.to for m in mailoutbox] == [["dana@example.com"]]
    assert "added you to Acme" in mailoutbox[0].body
    link = re.search(r"http://testserver(/password-reset/\S+/)", mailoutbox[0].body)
    assert link is not None

    # The link lets them choose a password, and then sign in.
    anonymous = Client()
    form_page = anonymous.get(link.group(1), follow=True)
    assert form_page.status_code == 200
    set_url = form_page.redirect_chain[-1][0]
    new_password = "a long enough passphrase 42"
    anonymous.post(set_url, {"new_password1": new_password, "new_password2": new_password})
    assert anonymous.login(username="dana@example.com", password=new_password)


def test_inviting_an_existing_user_adds_them_and_refuses_a_second_time(
    alice_browser: Client, acme: Organization, carol: User, mailoutbox
) -> None:
    assert alice_browser.post("/dashboard/members", {"email": "carol@example.com", "role": "member"}).status_code == 302
    again = alice_browser.post("/dashboard/members", {"email": "carol@example.com", "role": "member"})

    assert Membership.objects.get(organization=acme, user=carol).role == Membership.Role.MEMBER
    assert again.status_code == 400
    assert "already a member" in again.content.decode()
    assert len(mailoutbox) == 1
    assert "/signin" in mailoutbox[0].body and "password-reset" not in mailoutbox[0].body


def test_a_member_cannot_invite_change_roles_or_remove(bob_browser: Client, acme: Organization, mailoutbox) -> None:
    owner = Membership.objects.get(organization=acme, role=Membership.Role.OWNER)
    assert bob_browser.post("/dashboard/members", {"email": "x@example.com", "role": "owner"}).status_code == 403
    assert bob_browser.post(f"/dashboard/members/{owner.pk}/role", {"role": "member"}).status_code == 403
    assert bob_browser.post(f"/dashboard/members/{owner.pk}/remove").status_code == 403
    assert mailoutbox == []
    assert not User.objects.filter(email="x@example.com").exists()
    owner.refresh_from_db()
    assert owner.role == Membership.Role.OWNER


def test_an_owner_changes_a_role_and_removes_a_member(alice_browser: Client, acme: Organization, bob: User) -> None:
    bobs = Membership.objects.get(organization=acme, user=bob)
    alice_browser.post(f"/dashboard/members/{bobs.pk}/role", {"role": "admin"})
    bobs.refresh_from_db()
    assert bobs.role == Membership.Role.ADMIN

    alice_browser.post(f"/dashboard/members/{bobs.pk}/remove")
    assert not Membership.objects.filter(pk=bobs.pk).exists()


def test_the_last_owner_can_be_neither_demoted_nor_removed(alice_browser: Client, acme: Organization) -> None:
    mine = Membership.objects.get(organization=acme, role=Membership.Role.OWNER)

    demoted = alice_browser.post(f"/dashboard/members/{mine.pk}/role", {"role": "member"}, follow=True)
    removed = alice_browser.post(f"/dashboard/members/{mine.pk}/remove", follow=True)

    assert "at least one owner" in demoted.content.decode()
    assert "at least one owner" in removed.content.decode()
    mine.refresh_from_db()
    assert mine.role == Membership.Role.OWNER


def test_members_of_another_organization_are_not_found(alice_browser: Client, acme: Organization, carol: User) -> None:
    theirs = MembershipFactory.create(user=carol, role=Membership.Role.OWNER)
    assert alice_browser.post(f"/dashboard/members/{theirs.pk}/remove").status_code == 404
    assert alice_browser.post(f"/dashboard/members/{theirs.pk}/role", {"role": "member"}).status_code == 404
    assert Membership.objects.filter(pk=theirs.pk).exists()


# --- Shape ------------------------------------------------------------------------------


@pytest.fixture
def busy_acme(acme: Organization, priced: None) -> Organization:
    """Many entries, budgets, alerts and members: what a page must not load all of."""
    for n in range(60):
        grant(acme, str(n + 1))
    for issued in ApiKeyFactory.create_batch(30, organization=acme):
        budget = BudgetFactory.create(organization=acme, period="daily", limit=Decimal(5), api_key=issued.key)
        BudgetAlert.objects.create(budget=budget, window_start=timezone.now(), threshold=50, spent=1, limit=5)
    MembershipFactory.create_batch(70, organization=acme, user__invited=True)
    return acme


@pytest.mark.parametrize("path", PAGES)
def test_pages_load_only_same_origin_assets(alice_browser: Client, busy_acme: Organization, path: str) -> None:
    response = alice_browser.get(path)
    assert response.status_code == 200
    urls = asset_urls(response.content.decode())
    assert any(url.startswith("/static/") for url in urls)
    assert [url for url in urls if not is_same_origin(url)] == []
    assert f'href="{path}" aria-current="page"' in response.content.decode()


@pytest.mark.parametrize(
    ("path", "queries"),
    [
        # session, user, switcher; balance, one ledger page, alerts, budgets, prices and
        # markups; then budget_spent once per shown budget (at most BUDGETS_SHOWN).
        ("/dashboard/billing", 9 + BUDGETS_SHOWN),
        # session, user, switcher; member count and one page.
        ("/dashboard/members", 5),
    ],
)
def test_pages_make_a_bounded_number_of_queries(
    alice_browser: Client, busy_acme: Organization, path: str, queries: int, django_assert_max_num_queries
) -> None:
    alice_browser.get(path)  # warm: the session and content types
    with django_assert_max_num_queries(queries):
        response = alice_browser.get(path)
    assert response.status_code == 200

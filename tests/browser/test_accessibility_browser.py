"""Every dashboard page passes axe-core's WCAG 2.x A/AA rules in a real browser,
at desktop and phone width: contrast, labels, names of controls, landmarks, headings.

axe-core ships inside the axe-playwright-python wheel and is evaluated into the page
by Playwright, so nothing is fetched. Pages are seeded with data (a key, usage,
rollups, a budget, a member) so tables, charts and forms are all on screen.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.urls import reverse
from playwright.sync_api import Page, expect

from accounts import services as accounts_services
from accounts.models import Organization, User
from billing import services as billing_services
from billing.models import UsageEvent, UsageRollup
from tests.browser.conftest import PHONE, RequestLog
from tests.conftest import PASSWORD

# The rules axe tags as WCAG 2.0/2.1/2.2 level A and AA, plus its best practices
# (landmarks, one main, heading order) that a screen reader user relies on.
RULES = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]}
}

SIGNED_OUT_PAGES = ["/signin", "/signup", "/password-reset/"]
DASHBOARD_PAGES = [
    "dashboard-overview",
    "dashboard-keys",
    "dashboard-usage",
    "dashboard-requests",
    "dashboard-billing",
    "dashboard-members",
    "dashboard-playground",
]


@pytest.fixture
def busy_acme(acme: Organization, alice: User) -> Organization:
    key = accounts_services.api_key_create(organization=acme, name="production", created_by=alice).key
    billing_services.credits_grant(organization=acme, amount=Decimal("25"), idempotency_key="a11y-grant")
    billing_services.budget_create(organization=acme, period="monthly", limit=Decimal("100"))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for day in range(5):
        UsageRollup.objects.create(
            organization=acme,
            api_key=key,
            public_model="gpt-4o-mini",
            provider="OpenAI",
            period="day",
            bucket=today - timedelta(days=day),
            requests=10 + day,
            errors=day % 2,
            prompt_tokens=1000,
            completion_tokens=200,
            cost=Decimal("0.0125"),
        )
    for number, status in enumerate([200, 200, 429, 502]):
        UsageEvent.objects.create(
            organization=acme,
            api_key=key,
            request_id=f"req_a11y_{number}",
            endpoint="chat",
            public_model="gpt-4o-mini",
            provider="OpenAI",
            status_code=status,
            prompt_tokens=120,
            completion_tokens=30,
            usage_source="reported",
            latency_ms=40,
            ttft_ms=12,
            cost=Decimal("0.00042") if status == 200 else Decimal(0),
            created_at=datetime.now(UTC) - timedelta(minutes=number),
            attempt_log=[{"provider": "OpenAI", "status": status, "error": "", "ms": 40}],
        )
    return acme


def violations(page: Page) -> list[str]:
    """axe's findings of the page as it is now, one line per rule with its first offending nodes."""
    found: dict[str, Any] = Axe().run(page, options=RULES).response
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[node['target'] for node in v['nodes'][:3]]}"
        for v in found["violations"]
    ]


def sign_in(page: Page, user: User) -> None:
    page.goto("/signin")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url("/dashboard/")


def test_signed_out_pages_have_no_accessibility_violations(page: Page, requests_seen: RequestLog) -> None:
    for width in ("desktop", "phone"):
        if width == "phone":
            page.set_viewport_size(PHONE)
        for url in SIGNED_OUT_PAGES:
            page.goto(url)
            assert violations(page) == [], f"{url} at {width} width"
    requests_seen.assert_only_the_server()


def test_every_dashboard_page_has_no_accessibility_violations(
    page: Page, busy_acme: Organization, alice: User, requests_seen: RequestLog
) -> None:
    sign_in(page, alice)
    request_detail = reverse("dashboard-request-detail", args=["req_a11y_3"])
    key_id = busy_acme.api_keys.get(name="production").public_id
    pages = [*map(reverse, DASHBOARD_PAGES), request_detail, reverse("dashboard-key-rotate", args=[key_id])]
    found: dict[str, list[str]] = {}
    for width in ("desktop", "phone"):
        if width == "phone":
            page.set_viewport_size(PHONE)
        for url in pages:
            page.goto(url)
            page.wait_for_load_state("load")
            if problems := violations(page):
                found[f"{url} at {width} width"] = problems
    assert found == {}
    requests_seen.assert_only_the_server()


def test_a_form_with_errors_stays_accessible(page: Page, busy_acme: Organization, alice: User) -> None:
    sign_in(page, alice)
    page.goto(reverse("dashboard-members"))
    page.get_by_label("Email").fill("not an address")
    page.get_by_label("Email").evaluate("field => field.form.noValidate = true")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_text("Enter a valid email address.")).to_be_visible()
    assert violations(page) == []


def test_the_check_finds_what_it_is_meant_to_find(page: Page) -> None:
    """Guards the guard: an unlabelled field and grey-on-white text are reported."""
    page.goto("/signin")
    page.evaluate(
        """() => document.querySelector('main').insertAdjacentHTML('beforeend',
            '<input type="text"><p style="color:#ccc;background:#fff">faint</p>')"""
    )
    rules = {line.split(" ", 1)[0] for line in violations(page)}
    assert {"label", "color-contrast"} <= rules


def test_a_page_with_a_message_and_a_key_edit_form_stay_accessible(
    page: Page, busy_acme: Organization, alice: User
) -> None:
    sign_in(page, alice)
    key_id = busy_acme.api_keys.get(name="production").public_id
    page.goto(reverse("dashboard-key-edit", args=[key_id]))
    assert violations(page) == []
    page.goto(reverse("dashboard-key-revoke", args=[key_id]))
    page.get_by_role("button", name="Revoke the key").click()
    expect(page.locator(".messages")).to_contain_text("is revoked")
    assert violations(page) == []

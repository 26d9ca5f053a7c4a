"""A customer signs up in a real browser and lands on the dashboard, at desktop and phone width."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from accounts.models import Membership
from tests.browser.conftest import RequestLog, Screenshots, assert_fits_the_width, use_phone_width


def test_a_customer_signs_up_and_reaches_the_dashboard(
    page: Page, screenshot: Screenshots, requests_seen: RequestLog
) -> None:
    page.goto("/signup")
    expect(page.get_by_role("heading", name="Create your OneFlow account")).to_be_visible()
    screenshot(page, "signup-desktop")
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Your name").fill("Dana Founder")
    page.get_by_label("Organization name").fill("Dana Labs")
    page.get_by_label("Password").fill("a long enough password 42")
    page.get_by_role("button", name="Sign up").click()

    expect(page).to_have_url("/dashboard/")
    expect(page.get_by_role("heading", name="Overview")).to_contain_text("Dana Labs")
    assert_fits_the_width(page)
    screenshot(page, "overview-desktop")
    membership = Membership.objects.select_related("organization").get(user__email="dana@example.com")
    assert (membership.organization.name, membership.role) == ("Dana Labs", Membership.Role.OWNER)

    use_phone_width(page)
    page.reload()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert_fits_the_width(page)
    screenshot(page, "overview-phone")
    requests_seen.assert_only_the_server()


def test_the_sign_up_page_fits_a_phone(page: Page, screenshot: Screenshots) -> None:
    use_phone_width(page)
    page.goto("/signup")
    expect(page.get_by_role("button", name="Sign up")).to_be_visible()
    assert_fits_the_width(page)
    screenshot(page, "signup-phone")

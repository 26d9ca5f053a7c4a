"""Dashboard pages given hostile query strings: a form error or a clamped page, never a 500."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Organization
from billing.models import Budget


@pytest.mark.parametrize(
    "query", ["start=9999-12-31&end=9999-12-31", "start=0001-01-01&end=0001-01-01", "end=9999-12-31"]
)
@pytest.mark.parametrize("path", ["/dashboard/usage", "/dashboard/usage.csv"])
def test_the_dashboards_usage_page_refuses_dates_at_the_ends_of_the_calendar(
    alice_browser: Client, acme: Organization, path: str, query: str
) -> None:
    response = alice_browser.get(f"{path}?{query}")
    assert response.status_code == 400
    assert "Ensure this value is" in response.content.decode()


@pytest.mark.parametrize("page", ["99999999999999999999", "-3", "abc", "1e9", "0"])
def test_the_billing_page_survives_any_page_number(alice_browser: Client, acme: Organization, page: str) -> None:
    response = alice_browser.get(f"/dashboard/billing?page={page}")
    assert response.status_code in (200, 404)


@pytest.mark.parametrize("page", ["99999999999999999999", "-3", "abc"])
@pytest.mark.parametrize("path", ["/dashboard/keys", "/dashboard/members", "/dashboard/requests"])
def test_other_dashboard_pages_survive_any_page_number(alice_browser: Client, acme: Organization, path: str, page: str):
    assert alice_browser.get(f"{path}?page={page}&after={page}").status_code in (200, 404)


def test_the_dashboard_budget_form_refuses_a_huge_limit(alice_browser: Client, acme: Organization) -> None:
    response = alice_browser.post(
        "/dashboard/billing", {"period": "daily", "limit": "9" * 28, "alert_thresholds": "50,80,100", "enabled": "on"}
    )
    assert response.status_code == 400
    assert "Ensure this value is less than or equal to" in response.content.decode()
    assert not Budget.objects.exists()


@pytest.mark.parametrize("after", ["0.99999999999999999999", "99999999999999999999999.1", "-99999999999999999999.1"])
def test_the_request_logs_cursor_survives_any_value(alice_browser: Client, acme: Organization, after: str) -> None:
    assert alice_browser.get(f"/dashboard/requests?after={after}").status_code == 200


@pytest.mark.parametrize("organization", ["99999999999999999999", "-1", "²"])
def test_switching_to_an_organization_id_past_any_row_is_refused_not_a_500(
    alice_browser: Client, acme: Organization, organization: str
) -> None:
    response = alice_browser.post("/dashboard/organization", {"organization": organization, "next": "/dashboard/"})
    assert response.status_code in (302, 400, 404)


@pytest.mark.parametrize(
    "path", ["/dashboard/members/{}/role", "/dashboard/members/{}/remove", "/dashboard/billing/budgets/{}"]
)
def test_ids_past_64_bits_in_dashboard_paths_are_a_404(alice_browser: Client, acme: Organization, path: str) -> None:
    assert alice_browser.post(path.format(2**64), {"role": "admin"}).status_code == 404

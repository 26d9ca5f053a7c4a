"""The overview page: balance, 30 days of spend and requests from the daily rollups."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.test import Client

from accounts.models import Organization
from billing.models import UsageRollup
from tests.factories import CreditGrantFactory, UsageRollupFactory


def rollup(organization: Organization, day: datetime, model: str, **counts: object) -> UsageRollup:
    return UsageRollupFactory.create(
        organization=organization, public_model=model, provider="OpenAI", bucket=day, **counts
    )


def today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def test_it_shows_the_numbers_of_the_seeded_rollups(alice_browser: Client, acme: Organization) -> None:
    CreditGrantFactory.create(organization=acme, amount=Decimal("120.505"))
    rollup(acme, today(), "gpt-4o-mini", requests=90, errors=9, cost=Decimal("1.25"))
    rollup(acme, today() - timedelta(days=1), "claude-sonnet-4", requests=10, errors=1, cost=Decimal("3.5"))
    rollup(acme, today() - timedelta(days=29), "gpt-4o-mini", requests=100, errors=0, cost=Decimal("0.25"))
    rollup(acme, today() - timedelta(days=30), "gpt-4o-mini", requests=1000, errors=1000, cost=Decimal(99))  # too old
    UsageRollupFactory.create(  # hourly rows are not the overview's
        organization=acme, public_model="gpt-4o", period="hour", bucket=today(), requests=500, cost=Decimal(50)
    )

    page = alice_browser.get("/dashboard/").content.decode()

    assert re.search(r'id="stat-balance">120.51 ', page)
    assert re.search(r'id="stat-spend">5.00 ', page)
    assert 'id="stat-requests">200<' in page
    assert 'id="stat-error-rate">5.0%<' in page
    models = re.findall(
        r'<tr><th scope="row">([^<]+)</th><td class="num">(\d+)</td><td class="num">([\d.]+)</td></tr>', page
    )
    assert models == [("claude-sonnet-4", "10", "3.50"), ("gpt-4o-mini", "190", "1.50")]
    data = re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', page)
    assert data is not None
    chart = json.loads(data.group(1))
    assert len(chart["labels"]) == 30
    assert chart["labels"][-1] == today().date().isoformat()
    assert chart["requests"][-1] == 90
    assert chart["requests"][-2] == 10
    assert chart["requests"][0] == 100
    assert chart["spend"][-2] == "3.50"
    assert sum(chart["requests"]) == 200
    assert "Low balance" not in page


def test_it_warns_when_the_balance_is_low(alice_browser: Client, acme: Organization, settings) -> None:
    settings.DASHBOARD_LOW_BALANCE_CREDITS = Decimal(10)
    CreditGrantFactory.create(organization=acme, amount=Decimal("9.99"))
    page = alice_browser.get("/dashboard/").content.decode()
    assert 'id="low-balance"' in page
    assert "9.99 credits left, below 10.00" in page


def test_it_shows_no_error_rate_without_requests(alice_browser: Client, acme: Organization) -> None:
    page = alice_browser.get("/dashboard/").content.decode()
    assert 'id="stat-error-rate">\u2013<' in page
    assert 'id="stat-balance">0.00 ' in page
    assert 'id="low-balance"' in page


def test_anonymous_visitors_are_sent_to_sign_in(client: Client, db: None) -> None:
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"] == "/signin?next=/dashboard/"

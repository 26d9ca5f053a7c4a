"""Budgets in the hot path: held like credits, refused when a window cannot
cover a request, reset at the organization's midnight, alerting the owners."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import openai
import pytest
import time_machine

from accounts.models import Organization
from billing.models import BudgetAlert, LedgerEntry
from billing.selectors import budget_book
from billing.services import budget_create
from gateway.reservations import budget_slots
from tests.factories import ApiKeyFactory, CreditGrantFactory, OrganizationFactory
from tests.gateway.conftest import Gateway

MESSAGES: Any = [{"role": "user", "content": "Hello"}]
# gpt-4o-mini holds about 0.000032 credits for this prompt with max_tokens=50.
LIMIT = Decimal("0.0001")


def ask(key: str, gateway: Gateway) -> Any:
    client = openai.OpenAI(base_url=gateway.url, api_key=key, max_retries=2)
    return client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)


def until_refused(key: str, gateway: Gateway, *, most: int = 20) -> tuple[int, Any]:
    for served in range(most):
        try:
            ask(key, gateway)
        except openai.RateLimitError as refused:
            return served, refused
    raise AssertionError(f"{most} requests were all served")


def organization(gateway: Gateway) -> Organization:
    return gateway.key.key.organization


def test_an_organization_budget_refuses_what_its_window_cannot_cover(gateway: Gateway, mailoutbox: list[Any]) -> None:
    budget_create(organization=organization(gateway), period="daily", limit=LIMIT, alert_thresholds=(50, 100))
    served, refused = until_refused(gateway.key.raw, gateway)

    assert served >= 1
    error: Any = refused
    assert (error.status_code, error.code, error.type) == (429, "budget_exceeded", "insufficient_quota")
    assert error.response.headers["x-should-retry"] == "false"
    assert "daily budget of your organization" in error.message
    events = gateway.events()  # the drain also checks the alert thresholds
    assert [e.status_code for e in events] == [200] * served + [429]
    charged = -sum(LedgerEntry.objects.filter(kind="charge").values_list("amount", flat=True))
    assert 0 < charged <= LIMIT
    alerts = sorted(BudgetAlert.objects.values_list("threshold", flat=True))
    assert 50 in alerts, alerts
    assert mailoutbox and mailoutbox[0].to == ["alice@example.com"]


def test_a_key_budget_binds_that_key_only(gateway: Gateway) -> None:
    org = organization(gateway)
    other = ApiKeyFactory.create(organization=org)
    budget_create(organization=org, api_key=gateway.key.key, period="monthly", limit=LIMIT)

    _, refused = until_refused(gateway.key.raw, gateway)
    assert "budget of this API key" in refused.message
    assert ask(other.raw, gateway).http_response.status_code == 200


def test_a_daily_window_ends_at_the_organizations_midnight(gateway: Gateway) -> None:
    org = organization(gateway)
    org.time_zone = "Asia/Kolkata"  # UTC+05:30: midnight is 18:30 UTC
    org.save()
    budget_create(organization=org, period="daily", limit=LIMIT)
    [budget] = budget_book().for_request(org.pk, None)
    before = datetime(2026, 11, 28, 18, 29, 59, tzinfo=UTC)
    [late], [early] = budget_slots([budget], before), budget_slots([budget], before + timedelta(seconds=1))
    assert late.key != early.key
    assert early.key.endswith(str(int(datetime(2026, 11, 28, 18, 30, tzinfo=UTC).timestamp())))

    with time_machine.travel(before - timedelta(minutes=1), tick=True):
        until_refused(gateway.key.raw, gateway)
    with time_machine.travel(before + timedelta(seconds=2), tick=True):
        assert ask(gateway.key.raw, gateway).http_response.status_code == 200, "a new day, a new window"


def test_a_grant_reaches_the_gateway_at_once(gateway: Gateway) -> None:
    broke = OrganizationFactory.create(name="Broke")
    key = ApiKeyFactory.create(organization=broke).raw
    with pytest.raises(openai.RateLimitError):
        ask(key, gateway)  # nothing to spend: Redis now holds a free balance of zero
    CreditGrantFactory.create(organization=broke, amount=Decimal(1))
    assert ask(key, gateway).http_response.status_code == 200

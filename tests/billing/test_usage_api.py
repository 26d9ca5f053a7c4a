"""Rollups and the billing REST API: balance, statement, usage, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rest_framework.test import APIClient

from accounts.models import Organization
from billing.models import BillingAccount, UsageEvent, UsageRollup
from billing.services import (
    ledger_post,
    ledger_reconcile_all,
    usage_retention_apply,
    usage_rollup,
)
from tests.factories import ApiKeyFactory, CreditGrantFactory, UsageEventFactory

NOW = datetime(2026, 11, 28, 10, 30, tzinfo=UTC)


def event(organization: Organization, number: int, at: datetime, **fields: object) -> UsageEvent:
    defaults = {"provider": "OpenAI", "prompt_tokens": 100, "completion_tokens": 10, "cost": Decimal("0.001")}
    return UsageEventFactory.create(
        request_id=f"req_{number}", organization=organization, created_at=at, **{**defaults, **fields}
    )


def test_rollups_sum_hours_and_days_and_can_run_again(acme: Organization) -> None:
    key = ApiKeyFactory.create(organization=acme).key
    event(acme, 1, NOW - timedelta(minutes=50), api_key=key)
    event(acme, 2, NOW - timedelta(minutes=20), api_key=key, status_code=502, completion_tokens=0)
    event(acme, 3, NOW - timedelta(minutes=5), api_key=key, public_model="claude-sonnet-4", provider="Anthropic")

    first = usage_rollup(now=NOW)
    again = usage_rollup(now=NOW)

    assert first == again
    hours = UsageRollup.objects.filter(period="hour", public_model="gpt-4o-mini").order_by("bucket")
    assert [(h.bucket.hour, h.requests, h.errors, h.prompt_tokens) for h in hours] == [(9, 1, 0, 100), (10, 1, 1, 100)]
    day = UsageRollup.objects.get(period="day", public_model="gpt-4o-mini")
    assert (day.bucket, day.requests, day.errors, day.completion_tokens, day.cost) == (
        NOW.replace(hour=0, minute=0),
        2,
        1,
        10,
        Decimal("0.002"),
    )
    assert UsageRollup.objects.filter(period="day").count() == 2


def test_usage_by_model_and_csv(as_alice: APIClient, acme: Organization) -> None:
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    event(acme, 1, today, cost=Decimal("0.004"))
    event(acme, 2, today, cost=Decimal("0.0015"), public_model="claude-sonnet-4")
    usage_rollup(now=today + timedelta(minutes=30))

    rows = as_alice.get(f"/api/organizations/{acme.pk}/usage", {"group_by": "model"}).json()
    assert [(r["group"], r["requests"], Decimal(r["cost"])) for r in rows] == [
        ("claude-sonnet-4", 1, Decimal("0.0015")),
        ("gpt-4o-mini", 1, Decimal("0.004")),
    ]
    exported = as_alice.get(f"/api/organizations/{acme.pk}/usage.csv", {"group_by": "model"})
    assert exported["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert [(r["group"], r["cost"]) for r in table] == [("claude-sonnet-4", "0.0015"), ("gpt-4o-mini", "0.0040")]
    bad = as_alice.get(f"/api/organizations/{acme.pk}/usage", {"group_by": "colour"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "group_by"


def test_balance_and_statement(as_alice: APIClient, as_carol: APIClient, acme: Organization) -> None:
    CreditGrantFactory.create(organization=acme, amount=Decimal("10.005"))
    ledger_post(organization=acme, kind="charge", amount=Decimal("-0.5"), idempotency_key="c1", request_id="req_9")

    balance = as_alice.get(f"/api/organizations/{acme.pk}/billing/balance").json()
    assert Decimal(balance["balance"]) == Decimal("9.505")
    assert balance["balance_display"] == "9.51"
    statement = as_alice.get(f"/api/organizations/{acme.pk}/billing/ledger").json()
    assert statement["count"] == 2
    assert [(e["kind"], Decimal(e["amount"])) for e in statement["results"]] == [
        ("charge", Decimal("-0.5")),
        ("grant", Decimal("10.005")),
    ]
    assert as_carol.get(f"/api/organizations/{acme.pk}/billing/balance").status_code == 404


def test_retention_drops_only_raw_events_past_the_window(acme: Organization, settings) -> None:
    settings.USAGE_RETENTION = timedelta(days=90)
    event(acme, 1, NOW - timedelta(days=91))
    event(acme, 2, NOW - timedelta(days=89))
    assert usage_retention_apply(now=NOW) == 1
    assert list(UsageEvent.objects.values_list("request_id", flat=True)) == ["req_2"]


def test_reconciliation_reports_a_balance_that_is_not_its_ledger_sum(acme: Organization) -> None:
    CreditGrantFactory.create(organization=acme, amount=Decimal(5))
    assert ledger_reconcile_all() == []
    BillingAccount.objects.filter(organization=acme).update(balance=Decimal(6))
    assert ledger_reconcile_all() == [acme.pk]


def test_usage_shows_cache_reads_writes_and_reasoning_apart(as_alice: APIClient, acme: Organization) -> None:
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    classes = {"cached_tokens": 40, "cache_write_5m_tokens": 20, "cache_write_1h_tokens": 10, "reasoning_tokens": 4}
    event(acme, 1, today, **classes)
    event(acme, 2, today, **{name: count * 2 for name, count in classes.items()})
    usage_rollup(now=today + timedelta(minutes=30))

    day = UsageRollup.objects.get(period="day")
    assert (day.cached_tokens, day.cache_write_5m_tokens, day.cache_write_1h_tokens, day.reasoning_tokens) == (
        120,
        60,
        30,
        12,
    )
    [row] = as_alice.get(f"/api/organizations/{acme.pk}/usage", {"group_by": "model"}).json()
    assert row | {"cost": None} == {
        "group": "gpt-4o-mini",
        "requests": 2,
        "failed": 0,
        "prompt_tokens": 200,
        "cached_tokens": 120,
        "cache_write_5m_tokens": 60,
        "cache_write_1h_tokens": 30,
        "completion_tokens": 20,
        "reasoning_tokens": 12,
        "cost": None,
    }
    [exported] = csv.DictReader(
        io.StringIO(as_alice.get(f"/api/organizations/{acme.pk}/usage.csv", {"group_by": "model"}).content.decode())
    )
    assert (exported["cache_write_5m_tokens"], exported["cache_write_1h_tokens"], exported["reasoning_tokens"]) == (
        "60",
        "30",
        "12",
    )

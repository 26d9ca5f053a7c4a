"""Operators see the whole platform at a glance in the admin: requests, errors and money
from the rollups, the biggest spenders, and every deployment's breaker and health."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Organization, User
from billing.models import UsageRollup
from billing.services import credits_grant
from gateway import breakers
from gateway.breakers import Outcome
from oneflow.lib import redis, redis_keys, scripts
from providers.models import Deployment, Provider, PublicModel
from tests.redis_state import fresh

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
HOUR = NOW.replace(minute=0)  # the running hour: the last bucket of the 24-hour window
TODAY = NOW.replace(hour=0, minute=0)
URL = "/admin/routing/overview/"


@pytest.fixture(autouse=True)
def _frozen_clock() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def _ten_credits_per_usd(settings: Any) -> None:
    settings.CREDITS_PER_USD = Decimal(10)


_no_breaker_state = fresh(redis_keys.BREAKER_PATTERN)


def organization(name: str) -> Organization:
    return Organization.objects.create(name=name, slug=name.lower().replace(" ", "-"))


def rollup(
    org: Organization,
    bucket: datetime,
    *,
    model: str = "gpt-4o",
    period: str = UsageRollup.Period.HOUR,
    requests: int = 1,
    errors: int = 0,
    cost: str = "0",
    provider_cost_usd: str = "0",
    provider: str = "OpenAI",
) -> UsageRollup:
    """A rollup row as the rollup job writes it."""
    return UsageRollup.objects.create(
        organization=org,
        public_model=model,
        provider=provider,
        period=period,
        bucket=bucket,
        requests=requests,
        errors=errors,
        cost=Decimal(cost),
        provider_cost_usd=Decimal(provider_cost_usd),
    )


class _Tables(HTMLParser):
    """Each table with an id: its rows, as (the row's attributes, data-col -> text)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[dict[str, str | None], dict[str, str]]]] = {}
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._column: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table" and found.get("id"):
            self._table = found["id"]
            self.tables[self._table or ""] = []
        elif tag == "tr" and self._table is not None:
            self._row = {}
            self.tables[self._table].append((found, self._row))
        elif self._row is not None and (column := found.get("data-col")):
            self._column = column
            self._row[column] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._column = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._column is not None:
            self._row[self._column] = " ".join(f"{self._row[self._column]} {data}".split())


def tables(client: Client, **query: str) -> dict[str, list[tuple[dict[str, str | None], dict[str, str]]]]:
    response = client.get(URL, query)
    assert response.status_code == 200
    parser = _Tables()
    parser.feed(response.content.decode())
    return parser.tables


def data_rows(found: dict[str, Any], table: str) -> list[dict[str, str]]:
    return [cells for _, cells in found[table] if cells]


def test_the_overview_url_is_the_overviews_changelist() -> None:
    assert reverse("admin:routing_overview_changelist") == URL


def test_it_sums_the_windows_hourly_rollups_rounding_money_once(as_operator: Client) -> None:
    acme, globex = organization("Acme"), organization("Globex")
    rollup(acme, HOUR, requests=3, errors=1, cost="1.004", provider_cost_usd="0.05")
    rollup(acme, TODAY + timedelta(hours=10), model="claude", requests=5, cost="1.004", provider_cost_usd="0.05")
    first_hour = HOUR - timedelta(hours=23)
    rollup(globex, first_hour, requests=2, errors=2, cost="1.004", provider_cost_usd="0.0005")
    rollup(globex, first_hour - timedelta(hours=1), requests=100, cost="100")  # before the window
    rollup(acme, TODAY, period=UsageRollup.Period.DAY, requests=1000, cost="100")  # the daily rows are not read
    credits_grant(organization=acme, amount=Decimal("12.345"), idempotency_key="acme-grant")
    credits_grant(organization=globex, amount=Decimal("0.005"), idempotency_key="globex-grant")

    found = tables(as_operator)

    assert data_rows(found, "totals") == [
        {
            "requests": "10",
            "errors": "3",
            "error_rate": "30.0%",
            "cost": "3.01",  # 3 x 1.004 = 3.012; the rounded parts would sum to 3.00
            "provider_cost": "0.10",  # 0.1005 half-up
            "margin": "0.20",  # 3.012 credits = 0.3012 USD, less 0.1005
            "credits_outstanding": "12.35",  # 12.35 exactly, once summed
        }
    ]
    buckets = {attrs["data-bucket"]: cells for attrs, cells in found["buckets"] if cells}
    labels = list(buckets)
    assert (labels[0], labels[-1], len(labels)) == ("2026-03-09 16:00", "2026-03-10 15:00", 24)
    assert buckets["2026-03-10 15:00"] == {
        "requests": "3",
        "errors": "1",
        "error_rate": "33.3%",
        "cost": "1.00",
        "provider_cost": "0.05",
        "margin": "0.05",  # 0.1004 - 0.05 = 0.0504
    }
    assert buckets["2026-03-09 16:00"]["error_rate"] == "100.0%"
    assert buckets["2026-03-10 09:00"] == {
        "requests": "0",
        "errors": "0",
        "error_rate": "—",
        "cost": "0.00",
        "provider_cost": "0.00",
        "margin": "0.00",
    }
    assert data_rows(found, "top-organizations") == [
        {
            "name": "Acme",
            "requests": "8",
            "error_rate": "12.5%",
            "cost": "2.01",
            "provider_cost": "0.10",
            "margin": "0.10",
        },
        {
            "name": "Globex",
            "requests": "2",
            "error_rate": "100.0%",
            "cost": "1.00",
            "provider_cost": "0.00050",  # too small for cents: shown, not hidden as 0.00
            "margin": "0.10",
        },
    ]
    assert [row["name"] for row in data_rows(found, "top-models")] == ["gpt-4o", "claude"]


def test_the_week_and_month_windows_read_the_daily_rollups(as_operator: Client) -> None:
    acme = organization("Acme")
    day = UsageRollup.Period.DAY
    rollup(acme, TODAY, period=day, requests=4, errors=1, cost="2")
    rollup(acme, TODAY - timedelta(days=6), period=day, requests=6, cost="3")
    rollup(acme, TODAY - timedelta(days=7), period=day, requests=10, cost="5")
    rollup(acme, TODAY - timedelta(days=29), period=day, requests=20, cost="7")
    rollup(acme, TODAY - timedelta(days=30), period=day, requests=1000, cost="1000")
    rollup(acme, HOUR, requests=500, cost="500")  # hourly rows are the 24-hour window's

    week = tables(as_operator, window="7d")
    month = tables(as_operator, window="30d")

    assert data_rows(week, "totals")[0] | {"credits_outstanding": ""} == {
        "requests": "10",
        "errors": "1",
        "error_rate": "10.0%",
        "cost": "5.00",
        "provider_cost": "0.00",
        "margin": "0.50",
        "credits_outstanding": "",
    }
    assert [attrs["data-bucket"] for attrs, cells in week["buckets"] if cells] == [
        f"2026-03-{day:02d}" for day in range(4, 11)
    ]
    assert (data_rows(month, "totals")[0]["requests"], data_rows(month, "totals")[0]["cost"]) == ("40", "17.00")
    assert len(data_rows(month, "buckets")) == 30
    assert data_rows(tables(as_operator, window="1y"), "totals")[0]["requests"] == "500", "unknown: the last 24 h"


def test_the_top_lists_are_the_ten_biggest_spenders_biggest_first(as_operator: Client) -> None:
    for n in range(1, 13):
        rollup(organization(f"Org {n:02d}"), HOUR, model=f"model-{n:02d}", requests=n, cost=str(n))

    found = tables(as_operator)

    expected = [f"{n:02d}" for n in range(12, 2, -1)]
    assert [row["name"] for row in data_rows(found, "top-organizations")] == [f"Org {n}" for n in expected]
    assert [row["name"] for row in data_rows(found, "top-models")] == [f"model-{n}" for n in expected]
    assert data_rows(found, "top-models")[0]["cost"] == "12.00"


def test_money_is_shown_without_float_artefacts(as_operator: Client) -> None:
    acme = organization("Acme")
    rollup(acme, HOUR, cost="0.1", provider_cost_usd="0.1")
    rollup(acme, HOUR, model="claude", cost="0.2", provider_cost_usd="0.2")

    response = as_operator.get(URL)
    page = response.content.decode()

    assert "0.30000000000000004" not in page
    assert data_rows(tables(as_operator), "totals")[0]["cost"] == "0.30"
    assert response.context["chart"]["spend"][-1] == "0.30", "the chart gets exact strings, not floats"
    assert '"0.30"' in page


@pytest.fixture
def deployments(db: None) -> list[Deployment]:
    model = PublicModel.objects.create(name="chat")
    return [
        Deployment.objects.create(
            public_model=model,
            provider=Provider.objects.create(name=name, kind=Provider.Kind.OPENAI_COMPATIBLE),
            upstream_model=f"{name.lower()}-model",
        )
        for name in ("Alpha", "Bravo", "Charlie")
    ]


def test_open_breakers_are_counted_and_listed_first(as_operator: Client, deployments: list[Deployment]) -> None:
    alpha, _bravo, charlie = deployments
    client = redis.sync_client()
    scripts.run(client, breakers.record(alpha.pk, request_id="a", outcome=Outcome.SUCCESS, latency_ms=240, ttft_ms=80))
    scripts.run(client, breakers.record(alpha.pk, request_id="b", outcome=Outcome.FAILURE))
    breakers.breakers_force_open(deployment_ids=[charlie.pk])
    Deployment.objects.filter(pk=charlie.pk).update(enabled=False)

    response = as_operator.get(URL)
    found = tables(as_operator)

    rows = [(attrs["data-deployment"], attrs["data-state"], cells) for attrs, cells in found["deployments"] if cells]
    assert [(pk, state) for pk, state, _ in rows] == [
        (str(charlie.pk), "open"),
        (str(alpha.pk), "closed"),
        (str(deployments[1].pk), "closed"),
    ]
    assert rows[0][2] == {
        "deployment": "Charlie: charlie-model (disabled)",
        "model": "chat",
        "breaker": "open (forced)",
        "latency": "—",
        "ttft": "—",
        "error_rate": "—",
    }
    assert rows[1][2] | {"deployment": ""} == {
        "deployment": "",
        "model": "chat",
        "breaker": "closed",
        "latency": "240 ms",
        "ttft": "80 ms",
        "error_rate": "50% of 2",
    }
    page = response.content.decode()
    assert '<span id="open-breakers">1</span> open breaker,' in page
    assert f'href="{reverse("admin:routing_deploymenthealth_change", args=[charlie.pk])}"' in page


@pytest.fixture
def unreachable_redis() -> Iterator[None]:
    redis.sync_client.cache_clear()
    # Nothing listens on port 1: the connection is refused at once.
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        yield
    redis.sync_client.cache_clear()


def test_without_redis_the_page_still_shows_usage_and_says_health_is_unknown(
    as_operator: Client, deployments: list[Deployment], unreachable_redis: None
) -> None:
    rollup(organization("Acme"), HOUR, requests=7)

    response = as_operator.get(URL)
    found = tables(as_operator)

    assert "Redis did not answer" in response.content.decode()
    assert data_rows(found, "totals")[0]["requests"] == "7"
    assert {attrs["data-state"] for attrs, cells in found["deployments"] if cells} == {"unknown"}


def _queries(client: Client, **query: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(URL, query).status_code == 200
    return [entry["sql"] for entry in captured.captured_queries]


@pytest.mark.parametrize("window", ["24h", "7d", "30d"])
def test_the_page_runs_the_same_queries_for_10_or_1000_rollup_rows(
    as_operator: Client, deployments: list[Deployment], window: str
) -> None:
    organizations = [organization(f"Org {n}") for n in range(20)]

    def seed(count: int, offset: int) -> None:
        UsageRollup.objects.bulk_create(
            UsageRollup(
                organization=organizations[n % 20],
                public_model=f"model-{n % 37}",
                provider="OpenAI",
                period=UsageRollup.Period.HOUR if n % 2 else UsageRollup.Period.DAY,
                bucket=(HOUR if n % 2 else TODAY) - timedelta(hours=n % 24 if n % 2 else 24 * (n % 30)),
                api_key=None,
                requests=n,
                cost=Decimal(n + offset) / 7,
            )
            for n in range(offset, offset + count)
        )

    seed(10, 0)
    few = _queries(as_operator, window=window)
    seed(990, 10)
    many = _queries(as_operator, window=window)

    assert len(few) == len(many)
    # Session and user, the buckets, top organizations, top models, balances, deployments.
    assert len(many) == 7
    assert not any("billing_usageevent" in sql for sql in many), "the page reads rollups, never usage events"


def test_only_staff_who_may_view_usage_open_the_overview(client: Client, alice: User) -> None:
    assert client.get(URL).status_code == 302, "anonymous: to the login page"
    client.force_login(alice)
    response = client.get(URL)
    assert response.status_code == 302, "not staff: to the login page"
    assert "/admin/login/" in response["Location"]

    staff = User.objects.create_user("staff@oneflow.local", "staff password 123", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
    assert 'id="overview-link"' not in client.get("/admin/").content.decode()

    staff.user_permissions.set(Permission.objects.filter(codename="view_usagerollup"))
    assert client.get(URL).status_code == 200
    assert client.post(URL, {}).status_code == 405
    index = client.get("/admin/").content.decode()
    assert f'<a href="{URL}"><strong>Operator overview</strong></a>' in index
    assert f'href="{URL}"' in client.get("/admin/routing/").content.decode(), "listed under Routing too"


def test_the_admin_home_links_to_the_overview_first(as_operator: Client) -> None:
    index = as_operator.get("/admin/").content.decode()
    assert 'id="overview-link"' in index
    assert index.index('id="overview-link"') < index.index('id="content-main"')

"""The usage page (rollups, a date range, CSV) and the request log (raw events, keyset pages)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client

from accounts.models import Organization, User
from accounts.services import IssuedSecret
from billing.models import UsageEvent, UsageRollup
from tests.dashboard.conftest import asset_urls, is_same_origin
from tests.factories import ApiKeyFactory, OrganizationFactory, UsageEventFactory, UsageRollupFactory


def today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def rollup(organization: Organization, day: datetime, model: str, **fields: object) -> UsageRollup:
    return UsageRollupFactory.create(
        organization=organization, public_model=model, bucket=day, **{"provider": "OpenAI", **fields}
    )


def event(organization: Organization, number: int, at: datetime, **fields: object) -> UsageEvent:
    defaults: dict[str, object] = {
        "provider": "OpenAI",
        "prompt_tokens": 100,
        "cached_tokens": 20,
        "completion_tokens": 10,
        "cost": Decimal("0.001"),
    }
    return UsageEventFactory.create(
        request_id=f"req_{number:04d}", organization=organization, created_at=at, **{**defaults, **fields}
    )


def request_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="request-([^"]+)">', html)


def next_link(html: str) -> str | None:
    found = re.search(r'<a href="(\?[^"]*)"[^>]*rel="next">Older</a>', html)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture
def other_org(carol: User) -> Organization:
    return OrganizationFactory.create(name="Globex", owner=carol)


# --- Usage ------------------------------------------------------------------------------


def test_usage_shows_the_seeded_rollups_by_model(alice_browser: Client, acme: Organization, other_org) -> None:
    rollup(acme, today(), "gpt-4o-mini", requests=90, errors=9, prompt_tokens=1000, cost=Decimal("1.255"))
    rollup(acme, today() - timedelta(days=3), "claude-sonnet-4", provider="Anthropic", requests=10, cost=Decimal(3))
    rollup(acme, today() - timedelta(days=29), "gpt-4o-mini", requests=100, prompt_tokens=5, cost=Decimal("0.25"))
    rollup(acme, today() - timedelta(days=30), "gpt-4o-mini", requests=1000, cost=Decimal(99))  # before the range
    rollup(acme, today(), "gpt-4o", period="hour", requests=500, cost=Decimal(50))  # hourly: not summed twice
    rollup(other_org, today(), "gpt-4o-mini", requests=7777, cost=Decimal(77))  # someone else's

    page = alice_browser.get("/dashboard/usage?group_by=model").content.decode()

    assert 'id="usage-requests">200<' in page
    assert 'id="usage-errors">9<' in page
    assert re.search(r'id="usage-spend">4.51 ', page)
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th><td[^>]*>(\d+)</td>.*?data-label="Spend">([\d.]+)<', page)
    assert rows == [("claude-sonnet-4", "10", "3.00"), ("gpt-4o-mini", "190", "1.51")]
    data = re.search(r'<script id="usage-chart-data" type="application/json">(.*?)</script>', page)
    assert data is not None
    chart = json.loads(data.group(1))
    assert len(chart["labels"]) == 30
    assert chart["labels"][-1] == today().date().isoformat()
    assert chart["requests"][-1] == 90
    assert chart["requests"][0] == 100
    assert chart["spend"][-4] == "3.00"
    assert 'href="/dashboard/usage.csv?start=' in page


def test_usage_groups_by_key_and_provider(alice_browser: Client, acme: Organization, acme_key: IssuedSecret) -> None:
    key = acme_key.key
    rollup(acme, today(), "gpt-4o-mini", api_key=key, requests=4, cost=Decimal(1))
    rollup(acme, today(), "claude-sonnet-4", api_key=key, provider="Anthropic", requests=6, cost=Decimal(2))

    by_key = alice_browser.get("/dashboard/usage?group_by=key").content.decode()
    by_provider = alice_browser.get("/dashboard/usage?group_by=provider").content.decode()

    assert f'<th scope="row">ci ({key.public_id})</th><td class="num" data-label="Requests">10<' in by_key
    assert '<th scope="row">Anthropic</th><td class="num" data-label="Requests">6<' in by_provider
    assert '<th scope="row">OpenAI</th><td class="num" data-label="Requests">4<' in by_provider


def test_usage_takes_a_date_range_with_both_ends_included(alice_browser: Client, acme: Organization) -> None:
    rollup(acme, datetime(2026, 1, 1, tzinfo=UTC), "a", requests=1)
    rollup(acme, datetime(2026, 1, 31, tzinfo=UTC), "a", requests=2)
    rollup(acme, datetime(2026, 2, 1, tzinfo=UTC), "a", requests=4)

    page = alice_browser.get("/dashboard/usage?start=2026-01-01&end=2026-01-31&group_by=day").content.decode()

    assert 'id="usage-requests">3<' in page
    assert '<th scope="row">2026-01-31</th>' in page
    assert "2026-02-01" not in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=2026-02-02&end=2026-02-01", "The end must not be before the start."),
        ("start=2025-01-01&end=2026-01-02", "Pick at most 366 days."),
        ("start=yesterday", "Enter a valid date."),
        ("group_by=colour", "Select a valid choice."),
    ],
)
def test_usage_refuses_a_bad_range(alice_browser: Client, acme: Organization, query: str, message: str) -> None:
    response = alice_browser.get(f"/dashboard/usage?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()
    assert alice_browser.get(f"/dashboard/usage.csv?{query}").status_code == 400


def test_a_year_of_366_days_is_allowed(alice_browser: Client, acme: Organization) -> None:
    assert alice_browser.get("/dashboard/usage?start=2024-01-01&end=2024-12-31").status_code == 200


def test_usage_csv_has_the_rows_of_the_range(alice_browser: Client, acme: Organization, other_org) -> None:
    rollup(
        acme,
        datetime(2026, 3, 1, tzinfo=UTC),
        "gpt-4o-mini",
        requests=3,
        errors=1,
        cached_tokens=7,
        cost=Decimal("0.125"),
    )
    rollup(acme, datetime(2026, 3, 2, tzinfo=UTC), "claude-sonnet-4", requests=2, completion_tokens=9, cost=Decimal(1))
    rollup(acme, datetime(2026, 3, 3, tzinfo=UTC), "gpt-4o-mini", requests=50)  # after the end
    rollup(other_org, datetime(2026, 3, 1, tzinfo=UTC), "gpt-4o-mini", requests=99)

    response = alice_browser.get("/dashboard/usage.csv?start=2026-03-01&end=2026-03-02&group_by=model")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    none = {"cache_write_5m_tokens": "0", "cache_write_1h_tokens": "0", "reasoning_tokens": "0"}
    assert rows == [
        {"group": "claude-sonnet-4", "requests": "2", "failed": "0", "prompt_tokens": "0", "cached_tokens": "0",
         "completion_tokens": "9", "cost": "1.00", **none},
        {"group": "gpt-4o-mini", "requests": "3", "failed": "1", "prompt_tokens": "0", "cached_tokens": "7",
         "completion_tokens": "0", "cost": "0.13", **none},
    ]  # fmt: skip


def test_usage_csv_needs_a_session(client: Client, db: None) -> None:
    response = client.get("/dashboard/usage.csv")
    assert response.status_code == 302
    assert response["Location"].startswith("/signin")


# --- Request log --------------------------------------------------------------------------


def test_the_log_shows_each_request_newest_first(
    alice_browser: Client, acme: Organization, acme_key: IssuedSecret
) -> None:
    key = acme_key.key
    now = datetime.now(UTC)
    event(acme, 1, now - timedelta(minutes=2))
    event(
        acme, 2, now - timedelta(minutes=1), api_key=key, status_code=502, error_type="upstream_error",
        usage_source="estimated", cost=Decimal("0.125"), latency_ms=1234, ttft_ms=321, stream=True,
    )  # fmt: skip

    page = alice_browser.get("/dashboard/requests").content.decode()

    assert request_ids(page) == ["req_0002", "req_0001"]
    row = page[page.index('<tr id="request-req_0002">') : page.index('<tr id="request-req_0001">')]
    assert f'ci <span class="mono subtle">{key.public_id}</span>' in row
    assert '<span class="badge status-5xx">502</span> <span class="subtle">upstream_error</span>' in row
    assert '100 / 20 / 10 <span class="badge">estimated</span>' in row
    assert 'data-label="Cost">0.13<' in row
    assert 'data-label="Latency">1234 ms<' in row
    assert 'data-label="TTFT">321 ms<' in row
    assert 'href="/dashboard/requests/req_0002"' in row
    assert next_link(page) is None


def test_keyset_pages_continue_exactly_after_ties(alice_browser: Client, acme: Organization, monkeypatch) -> None:
    monkeypatch.setattr("billing.views.REQUESTS_PER_PAGE", 4)
    same = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    for number in range(1, 7):  # six requests arriving in the same microsecond
        event(acme, number, same)
    event(acme, 7, same + timedelta(seconds=1))
    event(acme, 8, same - timedelta(seconds=1))

    first = alice_browser.get("/dashboard/requests").content.decode()
    link = next_link(first)
    assert link is not None
    second = alice_browser.get(f"/dashboard/requests{link}").content.decode()
    link2 = next_link(second)

    assert request_ids(first) == ["req_0007", "req_0006", "req_0005", "req_0004"]
    assert request_ids(second) == ["req_0003", "req_0002", "req_0001", "req_0008"]
    assert link2 is None
    assert ">Newest</a>" in second


def test_a_bad_cursor_starts_from_the_newest(alice_browser: Client, acme: Organization) -> None:
    event(acme, 1, datetime.now(UTC))
    for cursor in ("nonsense", "99999999999999999999999.1", "-.-"):
        page = alice_browser.get("/dashboard/requests", {"after": cursor}).content.decode()
        assert request_ids(page) == ["req_0001"]


def test_the_log_filters_by_key_model_and_status(
    alice_browser: Client, acme: Organization, acme_key: IssuedSecret, monkeypatch
) -> None:
    monkeypatch.setattr("billing.views.REQUESTS_PER_PAGE", 2)
    key = acme_key.key
    now = datetime.now(UTC)
    event(acme, 1, now - timedelta(minutes=1), api_key=key)
    event(acme, 2, now - timedelta(minutes=2), api_key=key, status_code=429)
    event(acme, 3, now - timedelta(minutes=3), public_model="claude-sonnet-4", status_code=500)
    event(acme, 4, now - timedelta(minutes=4), api_key=key, public_model="claude-sonnet-4")
    event(acme, 5, now - timedelta(minutes=5), api_key=key, status_code=404)
    event(acme, 6, now - timedelta(days=31), status_code=404)  # older than a filter looks back

    def ids(query: str) -> list[str]:
        return request_ids(alice_browser.get(f"/dashboard/requests?{query}").content.decode())

    assert ids(f"key={key.public_id}") == ["req_0001", "req_0002"]
    by_key = alice_browser.get(f"/dashboard/requests?key={key.public_id}").content.decode()
    assert ids((next_link(by_key) or "?")[1:]) == ["req_0004", "req_0005"]  # the filter stays on page 2
    assert ids("model=claude-sonnet-4") == ["req_0003", "req_0004"]
    assert ids("status=4xx") == ["req_0002", "req_0005"]
    assert ids("status=5xx") == ["req_0003"]
    assert ids("status=2xx&model=claude-sonnet-4") == ["req_0004"]
    assert ids("key=key_nobody") == []
    assert alice_browser.get("/dashboard/requests?status=3xx").status_code == 400


def test_another_organizations_requests_are_never_shown(
    alice_browser: Client, acme: Organization, other_org: Organization
) -> None:
    event(acme, 1, datetime.now(UTC))
    event(other_org, 2, datetime.now(UTC))

    assert request_ids(alice_browser.get("/dashboard/requests").content.decode()) == ["req_0001"]
    assert alice_browser.get("/dashboard/requests/req_0002").status_code == 404
    assert alice_browser.get("/dashboard/requests/req_nope").status_code == 404


def test_the_detail_page_shows_each_attempt(bob_browser: Client, acme: Organization) -> None:
    attempts = [
        {"deployment_id": 7, "provider": "OpenAI", "status": 503, "error": "overloaded", "ms": 120},
        {"deployment_id": 9, "provider": "Azure OpenAI", "status": 200, "error": "", "ms": 840},
    ]
    event(acme, 1, datetime.now(UTC), attempts=2, attempt_log=attempts, cost=Decimal("1.005"), usage_source="void")

    response = bob_browser.get("/dashboard/requests/req_0001")  # members read too

    page = response.content.decode()
    assert response.status_code == 200
    rows = re.findall(r"<tr><th scope=\"row\">(\d)</th>(.*?)</tr>", page)
    assert [number for number, _ in rows] == ["1", "2"]
    assert "overloaded" in rows[0][1] and ">503<" in rows[0][1] and ">120 ms<" in rows[0][1]
    assert "Azure OpenAI" in rows[1][1] and ">840 ms<" in rows[1][1]
    assert 'id="detail-cost">1.01 credits<' in page
    assert "Void (nothing was generated)" in page


def test_members_can_read_usage_and_the_log(bob_browser: Client, acme: Organization) -> None:
    event(acme, 1, datetime.now(UTC))
    assert bob_browser.get("/dashboard/usage").status_code == 200
    assert request_ids(bob_browser.get("/dashboard/requests").content.decode()) == ["req_0001"]


# --- Shape: assets and queries ------------------------------------------------------------

PAGES = ["/dashboard/usage", "/dashboard/usage?group_by=key", "/dashboard/requests", "/dashboard/requests?status=2xx"]


@pytest.fixture
def busy_acme(acme: Organization) -> Organization:
    keys = [issued.key for issued in ApiKeyFactory.create_batch(5, organization=acme)]
    now = datetime.now(UTC)
    UsageRollup.objects.bulk_create(
        UsageRollup(
            organization=acme, api_key=keys[m % 5], public_model=f"model-{m}", provider="OpenAI", period="day",
            bucket=today() - timedelta(days=d), requests=10, errors=1, cost=Decimal("0.5"),
        )
        for d in range(40)
        for m in range(8)
    )  # fmt: skip
    UsageEvent.objects.bulk_create(
        UsageEvent(
            request_id=f"req_{n}", organization=acme, api_key=keys[n % 5], endpoint="chat", public_model="m",
            status_code=200, usage_source="reported", latency_ms=5, created_at=now - timedelta(seconds=n),
        )
        for n in range(120)
    )  # fmt: skip
    return acme


@pytest.mark.parametrize("path", PAGES)
def test_usage_pages_load_only_same_origin_assets(alice_browser: Client, busy_acme: Organization, path: str) -> None:
    response = alice_browser.get(path)
    assert response.status_code == 200
    urls = asset_urls(response.content.decode())
    assert any(url.startswith("/static/") for url in urls)
    assert [url for url in urls if not is_same_origin(url)] == []


@pytest.mark.parametrize("path", [*PAGES, "/dashboard/requests/req_1", "/dashboard/usage.csv?group_by=key"])
def test_usage_pages_make_a_bounded_number_of_queries(
    alice_browser: Client, busy_acme: Organization, path: str, django_assert_max_num_queries
) -> None:
    alice_browser.get(path)  # warm: the session and content types
    # session, user, memberships; then the summary, the daily series and top model,
    # and the key names; or one page of events with their keys.
    with django_assert_max_num_queries(7):
        response = alice_browser.get(path)
    assert response.status_code == 200


def test_the_second_page_of_requests_makes_as_few_queries(
    alice_browser: Client, busy_acme: Organization, django_assert_max_num_queries
) -> None:
    link = next_link(alice_browser.get("/dashboard/requests").content.decode())
    assert link is not None
    with django_assert_max_num_queries(4):
        page = alice_browser.get(f"/dashboard/requests{link}").content.decode()
    assert request_ids(page)[0] == "req_50"

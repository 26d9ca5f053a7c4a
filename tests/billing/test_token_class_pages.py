"""Cache reads, cache writes and reasoning tokens shown apart: the dashboard's request
page and usage table, and the admin's usage events."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.test import Client
from django.urls import reverse

from accounts.models import Organization, User
from billing.models import UsageEvent
from billing.services import usage_rollup
from tests.factories import UsageEventFactory


def a_request(organization: Organization) -> UsageEvent:
    return UsageEventFactory.create(
        request_id="req_classes",
        organization=organization,
        public_model="claude-sonnet-4",
        prompt_tokens=2000,
        cached_tokens=900,
        cache_write_5m_tokens=300,
        cache_write_1h_tokens=200,
        completion_tokens=80,
        reasoning_tokens=50,
    )


def text_of(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">(.*?)</dd>', html, re.S)
    assert found is not None, element_id
    return re.sub(r"<[^>]+>", "", found.group(1))


def test_a_requests_page_shows_each_token_class(alice: User, acme: Organization) -> None:
    a_request(acme)
    browser = Client()
    browser.force_login(alice)

    html = browser.get(reverse("dashboard-request-detail", args=["req_classes"])).content.decode()

    assert text_of(html, "detail-tokens").startswith("2000 in (900 cached), 80 out")
    assert text_of(html, "detail-cache-writes") == "300 for 5 minutes, 200 for 1 hour (part of the tokens in)"
    assert text_of(html, "detail-reasoning") == "50 (part of the tokens out, billed as output)"


def test_the_usage_table_shows_cache_writes_and_reasoning(alice: User, acme: Organization) -> None:
    a_request(acme)
    usage_rollup(now=datetime.now(UTC) + timedelta(minutes=1))
    browser = Client()
    browser.force_login(alice)

    html = browser.get(reverse("dashboard-usage"), {"group_by": "model"}).content.decode()

    row = re.search(r"<tr><th scope=\"row\">claude-sonnet-4</th>(.*?)</tr>", html, re.S)
    assert row is not None
    cells = dict(re.findall(r'data-label="([^"]+)">([^<]*)</td>', row.group(1)))
    assert (cells["Cached"], cells["Cache writes"], cells["Reasoning"]) == ("900", "500", "50")


def test_the_admins_usage_list_shows_each_token_class(as_operator: Client, acme: Organization) -> None:
    a_request(acme)

    html = as_operator.get(reverse("admin:billing_usageevent_changelist")).content.decode()

    assert '<td class="field-cache_reads">900</td>' in html
    assert '<td class="field-cache_writes">300 / 200</td>' in html
    assert '<td class="field-reasoning">50</td>' in html

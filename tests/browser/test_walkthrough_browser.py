"""A customer's first day with OneFlow, in a real browser (chromium, headless).

Erin signs up, creates a key on the Keys page, calls the gateway with it through the
official openai SDK, finds both calls in the request log and the usage chart once the
worker's jobs ran, sees her balance go down by exactly what they cost, rotates the key
(both secrets work during the grace period) and revokes it (neither works). On the way
every dashboard page is photographed at desktop and phone width, and at phone width no
page may scroll sideways.

The operator's part is done as an operator does it: credits granted with the billing
service, a price imported, and a deployment pointing at an upstream that speaks
OpenAI's wire format (tests/fakes), over real HTTP.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import openai
import pytest
from django.conf import settings
from django.urls import NoReverseMatch, reverse
from playwright.sync_api import Page, expect

from accounts.keys import raw_key_prefix
from accounts.models import ApiKey, Organization
from billing.models import LedgerEntry, UsageEvent
from billing.selectors import credits_balance
from billing.services import credits_grant, prices_import, usage_drain, usage_rollup
from oneflow.lib import money
from providers.models import Credential, Deployment, Provider, PublicModel
from providers.services import credential_set_secret
from tests.browser.conftest import (
    RequestLog,
    Screenshots,
    assert_fits_the_width,
    use_desktop_width,
    use_phone_width,
)
from tests.conftest import LiveAsgiServer
from tests.fakes import DEFAULT_REPLY, FakeUpstream

EMAIL = "erin@example.com"
PASSWORD = "a long enough password 42"
ORGANIZATION = "Erin Robotics"
KEY_NAME = "production"
MODEL = "smart"
PROVIDER = "Fake OpenAI"
UPSTREAM_KEY = "sk-upstream-walkthrough-0123456789"
GRANT = Decimal(500)
# USD: 0.01 per input token, 0.02 per output token, 0.25 per request. Every cost is a
# whole number of cents, so what the pages show (2 places) is the exact amount.
PRICE = {"input_per_1m": "10000", "cached_input_per_1m": "5000", "output_per_1m": "20000", "request_fee": "0.25"}
MESSAGES: Any = [{"role": "user", "content": "Say hello to the gateway"}]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(api_key=UPSTREAM_KEY) as up:
        yield up


# --- Erin, in the browser ---------------------------------------------------------------------


def sign_up(page: Page, screenshot: Screenshots) -> Organization:
    """The sign-up form, with the keyboard alone from the first field to the button."""
    page.goto("/signup")
    page.get_by_label("Email").focus()
    for value in (EMAIL, "Erin Engineer", ORGANIZATION, PASSWORD):
        page.keyboard.type(value)
        page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign up")).to_be_focused()
    screenshot(page, "signup")
    page.keyboard.press("Enter")
    expect(page).to_have_url("/dashboard/")
    expect(page.get_by_role("heading", name="Overview")).to_contain_text(ORGANIZATION)
    return Organization.objects.get(name=ORGANIZATION)


def create_key(page: Page, screenshot: Screenshots) -> str:
    """Creates a key on the Keys page and returns the secret it shows, once."""
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name", exact=True).fill(KEY_NAME)
    page.get_by_role("button", name="Create key").click()
    shown = page.locator("#new-secret")
    expect(shown.get_by_role("heading")).to_have_text(f"Key “{KEY_NAME}” created")
    secret = page.get_by_role("textbox", name="Secret").input_value()
    assert raw_key_prefix(secret) is not None, "the page shows no OneFlow secret"
    # The copy button puts exactly the secret on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    shown.get_by_role("button", name="Copy").click()
    expect(shown.get_by_role("status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "keys-new-secret")
    page.reload()
    expect(page.locator("#new-secret")).to_have_count(0)
    expect(page.get_by_role("row", name=KEY_NAME)).to_contain_text("Active")
    assert secret not in page.content()
    return secret


def rotate_key(page: Page, screenshot: Screenshots) -> str:
    """Rotates the key after reading the grace end on the confirm page; returns the new secret."""
    page.goto("/dashboard/keys")
    page.get_by_role("link", name=f"Rotate {KEY_NAME}").click()
    expect(page.get_by_role("heading", name=f"Rotate “{KEY_NAME}”?")).to_be_visible()
    key = ApiKey.objects.select_related("organization").get(name=KEY_NAME)
    grace_end = datetime.now(UTC) + key.effective_grace_period()
    shown = re.search(r"until about (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", page.locator("main").inner_text())
    assert shown, "the confirm page names no grace end"
    assert abs(datetime.strptime(shown[1], "%Y-%m-%d %H:%M").replace(tzinfo=UTC) - grace_end) < timedelta(minutes=2)
    page.get_by_role("button", name="Rotate the key").click()

    expect(page.locator("#new-secret").get_by_role("heading")).to_have_text(f"New secret for “{KEY_NAME}”")
    secret = page.get_by_role("textbox", name="Secret").input_value()
    expect(page.get_by_role("row", name=KEY_NAME)).to_contain_text("Previous secret")
    screenshot(page, "keys-rotated")
    return secret


def revoke_key(page: Page, screenshot: Screenshots) -> None:
    page.goto("/dashboard/keys")
    page.get_by_role("link", name=f"Revoke {KEY_NAME}").click()
    expect(page.get_by_role("heading", name=f"Revoke “{KEY_NAME}”?")).to_be_visible()
    page.get_by_role("button", name="Revoke the key").click()
    expect(page.locator(".messages")).to_contain_text(f"Key “{KEY_NAME}” is revoked")
    row = page.get_by_role("row", name=KEY_NAME)
    expect(row).to_contain_text("Revoked")
    expect(row.get_by_role("link", name=re.compile(r"^(Rotate|Revoke)"))).to_have_count(0)
    screenshot(page, "keys-revoked")


# --- The operator and the worker, as in production ------------------------------------------


def open_the_account(organization: Organization, upstream: FakeUpstream) -> None:
    """What an operator does for a new customer: credits, a price, a deployment to call."""
    credits_grant(organization=organization, amount=GRANT, idempotency_key="welcome-erin", note="welcome credits")
    prices_import(rows=[{"public_model": MODEL, "effective_from": "now", **PRICE}])
    provider = Provider.objects.create(name=PROVIDER, kind=Provider.Kind.OPENAI, base_url=f"{upstream.url}/v1")
    credential = Credential.objects.create(provider=provider, name="main")
    credential_set_secret(credential=credential, secret=UPSTREAM_KEY)
    Deployment.objects.create(
        public_model=PublicModel.objects.create(name=MODEL),
        provider=provider,
        credential=credential,
        upstream_model="gpt-4o-mini",
    )


def run_the_usage_jobs(organization: Organization, *, count: int) -> list[UsageEvent]:
    """The worker's usage drain (every few seconds) and rollup (every minute), run here.

    A stream's usage event is recorded just after its upstream closes, a moment after
    the client read the last chunk: the drain runs until both events are in.
    """
    deadline = time.monotonic() + 10
    events: list[UsageEvent] = []
    while len(events) < count and time.monotonic() < deadline:
        usage_drain()
        events = list(UsageEvent.objects.filter(organization=organization).order_by("created_at"))
    usage_rollup()
    assert len(events) == count, f"{len(events)} usage events, expected {count}"
    return events


def expected_cost(event: UsageEvent) -> Decimal:
    usd = (
        Decimal("0.01") * event.prompt_tokens
        + Decimal("0.02") * event.completion_tokens
        + Decimal(PRICE["request_fee"])
    )
    return money.internal(usd * settings.CREDITS_PER_USD)


# --- The customer's code --------------------------------------------------------------------------


def gateway(server: LiveAsgiServer, secret: str) -> openai.OpenAI:
    # No SDK retries: a refused call must surface as the SDK's error at once.
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=secret, max_retries=0)


def ask(server: LiveAsgiServer, secret: str) -> str:
    """One chat completion; returns its request id."""
    with gateway(server, secret) as client:
        completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert completion._request_id
    return completion._request_id


def ask_streaming(server: LiveAsgiServer, secret: str) -> str:
    """One streamed chat completion, read to the end; returns its request id."""
    with gateway(server, secret) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_REPLY
    assert chunks[-1].usage is not None
    return stream.response.headers["x-request-id"]


def assert_refused(server: LiveAsgiServer, secret: str) -> None:
    with gateway(server, secret) as client, pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert refused.value.status_code == 401


# --- What the pages show ----------------------------------------------------------------------


def check_the_request_log(page: Page, events: list[UsageEvent], screenshot: Screenshots) -> None:
    page.get_by_role("link", name="Requests").click()
    for event in events:
        row = page.locator(f"#request-{event.request_id}")
        expect(row.locator("td[data-label='Model and provider'] .line").first).to_have_text(MODEL)
        expect(row.locator("td[data-label=Status]")).to_contain_text("200")
        expect(row.locator("td[data-label=Cost]")).to_have_text(money.display_text(event.cost))
        expect(row.locator("td[data-label=Key]")).to_contain_text(KEY_NAME)
    screenshot(page, "requests-listed")


def check_a_request(page: Page, event: UsageEvent) -> None:
    """One request's page: the tokens, the cost and its one attempt at the fake provider."""
    page.get_by_role("link", name=event.request_id).click()
    expect(page.get_by_role("heading", name="Request")).to_contain_text(event.request_id)
    expect(page.get_by_text(f"{event.endpoint} (stream)")).to_be_visible()
    tokens = page.locator("#detail-tokens")
    expect(tokens).to_contain_text(f"{event.prompt_tokens} in (0 cached), {event.completion_tokens} out")
    expect(page.locator("#detail-cost")).to_have_text(f"{money.display_text(event.cost)} credits")
    attempts = page.locator("#attempts tbody tr")
    expect(attempts).to_have_count(1)
    expect(attempts.locator("td[data-label=Provider]")).to_have_text(PROVIDER)
    expect(attempts.locator("td[data-label=Status]")).to_have_text("200")


def chart_data(page: Page, source: str) -> dict[str, Any]:
    """What the chart draws, as the page hands it to Chart.js (its json_script)."""
    data: dict[str, Any] = json.loads(page.locator(f"#{source}").text_content() or "")
    return data


def today_in(chart: dict[str, Any], day: str) -> tuple[int, str]:
    index = chart["labels"].index(day)
    return chart["requests"][index], chart["spend"][index]


def check_the_usage(page: Page, events: list[UsageEvent], screenshot: Screenshots) -> None:
    total = sum((event.cost for event in events), money.ZERO)
    day = events[0].created_at.astimezone(UTC).date().isoformat()
    page.get_by_role("link", name="Usage").click()
    assert today_in(chart_data(page, "usage-chart-data"), day) == (2, money.display_text(total))

    page.get_by_label("Group by").select_option(label="Model")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", name="By model")).to_be_visible()
    row = page.locator("#usage-table tbody tr", has=page.get_by_role("rowheader", name=MODEL))
    expect(row.locator("td[data-label=Requests]")).to_have_text("2")
    expect(row.locator("td[data-label=Errors]")).to_have_text("0")
    expect(row.locator("td[data-label='Input tokens']")).to_have_text(str(sum(e.prompt_tokens for e in events)))
    expect(row.locator("td[data-label='Output tokens']")).to_have_text(str(sum(e.completion_tokens for e in events)))
    expect(row.locator("td[data-label=Spend]")).to_have_text(money.display_text(total))
    screenshot(page, "usage-by-model")


def check_the_balance(page: Page, organization: Organization, events: list[UsageEvent]) -> None:
    """The balance went down by exactly the charges: on the page, in the account, in the ledger."""
    charged = sum((event.cost for event in events), money.ZERO)
    assert credits_balance(organization_id=organization.pk) == GRANT - charged
    entries = LedgerEntry.objects.filter(account__organization=organization)
    charges = {entry.request_id: entry.amount for entry in entries.filter(kind=LedgerEntry.Kind.CHARGE)}
    assert charges == {event.request_id: -event.cost for event in events}
    assert sum(entries.values_list("amount", flat=True)) == GRANT - charged

    page.get_by_role("link", name="Overview").click()
    expect(page.locator("#stat-balance")).to_have_text(f"{money.display_text(GRANT - charged)} credits")
    expect(page.locator("#stat-requests")).to_have_text("2")
    expect(page.locator("#top-models")).to_contain_text(MODEL)
    day = events[0].created_at.astimezone(UTC).date().isoformat()
    assert today_in(chart_data(page, "chart-data"), day) == (2, money.display_text(charged))


# --- Every page, twice ------------------------------------------------------------------------


def dashboard_pages(key: ApiKey, event: UsageEvent) -> dict[str, str]:
    """Every dashboard page by a stable name; pages not (yet) in the URLconf are left out."""
    pages = {
        "overview": ("dashboard-overview", []),
        "keys": ("dashboard-keys", []),
        "key-edit": ("dashboard-key-edit", [key.public_id]),
        "key-confirm-rotate": ("dashboard-key-rotate", [key.public_id]),
        "key-confirm-revoke": ("dashboard-key-revoke", [key.public_id]),
        "usage": ("dashboard-usage", []),
        "requests": ("dashboard-requests", []),
        "request-detail": ("dashboard-request-detail", [event.request_id]),
        "playground": ("dashboard-playground", []),
        "billing": ("dashboard-billing", []),
        "members": ("dashboard-members", []),
    }
    urls = {}
    for name, (url_name, args) in pages.items():
        try:
            urls[name] = reverse(url_name, args=args)
        except NoReverseMatch:
            continue
    return urls


def photograph_every_page(page: Page, pages: dict[str, str], screenshot: Screenshots) -> list[str]:
    """Each page at desktop width, then at phone width, where it must fit; returns those that did not."""
    too_wide = []
    for name, url in pages.items():
        use_desktop_width(page)
        response = page.goto(url)
        assert response is not None and response.ok, f"{name} ({url}) did not load"
        screenshot(page, f"{name}-desktop")
        use_phone_width(page)
        page.goto(url)
        try:
            assert_fits_the_width(page)
        except AssertionError as overflow:
            too_wide.append(f"{name}: {overflow}")
        screenshot(page, f"{name}-phone")
    use_desktop_width(page)
    return too_wide


# --- The story --------------------------------------------------------------------------------


def test_a_customer_signs_up_calls_the_gateway_sees_the_usage_and_rotates_then_revokes_the_key(
    page: Page, server: LiveAsgiServer, upstream: FakeUpstream, requests_seen: RequestLog
) -> None:
    # Stable names: test-artifacts/screenshots/walkthrough-<page>-<width>.png
    screenshot = Screenshots(test="walkthrough")
    organization = sign_up(page, screenshot)
    open_the_account(organization, upstream)

    secret = create_key(page, screenshot)
    asked = ask(server, secret)
    streamed = ask_streaming(server, secret)
    assert len(upstream.requests) == 2

    events = run_the_usage_jobs(organization, count=2)
    assert [event.request_id for event in events] == [asked, streamed]
    for event in events:
        assert (event.status_code, event.public_model, event.provider) == (200, MODEL, PROVIDER)
        assert event.cost == expected_cost(event) > 0
    check_the_request_log(page, events, screenshot)
    check_a_request(page, events[1])
    check_the_usage(page, events, screenshot)
    check_the_balance(page, organization, events)

    key = ApiKey.objects.get(organization=organization, name=KEY_NAME)
    too_wide = photograph_every_page(page, dashboard_pages(key, events[1]), screenshot)
    assert too_wide == [], "pages scroll sideways on a phone:\n" + "\n".join(too_wide)

    new_secret = rotate_key(page, screenshot)
    assert new_secret != secret
    ask(server, secret)  # the old secret lives out its grace period
    ask(server, new_secret)

    revoke_key(page, screenshot)
    assert_refused(server, secret)
    assert_refused(server, new_secret)
    assert len(upstream.requests) == 4
    requests_seen.assert_only_the_server()

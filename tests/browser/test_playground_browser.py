"""A member tries a model in the playground in a real browser: the answer streams in, then its cost."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from playwright.sync_api import Page, expect

from accounts.models import Organization, User
from billing.models import UsageEvent
from billing.services import credits_grant, usage_drain
from tests.browser.conftest import SCREENSHOTS, assert_fits_the_width, use_phone_width
from tests.conftest import LiveAsgiServer
from tests.dashboard.test_playground import add_model, route_to
from tests.fakes import DEFAULT_REPLY, Behave, FakeUpstream


def sign_in(page: Page, server: LiveAsgiServer, user: User) -> None:
    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": server.url}])


@pytest.fixture
def acme_with_smart(server: LiveAsgiServer, upstream: FakeUpstream, acme: Organization) -> Organization:
    """Acme, with credits and a model "smart" served by the fake upstream."""
    route_to(upstream, add_model("smart"))
    credits_grant(organization=acme, amount=Decimal(1000), idempotency_key="test-credits")
    return acme


def test_a_member_sees_the_answer_stream_in_and_its_cost(
    page: Page, server: LiveAsgiServer, upstream: FakeUpstream, acme_with_smart: Organization, bob: User
) -> None:
    # A second of silence after the first word: long enough to see the answer half written.
    upstream.script(Behave(stall_after=1, stall=1.0))
    sign_in(page, server, bob)

    page.goto("/dashboard/playground")
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    page.get_by_label("Model", exact=True).select_option("smart")
    page.get_by_label("Prompt", exact=True).fill("Say hello to the playground")
    page.get_by_role("button", name="Send").click()

    answer = page.locator("#playground-answer")
    expect(answer).to_have_text("Hello")  # the first word, while the rest is still coming
    expect(page.locator("#playground-cost")).to_have_count(0)
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(answer).to_have_text(DEFAULT_REPLY)
    cost = page.locator("#playground-cost")
    expect(cost).to_contain_text("credits")
    expect(page.locator("#playground-meta")).to_contain_text("completion tokens")
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    usage_drain()
    [event] = UsageEvent.objects.all()
    assert Decimal(cost.get_attribute("data-cost") or "") == event.cost > 0
    assert_fits_the_width(page)
    page.screenshot(path=str(SCREENSHOTS / "playground-desktop.png"), full_page=True)

    use_phone_width(page)
    assert_fits_the_width(page)
    expect(answer).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "playground-phone.png"), full_page=True)


def test_an_unknown_model_shows_the_gateways_error(page: Page, server: LiveAsgiServer, acme: Organization) -> None:
    add_model("smart")  # listed, but served by no deployment
    sign_in(page, server, User.objects.get(email="alice@example.com"))
    page.goto("/dashboard/playground")
    page.get_by_label("Prompt", exact=True).fill("Hi")
    page.get_by_role("button", name="Send").click()

    expect(page.get_by_role("alert")).to_contain_text("No deployment can serve `smart` right now.")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()

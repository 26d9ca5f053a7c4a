"""An operator works in the Django admin through a real browser (chromium, headless)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest
from playwright.sync_api import Page, expect

from accounts import services as accounts_services
from accounts.models import Organization, User
from billing.models import BillingAccount
from billing.selectors import credits_balance
from providers.models import Deployment
from providers.services import DEMO_CHAT_MODEL, catalog_seed_demo
from tests.browser.conftest import RequestLog, Screenshots
from tests.conftest import LiveAsgiServer

OPERATOR_EMAIL = "ops@oneflow.local"
OPERATOR_PASSWORD = "operator password 123"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def operator(transactional_db: None) -> User:
    return User.objects.create_superuser(OPERATOR_EMAIL, OPERATOR_PASSWORD)


@pytest.fixture
def acme(transactional_db: None) -> Organization:
    alice = accounts_services.user_create(email="alice@example.com", password="correct horse battery staple")
    organization = accounts_services.organization_create(name="Acme", owner=alice)
    # The ledger opens an account on the first grant; operators grant to listed accounts.
    BillingAccount.objects.get_or_create(organization=organization)
    return organization


def sign_in(page: Page, screenshot: Screenshots) -> None:
    page.goto("/admin/")
    expect(page).to_have_url("/admin/login/?next=/admin/")
    screenshot(page, "login")
    page.get_by_label("Email").fill(OPERATOR_EMAIL)
    page.get_by_label("Password").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    screenshot(page, "index")


def test_the_login_form_works_with_the_keyboard_alone(
    page: Page, operator: User, screenshot: Screenshots, requests_seen: RequestLog
) -> None:
    page.goto("/admin/login/")
    # The email field takes the focus on load; from there Tab walks the form in reading order.
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(OPERATOR_EMAIL)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(OPERATOR_PASSWORD)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Log in")).to_be_focused()
    screenshot(page, "filled")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()
    screenshot(page, "signed-in")
    requests_seen.assert_only_the_server()


def test_a_wrong_password_keeps_the_operator_out(page: Page, operator: User, screenshot: Screenshots) -> None:
    page.goto("/admin/login/")
    page.get_by_label("Email").fill(OPERATOR_EMAIL)
    page.get_by_label("Password").fill("not the password")
    page.get_by_label("Password").press("Enter")
    expect(page.locator(".errornote")).to_contain_text("correct email")
    screenshot(page, "refused")
    page.goto("/admin/")
    expect(page).to_have_url("/admin/login/?next=/admin/")


def test_an_operator_grants_credits_and_the_balance_moves(
    page: Page, operator: User, acme: Organization, screenshot: Screenshots, requests_seen: RequestLog
) -> None:
    before = credits_balance(organization_id=acme.pk)
    sign_in(page, screenshot)

    page.get_by_role("link", name="Billing accounts").click()
    expect(page.get_by_role("heading", name="Select billing account to change")).to_be_visible()
    screenshot(page, "accounts")
    page.get_by_role("link", name="Acme").click()
    expect(page.get_by_label("Grant")).to_be_visible()
    screenshot(page, "account")
    page.get_by_label("Grant").fill("250")
    page.get_by_label("Note").fill("welcome credits")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator(".messagelist")).to_contain_text("Granted 250.00 credits.")
    row = page.get_by_role("row", name="Acme")
    expect(row).to_contain_text(f"{before + 250:.2f}")
    screenshot(page, "granted")
    assert credits_balance(organization_id=acme.pk) == before + Decimal(250)
    requests_seen.assert_only_the_server()


@pytest.fixture
def sdk(server: LiveAsgiServer, operator: User, acme: Organization) -> Iterator[openai.OpenAI]:
    """The official SDK with a key of Acme's, pointed at the live gateway; the demo catalog is served."""
    catalog_seed_demo()
    key = accounts_services.api_key_create(organization=acme, name="browser", created_by=operator)
    # Closed at the end: a kept-alive connection would hold the server's shutdown for its timeout.
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=key.raw, max_retries=0) as sdk:
        yield sdk


def test_an_operator_disables_a_deployment_and_the_gateway_answers_503(
    page: Page, sdk: openai.OpenAI, screenshot: Screenshots, requests_seen: RequestLog
) -> None:
    sign_in(page, screenshot)

    # Credits first, through the admin, so the request before the change is served.
    page.goto("/admin/billing/billingaccount/")
    page.get_by_role("link", name="Acme").click()
    page.get_by_label("Grant").fill("1000")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("Granted 1000.00 credits.")
    screenshot(page, "granted")
    assert sdk.chat.completions.create(model=DEMO_CHAT_MODEL, messages=MESSAGES).choices  # type: ignore[arg-type]

    page.goto("/admin/")
    page.get_by_role("link", name="Deployments").click()
    page.get_by_role("textbox", name="Search").fill(DEMO_CHAT_MODEL)
    page.get_by_role("textbox", name="Search").press("Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator("img[alt='True']")).to_have_count(1)
    screenshot(page, "deployments")
    rows.get_by_role("checkbox").check()
    page.get_by_label("Action:").select_option(label="Disable (never undone automatically)")
    page.get_by_role("button", name="Go").click()

    expect(rows.locator("img[alt='False']")).to_have_count(1)
    screenshot(page, "disabled")
    assert not Deployment.objects.get(public_model__name=DEMO_CHAT_MODEL).enabled
    with pytest.raises(openai.InternalServerError) as unavailable:
        sdk.chat.completions.create(model=DEMO_CHAT_MODEL, messages=MESSAGES)  # type: ignore[arg-type]
    assert unavailable.value.status_code == 503
    assert unavailable.value.code == "model_unavailable"
    requests_seen.assert_only_the_server()

"""Sign up, sign in (rate limited), sign out, password reset, organization switcher."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import time_machine
from django.core import mail
from django.test import Client, override_settings

from accounts.models import Membership, Organization, User
from accounts.views import SESSION_ORGANIZATION
from tests.conftest import PASSWORD
from tests.factories import OrganizationFactory

MID_MINUTE = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


def test_it_signs_up_a_user_who_owns_a_new_organization_and_is_signed_in(client: Client, db: None) -> None:
    response = client.post(
        "/signup",
        {"email": "Dana@Example.com", "full_name": "Dana", "organization": "Dana Labs", "password": PASSWORD},
    )

    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    user = User.objects.get(email="dana@example.com")
    membership = Membership.objects.select_related("organization").get(user=user)
    assert (membership.organization.name, membership.role) == ("Dana Labs", Membership.Role.OWNER)
    overview = client.get("/dashboard/")
    assert overview.status_code == 200
    assert "Dana Labs" in overview.content.decode()


def test_it_refuses_a_sign_up_with_a_taken_email_or_a_short_password(client: Client, alice: User) -> None:
    taken = client.post("/signup", {"email": alice.email, "organization": "X", "password": PASSWORD})
    short = client.post("/signup", {"email": "new@example.com", "organization": "X", "password": "short"})

    assert taken.status_code == 400
    assert "already exists" in taken.content.decode()
    assert short.status_code == 400
    assert "at least 12 characters" in short.content.decode()
    assert not User.objects.filter(email="new@example.com").exists()
    assert not Organization.objects.filter(name="X").exists()


def test_it_signs_in_with_email_and_password_and_out_with_a_post(client: Client, alice: User, acme: Organization):
    signed_in = client.post("/signin", {"username": "ALICE@example.com", "password": PASSWORD})
    assert signed_in.status_code == 302
    assert client.get("/dashboard/keys").status_code == 200

    assert client.get("/signout").status_code == 405  # a link cannot sign anyone out
    signed_out = client.post("/signout")
    assert signed_out.status_code == 302
    assert signed_out["Location"] == "/signin"
    assert client.get("/dashboard/keys")["Location"].startswith("/signin?next=")


def test_it_refuses_a_wrong_password(client: Client, alice: User) -> None:
    response = client.post("/signin", {"username": alice.email, "password": "not the password"})
    assert response.status_code == 200
    assert "correct email" in response.content.decode()
    assert "_auth_user_id" not in client.session


# Failed guesses per account, and why they never lock the owner out: tests/accounts/test_lockout.py.


@override_settings(LOGIN_RATE="5/m")
@time_machine.travel(MID_MINUTE, tick=False)
def test_it_rate_limits_sign_in_per_address(alice: User, bob: User) -> None:
    client = Client(REMOTE_ADDR="10.9.9.9")
    statuses = [
        client.post("/signin", {"username": f"nobody{n}@example.com", "password": "x" * 12}).status_code
        for n in range(6)
    ]
    assert statuses == [200] * 5 + [429]
    assert (
        Client(REMOTE_ADDR="10.9.9.10").post("/signin", {"username": bob.email, "password": PASSWORD}).status_code
        == 302
    )


def test_it_emails_a_password_reset_link_that_sets_a_new_password(client: Client, alice: User) -> None:
    sent = client.post("/password-reset/", {"email": "alice@EXAMPLE.com"})
    assert sent.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [alice.email]
    link = re.search(r"http://testserver(/password-reset/\S+/)", str(mail.outbox[0].body))
    assert link is not None

    form = client.get(link.group(1), follow=True)  # Django swaps the token for a session marker
    new_password = "a brand new passphrase 42"
    done = client.post(form.redirect_chain[-1][0], {"new_password1": new_password, "new_password2": new_password})
    assert done.status_code == 302
    assert done["Location"] == "/password-reset/complete"
    alice.refresh_from_db()
    assert alice.check_password(new_password)


def test_it_sends_no_reset_email_for_an_unknown_address(client: Client, db: None) -> None:
    response = client.post("/password-reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302  # the same answer: it does not tell who has an account
    assert mail.outbox == []


@pytest.fixture
def globex(alice: User) -> Organization:
    return OrganizationFactory.create(name="Globex", owner=alice)


def test_the_switcher_offers_only_the_users_organizations(
    alice_browser: Client, acme: Organization, globex: Organization, carol: User
) -> None:
    OrganizationFactory.create(name="Initech", owner=carol)
    page = alice_browser.get("/dashboard/").content.decode()
    options = re.findall(r'<option value="(\d+)"', page)
    assert sorted(int(o) for o in options) == sorted([acme.pk, globex.pk])
    assert "Initech" not in page


def test_it_switches_to_another_own_organization_and_back(
    alice_browser: Client, acme: Organization, globex: Organization
) -> None:
    response = alice_browser.post("/dashboard/organization", {"organization": globex.pk, "next": "/dashboard/keys"})
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/keys"
    assert alice_browser.session[SESSION_ORGANIZATION] == globex.pk
    assert 'API keys <span class="subtle">of Globex' in alice_browser.get("/dashboard/keys").content.decode()


def test_it_refuses_to_switch_into_someone_elses_organization(alice_browser: Client, acme: Organization, carol: User):
    initech = OrganizationFactory.create(name="Initech", owner=carol)
    response = alice_browser.post("/dashboard/organization", {"organization": initech.pk})
    assert response.status_code == 404
    assert alice_browser.session.get(SESSION_ORGANIZATION) != initech.pk
    assert "Initech" not in alice_browser.get("/dashboard/").content.decode()


def test_it_does_not_redirect_off_site_after_switching(alice_browser: Client, acme: Organization) -> None:
    response = alice_browser.post("/dashboard/organization", {"organization": acme.pk, "next": "https://evil.example/"})
    assert response["Location"] == "/dashboard/"


def test_a_user_without_organizations_is_told_so(client: Client, carol: User) -> None:
    client.force_login(carol)
    response = client.get("/dashboard/")
    assert response.status_code == 200
    assert "You belong to no organization" in response.content.decode()


@override_settings(LOGIN_RATE="3/m")
@time_machine.travel(MID_MINUTE, tick=False)
def test_it_rate_limits_password_reset_emails_per_address_asked_for(alice: User) -> None:
    statuses = [
        Client(REMOTE_ADDR=f"10.0.2.{n}").post("/password-reset/", {"email": alice.email}).status_code
        for n in range(1, 6)
    ]
    assert statuses == [302] * 3 + [429] * 2
    assert len(mail.outbox) == 3


@override_settings(LOGIN_RATE="2/m")
@time_machine.travel(MID_MINUTE, tick=False)
def test_it_rate_limits_sign_ups_per_address(db: None) -> None:
    statuses = [
        Client(REMOTE_ADDR="10.0.3.1")  # a new visitor each time, from one address
        .post("/signup", {"email": f"u{n}@example.com", "organization": f"Org {n}", "password": PASSWORD})
        .status_code
        for n in range(3)
    ]
    assert statuses == [302, 302, 429]
    assert not User.objects.filter(email="u2@example.com").exists()

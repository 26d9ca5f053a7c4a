"""A password change, a reset or a deactivation ends every JWT issued before it, and
refresh rotation never extends a session past its sign-in + the refresh lifetime."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import time_machine
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient

from accounts import services
from accounts.models import User
from tests.conftest import PASSWORD

NEW_PASSWORD = "a brand new passphrase 42"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def sign_in(password: str = PASSWORD) -> dict[str, str]:
    response = APIClient().post("/api/auth/token", {"email": "alice@example.com", "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def refresh(token: str) -> tuple[int, dict]:
    response = APIClient().post("/api/auth/token/refresh", {"refresh": token}, format="json")
    return response.status_code, response.json()


def me(access: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get("/api/me").status_code


def test_it_ends_earlier_tokens_when_the_password_is_changed_through_the_api(alice: User) -> None:
    stolen = sign_in()
    rotated_before = refresh(stolen["refresh"])[1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {stolen['access']}")

    changed = client.post(
        "/api/me/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )

    assert changed.status_code == 204
    status, body = refresh(rotated_before["refresh"])
    assert status == 401
    assert body["error"]["code"] == "token_not_valid"
    assert me(stolen["access"]) == 401
    assert me(rotated_before["access"]) == 401
    fresh = sign_in(NEW_PASSWORD)
    assert me(fresh["access"]) == 200
    assert refresh(fresh["refresh"])[0] == 200


def test_it_ends_earlier_tokens_when_the_password_is_reset_by_email_link(alice: User) -> None:
    stolen = sign_in()
    browser = Client()
    browser.post("/password-reset/", {"email": alice.email})
    link = re.search(r"http://testserver(/password-reset/\S+/)", str(mail.outbox[0].body))
    assert link is not None
    form = browser.get(link.group(1), follow=True)
    done = browser.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302

    assert refresh(stolen["refresh"])[0] == 401
    assert me(stolen["access"]) == 401


def test_it_ends_earlier_tokens_when_an_operator_sets_the_password_in_the_admin(
    alice: User, as_operator: Client
) -> None:
    stolen = sign_in()
    response = as_operator.post(
        f"/admin/accounts/user/{alice.pk}/password/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == 302, response.content
    assert refresh(stolen["refresh"])[0] == 401
    assert me(stolen["access"]) == 401


def test_it_ends_tokens_of_a_deactivated_user_also_after_reactivation(alice: User) -> None:
    stolen = sign_in()

    services.user_deactivate(user=alice)
    assert refresh(stolen["refresh"])[0] == 401
    assert me(stolen["access"]) == 401

    User.objects.filter(pk=alice.pk).update(is_active=True)
    assert refresh(stolen["refresh"])[0] == 401
    assert me(stolen["access"]) == 401
    assert me(sign_in()["access"]) == 200


def test_an_operator_deactivating_a_user_in_the_admin_ends_their_tokens_for_good(
    alice: User, as_operator: Client
) -> None:
    stolen = sign_in()
    page = f"/admin/accounts/user/{alice.pk}/change/"
    form = {"email": alice.email, "full_name": alice.full_name, "date_joined_0": "2026-01-01", "date_joined_1": "00:00"}

    assert as_operator.post(page, form).status_code == 302  # "active" unticked
    User.objects.filter(pk=alice.pk).update(is_active=True)

    assert refresh(stolen["refresh"])[0] == 401
    assert me(stolen["access"]) == 401


def test_a_token_of_a_deleted_user_gets_401_not_500(alice: User) -> None:
    stolen = sign_in()
    alice.delete()
    assert refresh(stolen["refresh"])[0] == 401


def test_rotation_never_extends_a_session_past_sign_in_plus_the_refresh_lifetime(alice: User) -> None:
    with time_machine.travel(T0, tick=False):
        token = sign_in()["refresh"]
    # Rotating every day keeps a token fresh, but only until the 7-day mark.
    for day in range(1, 7):
        with time_machine.travel(T0 + timedelta(days=day), tick=False):
            status, body = refresh(token)
            assert status == 200, body
            token = body["refresh"]
    with time_machine.travel(T0 + timedelta(days=7, seconds=-1), tick=False):
        status, body = refresh(token)
        assert status == 200
        token = body["refresh"]
    with time_machine.travel(T0 + timedelta(days=7, seconds=1), tick=False):
        status, body = refresh(token)
    assert status == 401
    assert body["error"]["code"] == "token_not_valid"

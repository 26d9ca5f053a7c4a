"""JWT sign-in, refresh rotation with blacklisting, logout, brute-force limits, passwords."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import override_settings
from rest_framework.test import APIClient

from accounts import services
from accounts.models import User
from oneflow.lib.errors import InvalidInput
from tests.conftest import PASSWORD

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def sign_in(client: APIClient, email: str = "alice@example.com", password: str = PASSWORD) -> dict:
    response = client.post("/api/auth/token", {"email": email, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_passwords_are_hashed_with_bcrypt(alice: User) -> None:
    assert alice.password.startswith("bcrypt_sha256$")
    assert alice.check_password(PASSWORD)


@pytest.mark.parametrize("password", ["short", "elevenchars", "a" * 11])
def test_passwords_under_twelve_characters_are_refused(db: None, password: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        services.user_create(email="dave@example.com", password=password)
    assert "at least 12 characters" in caught.value.message
    assert not User.objects.filter(email="dave@example.com").exists()


def test_changing_to_a_short_password_is_refused_in_the_api_error_format(as_alice: APIClient, alice: User) -> None:
    response = as_alice.post(
        "/api/me/password", {"current_password": PASSWORD, "new_password": "tooShort1!"}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "password"
    assert error["code"] == "invalid_password"
    assert "12 characters" in error["message"]
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_sign_in_accepts_any_case_of_the_email(anonymous: APIClient, alice: User) -> None:
    tokens = sign_in(anonymous, email="Alice@Example.COM")
    assert {"access", "refresh"} <= set(tokens)


def test_a_wrong_password_gets_401_in_the_api_error_format(anonymous: APIClient, alice: User) -> None:
    response = anonymous.post("/api/auth/token", {"email": alice.email, "password": "wrong" * 4}, format="json")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert "detail" not in response.json()


def test_access_tokens_expire_after_thirty_minutes(anonymous: APIClient, alice: User) -> None:
    with time_machine.travel(T0, tick=False):
        access = sign_in(anonymous)["access"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    with time_machine.travel(T0 + timedelta(minutes=29, seconds=59), tick=False):
        assert client.get("/api/me").status_code == 200
    with time_machine.travel(T0 + timedelta(minutes=30, seconds=1), tick=False):
        response = client.get("/api/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_not_valid"


def test_a_refresh_token_works_once_and_is_then_blacklisted(anonymous: APIClient, alice: User) -> None:
    refresh = sign_in(anonymous)["refresh"]

    first = anonymous.post("/api/auth/token/refresh", {"refresh": refresh}, format="json")
    assert first.status_code == 200
    assert first.json()["refresh"] != refresh

    again = anonymous.post("/api/auth/token/refresh", {"refresh": refresh}, format="json")
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "token_not_valid"

    rotated = anonymous.post("/api/auth/token/refresh", {"refresh": first.json()["refresh"]}, format="json")
    assert rotated.status_code == 200


def test_logout_blacklists_the_refresh_token(anonymous: APIClient, alice: User) -> None:
    refresh = sign_in(anonymous)["refresh"]
    assert anonymous.post("/api/auth/logout", {"refresh": refresh}, format="json").status_code == 204
    response = anonymous.post("/api/auth/token/refresh", {"refresh": refresh}, format="json")
    assert response.status_code == 401


# Frozen mid-minute: django-ratelimit's windows are aligned to the clock, and
# attempts straddling a minute boundary would start a fresh window.
MID_MINUTE = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)


# Failed guesses per account, and why they never lock the owner out: tests/accounts/test_lockout.py.


@override_settings(LOGIN_RATE="5/m")
@time_machine.travel(MID_MINUTE, tick=False)
def test_sign_in_is_rate_limited_per_address(alice: User, bob: User) -> None:
    client = APIClient(REMOTE_ADDR="10.9.9.9")
    statuses = [
        client.post(
            "/api/auth/token", {"email": f"nobody{i}@example.com", "password": "x" * 12}, format="json"
        ).status_code
        for i in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    assert (
        APIClient(REMOTE_ADDR="10.9.9.10")
        .post("/api/auth/token", {"email": bob.email, "password": PASSWORD}, format="json")
        .status_code
        == 200
    )


def test_me_shows_the_user_and_their_memberships(as_bob: APIClient, acme: object) -> None:
    body = as_bob.get("/api/me").json()
    assert body["email"] == "bob@example.com"
    assert [(m["organization_name"], m["role"]) for m in body["memberships"]] == [("Acme", "member")]


def test_the_api_refuses_requests_without_a_token_with_401(anonymous: APIClient) -> None:
    response = anonymous.get("/api/me")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["type"] == "authentication_error"

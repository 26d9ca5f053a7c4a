"""The gateway API authenticates OneFlow keys: 401 in OpenAI's shape for every bad key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services
from accounts.models import ApiKey
from tests.conftest import LiveAsgiServer
from tests.http import call


def models(server: LiveAsgiServer, headers: dict[str, str]):
    return call(server.url, "GET", "/v1/models", headers=headers)


def assert_openai_401(reply) -> None:
    assert reply.status == 401
    assert reply.json() == {
        "error": {
            "message": reply.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        },
    }
    assert reply.headers["x-request-id"].startswith("req_")


@pytest.fixture
def key(live_asgi: LiveAsgiServer, acme_key: services.IssuedSecret) -> services.IssuedSecret:
    """Acme's key, committed where the live server reads it."""
    return acme_key


def test_a_valid_key_is_accepted_as_bearer_or_x_api_key(live_asgi: LiveAsgiServer, key: services.IssuedSecret) -> None:
    bearer = models(live_asgi, {"Authorization": f"Bearer {key.raw}"})
    assert bearer.status == 200
    assert bearer.json()["object"] == "list"
    assert models(live_asgi, {"x-api-key": key.raw}).status == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer of_live_garbage"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"x-api-key": "sk-proj-1234567890"},
        {"Authorization": "Bearer of_live_AAAAAAAAAAAA_" + "A" * 32},
    ],
)
def test_missing_wrong_or_malformed_keys_get_401(live_asgi: LiveAsgiServer, key: object, headers: dict) -> None:
    assert_openai_401(models(live_asgi, headers))


def test_a_revoked_key_gets_401_at_once(live_asgi: LiveAsgiServer, key: services.IssuedSecret) -> None:
    services.api_key_revoke(key=key.key)
    assert_openai_401(models(live_asgi, {"Authorization": f"Bearer {key.raw}"}))


def test_an_expired_key_gets_401(live_asgi: LiveAsgiServer, key: services.IssuedSecret) -> None:
    ApiKey.objects.filter(pk=key.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_openai_401(models(live_asgi, {"Authorization": f"Bearer {key.raw}"}))


def test_a_rotated_key_works_in_grace_and_not_after(live_asgi: LiveAsgiServer, key: services.IssuedSecret) -> None:
    new = services.api_key_rotate(key=key.key, grace_period=timedelta(hours=1))
    assert models(live_asgi, {"Authorization": f"Bearer {key.raw}"}).status == 200
    assert models(live_asgi, {"Authorization": f"Bearer {new.raw}"}).status == 200
    services.api_key_rotate(key=key.key, grace_period=timedelta(0))
    # The first secret keeps its own deadline; the second stopped at the zero-grace rotation.
    assert models(live_asgi, {"Authorization": f"Bearer {key.raw}"}).status == 200
    assert_openai_401(models(live_asgi, {"Authorization": f"Bearer {new.raw}"}))


def test_the_key_never_appears_in_the_error(live_asgi: LiveAsgiServer, key: services.IssuedSecret) -> None:
    wrong = key.raw[:-4] + "zzzz"
    reply = models(live_asgi, {"Authorization": f"Bearer {wrong}"})
    assert_openai_401(reply)
    assert wrong.encode() not in reply.body

"""Headers at the edge, on the real ASGI app: a 401 on /v1 names its scheme
(RFC 9110 §11.6.1, RFC 6750), and every answer, /v1 or Django, says nosniff."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.gateway.conftest import Gateway
from tests.http import Reply, call

CHAT = b'{"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "Hello"}]}'
JSON = {"Content-Type": "application/json"}


def test_a_401_without_a_key_challenges_for_a_bearer_token(gateway: Gateway) -> None:
    for path in ("/v1/models", "/v1/chat/completions"):
        reply = call(gateway.server.url, "POST" if "chat" in path else "GET", path, body=CHAT, headers=JSON)
        assert reply.status == 401
        # No error code when the request sent no credentials at all (RFC 6750 §3.1).
        assert reply.headers["www-authenticate"] == 'Bearer realm="OneFlow"'


@pytest.mark.parametrize(
    ("path", "credentials"),
    [
        ("/v1/models", {"Authorization": "Bearer sk-of-nobody-0123456789"}),
        ("/v1/chat/completions", {"Authorization": "Bearer sk-of-nobody-0123456789"}),
        ("/v1/messages", {"x-api-key": "sk-of-nobody-0123456789"}),
    ],
)
def test_a_401_for_a_wrong_key_says_invalid_token(gateway: Gateway, path: str, credentials: dict[str, str]) -> None:
    method = "GET" if path == "/v1/models" else "POST"
    reply = call(gateway.server.url, method, path, body=CHAT, headers={**JSON, **credentials})
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Bearer realm="OneFlow", error="invalid_token"'


def test_answers_that_are_not_401_carry_no_challenge(gateway: Gateway) -> None:
    reply = v1(gateway, "GET", "/v1/models")
    assert reply.status == 200
    assert "www-authenticate" not in reply.headers


def v1(gateway: Gateway, method: str, path: str, body: bytes | None = None, **headers: str) -> Reply:
    auth = {"Authorization": f"Bearer {gateway.key.raw}", **JSON, **headers}
    return call(gateway.server.url, method, path, body=body, headers=auth)


@override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"])
def test_every_v1_answer_says_nosniff(gateway: Gateway) -> None:
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    answers = {
        "json": v1(gateway, "GET", "/v1/models"),
        "stream": v1(gateway, "POST", "/v1/chat/completions", CHAT.replace(b"}]}", b'}], "stream": true}')),
        "401": call(gateway.server.url, "GET", "/v1/models"),
        "400": v1(gateway, "POST", "/v1/chat/completions", b"not json"),
        "404": v1(gateway, "GET", "/v1/nowhere"),
        "anthropic 404": v1(gateway, "POST", "/v1/messages", CHAT.replace(b"gpt-4o-mini", b"nope")),
        "preflight": call(gateway.server.url, "OPTIONS", "/v1/chat/completions", headers=preflight),
        "413": v1(gateway, "POST", "/v1/chat/completions", b"a" * (10 * 1024 * 1024 + 1)),
    }
    assert answers["stream"].headers["content-type"].startswith("text/event-stream")
    statuses = {name: reply.status for name, reply in answers.items()}
    assert statuses == {
        "json": 200,
        "stream": 200,
        "401": 401,
        "400": 400,
        "404": 404,
        "anthropic 404": 404,
        "preflight": 204,
        "413": 413,
    }
    for name, reply in answers.items():
        assert reply.headers.get("x-content-type-options") == "nosniff", name


@pytest.mark.parametrize(
    ("method", "path", "host"),
    [
        ("GET", "/admin/login/", "localhost"),
        ("GET", "/dashboard/", "localhost"),
        ("POST", "/api/auth/token", "localhost"),
        ("GET", "/api/nowhere", "localhost"),
        ("GET", "/healthz", "localhost"),
        # Refused by Django's host check before any view runs.
        ("GET", "/healthz", "evil.example"),
    ],
)
def test_django_answers_say_nosniff_too(gateway: Gateway, method: str, path: str, host: str) -> None:
    reply = call(gateway.server.url, method, path, body=b"{}" if method == "POST" else None, headers={"Host": host})
    assert reply.headers.get("x-content-type-options") == "nosniff", reply.status

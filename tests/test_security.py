"""Security basics on the real ASGI stack: headers, body limit, request ids, CORS."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from tests.conftest import LiveAsgiServer
from tests.http import call

LIMIT = 10 * 1024 * 1024


def test_pages_carry_the_security_headers(live_asgi: LiveAsgiServer) -> None:
    reply = call(live_asgi.url, "GET", "/admin/login/")
    assert reply.status == 200
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["referrer-policy"] == "same-origin"
    policy = reply.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "strict-transport-security" not in reply.headers, "HSTS is for production (HTTPS) only"


@pytest.mark.parametrize("path", ["/api/auth/token", "/v1/models"])
def test_a_body_over_ten_megabytes_is_refused_with_413(live_asgi: LiveAsgiServer, path: str) -> None:
    body = b'{"x": "' + b"a" * LIMIT + b'"}'
    reply = call(live_asgi.url, "POST", path, body=body, headers={"Content-Type": "application/json"})
    assert reply.status == 413
    assert reply.json()["error"]["type"] == "request_too_large"
    assert reply.headers["x-request-id"].startswith("req_")


def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(live_asgi: LiveAsgiServer) -> None:
    body = b"a" * (LIMIT + 1)
    reply = call(live_asgi.url, "POST", "/api/auth/token", body=body, chunked=True)
    assert reply.status == 413
    assert reply.json()["error"]["code"] == "request_too_large"


def test_a_body_at_the_limit_is_read_normally(live_asgi: LiveAsgiServer) -> None:
    padding = "a" * (LIMIT - 100)
    body = json.dumps({"email": "nobody@example.com", "password": padding}).encode()
    assert len(body) <= LIMIT
    reply = call(live_asgi.url, "POST", "/api/auth/token", body=body, headers={"Content-Type": "application/json"})
    assert reply.status == 401


def test_an_anthropic_path_gets_its_413_in_anthropic_shape(live_asgi: LiveAsgiServer) -> None:
    reply = call(live_asgi.url, "POST", "/v1/messages", body=b"a" * (LIMIT + 1))
    assert reply.status == 413
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == "request_too_large"


def test_every_response_has_our_request_id_and_a_sane_client_id_rides_beside_it(live_asgi: LiveAsgiServer) -> None:
    generated = call(live_asgi.url, "GET", "/healthz")
    assert generated.headers["x-request-id"].startswith("req_")
    assert "x-client-request-id" not in generated.headers
    for header in ("x-request-id", "x-client-request-id"):
        kept = call(live_asgi.url, "GET", "/nowhere", headers={header: "trace-abc.123"})
        assert kept.status == 404
        assert kept.headers["x-request-id"].startswith("req_"), "the id is always the server's own"
        assert kept.headers["x-client-request-id"] == "trace-abc.123"
    hostile = call(live_asgi.url, "GET", "/healthz", headers={"x-client-request-id": "<script>" + "x" * 200})
    assert hostile.headers["x-request-id"].startswith("req_")
    assert "x-client-request-id" not in hostile.headers


def test_unknown_api_paths_get_a_json_404(live_asgi: LiveAsgiServer) -> None:
    reply = call(live_asgi.url, "GET", "/api/does-not-exist")
    assert reply.status == 404
    assert reply.json()["error"]["type"] == "not_found_error"


@override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"])
def test_cors_allows_only_listed_origins(live_asgi: LiveAsgiServer) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = call(live_asgi.url, "OPTIONS", "/v1/models", headers={"Origin": "https://app.example.com", **preflight})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    denied = call(live_asgi.url, "OPTIONS", "/v1/models", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in denied.headers

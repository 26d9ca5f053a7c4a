"""The /v1 gateway in the OpenAPI document (issue 13, item 8): every operation it routes
is documented beside the REST API, the document is valid OpenAPI 3, and real answers of
the gateway, successes and errors, match the schemas it documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from drf_spectacular.validation import validate_schema
from jsonschema import Draft4Validator  # type: ignore[import-untyped]  # no stubs; installed with drf-spectacular

from gateway.asgi import ROUTES
from routing.openapi import HEADERS, OPERATIONS, routed_operations
from tests.gateway.asgi_client import Answer, AsgiClient, tenant_key

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}
MESSAGE = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "Hello"}]}
ANTHROPIC = {"anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def document(django_db_blocker: Any) -> dict[str, Any]:
    """/api/schema as Swagger UI (/api/docs) reads it."""
    with django_db_blocker.unblock():
        response = Client().get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def gateway_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, item in document["paths"].items() if path.startswith("/v1/") for method in item
    }


# --- The document ----------------------------------------------------------------------------


def test_the_document_has_every_gateway_operation_and_no_other(document: dict[str, Any]) -> None:
    documented = gateway_operations(document)
    assert documented == set(ROUTES) | {("GET", "/v1/models/{model}")}, "document what /v1 serves, nothing else"
    assert documented >= {
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{model}"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),
    }
    assert set(routed_operations()) <= set(OPERATIONS)
    assert any(path.startswith("/api/") for path in document["paths"]), "beside the REST API"


def test_the_document_validates_as_openapi_3(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.")
    validate_schema(document)


def test_every_gateway_operation_takes_a_oneflow_key_and_documents_its_errors(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert (schemes["oneflowKey"]["type"], schemes["oneflowKey"]["scheme"]) == ("http", "bearer")
    assert (schemes["oneflowApiKeyHeader"]["in"], schemes["oneflowApiKeyHeader"]["name"]) == ("header", "x-api-key")
    for (method, path), operation in documented(document):
        assert {"oneflowKey": []} in operation["security"], path
        shape = "AnthropicError" if path.startswith("/v1/messages") else "OpenAIError"
        errors = {status: answer for status, answer in operation["responses"].items() if status >= "400"}
        assert {"401", "500", "503"} <= set(errors), f"{method} {path}"
        for status, answer in errors.items():
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{shape}"}, f"{method} {path} {status}"
        assert "www-authenticate" in errors["401"]["headers"]


def test_billed_answers_document_the_oneflow_headers(document: dict[str, Any]) -> None:
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/messages"):
        headers = document["paths"][path]["post"]["responses"]["200"]["headers"]
        assert {"x-request-id", "x-oneflow-cost", "x-oneflow-provider", "x-oneflow-attempts", "x-oneflow-route"} <= set(
            headers
        ), path
    assert "request-id" in document["paths"]["/v1/messages"]["post"]["responses"]["200"]["headers"]
    assert set(document["components"]["headers"]) == set(HEADERS)


def documented(document: dict[str, Any]) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    for path, item in document["paths"].items():
        if path.startswith("/v1/"):
            for method, operation in item.items():
                yield (method.upper(), path), operation


# --- Real answers against the documented schemas -------------------------------------------


def json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: ``nullable`` becomes a null type."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: json_schema(value) for key, value in node.items() if key != "nullable"}
    if not node.get("nullable"):
        return converted
    if "enum" in converted:
        converted["enum"] = [*converted["enum"], None]
    if "type" in converted:
        return {**converted, "type": [converted["type"], "null"]}
    return {"anyOf": [converted, {"type": "null"}]}


def answer_problems(document: dict[str, Any], method: str, path: str, answer: Answer) -> list[str]:
    """Where ``answer`` departs from what the document says of ``method path``: its body
    against the schema of its status, and the x-oneflow-* headers it sends."""
    responses = document["paths"][path][method.lower()]["responses"]
    assert str(answer.status) in responses, f"{method} {path} answered an undocumented {answer.status}"
    documented_answer = responses[str(answer.status)]
    schema = documented_answer["content"]["application/json"]["schema"]
    root = {"allOf": [json_schema(schema)], "components": {"schemas": json_schema(document["components"]["schemas"])}}
    errors = Draft4Validator(root).iter_errors(answer.json())
    problems = [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]
    sent = {name for name in answer.headers if name.startswith("x-oneflow-")}
    return problems + [f"header {name} is not documented" for name in sent - set(documented_answer["headers"])]


@pytest.fixture
def client(transactional_db: None) -> Iterator[AsgiClient]:
    client = AsgiClient(tenant_key())
    yield client
    client.close()


def post(client: AsgiClient, path: str, body: dict[str, Any], **headers: str) -> Answer:
    return client.post(path, json.dumps(body).encode(), headers=headers)


def test_a_chat_completion_matches_its_schema(document: dict[str, Any], client: AsgiClient) -> None:
    answer = post(client, "/v1/chat/completions", CHAT)
    assert answer.status == 200
    assert answer_problems(document, "POST", "/v1/chat/completions", answer) == []
    assert {"x-oneflow-cost", "x-oneflow-provider", "x-oneflow-attempts"} <= set(answer.headers)


def test_a_message_matches_its_schema(document: dict[str, Any], client: AsgiClient) -> None:
    answer = post(client, "/v1/messages", MESSAGE, **ANTHROPIC)
    assert answer.status == 200
    assert answer_problems(document, "POST", "/v1/messages", answer) == []


def test_embeddings_and_token_counts_match_their_schemas(document: dict[str, Any], client: AsgiClient) -> None:
    embedded = post(client, "/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]})
    counted = post(client, "/v1/messages/count_tokens", {k: v for k, v in MESSAGE.items() if k != "max_tokens"})
    assert (embedded.status, counted.status) == (200, 200)
    assert answer_problems(document, "POST", "/v1/embeddings", embedded) == []
    assert answer_problems(document, "POST", "/v1/messages/count_tokens", counted) == []


@pytest.mark.skipif(("POST", "/v1/responses") not in ROUTES, reason="the gateway does not route /v1/responses")
def test_a_response_matches_its_schema(document: dict[str, Any], client: AsgiClient) -> None:
    answer = post(client, "/v1/responses", {"model": "gpt-4o-mini", "input": "Hello", "store": False})
    assert answer.status == 200, answer.json()
    assert answer_problems(document, "POST", "/v1/responses", answer) == []
    refused = post(client, "/v1/responses", {"model": "gpt-4o-mini", "input": "Hello", "store": True})
    assert refused.status == 400
    assert answer_problems(document, "POST", "/v1/responses", refused) == []


def test_both_shapes_of_the_model_list_match_its_schema(document: dict[str, Any], client: AsgiClient) -> None:
    for headers in ({}, ANTHROPIC):
        listed = client.get("/v1/models", headers=headers)
        one = client.get("/v1/models/gpt-4o-mini", headers=headers)
        assert (listed.status, one.status) == (200, 200)
        assert answer_problems(document, "GET", "/v1/models", listed) == []
        assert answer_problems(document, "GET", "/v1/models/{model}", one) == []


def test_errors_match_the_error_shape_of_their_protocol(document: dict[str, Any], client: AsgiClient) -> None:
    wrong_key = {"authorization": "Bearer of_live_AAAAAAAAAAAA_" + "B" * 32}
    cases = [
        ("POST", "/v1/chat/completions", post(client, "/v1/chat/completions", CHAT, **wrong_key), 401),
        ("POST", "/v1/chat/completions", post(client, "/v1/chat/completions", {**CHAT, "model": "nope"}), 404),
        ("POST", "/v1/chat/completions", post(client, "/v1/chat/completions", {**CHAT, "n": 0}), 400),
        ("POST", "/v1/messages", post(client, "/v1/messages", {**MESSAGE, "max_tokens": 0}, **ANTHROPIC), 400),
        ("POST", "/v1/messages", post(client, "/v1/messages", MESSAGE, **wrong_key), 401),
        ("GET", "/v1/models/{model}", client.get("/v1/models/nope"), 404),
    ]
    for method, path, answer, status in cases:
        assert answer.status == status, (path, answer.json())
        assert answer_problems(document, method, path, answer) == [], (path, status)


def test_the_checker_catches_an_answer_that_departs_from_the_schema(
    document: dict[str, Any], client: AsgiClient
) -> None:
    answer = post(client, "/v1/chat/completions", CHAT)
    broken = Answer(answer.status, {**answer.headers, "x-oneflow-secret": "1"}, b'{"id": 1, "object": "list"}')
    problems = answer_problems(document, "POST", "/v1/chat/completions", broken)
    assert any("'choices' is a required property" in problem for problem in problems)
    assert "object: 'list' is not one of ['chat.completion']" in problems
    assert "header x-oneflow-secret is not documented" in problems

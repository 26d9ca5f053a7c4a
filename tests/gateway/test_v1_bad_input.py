"""Hostile request bodies on /v1 get a 400 in the protocol's own shape, naming the field.

Each case is an input that once answered 500 (issue 11, items 3 and 4), or a
bound the gateway's arithmetic and Redis integers rely on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.gateway.asgi_client import Answer, AsgiClient, tenant_key
from tests.gateway.conftest import simulator_settings

USER = {"role": "user", "content": "Hello"}
CHAT = {"model": "gpt-4o-mini", "messages": [USER]}
EMBED = {"model": "text-embedding-3-small", "input": "Hello"}
MESSAGES = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [USER]}


@pytest.fixture
def client(transactional_db: None) -> Iterator[AsgiClient]:
    client = AsgiClient(tenant_key())
    yield client
    client.close()


def nested(depth: int, leaf: str = '"x"') -> str:
    return "[" * depth + leaf + "]" * depth


def post_raw(client: AsgiClient, path: str, body: dict[str, Any], **raw_fields: str) -> Answer:
    """Posts ``body`` with ``raw_fields`` spliced in as JSON text (nesting too deep for any encoder)."""
    text = json.dumps({**body, **{name: f"@{name}@" for name in raw_fields}})
    for name, raw in raw_fields.items():
        text = text.replace(f'"@{name}@"', raw)
    return client.post(path, text.encode())


def assert_openai_400(answer: Answer, param: str | None) -> None:
    assert answer.status == 400, answer.body
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def assert_anthropic_400(answer: Answer, field: str) -> None:
    assert answer.status == 400, answer.body
    body = answer.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert field in body["error"]["message"]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"stream": True, "stream_options": "include_usage"}, "stream_options"),
        ({"stream": True, "stream_options": ["include_usage"]}, "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 123}]}]}, "messages[0].content[0].text"),
        ({"messages": [{"role": "user", "content": [5]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "assistant", "tool_calls": "call"}]}, "messages[0].tool_calls"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": "f"}]}]},
            "messages[0].tool_calls[0].function",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": {}}}]}
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"messages": [{"role": "user", "content": "hi", "name": 7}]}, "messages[0].name"),
        ({"max_tokens": 2**63}, "max_tokens"),
        ({"max_completion_tokens": 18446744073709551615}, "max_completion_tokens"),
        ({"max_tokens": 1e308}, "max_tokens"),
        ({"n": 2**62}, "n"),
        ({"temperature": 1e308}, "temperature"),
        ({"user": 5}, "user"),
        ({"prompt_cache_key": ["a"]}, "prompt_cache_key"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]},
            "tools[0].function.parameters",
        ),
        ({"tool_choice": {"type": "function", "function": "f"}}, "tool_choice.function"),
        ({"response_format": {"type": "json_schema", "json_schema": "s"}}, "response_format.json_schema"),
        ({"stop": [1]}, "stop"),
        ({"messages": [USER, "hello"]}, "messages[1]"),
    ],
)
def test_a_chat_field_of_the_wrong_type_or_size_is_a_400_naming_it(
    client: AsgiClient, change: dict[str, Any], param: str
) -> None:
    assert_openai_400(client.post("/v1/chat/completions", json.dumps({**CHAT, **change}).encode()), param)


@pytest.mark.parametrize("model", [None, 5, 1.5, True, [], {}, "", "no-such\x00model"])
def test_a_model_of_any_json_type_is_a_4xx_in_openai_shape(client: AsgiClient, model: Any) -> None:
    answer = client.post("/v1/chat/completions", json.dumps({**CHAT, "model": model}).encode())
    assert answer.status in (400, 404)
    assert answer.json()["error"]["param"] == "model"


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("messages", '[{"role": "user", "content": ' + nested(300) + "}]"),
        ("tools", nested(300, '{"type": "function", "function": {"name": "f"}}')),
        ("metadata", '{"a": ' + '{"a": ' * 299 + "1" + "}" * 300),
    ],
)
def test_chat_nesting_deeper_than_the_bound_is_a_400(client: AsgiClient, field: str, raw: str) -> None:
    body = {key: value for key, value in CHAT.items() if key != field}
    assert_openai_400(post_raw(client, "/v1/chat/completions", body, **{field: raw}), None)


def test_embedding_input_nested_300_deep_is_a_400(client: AsgiClient) -> None:
    answer = post_raw(client, "/v1/embeddings", {"model": EMBED["model"]}, input=nested(300))
    assert_openai_400(answer, None)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"input": [[1, 2], ["a"]]}, "input"),
        ({"input": [2**64 - 1]}, "input"),
        ({"dimensions": 2**40}, "dimensions"),
        ({"user": {}}, "user"),
    ],
)
def test_an_embeddings_field_of_the_wrong_type_or_size_is_a_400(
    client: AsgiClient, change: dict[str, Any], param: str
) -> None:
    assert_openai_400(client.post("/v1/embeddings", json.dumps({**EMBED, **change}).encode()), param)


def test_a_lone_surrogate_or_nan_in_the_body_is_a_400(client: AsgiClient) -> None:
    surrogate = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}'
    assert_openai_400(client.post("/v1/chat/completions", surrogate), None)
    assert_openai_400(client.post("/v1/chat/completions", b'{"model": "gpt-4o-mini", "temperature": NaN}'), None)


def test_nul_in_strings_is_served(client: AsgiClient) -> None:
    body = {**CHAT, "messages": [{"role": "user", "content": "a\x00b"}], "user": "u\x00"}
    assert client.post("/v1/chat/completions", json.dumps(body).encode()).status == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": 5}]}]}, "messages.0.content.0.source"),
        ({"system": [{"type": "text", "text": 1}]}, "system.0.text"),
        ({"metadata": "x"}, "metadata"),
        ({"messages": [{"role": "user", "content": []}]}, "messages.0.content"),
        ({"metadata": {"user_id": 5}}, "metadata.user_id"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": "abc"}, "temperature"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": -1}, "top_p"),
        ({"top_k": 0.5}, "top_k"),
        ({"max_tokens": 2**63}, "max_tokens"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 123}]}]}, "messages.0.content.0.text"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": 1}]}]}, "tool_use_id"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [3]}]}]},
            "messages.0.content.0.content.0",
        ),
        (
            {
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}
                ]
            },
            "messages.0.content.0.input",
        ),
        ({"tools": [{"name": "f", "input_schema": "x"}]}, "tools.0.input_schema"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"stop_sequences": "END"}, "stop_sequences"),
    ],
)
def test_a_messages_field_of_the_wrong_type_is_a_400_in_anthropic_shape(
    client: AsgiClient, change: dict[str, Any], field: str
) -> None:
    assert_anthropic_400(client.post("/v1/messages", json.dumps({**MESSAGES, **change}).encode()), field)


def test_messages_content_nested_300_deep_is_a_400_in_anthropic_shape(client: AsgiClient) -> None:
    body = {key: value for key, value in MESSAGES.items() if key != "messages"}
    raw = '[{"role": "user", "content": [{"type": "text", "text": "hi", "extra": ' + nested(300) + "}]}]"
    assert_anthropic_400(post_raw(client, "/v1/messages", body, messages=raw), "nest")


def test_unknown_fields_and_droppable_blocks_on_messages_are_accepted(client: AsgiClient) -> None:
    body = {
        **MESSAGES,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "citations": None}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}]},
            {"role": "user", "content": "go on"},
        ],
        "thinking": {"type": "disabled"},
        "service_tier": "auto",
        "metadata": {"user_id": "u-1"},
        "stream": False,
        "temperature": 0.5,
        "top_k": 5,
    }
    answer = client.post("/v1/messages", json.dumps(body).encode())
    assert answer.status == 200, answer.body
    assert answer.json()["type"] == "message"


@pytest.mark.parametrize("stream", [False, True])
def test_an_unexpected_failure_still_answers_in_each_protocols_shape(client: AsgiClient, stream: bool) -> None:
    # A simulator row an operator broke: the adapter raises a plain ValueError, a bug rather than bad input.
    simulator_settings(latency_ms="abc", ttft_ms="abc")
    chat = client.post("/v1/chat/completions", json.dumps({**CHAT, "stream": stream}).encode())
    assert chat.status == 500
    assert chat.json() == {
        "error": {
            "message": "The server had an error processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    messages = client.post("/v1/messages", json.dumps({**MESSAGES, "stream": stream}).encode())
    assert messages.status == 500
    assert messages.json()["type"] == "error"
    assert messages.json()["error"] == {
        "type": "api_error",
        "message": "The server had an error processing your request.",
    }
    assert messages.headers["request-id"] == messages.json()["request_id"]

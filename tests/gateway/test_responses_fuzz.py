"""Any body on ``/v1/responses``, through the real ASGI application: never a 5xx, every
error in OpenAI's shape, every 2xx a Response object or a typed event stream. And every
body the gateway accepts translates into a chat request the chat endpoint would accept,
and onwards for every upstream, or is refused as input.

The fuzzing machinery (mutated templates, odd JSON, the in-process client) is
test_v1_fuzz.py's."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import event, given, settings

from gateway import validation, validation_responses
from gateway.errors import GatewayError
from oneflow.lib.errors import InvalidInput
from providers.translate.anthropic import openai_to_anthropic_request
from providers.translate.gemini import openai_to_gemini_request
from providers.translate.responses import responses_request_to_openai
from tests.gateway.asgi_client import Answer, AsgiClient
from tests.gateway.test_v1_fuzz import FUZZ, accepted, assert_openai_error, bodies, client, encode

pytestmark = pytest.mark.fuzz
__all__ = ["client"]  # the in-process gateway fixture, shared with test_v1_fuzz

FUNCTION = {
    "type": "function",
    "name": "weather",
    "description": "d",
    "parameters": {"type": "object", "properties": {}},
    "strict": False,
}
RESPONSES: list[dict[str, Any]] = [
    {"model": "gpt-4o-mini", "input": "What is the weather in Paris?"},
    {
        "model": "gpt-4o-mini",
        "instructions": "Be brief.",
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Use metric."}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look"},
                    {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ],
        "tools": [
            FUNCTION,
            {"type": "namespace", "name": "ns", "description": "d", "tools": [{**FUNCTION, "name": "inner"}]},
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": {"type": "function", "name": "weather"},
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}, "strict": True}},
        "max_output_tokens": 16,
        "temperature": 0.5,
        "metadata": {"k": "v"},
        "prompt_cache_key": "session-1",
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "client_metadata": {"x": "y"},
    },
    {"model": "gpt-4o-mini", "input": "Hi", "stream": True, "max_output_tokens": 8},
]


def assert_responses_answer(answer: Answer) -> None:
    if answer.headers["content-type"].startswith("text/event-stream"):
        events = [json.loads(frame) for frame in answer.frames]
        assert events[0]["type"] == "response.created", answer.body
        assert events[-1]["type"] in ("response.completed", "response.incomplete"), answer.body
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        return
    body = answer.json()
    assert body["object"] == "response" and body["status"] in ("completed", "incomplete")
    assert body["output"] and body["output"][0]["type"] == "message"
    assert body["usage"]["input_tokens"] > 0


@FUZZ
@given(body=bodies(RESPONSES))
def test_responses_never_fail_on_any_body(client: AsgiClient, body: bytes) -> None:
    answer = client.post("/v1/responses", body)
    assert answer.status < 500, answer.body
    event(f"status {answer.status}")
    if answer.status >= 400:
        assert_openai_error(answer)
    else:
        assert_responses_answer(answer)


@pytest.mark.parametrize("body", RESPONSES)
def test_every_template_the_fuzzer_starts_from_is_served(client: AsgiClient, body: dict[str, Any]) -> None:
    answer = client.post("/v1/responses", encode(body).encode())
    assert answer.status == 200, answer.body
    assert_responses_answer(answer)


@settings(FUZZ, max_examples=400)
@given(raw=bodies(RESPONSES))
def test_an_accepted_body_translates_to_a_valid_chat_request_or_is_refused_as_input(raw: bytes) -> None:
    body = accepted(raw, validation_responses.responses_request)
    if body is None:
        return
    try:
        chat = responses_request_to_openai(body).body
    except InvalidInput:
        return  # a 400 naming what Chat Completions cannot carry
    try:
        validation.chat_request(copy.deepcopy(chat))
    except GatewayError as error:
        pytest.fail(f"the translation is no valid chat request ({error.message}): {chat}")
    for translate in (
        lambda: openai_to_anthropic_request(copy.deepcopy(chat), upstream_model="claude"),
        lambda: openai_to_gemini_request(copy.deepcopy(chat)),
    ):
        with contextlib.suppress(InvalidInput):
            orjson.dumps(translate())

"""Any body on any /v1 endpoint, through the real ASGI application: never a 5xx,
every error in the protocol's own shape (OpenAI's object on the OpenAI
endpoints, Anthropic's on /v1/messages), and every 2xx a valid answer.

Bodies are valid requests with fields replaced by every JSON type, nesting up to
thousands of levels, numbers past 64 bits and past doubles, NUL and lone
surrogates (sent as the ``\\ud800`` escapes a client's JSON encoder writes).
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway import validation, validation_anthropic
from gateway.errors import GatewayError
from oneflow.lib.errors import InvalidInput
from providers import tokens
from providers.translate.anthropic import anthropic_request_to_openai, openai_to_anthropic_request
from providers.translate.gemini import openai_to_gemini_request
from tests.gateway.asgi_client import Answer, AsgiClient, tenant_key

FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Raw:
    """JSON text sent as is: nesting no encoder writes, and tokens a strict parser refuses."""

    text: str


def deep(depth: int, kind: str) -> Raw:
    if kind == "[":
        return Raw("[" * depth + '"x"' + "]" * depth)
    return Raw('{"content": ' * depth + "1" + "}" * depth)


STRINGS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "\udfff", "x\udc00y", "<|endoftext|>", "user", "text", "image"]),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64 - 1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, 0.5, 2.5]),
)
ODD_TOKENS = st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-1e400"), Raw("1e999"), Raw('"\\udc00\\ud800"')])
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, STRINGS)
# Around each bound: ours (100), orjson's output (255) and parser (1024) limits, and far past them.
DEPTHS = st.one_of(st.sampled_from([99, 100, 101, 254, 255, 256, 300, 1023, 1024, 1025]), st.integers(1, 3000))
DEEP = st.builds(deep, DEPTHS, st.sampled_from("[{"))
TREES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(STRINGS, children, max_size=3),
    max_leaves=8,
)
VALUES = st.one_of(TREES, TREES, TREES, TREES, TREES, DEEP, ODD_TOKENS)

# A value of the same JSON type: the request stays well formed more often and reaches further.
ALIKE: dict[type, st.SearchStrategy[Any]] = {
    str: STRINGS,
    int: NUMBERS,
    float: NUMBERS,
    bool: st.booleans(),
    list: st.lists(TREES, max_size=2),
}


def encode(value: Any) -> str:
    """JSON as a client's encoder writes it (ASCII, surrogates escaped), with Raw text spliced in."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(key)}:{encode(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(item) for item in value) + "]"
    return json.dumps(value)


def slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) of a request, nested ones included."""
    found: list[tuple[Any, Any]] = []
    keys = value.keys() if isinstance(value, dict) else range(len(value)) if isinstance(value, list) else []
    for key in keys:
        found.append((value, key))
        found += slots(value[key])
    return found


@st.composite
def mutated(draw: st.DrawFn, templates: list[dict[str, Any]]) -> Any:
    """A valid request with one to three of its fields (at any depth) replaced, removed or added."""
    body = copy.deepcopy(draw(st.sampled_from(templates)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        container, key = draw(st.sampled_from(slots(body)))
        action = draw(st.sampled_from(["alike", "alike", "replace", "replace", "remove", "add"]))
        if action == "alike" and type(container[key]) in ALIKE:
            container[key] = draw(ALIKE[type(container[key])])
        elif action == "add" and isinstance(container[key], dict):
            container[key][draw(STRINGS)] = draw(VALUES)
        elif action == "remove" and isinstance(container, dict):
            del container[key]
        else:
            container[key] = draw(VALUES)
        if not slots(body):
            break
    return body


def bodies(templates: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Mostly near-valid requests, which reach deepest; sometimes any JSON at all, or not JSON."""
    valid = st.sampled_from(templates)
    requests = st.one_of(mutated(templates), mutated(templates), mutated(templates), valid)
    return st.one_of(
        requests.map(lambda body: encode(body).encode()),
        requests.map(lambda body: encode(body).encode()),
        VALUES.map(lambda value: encode(value).encode()),
        st.binary(max_size=40),
    )


USER = {"role": "user", "content": "What is the weather in Paris?"}
TOOL = {
    "type": "function",
    "function": {"name": "weather", "description": "d", "parameters": {"type": "object", "properties": {}}},
}
CHATS: list[dict[str, Any]] = [
    {"model": "gpt-4o-mini", "messages": [USER]},
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "max_tokens": 16,
        "n": 2,
        "temperature": 0.5,
        "stop": ["END"],
        "user": "u-1",
        "metadata": {"k": "v"},
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
    },
    {
        "model": "gpt-4o-mini",
        "messages": [USER],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 8,
    },
]
EMBEDDINGS: list[dict[str, Any]] = [
    {"model": "text-embedding-3-small", "input": "Hello"},
    {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 8, "encoding_format": "base64"},
    {"model": "text-embedding-3-small", "input": [[1, 2, 3], [4]], "user": "u-1"},
]
MESSAGES: list[dict[str, Any]] = [
    {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [USER]},
    {
        "model": "gpt-4o-mini",
        "max_tokens": 16,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
        ],
        "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u-1"},
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 5,
        "stop_sequences": ["END"],
    },
    {"model": "gpt-4o-mini", "max_tokens": 8, "messages": [USER], "stream": True},
]


@pytest.fixture
def client(transactional_db: None) -> Iterator[AsgiClient]:
    client = AsgiClient(tenant_key())
    yield client
    client.close()


def assert_openai_error(answer: Answer) -> None:
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, answer.body
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)


def assert_anthropic_error(answer: Answer) -> None:
    body = answer.json()
    assert body["type"] == "error", answer.body
    assert isinstance(body["error"]["type"], str)
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def assert_chat_answer(answer: Answer) -> None:
    if answer.headers["content-type"].startswith("text/event-stream"):
        frames = answer.frames
        assert frames[-1] == "[DONE]", answer.body
        assert all(json.loads(frame)["object"] == "chat.completion.chunk" for frame in frames[:-1])
        return
    body = answer.json()
    assert body["object"] == "chat.completion"
    assert body["choices"] and all(isinstance(c["message"]["content"], str) for c in body["choices"])
    assert body["usage"]["prompt_tokens"] > 0


def assert_messages_answer(answer: Answer) -> None:
    if answer.headers["content-type"].startswith("text/event-stream"):
        events = [json.loads(frame)["type"] for frame in answer.frames]
        assert events[0] == "message_start" and events[-1] == "message_stop", answer.body
        return
    body = answer.json()
    assert body["type"] == "message"
    assert body["content"][0]["type"] == "text"
    assert body["usage"]["input_tokens"] > 0


@FUZZ
@given(body=bodies(CHATS))
def test_chat_completions_never_fail_on_any_body(client: AsgiClient, body: bytes) -> None:
    answer = client.post("/v1/chat/completions", body)
    assert answer.status < 500, answer.body
    event(f"status {answer.status}")
    if answer.status >= 400:
        assert_openai_error(answer)
    else:
        assert_chat_answer(answer)


@FUZZ
@given(body=bodies(EMBEDDINGS))
def test_embeddings_never_fail_on_any_body(client: AsgiClient, body: bytes) -> None:
    answer = client.post("/v1/embeddings", body)
    assert answer.status < 500, answer.body
    event(f"status {answer.status}")
    if answer.status >= 400:
        assert_openai_error(answer)
    else:
        data = answer.json()["data"]
        assert data and all(isinstance(item["embedding"], list | str) for item in data)


@FUZZ
@given(body=bodies(MESSAGES))
def test_messages_never_fail_on_any_body(client: AsgiClient, body: bytes) -> None:
    answer = client.post("/v1/messages", body, headers={"anthropic-version": "2023-06-01"})
    assert answer.status < 500, answer.body
    event(f"status {answer.status}")
    if answer.status >= 400:
        assert_anthropic_error(answer)
    else:
        assert_messages_answer(answer)


@settings(FUZZ, max_examples=100)
@given(model=STRINGS.filter(lambda text: not any("\ud800" <= char <= "\udfff" for char in text)), body=st.binary())
def test_models_and_unknown_routes_answer_in_their_protocol_shape(client: AsgiClient, model: str, body: bytes) -> None:
    listed = client.get("/v1/models")
    assert listed.status == 200
    assert {"gpt-4o-mini", "text-embedding-3-small"} <= {m["id"] for m in listed.json()["data"]}
    one = client.get(f"/v1/models/{model}")
    assert one.status in (200, 404)
    if one.status == 404:
        assert_openai_error(one)
    else:
        assert one.json()["id"] == model
    # Any body a token count may get: an answer or a 4xx, in Anthropic's shape.
    count = client.post("/v1/messages/count_tokens", body)
    assert count.status == 200 or 400 <= count.status < 500, count.body
    if count.status != 200:
        assert_anthropic_error(count)
    # A path OneFlow does not serve: 404 in the shape of the protocol the client speaks.
    elsewhere = client.post("/v1/messages/batches", body, headers={"anthropic-version": "2023-06-01"})
    assert elsewhere.status == 404
    assert_anthropic_error(elsewhere)
    assert_openai_error(client.post(f"/v1/models/{model}", body))


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", body) for body in CHATS]
    + [("/v1/embeddings", body) for body in EMBEDDINGS]
    + [("/v1/messages", body) for body in MESSAGES],
)
def test_every_template_the_fuzzer_starts_from_is_served(client: AsgiClient, path: str, body: dict[str, Any]) -> None:
    answer = client.post(path, encode(body).encode())
    assert answer.status == 200, answer.body
    if path == "/v1/messages":
        assert_messages_answer(answer)
    elif path == "/v1/chat/completions":
        assert_chat_answer(answer)


def accepted(raw: bytes, check: Any) -> dict[str, Any] | None:
    """The body as the gateway would pass it on, or None where it answers 400."""
    try:
        return check(validation.bounded_depth(orjson.loads(raw)))
    except (orjson.JSONDecodeError, GatewayError):
        return None


@settings(FUZZ, max_examples=400)
@given(raw=bodies(CHATS))
def test_an_accepted_chat_body_translates_for_every_upstream_or_is_refused_as_input(raw: bytes) -> None:
    body = accepted(raw, validation.chat_request)
    if body is None:
        return
    for translate in (
        lambda: openai_to_anthropic_request(copy.deepcopy(body), upstream_model="claude"),
        lambda: openai_to_gemini_request(copy.deepcopy(body)),
    ):
        # InvalidInput is a 400 naming what the provider cannot take; anything else is a bug.
        with contextlib.suppress(InvalidInput):
            orjson.dumps(translate())  # what the adapter sends upstream
    orjson.dumps(body)
    assert tokens.count_chat_prompt(body, model="gpt-4o-mini") > 0


@settings(FUZZ, max_examples=400)
@given(raw=bodies(MESSAGES))
def test_an_accepted_messages_body_becomes_an_accepted_chat_body(raw: bytes) -> None:
    body = accepted(raw, validation_anthropic.messages_request)
    if body is None:
        return
    try:
        internal = anthropic_request_to_openai(body)
    except InvalidInput:
        return
    assert validation.chat_request(internal) is internal

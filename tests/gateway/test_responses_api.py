"""``POST /v1/responses`` through a live OneFlow, translated for deployments that speak
Chat Completions (an OpenAI-compatible server), Anthropic or Gemini: the Response object,
the typed event stream in OpenAI's order, a function-call turn, JSON schema output, the
400s of what OneFlow does not keep or cannot carry, and the usage and cost the ledger
charges."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from billing.models import LedgerEntry
from providers.models import Provider
from tests import http
from tests.fakes import DEFAULT_REPLY, JSON_REPLY, Behave, FakeUpstream
from tests.gateway import test_adapters as adapters
from tests.gateway.conftest import Gateway

# The kinds that get a Responses request translated; OpenAI itself relays it (test_responses_relay.py).
TRANSLATING = (Provider.Kind.OPENAI_COMPATIBLE, Provider.Kind.ANTHROPIC, Provider.Kind.GEMINI)
KINDS: dict[str, Any] = {kind: adapters.KINDS[kind] for kind in TRANSLATING}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
SCHEMA = {
    "type": "json_schema",
    "name": "answer",
    "schema": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
    "strict": True,
}


def deploy(upstream: FakeUpstream, kind: str = Provider.Kind.OPENAI_COMPATIBLE) -> None:
    """The public model "smart" on one deployment of ``kind`` at the fake upstream."""
    adapters.route(upstream, kind)


def post(gateway: Gateway, body: dict[str, Any]) -> http.Reply:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {gateway.key.raw}"}
    return http.call(gateway.server.url, "POST", "/v1/responses", body=json.dumps(body).encode(), headers=headers)


def events_of(reply: http.Reply) -> list[dict[str, Any]]:
    """The stream's events; each one's ``event:`` line names its type, as OpenAI's do."""
    assert reply.headers["content-type"].startswith("text/event-stream")
    found = []
    for block in reply.body.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = block.split("\n", 1)
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        found.append(event)
    assert [event["sequence_number"] for event in found] == list(range(len(found)))
    return found


def output_text(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_response_through_a_deployment_that_speaks_no_responses(
    gateway: Gateway, upstream: FakeUpstream, kind: str
) -> None:
    deploy(upstream, kind)
    _, _, fake, path = KINDS[kind]

    reply = post(
        gateway, {"model": "smart", "instructions": "Be brief.", "input": "Say hello", "max_output_tokens": 64}
    )

    assert reply.status == 200, reply.body
    response = reply.json()
    [sent] = upstream.requests
    assert path in sent.path
    assert response["id"] == "resp_" + reply.headers["x-request-id"].removeprefix("req_")
    assert (response["object"], response["status"], response["model"]) == ("response", "completed", "smart")
    assert output_text(response) == DEFAULT_REPLY
    assert response["usage"]["input_tokens"] == fake.expected_prompt_tokens(sent.json)
    assert response["usage"]["output_tokens"] == fake.expected_completion_tokens(DEFAULT_REPLY)
    [event] = gateway.events()
    assert (event.endpoint, event.stream, event.status_code, event.usage_source) == (
        "responses",
        False,
        200,
        "reported",
    )
    assert (event.prompt_tokens, event.completion_tokens) == (
        response["usage"]["input_tokens"],
        response["usage"]["output_tokens"],
    )
    assert Decimal(reply.headers["x-oneflow-cost"]) == event.cost > 0


def test_the_chat_request_carries_what_the_responses_request_asked(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream)

    reply = post(
        gateway,
        {
            "model": "smart",
            "instructions": "Be brief.",
            "input": [
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Use metric."}]},
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            ],
            "max_output_tokens": 64,
            "temperature": 0.5,
            "prompt_cache_key": "session-1",
            "store": False,
            "include": ["reasoning.encrypted_content"],
            "tools": [WEATHER, {"type": "web_search"}],
            "tool_choice": "auto",
            "parallel_tool_calls": False,
        },
    )

    assert reply.status == 200, reply.body
    sent = upstream.requests[0].json
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
    ]
    assert (sent["max_completion_tokens"], sent["temperature"], sent["prompt_cache_key"]) == (64, 0.5, "session-1")
    assert [tool["function"]["name"] for tool in sent["tools"]] == ["get_weather"]
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("auto", False)
    assert not {"input", "include", "store", "instructions", "max_output_tokens"} & set(sent)
    assert reply.json()["tools"] == [WEATHER, {"type": "web_search"}], "the request's tools are echoed as sent"


def test_a_stream_sends_the_typed_events_in_order_and_its_last_carries_the_billed_cost(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    deploy(upstream)

    reply = post(gateway, {"model": "smart", "input": "Say hello", "stream": True})

    assert reply.status == 200
    events = events_of(reply)
    kinds = [event["type"] for event in events]
    deltas = kinds.count("response.output_text.delta")
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert deltas == len(DEFAULT_REPLY.split())
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == DEFAULT_REPLY
    completed = events[-1]["response"]
    assert completed["id"] == events[0]["response"]["id"]
    assert output_text(completed) == DEFAULT_REPLY
    [event] = gateway.events()
    assert (event.endpoint, event.stream, event.usage_source) == ("responses", True, "reported")
    usage = completed["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (event.prompt_tokens, event.completion_tokens)
    assert Decimal(usage["cost"]) == event.cost > 0
    [charge] = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE)
    assert -charge.amount == event.cost


def test_a_stream_through_anthropic_keeps_the_same_order(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream, Provider.Kind.ANTHROPIC)

    events = events_of(post(gateway, {"model": "smart", "input": "Say hello", "stream": True}))

    kinds = [event["type"] for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert output_text(events[-1]["response"]) == DEFAULT_REPLY


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_call_turn_and_its_output(gateway: Gateway, upstream: FakeUpstream, stream: bool) -> None:
    deploy(upstream)
    upstream.script(Behave(tool_call={"name": "get_weather", "arguments": {"city": "Paris"}}))
    question = {"role": "user", "content": "Weather in Paris?"}

    first = post(gateway, {"model": "smart", "input": [question], "tools": [WEATHER], "stream": stream})

    response = events_of(first)[-1]["response"] if stream else first.json()
    [call] = response["output"]
    assert (call["type"], call["name"], call["status"]) == ("function_call", "get_weather", "completed")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    sent_call = upstream.requests[0].json
    assert sent_call["tools"][0]["function"]["name"] == "get_weather"

    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny, 21 C"}
    second = post(gateway, {"model": "smart", "input": [question, call, output], "tools": [WEATHER], "stream": stream})

    answer = events_of(second)[-1]["response"] if stream else second.json()
    assert output_text(answer) == DEFAULT_REPLY
    messages = upstream.requests[1].json["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call["call_id"],
                "type": "function",
                "function": {"name": "get_weather", "arguments": call["arguments"]},
            }
        ],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": call["call_id"], "content": "Sunny, 21 C"}


def test_json_schema_output(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream)

    reply = post(gateway, {"model": "smart", "input": "Answer in JSON", "text": {"format": SCHEMA}})

    assert reply.status == 200, reply.body
    assert json.loads(output_text(reply.json())) == json.loads(JSON_REPLY)
    assert upstream.requests[0].json["response_format"] == {
        "type": "json_schema",
        "json_schema": {key: SCHEMA[key] for key in ("name", "schema", "strict")},
    }
    assert reply.json()["text"]["format"] == SCHEMA


def test_a_cut_answer_is_incomplete(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream)

    response = post(gateway, {"model": "smart", "input": "Say hello", "max_output_tokens": 2}).json()

    assert (response["status"], response["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
    assert output_text(response) == " ".join(DEFAULT_REPLY.split()[:2])


def test_a_stream_that_fails_mid_way_ends_with_response_failed_and_is_billed(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    deploy(upstream)
    upstream.script(Behave(stream_error=True))

    events = events_of(post(gateway, {"model": "smart", "input": "Say hello", "stream": True}))

    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["code"] == "server_error"
    [event] = gateway.events()
    assert event.status_code >= 500
    assert Decimal(events[-1]["response"]["usage"]["cost"]) == event.cost > 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "Hi", "store": True}, "store"),
        ({"input": "Hi", "previous_response_id": "resp_123"}, "previous_response_id"),
        ({"input": "Hi", "conversation": "conv_1"}, "conversation"),
        ({"input": "Hi", "background": True}, "background"),
    ],
)
def test_what_needs_a_stored_response_is_refused_saying_so(
    gateway: Gateway, upstream: FakeUpstream, body: dict[str, Any], param: str
) -> None:
    deploy(upstream)

    reply = post(gateway, {"model": "smart", **body})

    assert reply.status == 400
    error = reply.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, "unsupported_parameter")
    assert "does not store responses" in error["message"] or "keeps none" in error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": 3}, "input"),
        ({"input": ["hi"]}, "input[0]"),
        ({"input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "Hi", "max_output_tokens": 10**9}, "max_output_tokens"),
        ({"input": "Hi", "stream": "yes"}, "stream"),
        ({"input": "Hi", "tools": {"type": "function"}}, "tools"),
        ({"input": "Hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"input": "Hi", "temperature": 3}, "temperature"),
        ({"input": "Hi", "metadata": {"k": 1}}, "metadata.k"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": "Hi", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}, "tool_choice.type"),
    ],
)
def test_bad_input_is_a_400_in_openais_shape(
    gateway: Gateway, upstream: FakeUpstream, body: dict[str, Any], param: str
) -> None:
    deploy(upstream)

    reply = post(gateway, {"model": "smart", **body})

    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert upstream.requests == []


def test_an_unknown_model_is_a_404_and_a_missing_one_a_400(gateway: Gateway) -> None:
    unknown = post(gateway, {"model": "gpt-nope", "input": "Hi"})
    assert unknown.status == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    missing = post(gateway, {"input": "Hi"})
    assert missing.status == 400
    assert missing.json()["error"]["param"] == "model"

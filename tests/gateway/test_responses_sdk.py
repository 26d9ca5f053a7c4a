"""The official openai SDK's Responses API, unmodified, against a live OneFlow: ``create``,
``stream``, function tools and JSON schema output (``parse``), through the simulator and
through a fake Chat Completions upstream. And the fake Responses upstream itself, read by
the same SDK, so that the pass-through tests stand on a fake that speaks the real thing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from providers.models import Provider
from tests.conftest import UPSTREAM_KEY
from tests.fakes import DEFAULT_REPLY, Behave, FakeUpstream
from tests.gateway.conftest import Gateway
from tests.gateway.test_responses_api import WEATHER, deploy

pytestmark = pytest.mark.clients

QUESTION: Any = [{"role": "user", "content": "Weather in Paris?"}]


class Answer(BaseModel):
    answer: str


def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)


def test_create(gateway: Gateway) -> None:
    raw = client(gateway).responses.with_raw_response.create(
        model="gpt-4o-mini", instructions="Be brief.", input="Hello there, gateway!"
    )
    response = raw.parse()

    assert response.object == "response" and response.status == "completed"
    assert response.model == "gpt-4o-mini"
    assert response.output_text
    assert response.usage is not None and response.usage.input_tokens > 0
    assert response._request_id == raw.headers["x-request-id"]
    [event] = gateway.events()
    assert (event.endpoint, event.prompt_tokens, event.completion_tokens) == (
        "responses",
        response.usage.input_tokens,
        response.usage.output_tokens,
    )
    assert Decimal(raw.headers["x-oneflow-cost"]) == event.cost


def test_stream(gateway: Gateway) -> None:
    sdk = client(gateway)
    expected = sdk.responses.create(model="gpt-4o-mini", input="Hello there, gateway!")

    with sdk.responses.stream(model="gpt-4o-mini", input="Hello there, gateway!") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()

    assert "".join(deltas) == expected.output_text == final.output_text
    assert final.status == "completed"
    usage: Any = final.usage
    events = gateway.events()
    assert events[-1].stream is True
    assert Decimal(usage.model_extra["cost"]) == events[-1].cost > 0


def test_create_with_stream_true_yields_the_typed_events(gateway: Gateway) -> None:
    events = list(client(gateway).responses.create(model="gpt-4o-mini", input="Hello", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))


@pytest.mark.parametrize("kind", [Provider.Kind.OPENAI_COMPATIBLE, Provider.Kind.ANTHROPIC])
def test_function_tools_a_whole_turn(gateway: Gateway, upstream: FakeUpstream, kind: str) -> None:
    deploy(upstream, kind)
    upstream.script(Behave(tool_call={"name": "get_weather", "arguments": {"city": "Paris"}}))
    sdk = client(gateway)

    first = sdk.responses.create(model="smart", input=QUESTION, tools=[WEATHER])  # type: ignore[list-item]
    [call] = first.output
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})

    output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"}
    second = sdk.responses.create(
        model="smart",
        input=[*QUESTION, call.model_dump(exclude_none=True), output],  # type: ignore[list-item]
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.output_text == DEFAULT_REPLY


def test_function_tools_streamed(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream)
    upstream.script(Behave(tool_call={"name": "get_weather", "arguments": {"city": "Paris"}}))

    with client(gateway).responses.stream(model="smart", input=QUESTION, tools=[WEATHER]) as stream:  # type: ignore[list-item]
        kinds = [event.type for event in stream]
        final = stream.get_final_response()

    assert "response.function_call_arguments.delta" in kinds
    [call] = final.output
    assert call.type == "function_call"
    assert call.parsed_arguments == {"city": "Paris"}  # strict tools are parsed by the SDK


def test_json_schema_output_is_parsed(gateway: Gateway, upstream: FakeUpstream) -> None:
    deploy(upstream)
    sdk = client(gateway)

    parsed = sdk.responses.parse(model="smart", input="Answer in JSON", text_format=Answer)
    assert parsed.output_parsed == Answer(answer="fake")
    sent = upstream.requests[0].json["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True

    with sdk.responses.stream(model="smart", input="Answer in JSON", text_format=Answer) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == Answer(answer="fake")


def test_stored_responses_are_refused_with_a_bad_request(gateway: Gateway) -> None:
    sdk = client(gateway)
    with pytest.raises(openai.BadRequestError) as stored:
        sdk.responses.create(model="gpt-4o-mini", input="Hi", store=True)
    assert stored.value.param == "store"
    with pytest.raises(openai.BadRequestError) as chained:
        sdk.responses.create(model="gpt-4o-mini", input="Hi", previous_response_id="resp_1")
    assert chained.value.param == "previous_response_id"
    assert gateway.events() == [] or all(event.status_code == 400 for event in gateway.events())


# --- the fake Responses upstream, read by the SDK ---------------------------------------------


@pytest.fixture
def fake() -> Iterator[openai.OpenAI]:
    with FakeUpstream(api_key=UPSTREAM_KEY) as up:
        sdk = openai.OpenAI(base_url=up.url + "/v1", api_key=UPSTREAM_KEY, max_retries=0)
        sdk.fake = up  # type: ignore[attr-defined]
        yield sdk


def test_the_fake_responses_upstream_answers_like_openai(fake: openai.OpenAI) -> None:
    up: FakeUpstream = fake.fake  # type: ignore[attr-defined]
    up.script(Behave(cached_tokens=2, reasoning_tokens=3))

    response = fake.responses.create(model="gpt-4o-mini", input="Say hello")

    assert response.output_text == DEFAULT_REPLY
    assert [item.type for item in response.output] == ["reasoning", "message"]
    usage: Any = response.usage
    assert usage.input_tokens_details.cached_tokens == 2
    assert usage.output_tokens_details.reasoning_tokens == 3


def test_the_fake_responses_upstream_streams_like_openai(fake: openai.OpenAI) -> None:
    up: FakeUpstream = fake.fake  # type: ignore[attr-defined]
    up.script(Behave(reasoning_tokens=1), Behave(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}}))

    with fake.responses.stream(model="gpt-4o-mini", input="Say hello") as stream:
        text = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(text) == final.output_text == DEFAULT_REPLY

    with fake.responses.stream(model="gpt-4o-mini", input=QUESTION, tools=[WEATHER]) as stream:  # type: ignore[list-item]
        final = stream.get_final_response()
    [call] = final.output
    assert call.type == "function_call" and call.parsed_arguments == {"city": "Oslo"}
    assert up.requests[-1].json["stream"] is True

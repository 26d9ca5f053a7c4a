"""Every real adapter, against a fake upstream that speaks its provider's wire
protocol, driven by the official openai SDK through a live OneFlow."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import openai
import pytest
from django.test import override_settings

from billing.models import Price
from providers.models import Deployment, Provider, PublicModel
from tests.conftest import UPSTREAM_KEY
from tests.factories import CredentialFactory, DeploymentFactory, ProviderFactory
from tests.fakes import DEFAULT_REPLY, JSON_REPLY, Behave, FakeUpstream, anthropic_api, gemini_api, openai_api
from tests.gateway.conftest import Gateway

MESSAGES: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to the gateway"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

# kind -> (base URL suffix, upstream model, expected-token module, path fragment the fake sees)
KINDS: dict[str, Any] = {
    Provider.Kind.OPENAI: ("/v1", "gpt-4o-mini", openai_api, "/v1/chat/completions"),
    Provider.Kind.OPENAI_COMPATIBLE: ("/v1", "llama-3", openai_api, "/v1/chat/completions"),
    Provider.Kind.AZURE_OPENAI: ("", "my-gpt4o-deployment", openai_api, "/openai/deployments/my-gpt4o-deployment/"),
    Provider.Kind.ANTHROPIC: ("", "claude-sonnet-4", anthropic_api, "/v1/messages"),
    Provider.Kind.GEMINI: ("", "gemini-2.5-flash", gemini_api, "/v1beta/models/gemini-2.5-flash:"),
}


DEFAULT_RATES = {"input_per_1m": Decimal(1), "cached_input_per_1m": Decimal("0.5"), "output_per_1m": Decimal(2)}


def route(
    upstream: FakeUpstream,
    kind: str,
    *,
    name: str = "smart",
    rates: dict[str, Decimal] | None = None,
    priority: int = 1,
    provider_name: str | None = None,
    **provider: Any,
) -> Deployment:
    """Points the public model ``name`` at the fake upstream, as an operator would in the admin:
    a provider of ``kind`` (its fields in ``provider``), a credential, a price (``rates``, USD per
    1M tokens, when the model has none yet) and a deployment."""
    suffix, upstream_model, _, _ = KINDS[kind]
    owner = ProviderFactory.create(
        **{
            "name": provider_name or f"fake-{kind}",
            "kind": kind,
            "base_url": upstream.url + suffix,
            "api_version": "2024-10-21" if "azure" in kind else "",
            **provider,
        }
    )
    credential = CredentialFactory.create(provider=owner, secret=UPSTREAM_KEY)
    model, _ = PublicModel.objects.get_or_create(name=name)
    Price.objects.get_or_create(
        public_model=name, effective_from=datetime(2020, 1, 1, tzinfo=UTC), defaults=rates or DEFAULT_RATES
    )
    return DeploymentFactory.create(
        public_model=model, provider=owner, credential=credential, upstream_model=upstream_model, priority=priority
    )


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_chat_completion_through_each_adapter(gateway: Gateway, upstream: FakeUpstream, kind: str) -> None:
    route(upstream, kind)
    _, _, expected, path = KINDS[kind]

    completion = sdk(gateway).chat.completions.create(model="smart", messages=MESSAGES)

    [sent] = upstream.requests
    assert path in sent.path
    assert UPSTREAM_KEY in " ".join(sent.headers.values())
    assert gateway.key.raw not in json.dumps(sent.headers)
    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert completion.model == "smart"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == expected.expected_prompt_tokens(sent.json)
    assert completion.usage.completion_tokens == expected.expected_completion_tokens(DEFAULT_REPLY)
    [event] = gateway.events()
    assert (event.prompt_tokens, event.completion_tokens, event.usage_source) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        "reported",
    )
    assert event.provider == f"fake-{kind}"


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_stream_with_usage_through_each_adapter(gateway: Gateway, upstream: FakeUpstream, kind: str) -> None:
    route(upstream, kind)
    _, _, expected, _ = KINDS[kind]

    chunks = list(
        sdk(gateway).chat.completions.create(
            model="smart", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_REPLY
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens == expected.expected_prompt_tokens(upstream.requests[0].json)
    assert usage.completion_tokens == expected.expected_completion_tokens(DEFAULT_REPLY)
    [event] = gateway.events()
    assert (event.stream, event.usage_source, event.completion_tokens) == (True, "reported", usage.completion_tokens)


@pytest.mark.parametrize("kind", list(KINDS))
def test_tool_calls_through_each_adapter(gateway: Gateway, upstream: FakeUpstream, kind: str) -> None:
    route(upstream, kind)
    upstream.script(Behave(tool_call={"name": "get_weather", "arguments": {"city": "Paris"}}))
    upstream.script(Behave(tool_call={"name": "get_weather", "arguments": {"city": "Oslo"}}))
    client = sdk(gateway)

    completion = client.chat.completions.create(model="smart", messages=MESSAGES, tools=[WEATHER_TOOL])
    [call] = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert completion.choices[0].finish_reason == "tool_calls"

    chunks = list(client.chat.completions.create(model="smart", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Oslo"}  # type: ignore[union-attr]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("kind", [Provider.Kind.OPENAI, Provider.Kind.GEMINI, Provider.Kind.ANTHROPIC])
def test_json_mode(gateway: Gateway, upstream: FakeUpstream, kind: str) -> None:
    route(upstream, kind)
    if kind == Provider.Kind.ANTHROPIC:
        upstream.script(Behave(tool_call={"name": "json_tool_call", "arguments": {"answer": "fake"}}))
    completion = sdk(gateway).chat.completions.create(
        model="smart", messages=MESSAGES, response_format={"type": "json_object"}
    )
    assert json.loads(completion.choices[0].message.content or "") == json.loads(JSON_REPLY)


def test_an_upstream_that_reports_no_usage_is_estimated_and_marked(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, Provider.Kind.OPENAI)
    upstream.script(Behave(no_usage=True), Behave(no_usage=True))
    client = sdk(gateway)

    completion = client.chat.completions.create(model="smart", messages=MESSAGES)
    chunks = list(
        client.chat.completions.create(
            model="smart", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    events = gateway.events()
    assert [e.usage_source for e in events] == ["estimated", "estimated"]
    assert all(e.prompt_tokens > 0 and e.completion_tokens > 0 for e in events)
    assert upstream.requests[1].json["stream_options"] == {"include_usage": True}
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_the_gateway_always_asks_for_stream_usage_and_hides_it_when_not_asked(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    route(upstream, Provider.Kind.OPENAI)
    chunks = list(sdk(gateway).chat.completions.create(model="smart", messages=MESSAGES, stream=True))
    assert upstream.requests[0].json["stream_options"] == {"include_usage": True}
    assert all(c.usage is None and c.choices for c in chunks)
    [event] = gateway.events()
    assert event.usage_source == "reported"


def test_embeddings_through_openai(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, Provider.Kind.OPENAI, name="embed")
    PublicModel.objects.filter(name="embed").update(kind=PublicModel.Kind.EMBEDDING)
    result = sdk(gateway).embeddings.create(model="embed", input=["alpha beta", "gamma"], dimensions=8)
    assert [d.embedding for d in result.data] == [
        pytest.approx(openai_api.expected_embedding("alpha beta", 8)),
        pytest.approx(openai_api.expected_embedding("gamma", 8)),
    ]
    assert upstream.requests[0].json["encoding_format"] == "base64"
    [event] = gateway.events()
    assert event.prompt_tokens == 3


@pytest.mark.parametrize(
    ("behave", "exception", "status"),
    [
        (Behave(status=400, message="This model's maximum context length is 10 tokens."), openai.BadRequestError, 400),
        (Behave(status=401), openai.InternalServerError, 502),
        (Behave(status=429, headers={"retry-after": "7"}), openai.RateLimitError, 429),
        (Behave(status=500), openai.InternalServerError, 502),
        (Behave(malformed=True), openai.InternalServerError, 502),
        (Behave(reset=True), openai.InternalServerError, 502),
    ],
)
@override_settings(UPSTREAM_MAX_ATTEMPTS=1)  # the mapping of one failure; retries are tested in test_faults
def test_upstream_errors_map_to_the_right_status(
    gateway: Gateway, upstream: FakeUpstream, behave: Behave, exception: type[Exception], status: int
) -> None:
    route(upstream, Provider.Kind.OPENAI)
    upstream.script(behave)
    with pytest.raises(exception) as caught:
        sdk(gateway).chat.completions.create(model="smart", messages=MESSAGES)
    error: Any = caught.value
    assert error.status_code == status
    assert UPSTREAM_KEY not in str(error.body)
    if status == 400:
        assert "maximum context length" in error.message
    if status == 429:
        assert error.response.headers["retry-after"] == "7"
    [event] = gateway.events()
    assert event.status_code == status


def test_a_stream_cut_after_the_first_token_ends_with_an_error_event(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, Provider.Kind.OPENAI)
    upstream.script(Behave(cut_after=2))
    stream = sdk(gateway).chat.completions.create(model="smart", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "Hello from"
    [event] = gateway.events()
    assert (event.status_code, event.usage_source) == (502, "estimated")
    assert event.completion_tokens > 0


def test_a_failed_deployment_falls_back_to_the_next(gateway: Gateway, upstream: FakeUpstream) -> None:
    route(upstream, Provider.Kind.OPENAI)
    route(upstream, Provider.Kind.ANTHROPIC)
    Deployment.objects.filter(provider__kind=Provider.Kind.ANTHROPIC).update(priority=2)
    upstream.script(Behave(status=503))
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="smart", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == DEFAULT_REPLY
    assert raw.headers["x-oneflow-attempts"] == "2"
    assert raw.headers["x-oneflow-provider"] == "fake-anthropic"
    [event] = gateway.events()
    assert event.attempts == 2


PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
IMAGE_MESSAGES: Any = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
        ],
    }
]


@pytest.mark.parametrize(
    ("kind", "expected_part"),
    [
        (Provider.Kind.OPENAI, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}),
        (
            Provider.Kind.ANTHROPIC,
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
        ),
        (Provider.Kind.GEMINI, {"inlineData": {"mimeType": "image/png", "data": PIXEL}}),
    ],
)
def test_images_reach_each_provider_in_its_own_form(
    gateway: Gateway, upstream: FakeUpstream, kind: str, expected_part: dict[str, Any]
) -> None:
    route(upstream, kind)
    completion = sdk(gateway).chat.completions.create(model="smart", messages=IMAGE_MESSAGES)
    assert completion.choices[0].message.content == DEFAULT_REPLY
    sent = upstream.requests[0].json
    turns = sent.get("messages") or sent.get("contents")
    parts = turns[-1].get("content") or turns[-1].get("parts")
    assert expected_part in parts


def test_a_client_leaving_mid_stream_closes_the_upstream_connection_at_once(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    route(upstream, Provider.Kind.OPENAI)
    # Five chunks at 0.5 s each: the whole stream would take 2.5 s.
    upstream.script(Behave(chunk_delay=0.5))
    body = json.dumps({"model": "smart", "stream": True, "messages": MESSAGES}).encode()
    host, port = gateway.server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {gateway.key.raw}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while received.count(b"data: ") < 2:
            received += sock.recv(4096)

    # A stream the gateway kept reading would end (2.5 s) and never count as
    # abandoned: waiting well past its end fails only if the gateway did not close it.
    deadline = time.monotonic() + 10
    while upstream.abandoned_streams == 0:
        assert time.monotonic() < deadline, "the upstream stream was not closed"
        time.sleep(0.02)
    # The gateway records the usage right after closing the upstream: wait for it.
    events = gateway.events()
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
        events = gateway.events()
    [event] = events
    assert (event.client_disconnected, event.status_code, event.usage_source) == (True, 499, "estimated")
    assert event.completion_tokens == 1  # "Hello": the one content chunk that had arrived

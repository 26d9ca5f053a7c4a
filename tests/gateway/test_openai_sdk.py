"""The official openai SDK, unmodified, against a live OneFlow (simulator upstream)."""

from __future__ import annotations

import socket
import time
from decimal import Decimal
from typing import Any

import openai
import pytest
from django.conf import settings

from accounts import services as accounts_services
from billing.models import UsageEvent
from oneflow.lib import money
from providers.models import Deployment, Provider, PublicModel
from providers.services import catalog_seed_demo
from tests.factories import ApiKeyFactory, ModelAccessFactory
from tests.gateway.conftest import Gateway, simulator_settings

MESSAGES: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there, gateway!"}]


def client(gateway: Gateway, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=key or gateway.key.raw, max_retries=0)


def test_chat_completion(gateway: Gateway) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()

    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert raw.headers["x-oneflow-provider"] == "Simulator"
    assert raw.headers["x-oneflow-attempts"] == "1"
    assert completion._request_id == raw.headers["x-request-id"]

    [event] = gateway.events()
    assert event.request_id == raw.headers["x-request-id"]
    assert (event.prompt_tokens, event.completion_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )
    assert (event.usage_source, event.status_code, event.endpoint, event.stream) == ("reported", 200, "chat", False)
    assert event.public_model == "gpt-4o-mini"
    assert event.api_key_id == gateway.key.key.pk
    # Priced at the seeded list price (0.15 / 0.60 USD per 1M), and the
    # simulator deployment's cost rates, which the demo seeds the same.
    per_million = Decimal(1_000_000)
    usd = (event.prompt_tokens * Decimal("0.15") + event.completion_tokens * Decimal("0.60")) / per_million
    assert event.cost == money.internal(usd * settings.CREDITS_PER_USD)
    assert event.provider_cost_usd == money.internal(usd)
    gateway.key.key.refresh_from_db()
    assert gateway.key.key.last_used_at == event.created_at


def test_streaming_with_usage(gateway: Gateway) -> None:
    sdk = client(gateway)
    expected = sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    stream = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.choices[0].message.content
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == expected.usage.completion_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in chunks[:-1])
    assert {c.model for c in chunks} == {"gpt-4o-mini"}

    events = gateway.events()
    assert len(events) == 2
    assert events[1].stream is True
    assert events[1].ttft_ms is not None
    assert events[1].completion_tokens == expected.usage.completion_tokens  # type: ignore[union-attr]


def test_a_stream_without_include_usage_carries_no_usage_but_is_billed(gateway: Gateway) -> None:
    chunks = list(client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert chunks
    assert all(c.usage is None and c.choices for c in chunks)
    [event] = gateway.events()
    assert event.usage_source == "reported"
    assert event.completion_tokens > 0


def test_embeddings_float_and_base64(gateway: Gateway) -> None:
    sdk = client(gateway)
    default = sdk.embeddings.create(model="text-embedding-3-small", input=["one", "two"], dimensions=6)
    floats = sdk.embeddings.create(
        model="text-embedding-3-small", input=["one", "two"], dimensions=6, encoding_format="float"
    )
    assert [len(d.embedding) for d in default.data] == [6, 6]
    for decoded, plain in zip(default.data, floats.data, strict=True):
        assert decoded.embedding == pytest.approx(plain.embedding, abs=1e-6)
    assert default.usage.prompt_tokens == 2
    assert len(gateway.events()) == 2


def test_models_list_and_retrieve(gateway: Gateway) -> None:
    sdk = client(gateway)
    assert [m.id for m in sdk.models.list()] == ["gpt-4o-mini", "text-embedding-3-small"]
    assert sdk.models.retrieve("gpt-4o-mini").owned_by == "openai"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-nope")


def test_errors_map_to_the_sdk_exception_classes(gateway: Gateway) -> None:
    sdk = client(gateway)
    with pytest.raises(openai.AuthenticationError) as bad_key:
        client(gateway, key="of_live_AAAAAAAAAAAA_" + "B" * 32).models.list()
    assert bad_key.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="gpt-nope", messages=MESSAGES)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert bad.value.param == "messages"
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=0)


def test_a_key_limited_to_other_models_gets_403(gateway: Gateway) -> None:
    accounts_services.api_key_update(key=gateway.key.key, allowed_models=["text-embedding-3-small"])
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert denied.value.code == "model_not_allowed"
    assert [m.id for m in client(gateway).models.list()] == ["text-embedding-3-small"]


def test_an_upstream_failure_is_a_5xx_and_is_recorded(gateway: Gateway) -> None:
    simulator_settings(failure_rate=1)
    with pytest.raises(openai.InternalServerError) as failed:
        client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert failed.value.status_code == 502
    [event] = gateway.events()
    assert (event.status_code, event.usage_source, event.prompt_tokens) == (502, "void", 0)


def test_a_client_that_leaves_mid_stream_cancels_upstream_and_pays_for_what_was_generated(gateway: Gateway) -> None:
    simulator_settings(reply_words=400, tokens_per_second=50)
    body = (
        b'{"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "Tell me a long story"}]}'
    )
    host, port = gateway.server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {gateway.key.raw}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while received.count(b"data: ") < 5:
            received += sock.recv(4096)
    deadline = time.monotonic() + 10
    while not UsageEvent.objects.exists() and time.monotonic() < deadline:
        gateway.events()
        time.sleep(0.1)

    [event] = gateway.events()
    assert event.client_disconnected is True
    assert event.status_code == 499
    assert event.usage_source == "estimated"
    assert event.prompt_tokens > 0
    # 400 words at 50/s would take 8 s; the client left after a few chunks, and
    # what was written is billed, not the story the upstream would have told.
    assert 0 < event.completion_tokens < 400


def test_the_simulator_is_seeded_with_no_provider_key(gateway: Gateway) -> None:
    assert Provider.objects.filter(kind=Provider.Kind.SIMULATOR, enabled=True).exists()
    assert not Provider.objects.filter(kind=Provider.Kind.OPENAI).exists()


def test_with_openai_api_key_set_the_seeded_openai_provider_serves_instead(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert catalog_seed_demo() is False
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    assert catalog_seed_demo() is True

    enabled = Deployment.objects.filter(public_model__name="gpt-4o-mini", enabled=True).select_related("provider")
    [deployment] = enabled
    assert deployment.provider.kind == Provider.Kind.OPENAI
    assert deployment.provider.base_url == "https://api.openai.com/v1"
    assert deployment.credential is not None
    assert deployment.credential.reference == "env:OPENAI_API_KEY"
    assert deployment.credential.sealed_secret == ""

    monkeypatch.delenv("OPENAI_API_KEY")
    catalog_seed_demo()
    [back] = Deployment.objects.filter(public_model__name="gpt-4o-mini", enabled=True).select_related("provider")
    assert back.provider.kind == Provider.Kind.SIMULATOR


def test_a_hidden_model_is_visible_only_to_organizations_granted_it(gateway: Gateway) -> None:
    PublicModel.objects.filter(name="gpt-4o-mini").update(is_public=False)
    sdk = client(gateway)
    assert [m.id for m in sdk.models.list()] == ["text-embedding-3-small"]
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    ModelAccessFactory.create(
        public_model=PublicModel.objects.get(name="gpt-4o-mini"), organization=gateway.key.key.organization
    )
    assert [m.id for m in sdk.models.list()] == ["gpt-4o-mini", "text-embedding-3-small"]
    assert sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices

    outsider_key = ApiKeyFactory.create().raw  # of an organization of its own
    assert [m.id for m in client(gateway, key=outsider_key).models.list()] == ["text-embedding-3-small"]


def test_a_key_list_naming_a_hidden_model_does_not_open_it(gateway: Gateway) -> None:
    """Customers edit their keys' model lists; only operators open hidden models."""
    PublicModel.objects.filter(name="gpt-4o-mini").update(is_public=False)
    accounts_services.api_key_update(key=gateway.key.key, allowed_models=["gpt-4o-mini", "text-embedding-3-small"])
    sdk = client(gateway)

    assert [m.id for m in sdk.models.list()] == ["text-embedding-3-small"]
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-4o-mini")

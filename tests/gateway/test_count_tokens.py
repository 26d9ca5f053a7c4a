"""``POST /v1/messages/count_tokens`` and the shape of errors on paths OneFlow does not serve.

Claude Code counts tokens before large requests; an unknown path must answer each
client in its own protocol's error shape, or the SDKs report a parse error instead.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest

from billing.selectors import credits_balance
from gateway import validation_anthropic
from providers import tokens
from providers.translate.anthropic import anthropic_request_to_openai
from tests.gateway.conftest import Gateway
from tests.http import call

SHORT: Any = [{"role": "user", "content": "Hello"}]
LONG: Any = [{"role": "user", "content": "Hello " * 200}]


def sdk(gateway: Gateway, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.server.url, api_key=key or gateway.key.raw, max_retries=0)


def test_the_anthropic_sdk_counts_the_tokens_of_a_prompt_for_free(gateway: Gateway) -> None:
    organization = gateway.key.key.organization
    before = credits_balance(organization_id=organization.pk)

    short = sdk(gateway).messages.count_tokens(model="gpt-4o-mini", messages=SHORT)
    long = sdk(gateway).messages.count_tokens(model="gpt-4o-mini", messages=LONG, system="Be brief.")

    # The count is what OneFlow bills a prompt by when usage is missing: the same tokenizer and framing.
    expected = anthropic_request_to_openai(
        {"model": "gpt-4o-mini", "max_tokens": 1, "messages": LONG, "system": "Be brief."}
    )
    assert long.input_tokens == tokens.count_chat_prompt(expected, model="gpt-4o-mini")
    assert 0 < short.input_tokens < long.input_tokens
    assert gateway.events() == [], "a count is not a request: no usage event"
    assert credits_balance(organization_id=organization.pk) == before == Decimal(1000)


def test_counting_tokens_needs_a_key_and_a_model_the_key_may_use(gateway: Gateway) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        sdk(gateway, key="sk-oneflow-not-a-key").messages.count_tokens(model="gpt-4o-mini", messages=SHORT)
    with pytest.raises(anthropic.NotFoundError) as missing:
        sdk(gateway).messages.count_tokens(model="no-such-model", messages=SHORT)
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        sdk(gateway).messages.count_tokens(model="gpt-4o-mini", messages=[])
    assert "messages" in str(bad.value)


def test_a_count_validates_what_a_message_would_but_max_tokens() -> None:
    body = {"model": "m", "messages": SHORT}
    assert validation_anthropic.count_tokens_request(body) is body
    with pytest.raises(Exception, match="max_tokens"):
        validation_anthropic.messages_request(body)


def test_an_unknown_path_answers_each_client_in_its_own_shape(gateway: Gateway) -> None:
    headers = {"authorization": f"Bearer {gateway.key.raw}", "content-type": "application/json"}

    openai_shape = call(gateway.server.url, "POST", "/v1/completions/legacy", body=b"{}", headers=headers)
    anthropic_shape = call(
        gateway.server.url,
        "POST",
        "/v1/files",
        body=b"{}",
        headers={**headers, "anthropic-version": "2023-06-01"},
    )

    assert openai_shape.status == anthropic_shape.status == 404
    assert openai_shape.json()["error"]["code"] == "not_found"
    assert anthropic_shape.json()["type"] == "error"
    assert anthropic_shape.json()["error"]["type"] == "not_found_error"
    with pytest.raises(openai.NotFoundError):
        openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0).files.list()

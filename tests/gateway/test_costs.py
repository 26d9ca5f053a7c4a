"""The gateway prices each call: unpriced models are refused, and the cost is
returned with the answer and billed the same."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest

from billing.models import LedgerEntry, Price
from billing.selectors import credits_balance
from tests.gateway.conftest import Gateway

MESSAGES: Any = [{"role": "user", "content": "How much does this cost?"}]


def sdk(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=gateway.key.raw, max_retries=0)


def test_a_model_without_a_price_is_refused_until_priced_or_free(gateway: Gateway) -> None:
    Price.objects.filter(public_model="gpt-4o-mini").delete()
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert refused.value.code == "model_not_priced"
    assert refused.value.response.headers["x-should-retry"] == "false"

    Price.objects.create(
        public_model="gpt-4o-mini",
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        input_per_1m=0,
        cached_input_per_1m=0,
        output_per_1m=0,
        is_free=True,
    )
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-oneflow-cost"] == "0"
    [_, event] = gateway.events()
    assert event.cost == 0


def test_the_cost_header_matches_what_is_billed(gateway: Gateway) -> None:
    raw = sdk(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    [event] = gateway.events()
    assert Decimal(raw.headers["x-oneflow-cost"]) == event.cost > 0


def test_the_last_stream_event_carries_the_cost(gateway: Gateway) -> None:
    chunks = list(
        sdk(gateway).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    usage: Any = chunks[-1].usage
    [event] = gateway.events()
    assert Decimal(usage.model_extra["cost"]) == event.cost > 0


def test_anthropic_streams_carry_the_cost_in_message_delta(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.server.url, api_key=gateway.key.raw, max_retries=0)
    with client.messages.stream(model="gpt-4o-mini", max_tokens=32, messages=MESSAGES) as stream:
        deltas = [e for e in stream if e.type == "message_delta"]
    [event] = gateway.events()
    assert Decimal(deltas[-1].usage.model_extra["cost"]) == event.cost > 0  # type: ignore[index]


@pytest.mark.parametrize("header", ["x-request-id", "x-client-request-id"])
def test_a_client_that_repeats_its_request_id_is_charged_for_every_request(gateway: Gateway, header: str) -> None:
    """The request id is the billing key: the client's own id rides beside ours, never replaces it."""
    client = sdk(gateway)
    replies = [
        client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={header: "my-trace-1"}
        )
        for _ in range(2)
    ]

    ours = [reply.headers["x-request-id"] for reply in replies]
    assert ours[0] != ours[1] and all(request_id.startswith("req_") for request_id in ours)
    assert [reply.headers["x-client-request-id"] for reply in replies] == ["my-trace-1", "my-trace-1"]
    events = gateway.events()
    assert sorted(event.request_id for event in events) == sorted(ours)
    charges = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE)
    assert sorted(-entry.amount for entry in charges) == sorted(event.cost for event in events)
    assert credits_balance(organization_id=gateway.key.key.organization_id) == Decimal(1000) - sum(
        Decimal(reply.headers["x-oneflow-cost"]) for reply in replies
    )
